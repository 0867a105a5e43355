"""Detector latency (issue 7 Performance): from the ingestion call to the alert committed
and visible to another connection, on SQLite and PostgreSQL.

Setup: a fresh database, the HR data and four weeks of ordinary access of a synthetic
operator (``spillguard.audit.synthetic``, no scenarios), ingested through
``AccessIngestService`` in time order, each source's events in batches of
``--history-batch`` (5,000), each committed, so every actor has a baseline in
``access_actor_days``. That ingestion is the throughput figure: events per second over the
full batches, with each batch's wall time and this process's CPU time (the PostgreSQL
server's is not in it).

Then, ``--trials`` times: one batch of ``--batch`` events stamped "now" from one source,
``--batch - 1`` of them ordinary views by random staff and one an export of 1,500
customer records by a member of staff who has never exported (the mass-export detector's
one-event threshold is 1,000). The clock starts just before ``AccessIngestService.ingest``
(validation, storage, the audit rows, the streaming detectors, the alert) and the
transaction's commit; a second engine (its own connection, as the console or API would
use) polls ``insider_alerts`` for that actor every millisecond; the clock stops when it
sees the alert. Reported: the ingest+commit time and the time to visible, p50/p95/max.

    .venv/bin/python benchmarks/audit_detect.py [--users 200] [--trials 20] [--batch 1000]
        [--history-batch 5000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from insider_eval import database  # the sibling script: run as benchmarks/audit_detect.py
from sqlalchemy import select

from spillguard.audit.ingest import AccessIngestService
from spillguard.audit.models import Alert
from spillguard.audit.staff import StaffService
from spillguard.audit.synthetic import SimulationConfig, generate
from spillguard.core import db as dbmod
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

PG_DATABASE = "spillguard_bench_detect"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run(url: str, users: int, trials: int, batch: int, batch_size: int = 5000) -> dict[str, Any]:
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    watcher = dbmod.make_engine(url)
    keys = KeyRing(bytes(range(32)))
    settings = Settings(database_url=url, audit_checkpoint_interval_seconds=0, access_ingest_rate=0)
    principal = Principal.system("detector latency benchmark")
    now = datetime.now(UTC)
    org = generate(
        SimulationConfig(
            users=users,
            days=28,
            seed=1,
            start=now.date() - timedelta(days=29),
            scenarios=(),
            ids_per_view=5.0,
        )
    )
    # The generated events live as long as this process: out of the collector's reach, as a
    # server's heap would not hold them.
    gc.collect()
    gc.freeze()
    t = time.perf_counter()
    with dbmod.transaction(factory) as session:
        StaffService(session, principal).import_csv(org.staff_csv())
    # Ingestion throughput: the history in time order, each source's events in batches of
    # ``batch_size`` (as a tailer sends them), each in its own transaction (the service's
    # validation, storage, audit rows and streaming detectors, then the commit).
    batches: list[tuple[int, float, float]] = []

    def send(source: str, chunk: list[dict[str, Any]]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        with dbmod.transaction(factory) as session:
            AccessIngestService(session, settings, keys, principal).ingest(
                source, chunk, "file", rate_limit="off"
            )
        batches.append((len(chunk), time.perf_counter() - wall, time.process_time() - cpu))

    pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in org.events:
        pending[event.source].append(event.wire)
        if len(pending[event.source]) == batch_size:
            send(event.source, pending.pop(event.source))
    for source, rest in sorted(pending.items()):
        send(source, rest)
    full = [b for b in batches if b[0] == batch_size] or batches
    events = sum(n for n, _, _ in full)
    walls = sorted(w for _, w, _ in full)
    cpus = sum(c for _, _, c in full)
    throughput = {
        "batch": batch_size,
        "batches": len(full),
        "events_per_s": events / sum(walls),
        "batch_wall_ms_p50": statistics.median(walls) * 1000,
        "batch_wall_ms_max": walls[-1] * 1000,
        "batch_cpu_ms_mean": cpus / len(full) * 1000,
    }
    print(
        f"  history: {len(org.events):,} events in {time.perf_counter() - t:.1f} s; ingestion "
        f"in {len(full)} batches of {batch_size:,}: {throughput['events_per_s']:,.0f} events/s, "
        f"batch p50 {throughput['batch_wall_ms_p50']:.0f} ms wall (max "
        f"{throughput['batch_wall_ms_max']:.0f}), {throughput['batch_cpu_ms_mean']:.0f} ms CPU "
        "of this process"
    )

    rng = random.Random(3)
    # Staff who never export: their first 1,500-record export is the trigger.
    exporters = {e.wire["actor"] for e in org.events if e.wire["action"] in ("export", "print")}
    quiet = [s.actor for s in org.staff if s.actor not in exporters and s.leaving_on is None]
    rng.shuffle(quiet)
    everyone = [s.actor for s in org.staff]
    ingest_ms: list[float] = []
    visible_ms: list[float] = []
    for trial in range(trials):
        actor = quiet[trial]
        stamp = datetime.now(UTC) - timedelta(minutes=1)
        items: list[dict[str, Any]] = [
            {
                "id": f"latency-{trial}-{k}",
                "time": (stamp - timedelta(seconds=k)).isoformat(),
                "actor": rng.choice(everyone),
                "action": "view",
                "system": "crm",
                "record_type": "account",
                "customer_ids": [f"C{rng.randrange(users * 400):07d}" for _ in range(3)],
            }
            for k in range(batch - 1)
        ]
        items.append(
            {
                "id": f"latency-{trial}-export",
                "time": stamp.isoformat(),
                "actor": actor,
                "action": "export",
                "system": "crm",
                "record_type": "account",
                "customer_ids": [f"C{n:07d}" for n in rng.sample(range(users * 400), 1500)],
            }
        )
        rng.shuffle(items)
        query = select(Alert.id).where(Alert.actor == actor)
        started = time.perf_counter()
        with dbmod.transaction(factory) as session:
            AccessIngestService(session, settings, keys, principal).ingest(
                "crm", items, "rest", rate_limit="off"
            )
        committed = time.perf_counter()
        with watcher.connect() as conn:
            while conn.execute(query).first() is None:
                conn.rollback()
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"no alert for {actor} within 60 s")
                time.sleep(0.001)
        seen = time.perf_counter()
        ingest_ms.append((committed - started) * 1000)
        visible_ms.append((seen - started) * 1000)
    engine.dispose()
    watcher.dispose()
    result = {
        "ingestion": throughput,
        "ingest_commit_ms": {
            "p50": statistics.median(ingest_ms),
            "p95": pct(ingest_ms, 0.95),
            "max": max(ingest_ms),
        },
        "visible_ms": {
            "p50": statistics.median(visible_ms),
            "p95": pct(visible_ms, 0.95),
            "max": max(visible_ms),
        },
    }
    print(
        f"  {trials} trials, batches of {batch:,} events: ingest+commit p50 "
        f"{result['ingest_commit_ms']['p50']:.0f} ms, p95 {result['ingest_commit_ms']['p95']:.0f}"
        f" ms; alert visible p50 {result['visible_ms']['p50']:.0f} ms, p95 "
        f"{result['visible_ms']['p95']:.0f} ms, max {result['visible_ms']['max']:.0f} ms"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--history-batch", type=int, default=5000, help="batch size of the history's ingestion"
    )
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to use")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load {os.getloadavg()[0]:.2f}; {backend}; {args.users} users, 4 weeks of history"
    )
    with database(args.postgres, PG_DATABASE) as url:
        run(url, args.users, args.trials, args.batch, args.history_batch)
    print(f"  load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
