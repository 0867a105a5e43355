"""Device check-ins against a real `spillguard serve`, on SQLite and PostgreSQL.

For each database it starts ``spillguard serve`` as a subprocess (the way
tests/functional/live.py does), creates an administrator and an API token with the CLI,
then over the admin API a compliance policy, a device group using it and an enrollment
with N uses.  The fleet simulator (``devices.simulator.run_simulation``) enrols N
simulated phones.  With ``--warmup`` (the default) every phone then checks in once: its
first posture, judged, recorded in its history and audited by the ordinary check-in; this
warm-up is timed and reported on its own.  The timed phase then checks the phones in for
``--duration`` seconds, every ``K / rate`` seconds, K being the phones that keep checking
in (the mix's "stale" phones check in once and fall silent), so that the fleet offers
``rate`` check-ins per second.  It reports sustained check-ins/s (check-ins divided by the
wall time of the timed phase), latency p50/p95/p99, errors, the CPU each party used per
check-in, and the size of the command table before and after.  ``--no-warmup`` puts the
first check-ins into the timed phase instead.

Then "report lost" to lock: ``--lost-trials`` more phones check in every 30 s (each at its
own phase); once each has checked in, every one is reported lost through the admin API
and the time until the phone acknowledges the lock is measured.

PostgreSQL runs in a throwaway database on the server of ``--postgres-url`` (created
and dropped here).  Server and simulator share the machine: the load average is printed.

    .venv/bin/python benchmarks/checkins.py [--devices 10000] [--rate 1000]
        [--duration 60] [--workers 1] [--databases sqlite,postgresql] [--lost-trials 5]
        [--concurrency 200] [--no-warmup]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.functional.live import (  # noqa: E402
    LiveServer,
    run_spillguard,
    spillguard_env,
    throwaway_postgres_database,
)

from spillguard.devices.agent.backends.base import Command  # noqa: E402
from spillguard.devices.agent.backends.simulated import (  # noqa: E402
    apply_command,
    initial_state,
    simulated_posture,
)
from spillguard.devices.agent.client import AsyncDeviceClient  # noqa: E402
from spillguard.devices.models import Command as CommandRow  # noqa: E402
from spillguard.devices.simulator import (  # noqa: E402
    DEFAULT_MIX,
    SimulationConfig,
    allocate,
    run_simulation,
)

POLICY = {
    "name": "Benchmark phones",
    "min_passcode_type": "pin",
    "min_passcode_length": 6,
    "encryption_required": True,
    "block_rooted": True,
    "agent_required": True,
    "max_checkin_age_seconds": 3600,
}
LOST_INTERVAL = 30.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + working tree' if dirty else ''}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def database(kind: str, postgres_url: str, home: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{home / 'bench.db'}"
    else:
        with throwaway_postgres_database(postgres_url, prefix="spillguard_bench") as url:
            yield url


def command_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(CommandRow.status, func.count()).group_by(CommandRow.status)
            ).all()
    finally:
        engine.dispose()
    return {status: count for status, count in rows}


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (0 for any that have gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def database_backends(url: str) -> list[int]:
    """PostgreSQL backend processes serving the benchmark database, found by their process
    title ("postgres: … <database> 127.0.0.1(…)"); none for SQLite."""
    if not url.startswith("postgresql"):
        return []
    name = f" {make_url(url).database} ".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres:") and name in title:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU used by server, simulator and database during the check-in phase only.

    Database backends come and go with the connection pool, so they are looked for every
    second and each one's last reading is kept.
    """

    def __init__(self, server_pid: int, url: str, start_phase: str = "enrolled") -> None:
        self.server_pid = server_pid
        self.url = url
        self.start_phase = start_phase
        self.warmup_server_start = 0.0
        self.warmup_server_seconds = 0.0
        self.start: dict[str, float] = {}
        self.server_pids: list[int] = []
        self.backend_start: dict[int, float] = {}
        self.backend_last: dict[int, float] = {}
        self.scanned = 0.0

    def _scan_backends(self) -> None:
        self.scanned = time.monotonic()
        for pid in database_backends(self.url):
            used = cpu_seconds([pid])
            self.backend_start.setdefault(pid, 0.0)
            self.backend_last[pid] = used

    def progress(self, phase: str, stats: Any) -> None:
        if phase == "enrolled":
            self.warmup_server_start = cpu_seconds(process_tree(self.server_pid))
        if phase == "warmed up":
            used = cpu_seconds(process_tree(self.server_pid))
            self.warmup_server_seconds = used - self.warmup_server_start
        if phase == self.start_phase:
            self.server_pids = process_tree(self.server_pid)
            self.start = {"server": cpu_seconds(self.server_pids), "simulator": time.process_time()}
            for pid in database_backends(self.url):
                self.backend_start[pid] = self.backend_last[pid] = cpu_seconds([pid])
            self.scanned = time.monotonic()
        elif phase == "checkin" and self.start and time.monotonic() - self.scanned >= 1.0:
            self._scan_backends()

    def per_checkin_ms(self, checkins: int) -> dict[str, float]:
        self._scan_backends()
        used = {
            "server": cpu_seconds(self.server_pids) - self.start["server"],
            "simulator": time.process_time() - self.start["simulator"],
            "database": sum(
                self.backend_last[p] - self.backend_start[p] for p in self.backend_last
            ),
        }
        return {name: round(value * 1000 / max(checkins, 1), 3) for name, value in used.items()}


