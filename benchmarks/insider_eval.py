"""Insider-risk evaluation (issue 7 §5): detection of injected scenarios and false alerts.

For each seed: generate a synthetic operator (``spillguard.audit.synthetic``: N users,
W weeks of ordinary access, one slow theft, one burst before departure, one after-hours
export, labelled), load its staff, then replay its access events in time order through
``AccessIngestService`` (the real ingestion path: validation, storage, the audit log rows,
the streaming detectors), one simulated hour at a time, each source's events of that hour
in batches of at most ``--batch`` in one transaction, with the ingestion's ``now`` set to
the end of that hour. An alert's ``first_seen_at`` is therefore the simulated time at which
the stream had revealed enough: the detection delay is measured in simulated time with an
hour's resolution, not in how long the replay took.

Scores (``audit.synthetic.evaluate``): a scenario is detected when an alert on its actor is
first seen at or after its start (delay = that time minus the first injected event's
time; goal within one day); a false alert is one on an actor with no scenario, or on a
scenario's actor before its start (goal under 1 per 100 users per week), counted per
detector.

    .venv/bin/python benchmarks/insider_eval.py [--users 1000] [--weeks 8] [--seeds 1,2,3]
        [--batch 2000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--set insider_volume_min_ratio=4 ...] [--json results.json]

``--set NAME=VALUE`` overrides a setting (to measure a threshold change). Without
``--postgres`` each seed uses a SQLite file in a temporary directory; with it, a throwaway
database ``spillguard_bench_insider`` on that server (dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.ingest import AccessIngestService
from spillguard.audit.models import Alert
from spillguard.audit.staff import StaffService
from spillguard.audit.synthetic import (
    SCENARIOS,
    AlertSeen,
    Evaluation,
    Organisation,
    SimulationConfig,
    evaluate,
    generate,
)
from spillguard.core import db as dbmod
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

START = date(2026, 9, 7)  # a Monday; the clocks go back on 25 October inside 8 weeks
PG_DATABASE = "spillguard_bench_insider"


@contextmanager
def database(postgres: str | None, name: str = PG_DATABASE) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a throwaway PostgreSQL database ``name``
    (dropped afterwards) on the server at the admin URL ``postgres``."""
    if postgres:
        admin = create_engine(make_url(postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        try:
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / f'{name}.db'}"


def load_staff(factory: sessionmaker[Session], org: Organisation) -> int:
    """Load the organisation's ``staff.csv`` through the HR import (``audit.staff``)."""
    with dbmod.transaction(factory) as session:
        result = StaffService(session, Principal.system("insider evaluation")).import_csv(
            org.staff_csv()
        )
    return result.rows


@dataclass
class Replay:
    """What the replay did and how long it took (wall clock, ingestion and detection)."""

    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    seconds: float = 0.0
    slowest_batch: float = 0.0


def hourly(org: Organisation) -> Iterator[tuple[datetime, dict[str, list[dict[str, Any]]]]]:
    """The events grouped by simulated hour (UTC) and source: (hour's end, {source: events})."""
    current: int | None = None
    group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in org.events:
        hour = event.epoch // 3600
        if current is not None and hour != current:
            yield datetime.fromtimestamp((current + 1) * 3600, org.start.tzinfo), group
            group = defaultdict(list)
        current = hour
        group[event.source].append(event.wire)
    if current is not None:
        yield datetime.fromtimestamp((current + 1) * 3600, org.start.tzinfo), group


def replay(
    factory: sessionmaker[Session],
    settings: Settings,
    keys: KeyRing,
    org: Organisation,
    batch: int,
) -> Replay:
    """Ingest every event through the service, an hour at a time, committing each batch."""
    stats = Replay()
    principal = Principal.system("insider evaluation")
    started = time.perf_counter()
    for now, by_source in hourly(org):
        for source in sorted(by_source):
            items = by_source[source]
            for first in range(0, len(items), batch):
                chunk = items[first : first + batch]
                t = time.perf_counter()
                with dbmod.transaction(factory) as session:
                    result = AccessIngestService(session, settings, keys, principal).ingest(
                        source, chunk, "file", rate_limit="off", now=now
                    )
                stats.slowest_batch = max(stats.slowest_batch, time.perf_counter() - t)
                stats.events += len(chunk)
                stats.accepted += result.accepted
                stats.duplicates += result.duplicates
                stats.rejected += len(result.rejects)
                stats.batches += 1
                if result.rejects:
                    raise SystemExit(f"rejected: {result.rejects[:3]}")
    stats.seconds = time.perf_counter() - started
    return stats


def alerts_seen(factory: sessionmaker[Session]) -> list[AlertSeen]:
    """Every alert raised, as the scorer takes them."""
    with dbmod.transaction(factory) as session:
        rows = session.execute(
            select(Alert.detector, Alert.actor, Alert.first_seen_at, Alert.severity)
        ).all()
    return [AlertSeen(d, a, f, s) for d, a, f, s in rows]


def run_seed(
    url: str, config: SimulationConfig, overrides: dict[str, Any], batch: int
) -> tuple[Organisation, Evaluation, Replay, list[AlertSeen]]:
    t = time.perf_counter()
    org = generate(config)
    generated = time.perf_counter() - t
    print(
        f"  seed {config.seed}: generated {len(org.staff):,} staff, {org.notes['events']:,} "
        f"events, {org.notes['records']:,} records in {generated:.1f} s"
    )
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    keys = KeyRing(bytes(range(32)))
    settings = Settings(
        database_url=url,
        audit_checkpoint_interval_seconds=0,
        access_ingest_rate=0,
        **overrides,
    )
    load_staff(factory, org)
    stats = replay(factory, settings, keys, org, batch)
    print(
        f"  replayed {stats.accepted:,} events in {stats.batches:,} batches in "
        f"{stats.seconds:.1f} s = {stats.accepted / stats.seconds:,.0f} events/s "
        f"(slowest batch {stats.slowest_batch * 1000:.0f} ms)"
    )
    seen = alerts_seen(factory)
    engine.dispose()
    return org, evaluate(org, seen), stats, seen


def hours(delta: timedelta | None) -> str:
    return "-" if delta is None else f"{delta.total_seconds() / 3600:.1f} h"


def report(evaluations: list[Evaluation]) -> dict[str, Any]:
    """Print the per-scenario and false-alert summary; return it as a dictionary."""
    per_scenario: dict[str, list[Any]] = defaultdict(list)
    for ev in evaluations:
        for result in ev.scenarios:
            per_scenario[result.label.scenario].append(result)
    summary: dict[str, Any] = {"scenarios": {}, "false": {}}
    print("\n  scenario              detected  within 1 day  delay (each seed)     detectors")
    for scenario in SCENARIOS:
        results = per_scenario.get(scenario, [])
        detected = sum(r.detected for r in results)
        in_day = sum(1 for r in results if r.delay is not None and r.delay <= timedelta(days=1))
        delays = ", ".join(hours(r.delay) for r in results)
        detectors = Counter(d for r in results for d in r.detectors)
        firsts = Counter(r.first_detector for r in results if r.first_detector)
        print(
            f"  {scenario:<20}  {detected}/{len(results)}       {in_day}/{len(results)}"
            f"           {delays:<20}  first: {dict(firsts)}; all: {dict(detectors)}"
        )
        summary["scenarios"][scenario] = {
            "detected": detected,
            "within_day": in_day,
            "runs": len(results),
            "delays_hours": [
                None if r.delay is None else round(r.delay.total_seconds() / 3600, 2)
                for r in results
            ],
            "first_detectors": dict(firsts),
            "detectors": dict(detectors),
        }
    total_false = sum(len(ev.false_alerts) for ev in evaluations)
    user_weeks = sum(ev.users / 100 * ev.weeks for ev in evaluations)
    by_detector: Counter[str] = Counter()
    for ev in evaluations:
        by_detector.update(ev.false_by_detector())
    rate = total_false / user_weeks
    print(
        f"\n  false alerts: {total_false} over {user_weeks:,.1f} (100 users x week) = "
        f"{rate:.2f} per 100 users per week; by detector: {dict(by_detector.most_common())}"
    )
    for ev in evaluations:
        print(f"    one seed: {len(ev.false_alerts)} = {ev.false_per_100_users_week:.2f}")
    summary["false"] = {
        "count": total_false,
        "per_100_users_week": round(rate, 3),
        "by_detector": dict(by_detector),
        "per_seed": [round(ev.false_per_100_users_week, 3) for ev in evaluations],
    }
    return summary


def parse_override(text_value: str) -> tuple[str, Any]:
    name, _, value = text_value.partition("=")
    if not name or not value:
        raise SystemExit(f"--set expects NAME=VALUE, got {text_value!r}")
    field = Settings.model_fields.get(name)
    if field is None:
        raise SystemExit(f"--set: no setting {name!r}")
    kind = field.annotation
    parsed: Any = value
    if kind is int:
        parsed = int(value)
    elif kind is float:
        parsed = float(value)
    return name, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument(
        "--ids-per-view", type=float, default=3.0, help="mean customer ids per view event"
    )
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server to use")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE setting")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument(
        "--false-detail", action="store_true", help="list every false alert (detector, actor)"
    )
    args = parser.parse_args()
    overrides = dict(parse_override(s) for s in args.set)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load {os.getloadavg()[0]:.2f}; {backend}; {args.users:,} users x {args.weeks} weeks, "
        f"seeds {seeds}; {args.ids_per_view:g} ids a view; overrides {overrides or 'none'}"
    )
    evaluations = []
    replays = []
    for seed in seeds:
        config = SimulationConfig(
            users=args.users,
            days=args.weeks * 7,
            seed=seed,
            start=START,
            ids_per_view=args.ids_per_view,
        )
        with database(args.postgres) as url:
            org, ev, stats, _ = run_seed(url, config, overrides, args.batch)
        evaluations.append(ev)
        replays.append(stats)
        for result in ev.scenarios:
            print(
                f"    {result.label.scenario:<20} {result.label.actor:<48} start "
                f"{result.label.start:%Y-%m-%d %H:%M} delay {hours(result.delay):>7} "
                f"{', '.join(result.detectors) or 'MISSED'}"
            )
        if args.false_detail:
            staff = {s.actor: s for s in org.staff}
            for alert in sorted(ev.false_alerts, key=lambda a: a.first_seen_at):
                member = staff.get(alert.actor or "")
                who = f"{member.team}/{member.role}" if member else "?"
                leaving = f" leaving {member.leaving_on}" if member and member.leaving_on else ""
                joined = f" joined {member.joined_on}" if member and member.joined_on else ""
                print(
                    f"      false {alert.detector:<12} {alert.first_seen_at:%Y-%m-%d %H:%M} "
                    f"{who}{leaving}{joined}"
                )
    summary = report(evaluations)
    rate = statistics.mean(r.accepted / r.seconds for r in replays)
    print(f"\n  replay rate (ingestion + detection, one process): {rate:,.0f} events/s mean")
    summary["replay_events_per_second"] = round(rate)
    summary["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
