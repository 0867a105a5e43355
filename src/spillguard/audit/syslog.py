"""``spillguard audit syslog``: access events over syslog (RFC 5424), on TCP (RFC 6587
framing) and UDP (RFC 5426, one message per datagram).

An event is either the MSG part as JSON in the ingestion wire format, or an SD-ELEMENT
``[access@32473 id=".." time=".." actor=".." action=".." system=".." ...]`` (see
docs/audit.md). Messages are committed in small batches (at most 500 events or 1 second).

Refusals are counted, never silent: a message that is not RFC 5424, a TCP connection with
invalid framing (also closed), a UDP datagram over the source's rate ("rate limited"), a
UDP datagram that arrived while the queue of messages waiting to be committed was full
("queue full": UDP has no back-pressure, so it is dropped, but stored as a reject of its
source like the others, without its bytes).
Over TCP a source over its rate is simply not read for a while, so TCP flow control slows
the sender down.

What syslog cannot promise: RFC 5424 over TCP or UDP has no application-level
acknowledgement, so messages the sender has written but this server has not committed
(in socket buffers, in the batch being collected) are lost if this process dies. RELP
(or the REST API, which answers only after commit) closes that gap.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.ingest import (
    SOURCE_NAME,
    AccessIngestService,
    Channel,
    Unparsed,
    source_bucket,
)
from spillguard.core.db import transaction
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

log = structlog.get_logger("spillguard.audit.syslog")

ACCESS_SD_ID = "access@32473"
MAX_MESSAGE_BYTES = 1024 * 1024
BATCH_EVENTS = 500
BATCH_SECONDS = 1.0
QUEUE_FULL = "queue full"
NIL = "-"
UTF8_BOM = b"\xef\xbb\xbf"

_PRINTUSASCII = re.compile(rb"^[\x21-\x7e]+$")
_SD_NAME = re.compile(rb"^[\x21-\x7e]{1,32}$")
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)


class SyslogParseError(ValueError):
    """The bytes are not an RFC 5424 message; the message says what is wrong (no value)."""


@dataclass(frozen=True)
class SyslogMessage:
    """The parts of an RFC 5424 message (NILVALUE fields are None)."""

    pri: int
    version: int
    timestamp: str | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: list[tuple[str, list[tuple[str, str]]]]
    msg: bytes | None


def _field(data: bytes, pos: int, name: str, max_len: int) -> tuple[str | None, int]:
    end = data.find(b" ", pos)
    if end < 0:
        raise SyslogParseError(f"message ends inside {name}")
    token = data[pos:end]
    if token == b"-":
        return None, end + 1
    if not token or len(token) > max_len or not _PRINTUSASCII.match(token):
        raise SyslogParseError(f"{name} is not 1-{max_len} printable ASCII characters")
    return token.decode("ascii"), end + 1


def _timestamp(value: str | None) -> str | None:
    if value is None:
        return None
    if not _TIMESTAMP.match(value):
        raise SyslogParseError("TIMESTAMP is not an RFC 5424 date-time")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SyslogParseError("TIMESTAMP is not a valid date-time") from None
    return value


def _structured_data(data: bytes, pos: int) -> tuple[list[tuple[str, list[tuple[str, str]]]], int]:
    if data[pos : pos + 1] == b"-":
        return [], pos + 1
    elements: list[tuple[str, list[tuple[str, str]]]] = []
    if data[pos : pos + 1] != b"[":
        raise SyslogParseError("STRUCTURED-DATA is neither '-' nor an SD-ELEMENT")
    while data[pos : pos + 1] == b"[":
        pos += 1
        end = pos
        while end < len(data) and data[end] not in b" ]":
            end += 1
        sd_id = data[pos:end]
        if not _SD_NAME.match(sd_id) or any(c in sd_id for c in b'="'):
            raise SyslogParseError("SD-ID is not 1-32 printable ASCII characters")
        pos = end
        params: list[tuple[str, str]] = []
        while data[pos : pos + 1] == b" ":
            pos += 1
            eq = data.find(b"=", pos)
            if eq < 0:
                raise SyslogParseError("SD-PARAM without '='")
            name = data[pos:eq]
            if not _SD_NAME.match(name) or any(c in name for c in b' ]"'):
                raise SyslogParseError("PARAM-NAME is not 1-32 printable ASCII characters")
            if data[eq + 1 : eq + 2] != b'"':
                raise SyslogParseError("PARAM-VALUE is not quoted")
            pos = eq + 2
            value = bytearray()
            while True:
                if pos >= len(data):
                    raise SyslogParseError("PARAM-VALUE is not closed")
                char = data[pos]
                if char == 0x5C and pos + 1 < len(data) and data[pos + 1] in b'"\\]':
                    value.append(data[pos + 1])
                    pos += 2
                    continue
                if char == 0x22:
                    pos += 1
                    break
                if char == 0x5D:
                    raise SyslogParseError("']' inside a PARAM-VALUE is not escaped")
                value.append(char)
                pos += 1
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise SyslogParseError("PARAM-VALUE is not UTF-8") from None
            params.append((name.decode("ascii"), text))
        if data[pos : pos + 1] != b"]":
            raise SyslogParseError("SD-ELEMENT is not closed with ']'")
        pos += 1
        elements.append((sd_id.decode("ascii"), params))
    return elements, pos


def parse_rfc5424(data: bytes) -> SyslogMessage:
    """Parse one RFC 5424 message strictly; raise :class:`SyslogParseError` otherwise."""
    match = re.match(rb"^<(0|[1-9]\d{0,2})>([1-9]\d{0,2}) ", data)
    if match is None:
        raise SyslogParseError("no RFC 5424 header (<PRI>VERSION)")
    pri = int(match.group(1))
    if pri > 191:
        raise SyslogParseError("PRI is above 191")
    version = int(match.group(2))
    if version != 1:
        raise SyslogParseError("VERSION is not 1")
    pos = match.end()
    timestamp, pos = _field(data, pos, "TIMESTAMP", 64)
    timestamp = _timestamp(timestamp)
    hostname, pos = _field(data, pos, "HOSTNAME", 255)
    app_name, pos = _field(data, pos, "APP-NAME", 48)
    procid, pos = _field(data, pos, "PROCID", 128)
    msgid, pos = _field(data, pos, "MSGID", 32)
    elements, pos = _structured_data(data, pos)
    msg: bytes | None = None
    if pos < len(data):
        if data[pos : pos + 1] != b" ":
            raise SyslogParseError("no space between STRUCTURED-DATA and MSG")
        msg = data[pos + 1 :]
    return SyslogMessage(pri, version, timestamp, hostname, app_name, procid, msgid, elements, msg)


def event_of(message: SyslogMessage) -> dict[str, Any] | Unparsed:
    """The access event a message carries: the ``access@32473`` SD-ELEMENT if present,
    else the MSG as a JSON object. Without its own ``time``, the header TIMESTAMP is used.

    In the SD-ELEMENT, customer ids are repeated ``customer_id`` parameters or one
    ``customer_ids`` parameter separated by commas.
    """
    element = next((p for sd_id, p in message.structured_data if sd_id == ACCESS_SD_ID), None)
    event: dict[str, Any]
    if element is not None:
        event = {}
        ids: list[str] = []
        for name, value in element:
            if name == "customer_id":
                ids.append(value)
            elif name == "customer_ids":
                ids.extend(v.strip() for v in value.split(",") if v.strip())
            elif name in event:
                return Unparsed(f"{ACCESS_SD_ID}: parameter {name[:32]!r} repeated")
            else:
                event[name] = value
        if ids:
            event["customer_ids"] = ids
    elif message.msg is not None:
        body = message.msg.removeprefix(UTF8_BOM)
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Unparsed(f"MSG is not JSON and there is no {ACCESS_SD_ID} element")
        if not isinstance(parsed, dict):
            return Unparsed("MSG is not a JSON object")
        event = parsed
    else:
        return Unparsed(f"no MSG and no {ACCESS_SD_ID} element")
    if "time" not in event and message.timestamp is not None:
        event["time"] = message.timestamp
    return event


# --- the server ------------------------------------------------------------------------


@dataclass
class _Pending:
    source: str | None
    position: str
    item: Any  # a dict, an Unparsed, or a channel refusal (Unparsed)


@dataclass
class SyslogStats:
    """Totals since start (printed when the server stops)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"messages {self.messages}: accepted {self.accepted}, duplicates "
            f"{self.duplicates}, rejected {self.rejected}"
        )


