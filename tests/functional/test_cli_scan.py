"""`spillguard scan` as a real process: the 5,000-customer story, masked output in every
format, SARIF 2.1.0 shape, --min-label exit codes, unreadable paths and usage errors."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import openpyxl
import pytest
from faker import Faker

from tests.conftest import TEST_MASTER_KEY
from tests.functional.live import one_line_error, run_spillguard, spillguard_env


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """5,000 Faker en_GB customers in a CSV; 1,000 of them in a spreadsheet; one
    customer's full e-mail, phone and card planted in a note."""
    root = tmp_path_factory.mktemp("scan-story")
    fake = Faker("en_GB")
    fake.seed_instance(4242)
    rng = random.Random(4242)
    customers = [
        {
            "Customer ID": f"C{i:05d}",
            "First name": fake.first_name(),
            "Surname": fake.last_name(),
            "Email": fake.unique.email(),
            "Mobile": f"07700 9{i:05d}"[:12] if i < 1000 else fake.phone_number(),
            "Postcode": fake.postcode(),
            "Card number": luhn_card(rng),
        }
        for i in range(5000)
    ]
    with (root / "customers.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(customers[0]))
        writer.writeheader()
        writer.writerows(customers)
    chosen = rng.sample(customers, 1000)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Name", "E-mail address", "Postcode"])
    for c in chosen:
        sheet.append([f"{c['First name']} {c['Surname']}", c["Email"], c["Postcode"]])
    scanned = root / "scan"
    scanned.mkdir()
    book.save(scanned / "export.xlsx")
    canary = customers[4321]
    card = canary["Card number"]
    spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    (scanned / "note.txt").write_text(
        f"{canary['First name']} {canary['Surname']} rang from {canary['Mobile']}, "
        f"email {canary['Email']}, paying by card {spaced}.\n"
    )
    home = root / "home"
    return {
        "root": root,
        "scanned": scanned,
        "chosen": sorted(c["Customer ID"] for c in chosen),
        "canary": canary,
        "plain": [canary["Email"], canary["Mobile"], card, spaced],
        "env": spillguard_env(home, master_key=TEST_MASTER_KEY),
    }


def scan_args(story: dict, *extra: str) -> list[str]:
    return [
        "scan",
        str(story["scanned"]),
        "--edm-csv",
        str(story["root"] / "customers.csv"),
        "--edm-id-column",
        "Customer ID",
        *extra,
    ]


def test_story_1000_customers_restricted_json(story):
    result = run_spillguard(scan_args(story, "--format", "json"), story["env"], timeout=120)
    assert result.returncode == 0, result.stderr
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    export = reports["export.xlsx"]
    assert export["customer_count"] == 1000
    assert export["customer_ids"] == story["chosen"]
    assert export["label"] == "restricted"
    assert export["status"] == "findings"
    note = reports["note.txt"]
    assert note["customer_ids"] == [story["canary"]["Customer ID"]]
    assert note["label"] == "confidential"
    masked = {f["entity"]: f["masked"] for f in note["findings"]}
    assert masked["payment_card"] == "•••• •••• •••• " + story["plain"][2][-4:]
    for value in story["plain"]:
        assert value not in result.stdout + result.stderr


@pytest.mark.parametrize("fmt", ["table", "sarif"])
def test_other_formats_print_masked_values_only(story, fmt):
    result = run_spillguard(scan_args(story, "--format", fmt), story["env"], timeout=120)
    assert result.returncode == 0, result.stderr
    for value in story["plain"]:
        assert value not in result.stdout + result.stderr
    if fmt == "table":
        line = next(x for x in result.stdout.splitlines() if "export.xlsx" in x)
        assert "restricted" in line and "1000" in line and "findings" in line
        line = next(x for x in result.stdout.splitlines() if "note.txt" in x)
        assert "confidential" in line and "payment_card 1" in line


def test_sarif_has_the_2_1_0_shape(story):
    result = run_spillguard(scan_args(story, "--format", "sarif"), story["env"], timeout=120)
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "spillguard"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert {"email_address", "payment_card", "phone_number"} <= set(rule_ids)
    assert all(r["shortDescription"]["text"] for r in driver["rules"])
    assert len(run["results"]) >= 1003
    for res in run["results"]:
        assert res["ruleId"] == rule_ids[res["ruleIndex"]]
        assert res["level"] in {"none", "note", "warning", "error"}
        assert res["message"]["text"]
        (loc,) = res["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"].endswith((".xlsx", ".txt"))
        region = loc["physicalLocation"].get("region")
        if region is not None:
            assert region["startLine"] >= 1 and region["startColumn"] >= 1
    card = next(r for r in run["results"] if r["ruleId"] == "payment_card")
    assert card["level"] == "error"
    assert "•••• •••• •••• " in card["message"]["text"]


def test_min_label_exit_codes(tmp_path: Path):
    env = spillguard_env(tmp_path / "home", master_key=TEST_MASTER_KEY)
    (tmp_path / "phone.txt").write_text("call me on 07700 900123")
    (tmp_path / "plain.txt").write_text("lunch at noon")
    phone, plain = str(tmp_path / "phone.txt"), str(tmp_path / "plain.txt")
    assert run_spillguard(["scan", phone, "--min-label", "internal"], env).returncode == 1
    assert run_spillguard(["scan", phone, "--min-label", "confidential"], env).returncode == 0
    assert run_spillguard(["scan", plain, "--min-label", "public"], env).returncode == 1
    two = run_spillguard(["scan", phone, plain, "--workers", "2", "--format", "json"], env)
    assert two.returncode == 0  # no --min-label: findings alone do not fail
    assert [r["label"] for r in json.loads(two.stdout)] == ["internal", "public"]
    for bad in (
        ["scan", phone, "--min-label", "secret"],
        ["scan", phone, "--workers", "0"],
        ["scan", phone, "--edm-csv", phone],
    ):
        result = run_spillguard(bad, env)
        assert one_line_error(result, code=2).endswith("(see `spillguard scan --help`)")


def test_unreadable_path_is_one_error_line_and_others_still_scanned(tmp_path: Path):
    env = spillguard_env(tmp_path / "home", master_key=TEST_MASTER_KEY)
    (tmp_path / "ok.txt").write_text("mail jo@example.org")
    missing = tmp_path / "missing.csv"
    result = run_spillguard(
        ["scan", str(missing), str(tmp_path / "ok.txt"), "--format", "json"], env
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "exact data match: off (the customer directory is empty)",
        f"error: {missing}: unreadable: No such file or directory",
    ]
    reports = json.loads(result.stdout)
    assert [r["status"] for r in reports] == ["unscannable", "findings"]
    assert reports[0]["label"] == "confidential"
    assert reports[1]["categories"] == {"email_address": 1}
