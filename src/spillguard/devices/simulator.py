"""The fleet simulator: N simulated phones enrolling and checking in against a server.

Used by ``spillguard simulate`` and by ``benchmarks/checkins.py``::

    stats = run_simulation(SimulationConfig(server=url, enrollment_token=token, devices=100))
    print(stats.checkins_per_second, stats.latency_ms(0.99))

Every device is a :mod:`spillguard.devices.agent.backends.simulated` phone kept in
memory, with a posture drawn from a mix of profiles (:data:`DEFAULT_MIX`: 70 % compliant,
10 % swipe-only, 10 % unencrypted, 5 % rooted, 5 % stale).  A stale device enrolls and
checks in once, then never again, so the server sees it go stale.  Devices check in every
``interval`` seconds (±10 % jitter, first check-ins spread over one interval), all through
one client whose connection pool and an ``asyncio.Semaphore`` bound the requests in
flight to ``concurrency``.  Against a plain ``http://`` server (the benchmark's) that client
is :class:`KeepAliveClient`, a minimal HTTP/1.1 keep-alive client on asyncio streams (and
uvloop when installed): the simulator shares the CPU with the server it measures, and a
full-featured client costs several times more per request.  ``https://`` servers get
``httpx2`` with TLS.  Commands received are carried out on the simulated
phone and acknowledged at once; a wiped or retired device leaves the run.

Check-in latency is measured per request, from send to parsed answer; errors are counted
by kind (``status slug`` or exception class) and never retried, so they show.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx2

from spillguard.devices.agent.backends.base import Command
from spillguard.devices.agent.backends.simulated import (
    PROFILES,
    apply_command,
    initial_state,
    simulated_posture,
)
from spillguard.devices.agent.client import (
    NO_RETRY,
    PROTOCOL_PATH,
    AgentError,
    AsyncDeviceClient,
    Enrolled,
    ProtocolError,
    RequestRefused,
    ServerUnreachable,
    _enrolled,
    auth_header,
    parse_enrollment_url,
    problem_error,
)

DEFAULT_MIX: Final[dict[str, float]] = {
    "compliant": 70,
    "swipe": 10,
    "unencrypted": 10,
    "rooted": 5,
    "stale": 5,
}
JITTER: Final = 0.10


def parse_mix(text: str) -> dict[str, float]:
    """``compliant=70,swipe=10,…`` → weights; every name must be a known profile."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in PROFILES:
            raise ValueError(
                f"bad mix entry {part.strip()!r}: use NAME=WEIGHT with NAME one of "
                + ", ".join(PROFILES)
            )
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"bad weight in {part.strip()!r}: not a number") from None
        if weight < 0 or not math.isfinite(weight):
            raise ValueError(f"bad weight in {part.strip()!r}: must be 0 or more")
        mix[name] = weight
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the mix needs at least one profile with a positive weight")
    return mix


def allocate(devices: int, mix: dict[str, float]) -> list[str]:
    """Profiles for ``devices`` devices in the mix's proportions (largest remainder)."""
    total = sum(mix.values())
    exact = {name: devices * weight / total for name, weight in mix.items()}
    counts = {name: int(share) for name, share in exact.items()}
    left = devices - sum(counts.values())
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True)[:left]:
        counts[name] += 1
    return [name for name, count in counts.items() for _ in range(count)]


