"""Tamper-evident audit log: append rate, full verification, inclusion-proof latency.

Fills a fresh database with N synthetic audit events (bulk, not timed: sqlite3
``executemany`` of the values SQLAlchemy's own bind processors produce, or PostgreSQL
``COPY``; streamed in chunks, so 10,000,000 fit in memory), then times, on that database:

- **append**: one sequencing run appending all N events (read rows, canonical bytes,
  leaf hash, compact range, INSERT/COPY leaves and nodes, in batches of 5,000) in one
  transaction; events per second. Also the same hashing with no database (the ceiling);
- **verify**: ``verify_log`` over the whole log (read every leaf joined to its event,
  recompute, rebuild the tree, compare stored nodes and the checkpoint), with one
  process and with ``--workers`` processes (default: one per CPU);
- **proofs**: ``AuditLogService.inclusion`` for random events at the checkpoint (reads
  the event, its position, the O(log n) stored nodes; builds the checkpoint text);
  p50/p99 in milliseconds, as an admin and as an auditor (whose proofs also check that
  the entry names no honeytoken).

    .venv/bin/python benchmarks/audit.py [--events 200000] [--proofs 2000] [--workers N]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Without ``--postgres`` it uses a SQLite file in a temporary directory (``--dir``); with
it, a throwaway database ``spillguard_bench_audit`` on that server (dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.checkpoints import Signer
from spillguard.audit.log import (
    EVENT_COLUMNS,
    canonical_values,
    event_leaf,
    get_state,
    make_checkpoint,
    sequence,
)
from spillguard.audit.merkle import CompactRange, leaf_hash
from spillguard.audit.models import LogLeaf, LogNode
from spillguard.audit.services import AuditLogService
from spillguard.audit.verify import default_workers, verify_log
from spillguard.core import db as dbmod
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings

ACTIONS = ("core:login:succeeded", "core:user:created", "customers:contact:revealed")
CHUNK = 50_000


def events(first: int, count: int, start: datetime) -> Iterator[dict[str, Any]]:
    """Events ``first+1 .. first+count``, the same whatever the chunking."""
    rng = random.Random(first)
    for i in range(first, first + count):
        yield {
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


def _inserter(conn: Connection) -> Callable[[Any, list[str], list[tuple[Any, ...]]], None]:
    """Bulk insert through the DBAPI (COPY or executemany), values bound as SQLAlchemy binds
    them (its own bind processors of each column type)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    postgres = conn.dialect.name == "postgresql"

    def put(table: Any, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        binds = [table.c[k].type._cached_bind_processor(conn.dialect) for k in names]
        bound = [tuple(b(v) if b else v for v, b in zip(row, binds, strict=True)) for row in rows]
        columns = ", ".join(f'"{n}"' for n in names)
        if postgres:
            statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
            with driver.cursor() as cur, cur.copy(statement) as cp:
                for row in bound:
                    cp.write_row(row)
            return
        marks = ", ".join("?" for _ in names)
        cur = driver.cursor()
        cur.executemany(f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks})', bound)
        cur.close()

    return put


def fill(engine: Engine, count: int, start: datetime, *, log: bool) -> None:
    """Insert the events in bulk; with ``log``, also their leaves, nodes, state and a
    checkpoint, computed by the project's own code (``canonical_values``, ``leaf_hash``,
    ``CompactRange.extend_one``, ``make_checkpoint``) instead of a sequencing run."""
    names = list(EVENT_COLUMNS)
    tree = CompactRange()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        put = _inserter(conn)
        for n in range(0, count, CHUNK):
            chunk = [tuple(e[k] for k in names) for e in events(n, min(CHUNK, count - n), start)]
            put(AuditEvent.__table__, names, chunk)
            if log:
                leaves, nodes = [], []
                for values in chunk:
                    h = leaf_hash(canonical_values(*values))
                    leaves.append((tree.size, values[0], h, now))
                    nodes += tree.extend_one(h)
                put(
                    LogLeaf.__table__, ["position", "event_id", "leaf_hash", "sequenced_at"], leaves
                )
                put(LogNode.__table__, ["level", "index", "hash"], nodes)
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('audit_events_id_seq', :n)"), {"n": count})
    if log:
        factory = dbmod.make_session_factory(engine)
        keys = KeyRing(bytes(range(32)))
        settings = Settings(database_url=str(engine.url), audit_checkpoint_interval_seconds=0)
        with dbmod.transaction(factory) as session:
            state = get_state(session)
            state.size = tree.size
            state.frontier = b"".join(tree.frontier)
            state.max_event_id = count
            state.last_run_at = now
            session.flush()
            make_checkpoint(session, Signer(keys), settings, now=now, force=True)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def append(
    factory: sessionmaker[Session], keys: KeyRing, settings: Settings, count: int, start: datetime
) -> None:
    # Hashing alone: canonical bytes of in-memory rows, leaf hash, compact range.
    class Row:
        def __init__(self, values: dict[str, object]) -> None:
            self.__dict__.update(values)

    objects = [Row(r) for r in events(0, min(count, 200_000), start)]
    tree = CompactRange()
    t = time.perf_counter()
    for obj in objects:
        tree.append(event_leaf(obj))
    rate = len(objects) / (time.perf_counter() - t)
    print(f"  hashing only, canonical_bytes (no database): {rate:,.0f} events/s")
    tree = CompactRange()
    t = time.perf_counter()
    for obj in objects:
        tree.extend_one(leaf_hash(canonical_values(*(getattr(obj, k) for k in EVENT_COLUMNS))))
    rate = len(objects) / (time.perf_counter() - t)
    print(f"  hashing only, canonical_values (no database): {rate:,.0f} events/s", flush=True)
    del objects

    t = time.perf_counter()
    with dbmod.transaction(factory) as session:
        result = sequence(session, keys, settings)
    elapsed = time.perf_counter() - t
    assert result.appended == count and result.checkpoint is not None
    print(
        f"  append: {count:,} events in {elapsed:.1f} s = {count / elapsed:,.0f} events/s "
        f"(load {os.getloadavg()[0]:.2f})",
        flush=True,
    )


