"""Exposure ledger at scale: the two questions after a loss, and ingestion.

Builds, in a throwaway PostgreSQL database (or a SQLite file), a directory of C customers,
K inspected contents naming 1-40 customers each (about 10 on average), and D deliveries
of random contents to V devices (the bulk is written with COPY and the indexes the
migration defines; not timed). Then times, through ``ExposureService``, the calls the API
and console make:

- **device**: "which customers reached this device" — the distinct count and the first
  page of 100 customer ids (``destination_customers``), for random devices; p50/p95 ms;
- **customer**: "where has this customer's data gone" — the count and the newest 100
  deliveries (``customer_trail``), for random customers that are in some content;
- **ingest**: ``record_deliveries`` in batches of 10,000, once with a source id per
  delivery (``INSERT … ON CONFLICT DO NOTHING``, as the mail filter and API use) and once
  without (COPY); deliveries per second.

    .venv/bin/python benchmarks/ledger.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
        [--deliveries 10000000] [--devices 10000] [--customers 1000000] [--contents 200000]
        [--queries 200] [--ingest 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core import db as dbmod
from spillguard.core.roles import Principal, Role
from spillguard.customers.models import Customer
from spillguard.exposure.ledger import DeliverySpec, Destination, source_ref
from spillguard.exposure.models import Channel
from spillguard.exposure.services import DeliveryFilter, ExposureService

START = datetime(2026, 1, 1, tzinfo=UTC)


def copy_rows(engine: Engine, table: str, columns: list[str], rows: Iterator[tuple]) -> None:
    """Bulk load: COPY on PostgreSQL, executemany on SQLite, 200,000 rows at a time."""
    chunk: list[tuple] = []

    def flush() -> None:
        if not chunk:
            return
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                names = ", ".join(columns)
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for row in chunk:
                        copy.write_row(row)
                raw.commit()
            finally:
                raw.close()
        else:
            marks = ", ".join("?" for _ in columns)
            raw = engine.raw_connection()
            try:
                raw.cursor().executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", chunk
                )
                raw.commit()
            finally:
                raw.close()
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) >= 200_000:
            flush()
    flush()


def owner_of(device: int, args: argparse.Namespace) -> int:
    """The user who owns a device: four devices per user."""
    return (device - 1) // 4 + 1


def fill(engine: Engine, args: argparse.Namespace) -> dict[int, list[int]]:
    rng = random.Random(11)
    t = time.perf_counter()
    owners = owner_of(args.devices, args)
    copy_rows(
        engine,
        "users",
        ["id", "email", "role", "disabled", "created_at"],
        ((u, f"user{u}@bench.example", "viewer", False, START) for u in range(1, owners + 1)),
    )
    copy_rows(
        engine,
        "devices",
        [
            "id",
            "name",
            "platform",
            "owner_id",
            "credential_digest",
            "state",
            "enrolled_at",
            "compliance_reasons",
        ],
        (
            (d, f"phone {d}", "android", owner_of(d, args), f"{d:064x}", "active", START, "[]")
            for d in range(1, args.devices + 1)
        ),
    )
    copy_rows(
        engine,
        "customers",
        ["id", "external_id", "created_at", "updated_at"],
        ((i, f"C{i:08d}", START, START) for i in range(1, args.customers + 1)),
    )
    named: dict[int, list[int]] = {}

    def contents() -> Iterator[tuple]:
        for cid in range(1, args.contents + 1):
            count = min(40, max(1, int(rng.lognormvariate(2.0, 0.8))))
            named[cid] = rng.sample(range(1, args.customers + 1), count)
            yield (
                cid,
                f"{cid:064x}",
                20_000,
                "csv",
                "inspected",
                "confidential",
                json.dumps({"email": count}),
                count,
                START,
                START,
            )

    copy_rows(
        engine,
        "exposure_contents",
        [
            "id",
            "sha256",
            "size",
            "format",
            "status",
            "label",
            "categories",
            "customer_count",
            "first_seen_at",
            "inspected_at",
        ],
        contents(),
    )
    copy_rows(
        engine,
        "exposure_content_customers",
        ["content_id", "customer_id"],
        ((cid, cust) for cid, custs in named.items() for cust in custs),
    )

    def deliveries() -> Iterator[tuple]:
        for n in range(1, args.deliveries + 1):
            device = rng.randrange(1, args.devices + 1)
            cid = rng.randrange(1, args.contents + 1)
            at = START + timedelta(seconds=n)
            yield (
                n,
                at,
                at,
                "mail",
                "device",
                device,
                owner_of(device, args),
                cid,
                "confidential",
                len(named[cid]),
                "bench",
                source_ref("bench", f"fill-{n}"),
            )

    copy_rows(
        engine,
        "exposure_deliveries",
        [
            "id",
            "occurred_at",
            "recorded_at",
            "channel",
            "destination_type",
            "device_id",
            "user_id",
            "content_id",
            "label",
            "customer_count",
            "source_system",
            "source_ref",
        ],
        deliveries(),
    )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table, n in (
                ("users", owners),
                ("devices", args.devices),
                ("customers", args.customers),
                ("exposure_contents", args.contents),
                ("exposure_deliveries", args.deliveries),
            ):
                conn.execute(text(f"SELECT setval('{table}_id_seq', :n)"), {"n": n})
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    print(f"  filled in {time.perf_counter() - t:.0f} s (not timed)", flush=True)
    return named


def timed(label: str, calls: list[Callable[[], object]]) -> None:
    took = []
    for call in calls:
        t = time.perf_counter()
        call()
        took.append((time.perf_counter() - t) * 1000)
    took.sort()
    p95 = took[int(len(took) * 0.95) - 1]
    print(
        f"  {label}: p50 {statistics.median(took):.1f} ms, p95 {p95:.1f} ms, "
        f"max {took[-1]:.1f} ms over {len(took)} queries",
        flush=True,
    )


def ingest(factory: sessionmaker[Session], args: argparse.Namespace, rng: random.Random) -> None:
    """POST /api/v1/exposure/deliveries as the route calls it: ``record_reported`` with
    contents by SHA-256 and devices that must exist, one transaction per batch."""
    recorder = Principal.system("bench-ingest")
    batch = args.batch
    run_id = f"{time.time_ns():x}"
    for keyed in (True, False):
        specs = [
            DeliverySpec(
                f"{rng.randrange(1, args.contents + 1):064x}",
                Destination.device(rng.randrange(1, args.devices + 1)),
                Channel.API,
                None,
                "bench-ingest",
                source_id=f"{run_id}-{n}" if keyed else None,
            )
            for n in range(args.ingest)
        ]
        recorded = 0
        t = time.perf_counter()
        for start in range(0, len(specs), batch):
            with dbmod.transaction(factory) as s:
                outcome = ExposureService(s, recorder).record_reported(
                    specs[start : start + batch], clock_skew=timedelta(minutes=5)
                )
                recorded += outcome.recorded
        took = time.perf_counter() - t
        how = "with source ids (deduplicated)" if keyed else "without source ids"
        print(
            f"  ingest {how}: {len(specs) / took:,.0f} deliveries/s "
            f"({recorded:,} of {len(specs):,} recorded in batches of {batch:,}, {took:.1f} s)",
            flush=True,
        )
        if keyed:
            t = time.perf_counter()
            with dbmod.transaction(factory) as s:
                again = ExposureService(s, recorder).record_reported(
                    specs[:batch], clock_skew=timedelta(minutes=5)
                )
            print(
                f"  the first batch again: {again.duplicates:,} duplicates, "
                f"{again.recorded} recorded, {(time.perf_counter() - t) * 1000:.0f} ms",
                flush=True,
            )


def filled(engine: Engine, args: argparse.Namespace) -> bool:
    """Whether a kept database holds this fill (``--reuse``)."""
    query = text("SELECT source_system FROM exposure_deliveries WHERE id = :n")
    with engine.connect() as conn:
        try:
            return conn.scalar(query, {"n": args.deliveries}) == "bench"
        except DBAPIError:
            return False


def named_customers(engine: Engine, args: argparse.Namespace) -> dict[int, list[int]]:
    """The customers of the first contents of a kept fill (those the queries sample)."""
    named: dict[int, list[int]] = {}
    query = text(
        "SELECT content_id, customer_id FROM exposure_content_customers "
        "WHERE content_id <= :n ORDER BY content_id, customer_id"
    )
    with engine.connect() as conn:
        for cid, customer in conn.execute(query, {"n": args.queries * 5}):
            named.setdefault(cid, []).append(customer)
    return named


def run(url: str, args: argparse.Namespace) -> None:
    engine = dbmod.make_engine(url)
    reuse = args.reuse and filled(engine, args)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    if reuse:
        print("  reusing the kept fill", flush=True)
        named = named_customers(engine, args)
    else:
        named = fill(engine, args)
    rng = random.Random(5)
    viewer = Principal("user", None, "bench", Role.AUDITOR)
    session = factory()
    try:
        svc = ExposureService(session, viewer)
        devices = [rng.randrange(1, args.devices + 1) for _ in range(args.queries)]
        timed(
            "which customers reached this device (count + first 100 ids)",
            [
                lambda d=d: svc.destination_customers(
                    DeliveryFilter(device_id=d), limit=100, offset=0
                )
                for d in devices
            ],
        )
        sample = [c for custs in list(named.values())[: args.queries * 5] for c in custs]
        customers = rng.sample(sample, args.queries)
        timed(
            "where has this customer's data gone (count + newest 100)",
            [
                lambda c=c: svc.customer_trail_by_directory_id(
                    c, limit=100, offset=0, audit_as=f"C{c:08d}"
                )
                for c in customers
            ],
        )
        session.rollback()
        total_customers = session.scalar(select(func.count()).select_from(Customer))
        print(f"  ({total_customers:,} customers, {args.deliveries:,} deliveries)")
    finally:
        session.close()

    ingest(factory, args, rng)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--contents", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000, help="deliveries per API batch")
    parser.add_argument(
        "--reuse",
        metavar="NAME",
        help="PostgreSQL: keep the database NAME and reuse it if it holds this fill",
    )
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to use")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if args.postgres:
        name = args.reuse or "spillguard_bench_ledger"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            there = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not (args.reuse and there):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        print(
            f"PostgreSQL: {args.deliveries:,} deliveries, {args.devices:,} devices, "
            f"{args.customers:,} customers, {args.contents:,} contents",
            flush=True,
        )
        try:
            run(url, args)
        finally:
            if not args.reuse:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite: {args.deliveries:,} deliveries", flush=True)
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", args)


if __name__ == "__main__":
    main()