def checkins_answered(server_url: str, api_token: str) -> dict[str, float]:
    """The server's count of check-ins per answering path (fast / ordinary), from /metrics."""
    text = httpx2.get(
        f"{server_url}/metrics", headers={"Authorization": f"Bearer {api_token}"}, timeout=30
    ).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("spillguard_device_checkins_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('path="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


def setup(server: LiveServer, env: dict[str, str], devices: int) -> tuple[str, str, str]:
    """Admin, token, policy, group and enrollments; returns (api token, fleet token, lost token)."""
    email = "bench-admin@example.co.uk"
    made = run_spillguard(
        ["users", "create", email, "--role", "admin", "--password-stdin"],
        env,
        input="correct horse battery staple 42\n",
    )
    assert made.returncode == 0, made.stderr
    issued = run_spillguard(["tokens", "create", "--user", email, "--name", "bench"], env)
    assert issued.returncode == 0, issued.stderr
    token = next(w for w in issued.stdout.split() if w.startswith("sg"))
    api = httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    me = api.get("/api/v1/me").json()
    policy = api.post("/api/v1/compliance-policies", json=POLICY)
    assert policy.status_code == 201, policy.text
    group = api.post(
        "/api/v1/device-groups",
        json={"name": "Benchmark", "description": None, "policy_id": policy.json()["id"]},
    )
    assert group.status_code == 201, group.text
    tokens = []
    for uses in (devices, 100):
        enrollment = api.post(
            "/api/v1/enrollments",
            json={"user_id": me["user_id"], "group_id": group.json()["id"], "uses_allowed": uses},
        )
        assert enrollment.status_code == 201, enrollment.text
        tokens.append(enrollment.json()["token"])
    return token, tokens[0], tokens[1]


async def lost_to_lock(
    server_url: str, api_token: str, enroll_token: str, trials: int
) -> list[float]:
    """Seconds from "report lost" (admin API) to the lock's acknowledgement, per phone."""
    rng = random.Random(7)
    async with httpx2.AsyncClient(timeout=30) as http:
        client = AsyncDeviceClient(http, f"{server_url}/api/device/v1", rng=rng)
        admin = {"Authorization": f"Bearer {api_token}"}
        phones: list[dict[str, Any]] = []
        for i in range(trials):
            state = initial_state("compliant")
            enrolled = await client.enroll(
                enroll_token,
                {"name": f"lost-{i}", "platform": state["posture"]["platform"]},
            )
            phones.append({"id": enrolled.device_id, "cred": enrolled.credential, "state": state})
        reported: dict[int, float] = {}
        acked: dict[int, float] = {}
        first_checkin = asyncio.Event()
        seen: set[int] = set()

        async def phone(p: dict[str, Any]) -> None:
            await asyncio.sleep(rng.uniform(0, LOST_INTERVAL))
            device_id: int = p["id"]
            while device_id not in acked:
                answer = await client.checkin(p["id"], p["cred"], simulated_posture(p["state"]))
                seen.add(p["id"])
                if len(seen) == len(phones):
                    first_checkin.set()
                for raw in answer.get("commands", []):
                    command = Command.from_json(raw)
                    result = apply_command(p["state"], command).to_json()
                    if answer.get("state") != "lost":
                        result.pop("location", None)
                    await client.report_result(p["id"], p["cred"], command.id, result)
                    if command.type == "lock" and device_id in reported:
                        acked[device_id] = time.monotonic()
                if device_id not in acked:
                    await asyncio.sleep(LOST_INTERVAL)

        tasks = [asyncio.create_task(phone(p)) for p in phones]
        await first_checkin.wait()
        await asyncio.sleep(rng.uniform(0, LOST_INTERVAL))
        for p in phones:
            reported[p["id"]] = time.monotonic()
            response = await http.post(
                f"{server_url}/api/v1/devices/{p['id']}/report-lost",
                json={"message": "Lost: please call IT", "phone": "+44 20 7946 0000"},
                headers=admin,
            )
            assert response.status_code in (200, 201), response.text
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=4 * LOST_INTERVAL)
        return [acked[p["id"]] - reported[p["id"]] for p in phones]