def server_api_root(server: str) -> str:
    """``https://host`` (or an enrollment URL) → ``https://host/api/device/v1``."""
    if "#token=" in server:
        return parse_enrollment_url(server).api_root
    root = server.rstrip("/")
    return root if root.endswith(PROTOCOL_PATH) else root + PROTOCOL_PATH


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.  ``duration`` is the check-in phase, after enrollment."""

    server: str
    enrollment_token: str
    devices: int = 100
    interval: float = 30.0
    duration: float = 60.0
    concurrency: int = 50
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    timeout: float = 30.0
    seed: int | None = None
    name_prefix: str = "sim"
    # Every phone checks in once (its first posture) before the timed phase, which then
    # measures the steady state; the warm-up is reported on its own (SimulationStats.warmup).
    warmup: bool = False


@dataclass
class SimulationStats:
    """What a run measured.  Latencies are check-in latencies in seconds."""

    devices: int
    enrolled: int = 0
    enroll_errors: int = 0
    checkins: int = 0
    errors: int = 0
    commands_acknowledged: int = 0
    commands_failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    error_kinds: Counter[str] = field(default_factory=Counter)
    profiles: Counter[str] = field(default_factory=Counter)
    non_compliant: int = 0
    warmup: SimulationStats | None = field(default=None, repr=False)

    @property
    def checkins_per_second(self) -> float:
        return self.checkins / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, quantile: float) -> float | None:
        """Nearest-rank quantile of check-in latency in milliseconds (None without data)."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(quantile * len(ordered)))
        return ordered[rank - 1] * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "enrolled": self.enrolled,
            "enroll_errors": self.enroll_errors,
            "checkins": self.checkins,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "commands_acknowledged": self.commands_acknowledged,
            "commands_failed": self.commands_failed,
            "elapsed_seconds": round(self.elapsed, 3),
            "checkins_per_second": round(self.checkins_per_second, 2),
            "latency_ms": {
                "p50": self.latency_ms(0.50),
                "p95": self.latency_ms(0.95),
                "p99": self.latency_ms(0.99),
            },
            "profiles": dict(self.profiles),
            "non_compliant_at_last_checkin": self.non_compliant,
            **({"warmup": self.warmup.phase_dict()} if self.warmup is not None else {}),
        }

    def phase_dict(self) -> dict[str, Any]:
        """Check-ins, errors, rate and latency only (the warm-up's figures)."""
        return {
            "checkins": self.checkins,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "elapsed_seconds": round(self.elapsed, 3),
            "checkins_per_second": round(self.checkins_per_second, 2),
            "latency_ms": {
                "p50": self.latency_ms(0.50),
                "p95": self.latency_ms(0.95),
                "p99": self.latency_ms(0.99),
            },
        }


@dataclass
class SimulatedDevice:
    index: int
    profile: str
    state: dict[str, Any]
    device_id: int | None = None
    credential: str | None = None
    compliant: bool | None = None
    gone: bool = False  # wiped or retired: its credential is revoked


def _error_kind(exc: Exception) -> str:
    if isinstance(exc, ProtocolError):
        return f"{exc.status} {exc.slug}"
    if isinstance(exc, ServerUnreachable) and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    return type(exc).__name__


Progress = Callable[[str, SimulationStats], None]


