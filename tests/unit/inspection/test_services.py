"""The pure parts of the inspection service: upload names, and the reveal, which must give
the same report as an ordinary scan plus each finding's value, and nothing otherwise."""

from __future__ import annotations

import io

import openpyxl
import pytest

from spillguard.inspection.scan import default_engine, scan
from spillguard.inspection.services import InspectionMisconfigured, _RevealingEngine, item_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.xlsx", "report.xlsx"),
        ("C:\\Users\\jo\\Desktop\\export.csv", "export.csv"),
        ("../../etc/passwd", "passwd"),
        ("bad\x00name\x1b[31m.txt", "badname[31m.txt"),
        ("  ", "upload"),
        (None, "upload"),
        ("folder/", "upload"),
        ("x" * 300, "x" * 255),
    ],
)
def test_item_names_are_the_last_component_without_control_characters(
    raw: str | None, expected: str
) -> None:
    assert item_name(raw, "upload") == expected


def sheet_bytes() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Name", "Email", "Mobile", "Card"])
    sheet.append(["Ann Lee", "ann.lee@example.org", "07700 900123", "4539 1488 0343 6467"])
    sheet.append(["Bo Chan", "bo.chan@example.net", "+44 7700 900456", "5555555555554444"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        sheet_bytes(),
        b"Ann Lee, ann.lee@example.org, 07700 900123\nNINO AB 12 34 56 C, IBAN GB82 WEST 1234 "
        b"5698 7654 32\n",
    ],
    ids=["table", "text"],
)
def test_a_reveal_is_the_ordinary_report_plus_values(data: bytes) -> None:
    ordinary = scan(data, name="item")
    engine = _RevealingEngine(default_engine())
    report = scan(data, name="item", engine=engine)  # type: ignore[arg-type]
    revealed = engine.reveal(report, "testing")
    assert revealed.report == ordinary
    assert len(revealed.values) == len(ordinary.findings) >= 4
    out = revealed.to_dict()
    assert out["purpose"] == "testing"
    for finding in out["findings"]:
        assert finding["value"] and finding["value"] != finding["masked"]
        assert "\x00" not in finding["masked"]
    values = set(revealed.values)
    assert "ann.lee@example.org" in values and "+447700900123" in values


def test_a_report_that_did_not_pass_the_reveal_engine_is_refused() -> None:
    ordinary = scan(b"mail ann.lee@example.org", name="item")
    with pytest.raises(InspectionMisconfigured):
        _RevealingEngine(default_engine()).reveal(ordinary, "testing")
