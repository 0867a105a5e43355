"""HR rows as the staff import reads them (pure): recognised headers, each field's checks,
all-or-nothing with the first errors named."""

from __future__ import annotations

from datetime import date

import pytest

from spillguard.audit.staff import StaffInvalid, map_headers, parse_rows, parse_staff_item


def test_headers_are_recognised_whatever_their_case_and_spacing() -> None:
    mapping = map_headers(
        ["\ufeffUser-Name", "Full Name", "DEPARTMENT", "Job Title", "Leaving Date", "notes"]
    )
    assert mapping == {
        "\ufeffUser-Name": "actor",
        "Full Name": "display_name",
        "DEPARTMENT": "team",
        "Job Title": "job_role",
        "Leaving Date": "leaving_on",
    }
    with pytest.raises(StaffInvalid, match="no actor column"):
        map_headers(["team", "role"])


def test_fields_are_normalised_and_only_given_fields_are_returned() -> None:
    record = parse_staff_item(
        {
            "actor": " a@example.co.uk ",
            "duties": "Contract-Renewal; billing;;billing",
            "leaving_on": "31/12/2026",
            "work_start": "8:05",
            "work_days": "5,4,3,2,1",
            "timezone": "Europe/London",
        }
    )
    assert record.actor == "a@example.co.uk"
    assert record.fields == {
        "duties": ["contract-renewal", "billing"],
        "leaving_on": date(2026, 12, 31),
        "work_start": "08:05",
        "work_days": "12345",
        "timezone": "Europe/London",
    }
    cleared = parse_staff_item({"actor": "a", "leaving_on": "", "work_end": "", "team": " "})
    assert cleared.fields == {"leaving_on": None, "work_end": "19:00", "team": None}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"actor": ""}, "actor is required"),
        ({"actor": "a" * 321}, "actor is longer than 320"),
        ({"actor": "a", "work_start": "24:00"}, "work_start must be a time"),
        ({"actor": "a", "work_days": "0123"}, "work_days must be ISO weekday digits"),
        ({"actor": "a", "work_days": "112"}, "work_days must be ISO weekday digits"),
        ({"actor": "a", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"actor": "a", "leaving_on": "2026-13-01"}, "leaving_on must be a date"),
        ({"actor": "a", "duties": 7}, "duties must be text"),
        ({"actor": "a", "duties": ";".join(f"d{i}" for i in range(51))}, "at most 50 duties"),
        ({"actor": 5}, "actor must be text"),
    ],
)
def test_bad_fields_are_named(item: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_staff_item(item)


def test_one_bad_row_refuses_all_and_names_the_first_five() -> None:
    rows = [(f"line {n}", {"actor": "", "team": "x"}) for n in range(2, 10)]
    with pytest.raises(StaffInvalid) as caught:
        parse_rows([("line 1", {"actor": "ok"}), *rows])
    assert caught.value.detail.startswith("8 bad row(s), nothing loaded: line 2: actor is")
    assert caught.value.detail.endswith("(and 3 more)")
    assert len(caught.value.extra["errors"]) == 5
    assert [r.actor for r in parse_rows([("line 1", {"actor": "ok"})])] == ["ok"]
