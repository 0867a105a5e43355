"""`spillguard scan` against the imported customer directory: the story of issue 4's
"done when" (import 5,000, scan a spreadsheet of 1,000 of them) on SQLite and
PostgreSQL, as real processes, plus what a scan must not do (create a database, print a
value) and what it records (one audit event with counts)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import Engine, select

from spillguard.core.db import make_session_factory
from spillguard.core.models import AuditEvent
from tests.conftest import TEST_MASTER_KEY
from tests.factories.customers import people, to_csv
from tests.functional.live import run_spillguard, spillguard_env

CUSTOMERS = people(5000, seed=23)


@pytest.fixture
def spreadsheet(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """1,000 of the customers in an xlsx (name, e-mail, postcode) and their plain values."""
    chosen = random.Random(23).sample(CUSTOMERS, 1000)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Name", "Email address", "Post code"])
    for person in chosen:
        sheet.append([person.name, person.email, person.postcode])
    folder = tmp_path / "outbox"
    folder.mkdir()
    book.save(folder / "renewals.xlsx")
    plain = [p.email for p in chosen[:50]]
    return folder, sorted(p.customer_id for p in chosen), plain


def test_import_then_scan_reports_the_1000_customers_restricted(
    env: dict[str, str], engine: Engine, tmp_path: Path, spreadsheet
) -> None:
    folder, chosen, plain = spreadsheet
    listing = tmp_path / "customers.csv"
    listing.write_bytes(to_csv(CUSTOMERS))
    imported = run_spillguard(
        ["customers", "import", str(listing), "--id-column", "Customer ID"], env, timeout=180
    )
    assert imported.returncode == 0, imported.stderr
    # The import leaves the built index in the data directory for the scans to come.
    assert "exact data match index ready: 5,000 customers" in imported.stdout
    cache = Path(env["SPILLGUARD_HOME"]) / "cache"
    assert [p.name.startswith("edm-index-") for p in cache.iterdir()] == [True]

    # Without the cached index the scan rebuilds it: its log line must not reach stdout,
    # which is the JSON report (it did, and the JSON did not parse).
    for built in cache.iterdir():
        built.unlink()
    result = run_spillguard(
        ["scan", str(folder), "--format", "json", "--min-label", "restricted"], env, timeout=180
    )
    assert result.returncode == 1, result.stderr  # restricted content found: exit 1
    (report,) = json.loads(result.stdout)
    assert report["label"] == "restricted"
    assert report["customer_count"] == 1000
    assert report["customer_ids"] == chosen
    assert "exact data match: 5,000 customers from the directory" in result.stderr
    for value in plain:
        assert value not in result.stdout + result.stderr
    assert all("•" in f["masked"] for f in report["findings"] if f["entity"] == "email_address")

    with make_session_factory(engine)() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "inspection:scan:completed")
        ).all()
    assert len(events) == 1
    assert events[0].details == {
        "items": 1,
        "customers_matched": 1000,
        "directory_customers": 5000,
        "at_or_above_min_label": True,
    }
    assert events[0].actor_label.startswith("cli:")

    patterns_only = run_spillguard(["scan", str(folder), "--format", "json", "--no-edm"], env)
    assert patterns_only.returncode == 0, patterns_only.stderr
    (report,) = json.loads(patterns_only.stdout)
    assert report["customer_ids"] == []
    assert "exact data match" not in patterns_only.stderr


def test_empty_directory_scans_with_patterns_and_says_so(
    env: dict[str, str], engine: Engine, spreadsheet
) -> None:
    folder, _, _ = spreadsheet
    result = run_spillguard(["scan", str(folder), "--format", "json"], env)
    assert result.returncode == 0, result.stderr
    assert "exact data match: off (the customer directory is empty)" in result.stderr
    (report,) = json.loads(result.stdout)
    assert report["customer_ids"] == [] and report["categories"]["email_address"] == 1000


def test_scan_never_creates_a_database(tmp_path: Path, spreadsheet) -> None:
    folder, _, _ = spreadsheet
    home = tmp_path / "fresh-home"
    result = run_spillguard(
        ["scan", str(folder), "--format", "json"],
        spillguard_env(home, master_key=TEST_MASTER_KEY),
    )
    assert result.returncode == 0, result.stderr
    assert "customer directory is empty" in result.stderr
    assert not list(home.glob("*.db")) and not list(home.glob("*.sqlite*"))


def test_no_edm_and_edm_csv_together_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    listing = tmp_path / "c.csv"
    listing.write_bytes(to_csv(CUSTOMERS[:5]))
    result = run_spillguard(
        ["scan", str(tmp_path), "--no-edm", "--edm-csv", str(listing), "--edm-id-column", "x"],
        env,
    )
    assert result.returncode == 2
    assert "--no-edm and --edm-csv cannot be used together" in result.stderr
