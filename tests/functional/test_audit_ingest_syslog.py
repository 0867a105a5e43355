"""`spillguard audit syslog`: RFC 5424 over TCP (octet counting and LF framing) and UDP,
events as SD-ELEMENTs or JSON, refusals counted (invalid framing closes the connection,
UDP over the rate is "rate limited"), and the real command started and stopped."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from faker import Faker
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.models import AccessEvent, AccessEventCustomer, AccessReject, AccessSource
from spillguard.audit.syslog import SyslogServer, serve_until
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from tests.functional.live import COMMAND, LOOPBACK, free_port

fake = Faker("en_GB")


def message(app: str, body: dict[str, Any] | None = None, sd: str = "-") -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    text = f"<110>1 {now} {fake.hostname()} {app} - ACCESS {sd}"
    raw = text.encode()
    if body is not None:
        raw += b" " + json.dumps(body).encode()
    return raw


def event(n: int | str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"s-{n}",
        "actor": f"{fake.user_name()}@example.co.uk",
        "action": "view",
        "system": "billing",
        "customer_ids": [f"B{n}"],
    }
    body.update(overrides)
    return body


@contextmanager
def running(
    factory: sessionmaker[Session], settings: Settings, keys: KeyRing, **options: Any
) -> Iterator[tuple[SyslogServer, dict[str, int]]]:
    server = SyslogServer(
        factory, settings, keys, Principal.system("tests"), batch_seconds=0.1, **options
    )
    ports: dict[str, int] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_ready(bound: list[tuple[str, str, int]]) -> None:
        ports.update({proto: port for proto, _, port in bound})
        ready.set()

    async def main() -> None:
        await serve_until(server, (LOOPBACK, 0), (LOOPBACK, 0), stop, on_ready)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield server, ports
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
    assert not thread.is_alive()


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stored(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(AccessEvent.source_event_id)))


def rejects(engine: Engine) -> list[tuple[str | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AccessSource.name, AccessReject.reason)
            .outerjoin(AccessSource, AccessSource.id == AccessReject.source_id)
            .order_by(AccessReject.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_tcp_octet_counting_and_lf_framing_and_the_sd_element_form(
    factory: sessionmaker[Session], engine: Engine, settings: Settings, keys: KeyRing
) -> None:
    with (
        running(factory, settings, keys) as (_, ports),
        socket.create_connection((LOOPBACK, ports["tcp"])) as sock,
    ):
        first = message("billing", event(1))
        sd = (
            '[access@32473 id="s-2" actor="bob@example.co.uk" action="export" '
            'system="billing" customer_ids="B7,B8,B9"]'
        )
        second = message("billing", sd=sd)
        third = message("crm", event(3, system="crm"))
        sock.sendall(b"%d %s" % (len(first), first) + second + b"\n" + third + b"\n")
        sock.sendall(b"%d %s" % (len(first), first))  # a duplicate
        wait_for(lambda: stored(engine) == {"s-1", "s-2", "s-3"})
    with engine.connect() as conn:
        sources = dict(conn.execute(select(AccessSource.name, AccessSource.duplicates)).all())
        refs = set(conn.scalars(select(AccessEventCustomer.customer_ref)))
    assert sources == {"billing": 1, "crm": 0}
    assert {"B7", "B8", "B9", "B1", "B3"} == refs


def test_invalid_framing_is_counted_and_closes_the_connection(
    factory: sessionmaker[Session], engine: Engine, settings: Settings, keys: KeyRing
) -> None:
    with running(factory, settings, keys) as (server, ports):
        with socket.create_connection((LOOPBACK, ports["tcp"])) as sock:
            good = message("billing", event(1))
            sock.sendall(good + b"\n" + b"hello there\n" + message("billing", event(2)) + b"\n")
            sock.settimeout(10)
            assert sock.recv(10) == b""  # closed by the server
        with socket.create_connection((LOOPBACK, ports["tcp"])) as sock:
            sock.sendall(b"99999999999 " + good)
            sock.settimeout(10)
            assert sock.recv(10) == b""
        with socket.create_connection((LOOPBACK, ports["tcp"])) as sock:
            sock.sendall(b"500 " + good)  # ends inside the message
        with socket.create_connection((LOOPBACK, ports["tcp"])) as sock:
            sock.sendall(b"<14>1 not a syslog message\n" + message("billing", event(3)) + b"\n")
        wait_for(lambda: len(rejects(engine)) == 4 and stored(engine) == {"s-1", "s-3"})
    reasons = [r for _, r in rejects(engine)]
    assert all(source is None for source, _ in rejects(engine))
    assert "invalid framing: a frame starts with neither a digit" in reasons[0]
    assert any("invalid framing: MSG-LEN is not a number" in r for r in reasons)
    assert any("connection closed inside a message" in r for r in reasons)
    assert any("not RFC 5424: TIMESTAMP is not an RFC 5424 date-time" in r for r in reasons)
    assert server.stats.rejected == 4


def test_udp_bad_events_and_a_flood_are_refused_visibly(
    factory: sessionmaker[Session], engine: Engine, settings: Settings, keys: KeyRing
) -> None:
    limited = settings.model_copy(update={"access_ingest_rate": 0.001, "access_ingest_burst": 3})
    source = f"udp-{fake.uuid4()[:8]}"
    customer = fake.phone_number()
    with (
        running(factory, limited, keys) as (_, ports),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.sendto(message(source, event(1)), (LOOPBACK, ports["udp"]))
        sock.sendto(
            message(source, event(2, action="delete", customer_ids=[customer])),
            (LOOPBACK, ports["udp"]),
        )
        wait_for(lambda: len(rejects(engine)) == 1)
        for n in range(3, 8):
            sock.sendto(message(source, event(n)), (LOOPBACK, ports["udp"]))
        wait_for(lambda: len(rejects(engine)) == 5)
    assert stored(engine) == {"s-1", "s-3"}
    found = rejects(engine)
    assert found[0][0] == source and "action: Input should be" in found[0][1]
    assert [r.split(": ", 1)[1] for _, r in found[1:]] == ["rate limited"] * 4
    assert customer not in " ".join(r for _, r in found)
    with engine.connect() as conn:
        counters = conn.execute(
            select(AccessSource.accepted, AccessSource.rejected).where(AccessSource.name == source)
        ).one()
    assert tuple(counters) == (2, 5)


def test_the_command_listens_ingests_and_stops_on_sigterm(
    env: dict[str, str], engine: Engine
) -> None:
    tcp, udp = free_port(), free_port()
    process = subprocess.Popen(
        [
            *COMMAND,
            "audit",
            "syslog",
            "--tcp",
            f"{LOOPBACK}:{tcp}",
            "--udp",
            f"{LOOPBACK}:{udp}",
            "--source-from",
            "hostname",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"listening on tcp {LOOPBACK}:{tcp}, udp {LOOPBACK}:{udp}"
        raw = message("anything", event(1))
        with socket.create_connection((LOOPBACK, tcp)) as sock:
            sock.sendall(b"%d %s" % (len(raw), raw))
        wait_for(lambda: stored(engine) == {"s-1"})
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "messages 1: accepted 1, duplicates 0, rejected 0" in stdout
    with engine.connect() as conn:
        names = set(conn.scalars(select(AccessSource.name)))
    assert len(names) == 1 and "anything" not in names  # named by HOSTNAME


def test_udp_datagrams_dropped_on_a_full_queue_are_stored_as_queue_full_rejects(
    factory: sessionmaker[Session], engine: Engine, settings: Settings, keys: KeyRing
) -> None:
    source = f"flood-{fake.uuid4()[:8]}"
    customer = f"B{fake.random_number(digits=9, fix_len=True)}"
    sent = 300
    with (
        running(factory, settings, keys, batch_events=1, queue_size=2) as (server, ports),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        # As fast as the socket takes them: the flusher commits one message at a time
        # (a database round trip each), so the queue of two overflows.
        for n in range(sent):
            sock.sendto(
                message(source, event(n, customer_ids=[customer])), (LOOPBACK, ports["udp"])
            )
        seen = -1
        while seen != server.stats.messages:  # until the socket is drained
            seen = server.stats.messages
            time.sleep(0.3)
    # After stop: every datagram the server read is an event or a reject, none lost.
    received = server.stats.messages
    found = rejects(engine)
    full = [r for name, r in found if name == source and r.endswith(": queue full")]
    assert full, "the flood never filled a queue of two"
    assert len(found) == len(full)  # nothing else was refused
    assert len(stored(engine)) + len(full) == received
    assert server.stats.accepted == len(stored(engine))
    assert server.stats.rejected == len(full)
    assert all(r.startswith("udp 127.0.0.1:") for r in full)  # where it came from
    with engine.connect() as conn:
        counters = conn.execute(
            select(AccessSource.accepted, AccessSource.rejected).where(AccessSource.name == source)
        ).one()
        digests = set(conn.scalars(select(AccessReject.item_digest)))
    assert tuple(counters) == (len(stored(engine)), len(full))
    # No payload kept: not the message, not the customer id it named, not its digest.
    assert customer not in " ".join(r for _, r in found)
    assert digests == {hashlib.sha256(b"").hexdigest()}
