"""`spillguard audit simulate` as a real process: the files it writes (the same for the
same seed and start) and its one-line errors. No database is involved."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.functional.live import one_line_error, run_spillguard, spillguard_env


def test_simulate_writes_staff_events_and_labels(tmp_path: Path) -> None:
    env = spillguard_env(tmp_path / "home")
    args = ["audit", "simulate", "--users", "40", "--days", "14", "--seed", "3"]
    args += ["--start", "2026-10-05", "--honeytoken", "C0999999"]
    first = run_spillguard([*args, "--out", str(tmp_path / "a")], env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "40 staff" in first.stdout and "Injected scenarios" in first.stdout
    second = run_spillguard([*args, "--out", str(tmp_path / "b")], env, timeout=120)
    assert second.returncode == 0, second.stderr
    names = ["staff.csv", "events-crm.jsonl", "events-billing.jsonl", "labels.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    labels = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert [s["scenario"] for s in labels["scenarios"]] == [
        "slow_theft",
        "departure_burst",
        "after_hours_export",
        "honeytoken",
    ]
    assert labels["scenarios"][3]["customer_ids"] == ["C0999999"]
    with (tmp_path / "a" / "staff.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 40
    out_c = ["--out", str(tmp_path / "c")]
    quiet = run_spillguard(
        ["audit", "simulate", "--users", "40", "--days", "14", "--scenarios", "none", *out_c],
        env,
        timeout=120,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads((tmp_path / "c" / "labels.json").read_text())["scenarios"] == []


def test_simulate_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    env = spillguard_env(tmp_path / "home")
    out = ["--out", str(tmp_path / "x")]
    small = ["audit", "simulate", "--users", "60"]
    assert "--scenarios takes all, none or a comma-separated list" in one_line_error(
        run_spillguard(["audit", "simulate", "--scenarios", "heist", *out], env)
    )
    assert "--start must be a date YYYY-MM-DD, got '5 Oct'" in one_line_error(
        run_spillguard(["audit", "simulate", "--start", "5 Oct", *out], env)
    )
    assert "give a larger customer base" in one_line_error(
        run_spillguard(
            [*small, "--days", "60", "--customers", "10000", "--start", "2026-10-05", *out],
            env,
            timeout=120,
        )
    )
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert "cannot write to" in one_line_error(
        run_spillguard(
            ["audit", "simulate", "--users", "40", "--days", "14", "--out", str(blocked)],
            env,
            timeout=120,
        )
    )