def bench(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spillguard-bench-") as tmp:
        home = Path(tmp)
        with database(kind, args.postgres_url, home) as url:
            env = spillguard_env(home, url, log_level="WARNING")
            server_args = ["--workers", str(args.workers)] if args.workers > 1 else []
            with LiveServer(env, args=server_args, ready_timeout=120) as server:
                api_token, fleet_token, lost_token = setup(server, env, args.devices)
                # Stale phones check in once: the others offer the whole rate.
                keep_checking_in = args.devices - allocate(args.devices, DEFAULT_MIX).count("stale")
                interval = keep_checking_in / args.rate
                print(f"[{kind}] load before: {load()}", flush=True)
                before = command_counts(url)
                started = time.monotonic()
                assert server.process is not None
                start_phase = "warmed up" if args.warmup else "enrolled"
                meter = CpuMeter(server.process.pid, url, start_phase)
                answered_before: dict[str, float] = {}

                def progress(phase: str, stats: Any) -> None:
                    if phase == start_phase:
                        answered_before.update(checkins_answered(server.url, api_token))
                    meter.progress(phase, stats)

                stats = run_simulation(
                    SimulationConfig(
                        server=server.url,
                        enrollment_token=fleet_token,
                        devices=args.devices,
                        interval=interval,
                        duration=args.duration,
                        concurrency=args.concurrency,
                        seed=1,
                        warmup=args.warmup,
                    ),
                    progress,
                )
                cpu = meter.per_checkin_ms(stats.checkins)
                answered_after = checkins_answered(server.url, api_token)
                answered = {
                    path: int(count - answered_before.get(path, 0.0))
                    for path, count in answered_after.items()
                }
                wall = time.monotonic() - started
                after = command_counts(url)
                load_after = load()
                try:
                    lost = asyncio.run(
                        lost_to_lock(server.url, api_token, lost_token, args.lost_trials)
                    )
                except Exception:
                    print(server.stderr_text()[-5000:], file=sys.stderr)
                    raise
                error_lines = [
                    line for line in server.stderr_text().splitlines() if '"level": "error"' in line
                ]
                errors_in_log = len(error_lines)
                for line in error_lines[:5]:
                    print(f"[{kind}] server error: {line[:300]}", flush=True)
        result = {
            "database": kind,
            "workers": args.workers,
            "devices": args.devices,
            "enrolled": stats.enrolled,
            "interval_s": round(interval, 2),
            "duration_s": args.duration,
            "setup_and_run_wall_s": round(wall, 1),
            **{k: v for k, v in stats.as_dict().items() if k not in ("devices", "enrolled")},
            "cpu_ms_per_checkin": cpu,
            "checkins_answered_by_path": answered,
            **(
                {
                    "warmup_server_cpu_ms_per_checkin": round(
                        meter.warmup_server_seconds * 1000 / max(stats.warmup.checkins, 1), 3
                    )
                }
                if stats.warmup is not None
                else {}
            ),
            "commands_before": before,
            "commands_after": after,
            "load_after": load_after,
            "lost_to_lock_s": [round(x, 1) for x in lost],
            "lost_to_lock_mean_s": round(statistics.fmean(lost), 1),
            "lost_to_lock_max_s": round(max(lost), 1),
            "server_error_log_lines": errors_in_log,
        }
        print(json.dumps(result, indent=2, default=str), flush=True)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="target check-ins per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of check-ins")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--concurrency", type=int, default=200, help="simulator connections")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--lost-trials", type=int, default=5)
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="every phone checks in once (its first posture) before the timed phase",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SPILLGUARD_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()},"
        f" load average {load()}",
        flush=True,
    )
    print(f"code: {code_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for kind in args.databases.split(","):
        bench(kind.strip(), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