def run(
    url: str,
    count: int,
    proofs: int,
    workers: int,
    skip_single: bool,
    bulk_log: bool,
    filled: bool = False,
) -> None:
    engine = dbmod.make_engine(url)
    factory = dbmod.make_session_factory(engine)
    keys = KeyRing(bytes(range(32)))
    settings = Settings(database_url=url, audit_checkpoint_interval_seconds=0)
    start = datetime.now(UTC) - timedelta(days=200)
    if filled:
        print("  reusing the filled database", flush=True)
    else:
        dbmod.upgrade(engine)
        t = time.perf_counter()
        fill(engine, count, start, log=bulk_log)
        what = "events, leaves and nodes (bulk, no sequencing run)" if bulk_log else "events"
        print(
            f"  filled {count:,} {what} in {time.perf_counter() - t:.1f} s (not timed; "
            f"load {os.getloadavg()[0]:.2f})",
            flush=True,
        )

    if not bulk_log:
        append(factory, keys, settings, count, start)

    key = Signer(keys).key
    for n in sorted({workers} if skip_single else {1, workers}) if workers else ():
        t = time.perf_counter()
        with dbmod.transaction(factory) as session:
            verified = verify_log(session, key, workers=n)
        elapsed = time.perf_counter() - t
        assert verified.entries == count
        print(
            f"  verify, {n} process{'es' if n > 1 else ''}: {count:,} entries in {elapsed:.1f} s "
            f"= {count / elapsed:,.0f} entries/s (10,000,000 would take "
            f"~{10_000_000 / (count / elapsed):.0f} s; load {os.getloadavg()[0]:.2f})",
            flush=True,
        )

    with dbmod.transaction(factory) as session:
        make_checkpoint(session, Signer(keys), settings, now=datetime.now(UTC))
    readers = (
        ("an admin", Principal.system("bench")),
        # no honeytokens:manage: each proof also checks the entry names no honeytoken
        ("an auditor", Principal("user", None, "bench-auditor", Role.AUDITOR)),
    )
    for who, principal in readers:
        rng = random.Random(11)
        times: list[float] = []
        cpu: list[float] = []
        with dbmod.transaction(factory) as session:
            svc = AuditLogService(session, principal, keys, settings)
            for _ in range(proofs):
                event_id = rng.randrange(1, count + 1)
                t, c = time.perf_counter(), time.process_time()
                proof = svc.inclusion(event_id)
                times.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                assert proof.tree_size == count and proof.entry is not None
                session.expunge_all()
        times.sort()
        cpu.sort()
        p99 = times[int(len(times) * 0.99) - 1]
        print(
            f"  inclusion proof as {who}: p50 {statistics.median(times):.2f} ms, "
            f"p99 {p99:.2f} ms over {proofs:,} random events; this process's CPU time p50 "
            f"{statistics.median(cpu):.2f} ms, p99 {cpu[int(len(cpu) * 0.99) - 1]:.2f} ms "
            f"(load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    engine.dispose()


def _filled(url: str, count: int) -> bool:
    """Whether the database holds a complete ``--bulk-log`` fill of ``count`` events (the log
    state is written after the events, leaves and nodes are committed)."""
    engine = dbmod.make_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.scalar(text("SELECT size FROM audit_log_state"))
    except DBAPIError:  # no schema yet: not filled
        return False
    finally:
        engine.dispose()
    return size == count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to use")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="0: do not verify (proofs only)"
    )
    parser.add_argument(
        "--skip-single", action="store_true", help="verify only with --workers processes"
    )
    parser.add_argument(
        "--bulk-log",
        action="store_true",
        help="fill leaves and nodes in bulk with the events instead of timing an append",
    )
    parser.add_argument("--dir", help="where the SQLite file goes (default: a temporary dir)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --bulk-log: keep the filled database (SQLite: DIR/audit-N.db, needs --dir; "
        "PostgreSQL: spillguard_bench_audit_N) and reuse it if it holds a complete fill",
    )
    args = parser.parse_args()
    if args.reuse and not (args.bulk_log and (args.dir or args.postgres)):
        parser.error("--reuse needs --bulk-log and --dir or --postgres")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    if args.postgres:
        name = "spillguard_bench_audit"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        filled = False
        if args.reuse:
            name += f"_{args.events}"
            url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            with admin.connect() as conn:
                there = conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                )
            filled = bool(there) and _filled(url, args.events)
        if not args.reuse or not filled:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        print(f"PostgreSQL, {args.events:,} events")
        try:
            run(
                url,
                args.events,
                args.proofs,
                args.workers,
                args.skip_single,
                args.bulk_log,
                filled=args.reuse and filled,
            )
        finally:
            if not args.reuse:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    if args.reuse:
        path = Path(args.dir) / f"audit-{args.events}.db"
        url = f"sqlite:///{path}"
        filled = path.exists() and _filled(url, args.events)
        if not filled:
            path.unlink(missing_ok=True)
        print(f"SQLite, {args.events:,} events, {path}")
        run(
            url,
            args.events,
            args.proofs,
            args.workers,
            args.skip_single,
            args.bulk_log,
            filled=filled,
        )
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"SQLite, {args.events:,} events")
        run(
            f"sqlite:///{Path(tmp) / 'bench.db'}",
            args.events,
            args.proofs,
            args.workers,
            args.skip_single,
            args.bulk_log,
        )


if __name__ == "__main__":
    main()