class SyslogServer:
    """Receives RFC 5424 messages on TCP and/or UDP and ingests the events they carry."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        keys: KeyRing,
        principal: Principal,
        *,
        source_from: str = "app-name",
        batch_events: int = BATCH_EVENTS,
        batch_seconds: float = BATCH_SECONDS,
        queue_size: int | None = None,
    ) -> None:
        if source_from not in {"app-name", "hostname"}:
            raise ValueError("source_from is app-name or hostname")
        self.factory = factory
        self.settings = settings
        self.keys = keys
        self.principal = principal
        self.source_from = source_from
        self.batch_events = batch_events
        self.batch_seconds = batch_seconds
        self.queue_size = queue_size if queue_size is not None else batch_events * 4
        if self.queue_size < 1:
            raise ValueError("queue_size is at least 1")
        self.stats = SyslogStats()
        # Datagrams dropped on a full queue since the last commit: (source, position).
        # Swapped out by the flusher (on the event loop, so no lock) and stored as rejects.
        self._dropped: list[tuple[str | None, str]] = []
        self._queue: asyncio.Queue[_Pending] | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._flusher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._counter = 0

    # -- lifecycle --

    async def start(
        self, tcp: tuple[str, int] | None = None, udp: tuple[str, int] | None = None
    ) -> list[tuple[str, str, int]]:
        """Bind and start serving; return ``(protocol, host, port)`` of each listener."""
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._flusher = asyncio.create_task(self._flush_loop())
        bound: list[tuple[str, str, int]] = []
        loop = asyncio.get_running_loop()
        if tcp is not None:
            server = await asyncio.start_server(
                self._tcp_client, tcp[0], tcp[1], limit=MAX_MESSAGE_BYTES + 16
            )
            self._servers.append(server)
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                bound.append(("tcp", host, port))
        if udp is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=udp
            )
            self._transports.append(transport)
            host, port = transport.get_extra_info("sockname")[:2]
            bound.append(("udp", host, port))
        return bound

    async def stop(self) -> None:
        """Stop listening, let the connections go, commit what was received."""
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._flush_remaining()

    # -- receiving --

    def _source_of(self, message: SyslogMessage) -> str | None:
        name = message.app_name if self.source_from == "app-name" else message.hostname
        if name is None or not SOURCE_NAME.match(name):
            return None
        return name

    def _next_position(self, peer: str) -> str:
        self._counter += 1
        return f"{peer} message {self._counter}"

    def _decode(self, data: bytes, position: str) -> _Pending:
        self.stats.messages += 1
        try:
            message = parse_rfc5424(data)
        except SyslogParseError as exc:
            return _Pending(None, position, Unparsed(f"not RFC 5424: {exc}", data))
        source = self._source_of(message)
        if source is None:
            what = "APP-NAME" if self.source_from == "app-name" else "HOSTNAME"
            return _Pending(None, position, Unparsed(f"no {what} to name the source", data))
        return _Pending(source, position, event_of(message))

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer_info = writer.get_extra_info("peername") or ("?", 0)
        peer = f"tcp {peer_info[0]}:{peer_info[1]}"
        try:
            while True:
                frame = await self._read_frame(reader, peer)
                if frame is None:
                    break
                pending = self._decode(frame, self._next_position(peer))
                if pending.source is not None:
                    await self._await_tokens(pending.source)
                assert self._queue is not None
                await self._queue.put(pending)  # a full queue stops reading: back-pressure
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            self._connections.discard(task)

    async def _read_frame(self, reader: asyncio.StreamReader, peer: str) -> bytes | None:
        """One RFC 6587 frame: octet counting (``LEN SP MSG``) or LF-terminated; None at a
        clean end of stream. Invalid framing is counted and ends the connection."""
        first = await reader.read(1)
        if not first:
            return None
        try:
            if first in b"123456789":
                digits = first
                while True:
                    char = await reader.readexactly(1)
                    if char == b" ":
                        break
                    if not char.isdigit() or len(digits) >= 8:
                        raise _BadFrame("MSG-LEN is not a number followed by a space")
                    digits += char
                length = int(digits)
                if length > MAX_MESSAGE_BYTES:
                    raise _BadFrame(f"MSG-LEN above {MAX_MESSAGE_BYTES}")
                return await reader.readexactly(length)
            if first == b"<":
                try:
                    rest = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    raise _BadFrame(f"message longer than {MAX_MESSAGE_BYTES} bytes") from None
                return first + rest[:-1]
            raise _BadFrame("a frame starts with neither a digit (octet counting) nor '<'")
        except asyncio.IncompleteReadError:
            await self._refuse(peer, "invalid framing: connection closed inside a message")
            return None
        except _BadFrame as exc:
            await self._refuse(peer, f"invalid framing: {exc}; connection closed")
            return None

    async def _refuse(self, peer: str, reason: str) -> None:
        assert self._queue is not None
        await self._queue.put(_Pending(None, self._next_position(peer), Unparsed(reason)))

    async def _await_tokens(self, source: str) -> None:
        bucket = source_bucket(self.settings, source)
        if bucket is None:
            return
        while (wait := bucket.try_take(1)) > 0:
            await asyncio.sleep(wait)

    def datagram(self, data: bytes, addr: Any) -> None:
        peer = f"udp {addr[0]}:{addr[1]}" if addr else "udp ?"
        pending = self._decode(data, self._next_position(peer))
        if pending.source is not None:
            bucket = source_bucket(self.settings, pending.source)
            if bucket is not None and bucket.try_take(1) > 0:
                pending = _Pending(pending.source, pending.position, Unparsed("rate limited"))
        assert self._queue is not None
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            # UDP cannot push back: the datagram is dropped, but kept as a reject of its
            # source (stored with the next batch), never silently lost.
            self._dropped.append((pending.source, pending.position))

    def _take_dropped(self) -> list[tuple[str | None, str]]:
        dropped, self._dropped = self._dropped, []
        return dropped

    # -- committing --

    async def _flush_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.batch_seconds
            while len(batch) < self.batch_events:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            await asyncio.to_thread(self._commit, batch, self._take_dropped())

    async def _flush_remaining(self) -> None:
        if self._queue is None:
            return
        batch: list[_Pending] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        dropped = self._take_dropped()
        if batch or dropped:
            await asyncio.to_thread(self._commit, batch, dropped)

    def _commit(
        self, batch: list[_Pending], dropped: Sequence[tuple[str | None, str]] = ()
    ) -> None:
        """Ingest one batch (grouped by source) and commit it, with the rejects of the
        datagrams dropped on a full queue since the last commit."""
        by_source: dict[str | None, list[_Pending]] = {}
        for pending in batch:
            by_source.setdefault(pending.source, []).append(pending)
        full: dict[str | None, list[tuple[str, str, Any]]] = {}
        for source, position in dropped:
            full.setdefault(source, []).append((position, QUEUE_FULL, b""))
        try:
            with transaction(self.factory) as session:
                service = AccessIngestService(session, self.settings, self.keys, self.principal)
                for source, rejects in full.items():
                    service.record_rejects(source, rejects, Channel.SYSLOG)
                results = []
                for source, items in by_source.items():
                    if source is None:
                        service.record_rejects(
                            None,
                            [(p.position, p.item.reason, p.item.raw) for p in items],
                            Channel.SYSLOG,
                        )
                        self.stats.rejected += len(items)
                        continue
                    results.append(
                        service.ingest(
                            source,
                            [p.item for p in items],
                            Channel.SYSLOG,
                            positions=[p.position for p in items],
                            rate_limit="off",
                        )
                    )
        except Exception as exc:
            # The server keeps running; the batch was never acknowledged (syslog has no
            # acknowledgement), so it is reported as lost, loudly.
            log.error(
                "syslog_batch_failed",
                messages=len(batch),
                dropped=len(dropped),
                error=type(exc).__name__,
            )
            self.stats.errors.append(
                f"a batch of {len(batch)} messages ({len(dropped)} dropped on a full queue) "
                f"failed: {exc}"
            )
            return
        self.stats.rejected += len(dropped)
        for result in results:
            self.stats.accepted += result.accepted
            self.stats.duplicates += result.duplicates
            self.stats.rejected += len(result.rejects)


class _BadFrame(Exception):
    pass


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.datagram(data, addr)


def parse_listen(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:514`` for IPv6) as a bind address."""
    host, sep, port = value.rpartition(":")
    number = port.isascii() and port.isdigit()
    if not sep or not host or not number or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} {value!r}: write HOST:PORT, e.g. 127.0.0.1:6514")
    return host.strip("[]"), int(port)


async def serve_until(
    server: SyslogServer,
    tcp: tuple[str, int] | None,
    udp: tuple[str, int] | None,
    stop: asyncio.Event,
    on_ready: Callable[[list[tuple[str, str, int]]], None] = lambda bound: None,
) -> None:
    """Run the server until ``stop`` is set, then commit what was received."""
    bound = await server.start(tcp, udp)
    on_ready(bound)
    try:
        await stop.wait()
    finally:
        await server.stop()
