"""The loyalty-card example declared in the config file, end to end on SQLite and
PostgreSQL: `spillguard customers import` and `spillguard scan` (real processes) and the
server's POST /api/v1/inspections all read the [inspection] table, so loyalty numbers
are found, and confirm customers, only where it declares them; an unusable table is a
one-line error from every command that reads it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from stdnum import luhn

from spillguard.core.settings import Settings
from tests.factories.customers import people
from tests.factories.users import UserFactory
from tests.functional.live import run_spillguard

CONFIG = r"""
[inspection]
disabled = ["ipv4", "ipv6"]

[[inspection.custom_identifiers]]
name = "loyalty_number"
pattern = '\bLC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}\b'
check_digit = "luhn"
context_words = ["loyalty", "club", "member"]
ignore_case = true

[inspection.labels]
restricted_customers = 10
"""

MEMBERS = people(60, seed=41)


def card_number(rng: random.Random) -> str:
    body = "".join(rng.choices("0123456789", k=11))
    digits = body + luhn.calc_check_digit(body)
    return f"LC {digits[:4]}-{digits[4:8]}-{digits[8:]}"


CARDS = {p.customer_id: card_number(random.Random(p.customer_id)) for p in MEMBERS}


def directory_csv() -> bytes:
    lines = ["Customer ID,First name,Last name,Loyalty card number,Postcode"]
    for p in MEMBERS:
        lines.append(
            f"{p.customer_id},{p.first_name},{p.last_name},{CARDS[p.customer_id]},{p.postcode}"
        )
    return ("\n".join(lines) + "\n").encode()


def members_csv(chosen) -> bytes:
    """A club export: name and card number only (no e-mail, phone or other primary),
    the card written without its spaces and hyphens, in lower case."""
    lines = ["Member,Club card"]
    for p in chosen:
        lines.append(f"{p.name},{CARDS[p.customer_id].replace(' ', '').replace('-', '').lower()}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "spillguard.toml"
    path.write_text(CONFIG)
    return path


def test_cli_import_and_scan_match_on_the_declared_loyalty_number(
    env: dict[str, str], tmp_path: Path, config_file: Path
) -> None:
    configured = {**env, "SPILLGUARD_CONFIG": str(config_file)}
    listing = tmp_path / "customers.csv"
    listing.write_bytes(directory_csv())
    imported = run_spillguard(
        ["customers", "import", str(listing), "--id-column", "Customer ID"], configured
    )
    assert imported.returncode == 0, imported.stderr
    assert "exact data match index ready: 60 customers" in imported.stdout

    chosen = MEMBERS[:25]
    export = tmp_path / "club.csv"
    export.write_bytes(members_csv(chosen))
    note = tmp_path / "call.txt"
    person = MEMBERS[30]
    note.write_text(f"{person.name} called about club card {CARDS[person.customer_id]}.\n")

    result = run_spillguard(["scan", str(export), str(note), "--format", "json"], configured)
    assert result.returncode == 0, result.stderr
    by_path = {r["path"]: r for r in json.loads(result.stdout)}
    club, call = by_path[str(export)], by_path[str(note)]
    assert club["categories"] == {"loyalty_number": 25}
    assert club["customer_ids"] == sorted(p.customer_id for p in chosen)
    assert club["label"] == "restricted"
    assert {tuple(c["primary"]) for c in club["customers"]} == {("loyalty_number",)}
    assert call["customer_ids"] == [person.customer_id]
    for value in [CARDS[p.customer_id] for p in chosen] + [CARDS[person.customer_id]]:
        assert value not in result.stdout + result.stderr
        assert value.replace(" ", "").replace("-", "") not in result.stdout.upper()

    # Without the declaration nothing finds a loyalty number, so nobody is confirmed.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    plain = run_spillguard(
        ["scan", str(export), "--format", "json"], {**env, "SPILLGUARD_CONFIG": str(empty)}
    )
    assert plain.returncode == 0, plain.stderr
    (report,) = json.loads(plain.stdout)
    assert "loyalty_number" not in report["categories"]
    assert report["customer_ids"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "."],
        ["customers", "import", "customers.csv", "--id-column", "Customer ID"],
        ["serve", "--port", "1"],
    ],
    ids=["scan", "import", "serve"],
)
def test_an_unusable_inspection_table_is_a_one_line_error(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace(r"'\bLC", r"'(?<=x)\bLC"))
    (tmp_path / "customers.csv").write_bytes(directory_csv())
    args = [str(tmp_path / a) if a in {".", "customers.csv"} else a for a in args]
    result = run_spillguard(args, {**env, "SPILLGUARD_CONFIG": str(bad)})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "custom_identifiers.0.pattern: pattern is not valid RE2 syntax" in lines[0]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server's data directory holds the config file (the CLI tests name theirs)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "config.toml").write_text(CONFIG)
    return settings


def test_the_server_reads_the_declaration_from_its_config_file(
    client: TestClient, users: UserFactory
) -> None:
    dpo, security = users.auth("dpo"), users.auth("security")
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", directory_csv(), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text
    chosen = MEMBERS[5:17]
    response = client.post(
        "/api/v1/inspections",
        files={"file": ("club.csv", members_csv(chosen))},
        headers=security,
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["categories"] == {"loyalty_number": 12}
    assert report["customer_ids"] == sorted(p.customer_id for p in chosen)
    assert report["label"] == "restricted"
    masked = [f["masked"] for f in report["findings"]]
    assert all("•" in m for m in masked)
    for p in chosen:
        compact = CARDS[p.customer_id].replace(" ", "").replace("-", "")
        assert compact not in response.text.upper()
        assert CARDS[p.customer_id] not in response.text
