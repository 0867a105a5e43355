"""`spillguard audit staff import FILE.csv` as a real process on SQLite and PostgreSQL:
recognised headers, a re-import that updates, one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

from faker import Faker
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from spillguard.audit.models import StaffMember
from tests.functional.live import one_line_error, run_spillguard

fake = Faker("en_GB")


def staff_csv(path: Path, rows: list[list[str]], header: list[str]) -> Path:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_then_update_and_list(env: dict[str, str], engine: Engine, tmp_path: Path) -> None:
    header = [
        "User Name",
        "Full Name",
        "Department",
        "Job Title",
        "Duties",
        "Leaving Date",
        "Work Start",
        "Work End",
        "Work Days",
        "Timezone",
    ]
    agent = f"{fake.user_name()}@example.co.uk"
    leaver = f"{fake.user_name()}.2@example.co.uk"
    first = staff_csv(
        tmp_path / "hr.csv",
        [
            [
                agent,
                fake.name(),
                "renewals",
                "Renewals agent",
                "contract-renewal;billing",
                "",
                "08:00",
                "16:30",
                "12345",
                "Europe/London",
            ],
            [
                leaver,
                fake.name(),
                "renewals",
                "Renewals agent",
                "contract-renewal",
                "31/12/2026",
                "",
                "",
                "",
                "",
            ],
        ],
        header,
    )
    result = run_spillguard(["audit", "staff", "import", str(first)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "added" in result.stdout and "User Name → actor" in result.stdout
    with Session(engine) as session:
        rows = {r.actor: r for r in session.scalars(select(StaffMember))}
    assert rows[agent].duties == ["contract-renewal", "billing"]
    assert rows[agent].work_end == "16:30" and rows[agent].team == "renewals"
    assert str(rows[leaver].leaving_on) == "2026-12-31" and rows[leaver].work_start == "07:00"

    # a file with only some columns changes only those
    second = staff_csv(tmp_path / "leavers.csv", [[agent, "2027-01-15"]], ["actor", "leaving_on"])
    result = run_spillguard(["audit", "staff", "import", str(second)], env)
    assert result.returncode == 0, result.stderr
    with Session(engine) as session:
        row = session.scalars(select(StaffMember).where(StaffMember.actor == agent)).one()
    assert str(row.leaving_on) == "2027-01-15" and row.work_end == "16:30"
    listed = run_spillguard(["audit", "staff", "list", "--team", "renewals"], env)
    assert listed.returncode == 0 and "2 of 2 staff members" in listed.stdout


def test_bad_files_are_one_line_errors(env: dict[str, str], engine: Engine, tmp_path: Path) -> None:
    missing = run_spillguard(["audit", "staff", "import", str(tmp_path / "nope.csv")], env)
    assert one_line_error(missing).startswith("no such file")
    no_actor = staff_csv(tmp_path / "a.csv", [["x"]], ["team"])
    assert "no actor column" in one_line_error(
        run_spillguard(["audit", "staff", "import", str(no_actor)], env)
    )
    bad = staff_csv(
        tmp_path / "b.csv",
        [
            ["a@example.co.uk", "09:00"],
            ["a@example.co.uk", "10:00"],
            ["", "09:00"],
            ["b@example.co.uk", "25:00"],
        ],
        ["actor", "work_start"],
    )
    message = one_line_error(run_spillguard(["audit", "staff", "import", str(bad)], env))
    assert message == (
        "3 bad row(s), nothing loaded: line 3: actor repeats line 2; line 4: actor is "
        "required; line 5: work_start must be a time as HH:MM (24-hour)"
    )
    binary = tmp_path / "c.csv"
    binary.write_bytes(b"actor\n\xff\xfe\x00")
    assert "not UTF-8" in one_line_error(
        run_spillguard(["audit", "staff", "import", str(binary)], env)
    )
    with Session(engine) as session:
        assert session.scalars(select(StaffMember)).all() == []
