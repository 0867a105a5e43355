"""`spillguard customers …` run as a real process against SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from spillguard.core.db import make_session_factory
from spillguard.core.models import AuditEvent
from spillguard.customers.models import Customer
from tests.factories.customers import HEADER, changed, people, to_csv
from tests.functional.live import one_line_error, run_spillguard

BASE = people(5000, seed=11)


def shown(stdout: str, label: str) -> int:
    match = re.search(rf"│ {re.escape(label)}\s+│ ([\d,]+)", stdout)
    assert match, stdout
    return int(match.group(1).replace(",", ""))


def test_import_and_incremental_re_import_print_the_counts(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    first = tmp_path / "customers.csv"
    first.write_bytes(to_csv(BASE))
    result = run_spillguard(["customers", "import", str(first), "--id-column", "Customer ID"], env)
    assert result.returncode == 0, result.stderr
    assert shown(result.stdout, "added") == 5000
    assert shown(result.stdout, "removed") == 0
    assert "│ Mobile" in result.stdout and "phone" in result.stdout

    second = tmp_path / "customers-december.csv"
    edits = {p.customer_id: changed(p, n) for n, p in enumerate(BASE[10:20])}
    dropped = {p.customer_id for p in BASE[30:35]}
    rows = [edits.get(p.customer_id, p) for p in BASE if p.customer_id not in dropped]
    second.write_bytes(to_csv(rows + people(7, seed=5, start=800_000)))
    result = run_spillguard(["customers", "import", str(second), "--id-column", "Customer ID"], env)
    assert result.returncode == 0, result.stderr
    assert [shown(result.stdout, k) for k in ("added", "changed", "unchanged", "removed")] == [
        7,
        10,
        4985,
        5,
    ]
    for person in BASE[:50]:  # counts and headers only: never a value
        assert person.email not in result.stdout and person.customer_id not in result.stdout

    stats = run_spillguard(["customers", "stats"], env)
    assert stats.returncode == 0, stats.stderr
    assert shown(stats.stdout, "customers") == 5002
    assert shown(stats.stdout, "removed customers") == 5
    assert "customers-december.csv" in stats.stdout

    with make_session_factory(engine)() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.startswith("customers:"))
        ).all()
        assert actions == ["customers:import:completed"] * 2
        assert session.scalar(select(Customer.id).limit(1)) is not None


def test_map_option_and_header_recognition(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    header = ["Ref", *HEADER[1:]]
    path.write_bytes(to_csv(people(25), header=header))
    result = run_spillguard(
        ["customers", "import", str(path), "--map", "Ref=id", "--map", "DOB=ignore"], env
    )
    assert result.returncode == 0, result.stderr
    assert shown(result.stdout, "added") == 25
    assert "date_of_birth" not in result.stdout


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--id-column", "Customer ID"], None, "no such file"),
        (["--id-column", "Account"], to_csv(people(3)), "no column 'Account'"),
        (["--id-column", "Customer ID", "--map", "Email"], to_csv(people(3)), "COLUMN=KIND"),
        (["--map", "Email=colour"], to_csv(people(3)), "unknown field kind"),
        (["--id-column", "Customer ID"], bytes(range(256)) * 64, "not readable text"),
    ],
    ids=["missing-file", "unknown-column", "bad-map", "unknown-kind", "binary"],
)
def test_bad_input_is_one_line(
    env: dict[str, str], tmp_path: Path, args: list[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "list.csv"
    if content is not None:
        path.write_bytes(content)
    error = one_line_error(run_spillguard(["customers", "import", str(path), *args], env))
    assert message in error