class KeepAliveClient:
    """The device protocol over plain HTTP/1.1 with keep-alive: enroll, check in, results.

    Same calls and errors as :class:`AsyncDeviceClient` (problem documents become the
    same :class:`ProtocolError` subclasses, connection failures :class:`ServerUnreachable`),
    without retries.  At most ``connections`` connections are open; idle ones are reused.
    """

    def __init__(self, api_root: str, connections: int, timeout: float) -> None:
        parts = urlsplit(api_root)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("KeepAliveClient speaks plain http:// only")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.encode("latin-1")
        self.timeout = timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(connections)
        self._heads: dict[str, bytes] = {}  # the request line and fixed headers, per path

    async def aclose(self) -> None:
        while self.idle:
            _, writer = self.idle.pop()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
                + b"Host: "
                + self.host_header
                + b"\r\nUser-Agent: spillguard-simulator\r\nContent-Type: application/json\r\n"
            )
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = b"".join(
            (
                head,
                extra.encode("latin-1"),
                b"Content-Length: %d\r\n\r\n" % len(payload),
                payload,
            )
        )
        async with self.slots:
            try:
                async with asyncio.timeout(self.timeout):
                    status, content_type, content = await self._exchange(request)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                raise ServerUnreachable(
                    f"cannot reach {self.host}:{self.port}: {type(exc).__name__}: {exc}"
                ) from exc
        if 200 <= status < 300:
            data = json.loads(content)
            if not isinstance(data, dict):
                raise RequestRefused(status, "unexpected-body", "not a JSON object")
            return data
        raise problem_error(
            httpx2.Response(status, headers={"content-type": content_type}, content=content)
        )

    async def _exchange(self, request: bytes) -> tuple[int, str, bytes]:
        while self.idle:
            # A kept-alive connection the server has closed meanwhile (its idle timeout)
            # fails before any answer arrives: the request was not handled, so send it again.
            reader, writer = self.idle.pop()
            try:
                return await self._on(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._on(reader, writer, request)

    async def _on(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, str, bytes]:
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    fields[name.strip().lower()] = value.strip()
            if "content-length" in fields:
                content = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                content = await _read_chunked(reader)
            else:
                content = await reader.read()
                fields["connection"] = "close"
        except BaseException:
            writer.close()
            raise
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, fields.get("content-type", ""), content

    async def enroll(self, token: str, device: dict[str, Any]) -> Enrolled:
        return _enrolled(await self._post("/enroll", {"token": token, "device": device}))

    async def checkin(
        self, device_id: int, credential: str, posture: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._post(
            "/checkin", {"posture": posture}, auth_header(device_id, credential)
        )

    async def report_result(
        self, device_id: int, credential: str, command_id: int, result: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._post(
            f"/commands/{command_id}/result", result, auth_header(device_id, credential)
        )


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _run(coroutine: Coroutine[Any, Any, SimulationStats]) -> SimulationStats:
    """``asyncio.run`` on uvloop when it is installed (it halves the simulator's CPU)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


class FleetSimulator:
    """Runs one simulation; :meth:`run` returns the stats."""

    def __init__(self, config: SimulationConfig, progress: Progress | None = None) -> None:
        if config.devices < 1:
            raise ValueError("simulate at least one device")
        if config.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if config.interval <= 0 or config.duration < 0:
            raise ValueError("interval must be positive and duration not negative")
        self.config = config
        self.progress = progress or (lambda phase, stats: None)
        self.rng = random.Random(config.seed)  # noqa: S311 - load pattern, not a secret
        self.stats = SimulationStats(devices=config.devices)
        self.api_root = server_api_root(config.server)
        self.fleet = [
            SimulatedDevice(i, profile, initial_state(profile))
            for i, profile in enumerate(self._profiles())
        ]
        self.stats.profiles.update(d.profile for d in self.fleet)

    def _profiles(self) -> list[str]:
        profiles = allocate(self.config.devices, self.config.mix)
        self.rng.shuffle(profiles)
        return profiles

    async def run(self) -> SimulationStats:
        if self.api_root.startswith("http://"):
            fast = KeepAliveClient(self.api_root, self.config.concurrency, self.config.timeout)
            self.client: KeepAliveClient | AsyncDeviceClient = fast
            try:
                return await self._run()
            finally:
                await fast.aclose()
        limits = httpx2.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
        )
        async with httpx2.AsyncClient(
            timeout=self.config.timeout,
            limits=limits,
            headers={"User-Agent": "spillguard-simulator"},
        ) as http:
            self.client = AsyncDeviceClient(http, self.api_root, retry=NO_RETRY, rng=self.rng)
            return await self._run()

    async def _run(self) -> SimulationStats:
        self.gate = asyncio.Semaphore(self.config.concurrency)
        await asyncio.gather(*(self._enroll(d) for d in self.fleet))
        self.progress("enrolled", self.stats)
        if self.config.warmup:
            await self._warm_up()
        started = time.perf_counter()
        deadline = started + self.config.duration
        ticker = asyncio.create_task(self._tick())
        try:
            await asyncio.gather(*(self._live(d, started, deadline) for d in self.fleet))
        finally:
            ticker.cancel()
        self.stats.elapsed = max(time.perf_counter() - started, 1e-9)
        self.stats.non_compliant = sum(1 for d in self.fleet if d.compliant is False)
        self.progress("done", self.stats)
        return self.stats

    async def _warm_up(self) -> None:
        """Every enrolled phone checks in once, as fast as the concurrency allows; counted
        in ``stats.warmup``, not in the timed phase's figures."""
        timed = self.stats
        self.stats = SimulationStats(devices=timed.devices)
        began = time.perf_counter()
        try:
            await asyncio.gather(*(self._checkin(d) for d in self.fleet if d.device_id))
        finally:
            self.stats.elapsed = max(time.perf_counter() - began, 1e-9)
            timed.warmup, self.stats = self.stats, timed
            timed.commands_acknowledged += timed.warmup.commands_acknowledged
            timed.commands_failed += timed.warmup.commands_failed
        self.progress("warmed up", self.stats)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.progress("checkin", self.stats)

    async def _enroll(self, device: SimulatedDevice) -> None:
        posture = device.state["posture"]
        body = {
            "name": f"{self.config.name_prefix}-{device.index:05d} ({device.profile})",
            "platform": posture["platform"],
            "model": posture["model"],
            "os_version": posture["os_version"],
        }
        async with self.gate:
            try:
                enrolled = await self.client.enroll(self.config.enrollment_token, body)
            except AgentError as exc:
                self.stats.enroll_errors += 1
                self.stats.error_kinds[f"enroll: {_error_kind(exc)}"] += 1
                return
        device.device_id, device.credential = enrolled.device_id, enrolled.credential
        self.stats.enrolled += 1
        self.progress("enrolling", self.stats)

    async def _live(self, device: SimulatedDevice, started: float, deadline: float) -> None:
        if device.device_id is None or (self.config.warmup and device.profile == "stale"):
            return  # a stale phone checks in once: in the warm-up, if there is one
        # Spread the first check-ins over one interval, as a real fleet's are.
        next_at = started + self.rng.uniform(0, min(self.config.interval, self.config.duration))
        while not device.gone:
            now = time.perf_counter()
            if next_at >= deadline:
                return
            await asyncio.sleep(max(0.0, next_at - now))
            await self._checkin(device)
            if device.profile == "stale":
                return  # checked in once; never again
            period = self.config.interval * self.rng.uniform(1 - JITTER, 1 + JITTER)
            next_at += period

    async def _checkin(self, device: SimulatedDevice) -> None:
        assert device.device_id is not None and device.credential is not None
        async with self.gate:
            began = time.perf_counter()
            try:
                answer = await self.client.checkin(
                    device.device_id, device.credential, simulated_posture(device.state)
                )
            except AgentError as exc:
                self.stats.errors += 1
                self.stats.error_kinds[_error_kind(exc)] += 1
                return
            self.stats.latencies.append(time.perf_counter() - began)
        self.stats.checkins += 1
        device.compliant = bool((answer.get("compliance") or {}).get("compliant"))
        lost = answer.get("state") == "lost"
        for raw in answer.get("commands", []):
            await self._execute(device, Command.from_json(raw), lost)

    async def _execute(self, device: SimulatedDevice, command: Command, lost: bool) -> None:
        assert device.device_id is not None and device.credential is not None
        result = apply_command(device.state, command)
        body = result.to_json()
        if not lost:
            body.pop("location", None)
        async with self.gate:
            try:
                await self.client.report_result(
                    device.device_id, device.credential, command.id, body
                )
            except AgentError as exc:
                self.stats.errors += 1
                self.stats.error_kinds[f"result: {_error_kind(exc)}"] += 1
                return
        if result.status == "acknowledged":
            self.stats.commands_acknowledged += 1
            if command.type in ("wipe", "retire"):
                device.gone = True
        else:
            self.stats.commands_failed += 1


def run_simulation(config: SimulationConfig, progress: Progress | None = None) -> SimulationStats:
    """Run a simulation to the end (blocking) and return what it measured.

    Called from a thread that already runs an event loop (a notebook, or a test process
    where Playwright's sync API owns the main thread's loop), it runs in a fresh thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(FleetSimulator(config, progress).run())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: _run(FleetSimulator(config, progress).run())).result()
