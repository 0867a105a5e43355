"""Tamper-evident audit log: append rate, full verification, inclusion-proof latency.

Fills a fresh database with N synthetic audit events (bulk INSERT, not timed), then
times, on that database:

- **append**: one sequencing run appending all N events (read rows, canonical bytes,
  leaf hash, compact range, INSERT leaves and nodes, in batches of 5,000) in one
  transaction; events per second. Also the same hashing with no database (the ceiling);
- **verify**: ``verify_log`` over the whole log (read every leaf joined to its event,
  recompute, rebuild the tree, compare stored nodes and the checkpoint);
- **proofs**: ``AuditLogService.inclusion`` for random events at the checkpoint (reads
  the event, its position, the O(log n) stored nodes; builds the checkpoint text);
  p50/p99 in milliseconds.

    .venv/bin/python benchmarks/audit.py [--events 200000] [--proofs 2000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Without ``--postgres`` it uses a SQLite file in a temporary directory; with it, a
throwaway database ``spillguard_bench_audit`` on that server (dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from spillguard.audit.checkpoints import Signer
from spillguard.audit.log import event_leaf, make_checkpoint, sequence
from spillguard.audit.merkle import CompactRange
from spillguard.audit.services import AuditLogService
from spillguard.audit.verify import verify_log
from spillguard.core import db as dbmod
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

ACTIONS = ("core:login:succeeded", "core:user:created", "customers:contact:revealed")


def events(count: int, start: datetime) -> list[dict[str, object]]:
    rng = random.Random(7)
    return [
        {
            "id": i + 1,
            "occurred_at": start + timedelta(milliseconds=i),
            "action": ACTIONS[i % 3],
            "outcome": "success",
            "actor_type": "user",
            "actor_id": rng.randrange(1, 500),
            "actor_label": f"user{rng.randrange(1, 500)}@example.com",
            "object_type": "customer",
            "object_id": str(rng.randrange(1, 10**7)),
            "source_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "request_id": f"{rng.getrandbits(64):016x}",
            "details": {"count": rng.randrange(1, 50), "purpose": "renewal call"},
        }
        for i in range(count)
    ]


def run(url: str, count: int, proofs: int) -> None:
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    keys = KeyRing(bytes(range(32)))
    settings = Settings(database_url=url, audit_checkpoint_interval_seconds=0)
    start = datetime.now(UTC) - timedelta(days=1)
    rows = events(count, start)
    t = time.perf_counter()
    with engine.begin() as conn:
        for n in range(0, count, 20_000):
            conn.execute(insert(AuditEvent), rows[n : n + 20_000])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('audit_events_id_seq', :n)"), {"n": count})
    print(f"  filled {count:,} events in {time.perf_counter() - t:.1f} s (not timed)")

    # Hashing alone: canonical bytes of in-memory rows, leaf hash, compact range.
    class Row:
        def __init__(self, values: dict[str, object]) -> None:
            self.__dict__.update(values)

    objects = [Row(r) for r in rows[: min(count, 200_000)]]
    tree = CompactRange()
    t = time.perf_counter()
    for obj in objects:
        tree.append(event_leaf(obj))
    rate = len(objects) / (time.perf_counter() - t)
    print(f"  hashing only (no database): {rate:,.0f} events/s")

    t = time.perf_counter()
    with dbmod.transaction(factory) as session:
        result = sequence(session, keys, settings)
    elapsed = time.perf_counter() - t
    assert result.appended == count and result.checkpoint is not None
    print(f"  append: {count:,} events in {elapsed:.1f} s = {count / elapsed:,.0f} events/s")

    key = Signer(keys).key
    t = time.perf_counter()
    with dbmod.transaction(factory) as session:
        verified = verify_log(session, key)
    elapsed = time.perf_counter() - t
    assert verified.entries == count
    print(
        f"  verify: {count:,} entries in {elapsed:.1f} s = {count / elapsed:,.0f} entries/s "
        f"(10,000,000 would take ~{10_000_000 / (count / elapsed):.0f} s)"
    )

    rng = random.Random(11)
    times = []
    with dbmod.transaction(factory) as session:
        make_checkpoint(session, Signer(keys), settings, now=datetime.now(UTC))
        svc = AuditLogService(session, Principal.system("bench"), keys, settings)
        for _ in range(proofs):
            event_id = rng.randrange(1, count + 1)
            t = time.perf_counter()
            proof = svc.inclusion(event_id)
            times.append((time.perf_counter() - t) * 1000)
            assert proof.tree_size == count
            session.expunge_all()
    times.sort()
    p99 = times[int(len(times) * 0.99) - 1]
    print(
        f"  inclusion proof: p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms "
        f"over {proofs:,} random events"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to use")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    if args.postgres:
        name = "spillguard_bench_audit"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        print(f"PostgreSQL, {args.events:,} events")
        try:
            run(url, args.events, args.proofs)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {args.events:,} events")
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.events, args.proofs)


if __name__ == "__main__":
    main()
