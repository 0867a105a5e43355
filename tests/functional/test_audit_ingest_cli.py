"""`spillguard audit ingest FILE`: JSON lines and CSV with a column mapping, resuming where
it stopped (also after SIGKILL: every event exactly once), rotated files read from the
start, `--follow`, and one-line errors for bad files and mappings."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faker import Faker
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.models import (
    AccessEvent,
    AccessEventCustomer,
    AccessReject,
    AccessSource,
    AccessTailPosition,
)
from spillguard.audit.tailer import FileTailer, TailError, TailOptions
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from tests.functional.live import COMMAND, one_line_error, run_spillguard

fake = Faker("en_GB")
START = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)


def access(n: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"evt-{n}",
        "time": (START + timedelta(seconds=n)).isoformat(),
        "actor": f"agent{n % 7}@example.co.uk",
        "action": "view",
        "system": "crm",
        "customer_ids": [f"C{n}"],
    }
    body.update(overrides)
    return body


def jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def tail(
    factory: sessionmaker[Session],
    settings: Settings,
    keys: KeyRing,
    path: Path,
    **options: Any,
) -> str:
    opts = TailOptions(source=options.pop("source", "crm"), **options)
    tailer = FileTailer(factory, settings, keys, Principal.system("tests"), path, opts)
    return tailer.run().line()


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        events = conn.scalar(select(func.count()).select_from(AccessEvent.__table__)) or 0
        distinct = conn.scalar(select(func.count(func.distinct(AccessEvent.source_event_id)))) or 0
    return events, distinct


def position(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(select(AccessTailPosition.offset, AccessTailPosition.lines)).one()
    return int(row[0]), int(row[1])


def test_jsonl_resumes_where_it_stopped_and_refuses_bad_lines(
    factory: sessionmaker[Session],
    engine: Engine,
    settings: Settings,
    keys: KeyRing,
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.jsonl"
    secret = fake.phone_number()
    path.write_text(
        jsonl([access(1), access(2)])
        + "{not json\n"
        + "\n"
        + json.dumps(access(3, actor=None, customer_ids=[secret]))
        + "\n"
        + jsonl([access(2)])
    )
    summary = tail(factory, settings, keys, path, batch=2)
    assert summary == (
        "accepted 2, duplicates 1, rejected 2 "
        "(line 3: not valid JSON; line 5: actor: Input should be a valid string)"
    )
    assert position(engine) == (path.stat().st_size, 6)
    with path.open("a") as handle:
        handle.write(jsonl([access(4), access(5)]))
    assert tail(factory, settings, keys, path).startswith("accepted 2, duplicates 0, rejected 0")
    assert counts(engine) == (4, 4)
    assert tail(factory, settings, keys, path) == "accepted 0, duplicates 0, rejected 0"
    with engine.connect() as conn:
        rejects = conn.execute(select(AccessReject.reason, AccessReject.channel)).all()
        source = conn.execute(select(AccessSource.accepted, AccessSource.rejected)).one()
    assert {r.channel for r in rejects} == {"file"} and len(rejects) == 2
    assert secret not in " ".join(r.reason for r in rejects)
    assert tuple(source) == (4, 2)


def test_a_replaced_file_is_read_from_its_start(
    factory: sessionmaker[Session],
    engine: Engine,
    settings: Settings,
    keys: KeyRing,
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.jsonl"
    path.write_text(jsonl([access(n) for n in range(1, 11)]))
    tail(factory, settings, keys, path)
    # Rotated: a new, shorter file at the same path, with different first line.
    path.write_text(jsonl([access(n) for n in range(11, 14)]))
    assert tail(factory, settings, keys, path) == "accepted 3, duplicates 0, rejected 0"
    # Truncated and rewritten with the same first line: shorter than the position.
    path.write_text(jsonl([access(11), access(14)]))
    assert tail(factory, settings, keys, path) == "accepted 1, duplicates 1, rejected 0"
    assert counts(engine) == (14, 14)


def test_csv_with_recognised_headers_a_mapping_and_a_list_separator(
    factory: sessionmaker[Session],
    engine: Engine,
    settings: Settings,
    keys: KeyRing,
    tmp_path: Path,
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Event ID", "Timestamp", "User Name", "Operation", "App", "Accounts", "Hits"])
    writer.writerow(
        ["r1", "2026-02-02T08:00:00Z", "ann@example.co.uk", "export", "crm", "A1|A2", ""]
    )
    writer.writerow(["r2", "2026-02-02T08:01:00Z", "bob@example.co.uk", "search", "crm", "", "40"])
    writer.writerow(["r3", "2026-02-02T08:02:00", "bob@example.co.uk", "view", "crm", "A3", ""])
    path = tmp_path / "export.csv"
    path.write_text(buffer.getvalue())
    summary = tail(
        factory,
        settings,
        keys,
        path,
        fmt="csv",
        mapping={"Accounts": "customer_ids", "Hits": "result_count"},
        list_separator="|",
    )
    assert summary == (
        "accepted 2, duplicates 0, rejected 1 (line 4: time: has no UTC offset (give Z or +hh:mm))"
    )
    with engine.connect() as conn:
        rows = {
            r.source_event_id: r
            for r in conn.execute(select(AccessEvent.source_event_id, AccessEvent.records))
        }
        refs = set(conn.scalars(select(AccessEventCustomer.customer_ref)))
    assert rows["r1"].records == 2 and rows["r2"].records == 40 and refs == {"A1", "A2"}
    assert position(engine) == (path.stat().st_size, 4)


def test_follow_reads_what_is_appended_and_stops_cleanly(
    factory: sessionmaker[Session],
    engine: Engine,
    settings: Settings,
    keys: KeyRing,
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.jsonl"
    path.write_text(jsonl([access(1)]))
    stop = threading.Event()
    opts = TailOptions(source="crm", follow=True, poll_seconds=0.05)
    tailer = FileTailer(factory, settings, keys, Principal.system("tests"), path, opts)
    worker = threading.Thread(target=tailer.run, args=(stop.is_set,))
    worker.start()
    try:
        wait_for(lambda: counts(engine)[0] == 1)
        with path.open("a") as handle:
            handle.write(json.dumps(access(2)))  # no line break yet: not read
            handle.flush()
            time.sleep(0.3)
            assert counts(engine)[0] == 1
            handle.write("\n" + json.dumps(access(3)) + "\n")
        wait_for(lambda: counts(engine)[0] == 3)
        # Rotation: the old file moves away, a new one appears at the path.
        path.rename(tmp_path / "live.jsonl.1")
        path.write_text(jsonl([access(4)]))
        wait_for(lambda: counts(engine)[0] == 4)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    assert tailer.summary.accepted == 4


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_killed_mid_way_the_rerun_ingests_every_event_exactly_once(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    total = 30_000
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl([access(n) for n in range(total)]))
    args = ["audit", "ingest", str(path), "--source", "crm", "--batch", "500"]
    process = subprocess.Popen(
        [*COMMAND, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: counts(engine)[0] >= 2_000, timeout=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stdout and process.stderr
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    done, _ = counts(engine)
    assert 2_000 <= done < total, "the kill did not land mid-way"
    offset, lines = position(engine)
    assert lines == done and offset == len(jsonl([access(n) for n in range(done)]))

    rerun = run_spillguard(args, env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.strip() == f"accepted {total - done}, duplicates 0, rejected 0"
    assert counts(engine) == (total, total)
    assert position(engine) == (path.stat().st_size, total)


def test_bad_files_and_mappings_are_one_line_errors(env: dict[str, str], tmp_path: Path) -> None:
    missing = run_spillguard(
        ["audit", "ingest", str(tmp_path / "nope.jsonl"), "--source", "crm"], env
    )
    assert "no such file" in one_line_error(missing)
    path = tmp_path / "staff.csv"
    path.write_text("who,when,what\nann,2026-02-02T08:00:00Z,view\n")
    bad_map = run_spillguard(
        ["audit", "ingest", str(path), "--source", "crm", "--format", "csv", "--map", "who=user"],
        env,
    )
    assert "'user' is not a field" in one_line_error(bad_map)
    bad_source = run_spillguard(["audit", "ingest", str(path), "--source", "c r m"], env)
    assert "'source' must be" in one_line_error(bad_source)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"fmt": "csv"}, "no column for id, time, actor, action, system; name one with --map"),
        ({"fmt": "csv", "mapping": {"nope": "actor"}}, "the header has no column 'nope'"),
        ({"fmt": "xml"}, "unknown format 'xml'"),
        ({"batch": 5001}, "--batch must be between 1 and 5000"),
        ({"mapping": {"who": "actor"}}, "--map applies to CSV files only"),
        ({"list_separator": ";;"}, "--list-separator must be one character"),
        ({"directory": True}, "is a directory"),
    ],
)
def test_tailer_refuses_bad_options_before_reading(
    factory: sessionmaker[Session],
    settings: Settings,
    keys: KeyRing,
    tmp_path: Path,
    options: dict[str, Any],
    expected: str,
) -> None:
    path = tmp_path / "staff.csv"
    path.write_text("who,when,what\nann,2026-02-02T08:00:00Z,view\n")
    options = dict(options)
    if options.pop("directory", False):
        path = tmp_path
    with pytest.raises(TailError) as info:
        tail(factory, settings, keys, path, **options)
    assert expected in str(info.value)
