"""The regulator report's answers, pre-filled from the incident and its assessment (pure),
and the checks on the dpo's edits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spillguard.core.errors import InvalidInput
from spillguard.incidents.models import ExposureAssessment, Incident
from spillguard.incidents.regulator import (
    ORGANISATION_PLACEHOLDER,
    QUESTIONS,
    PeopleTold,
    ReportFields,
    category_words,
    prefill,
)

AWARE = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def incident(**changes: object) -> Incident:
    values: dict[str, object] = {
        "id": 12,
        "type": "lost-device",
        "title": "Marketing manager's phone lost in a restaurant",
        "description": None,
        "severity": "high",
        "status": "assessed",
        "device_id": 3,
        "opened_at": AWARE,
        "opened_by_label": "helpdesk@shop.example",
        "aware_at": AWARE,
        "contained_at": None,
        "late_reason": None,
    }
    values.update(changes)
    return Incident(**values)


def assessment(risk: str = "high", notify: bool = True, **facts: object) -> ExposureAssessment:
    return ExposureAssessment(
        incident_id=12,
        version=2,
        computed_at=AWARE,
        risk=risk,
        notify_regulator=True,
        notify_individuals=notify,
        reasons=["The phone had no passcode (swipe only) and was not encrypted."],
        facts={
            "categories": {"email": 1000, "phone": 990, "postcode": 0},
            "documents": [{"content_id": 1}],
            "protections": {
                "posture_known": True,
                "passcode_type": "swipe",
                "storage_encrypted": False,
            },
            **facts,
        },
        customer_count=1000,
        customer_ids=[],
    )


def test_a_lost_swipe_only_phone_prefills_every_question() -> None:
    fields = prefill(
        incident(),
        assessment(),
        organisation="Example Shop Ltd",
        dpo_contact="The Data Protection Officer, dpo@shop.example",
    )
    assert fields.organisation == "Example Shop Ltd"
    assert "device #3" in fields.what_happened and "1 document" in fields.what_happened
    assert "about 1000 customer" in fields.what_happened
    assert "helpdesk@shop.example" in fields.how_discovered
    assert fields.occurred_at == fields.discovered_at == "30 November 2026, 09:15 UTC"
    # A category with no finding is not claimed.
    assert fields.data_categories == ["e-mail addresses", "phone numbers"]
    assert (fields.approx_people, fields.approx_records) == (1000, 1000)
    assert fields.people_categories == ["customers"]
    assert "fraud" in fields.likely_consequences
    assert "passcode type: swipe" in fields.measures_taken
    assert "storage encrypted: no" in fields.measures_taken
    assert fields.people_told is PeopleTold.PLANNED and fields.advice_to_individuals
    assert fields.contact_point.endswith("dpo@shop.example")


def test_a_low_risk_incident_says_why_people_need_not_be_told() -> None:
    fields = prefill(
        incident(), assessment(risk="low", notify=False), organisation=None, dpo_contact=None
    )
    assert fields.organisation == ORGANISATION_PLACEHOLDER  # the dpo must fill it in
    assert fields.people_told is PeopleTold.NOT_REQUIRED
    assert fields.people_told_detail.startswith("Not required:")
    assert "unlikely" in fields.likely_consequences
    assert fields.advice_to_individuals == ""


def test_without_an_assessment_the_report_still_starts() -> None:
    fields = prefill(
        incident(type="insider-leak", device_id=None), None, organisation="X", dpo_contact=None
    )
    assert fields.people_told is PeopleTold.NO
    assert fields.approx_people == 0 and fields.data_categories == []


@pytest.mark.parametrize(
    ("categories", "words"),
    [
        ({"email": 2, "nino": 1}, ["e-mail addresses", "National Insurance numbers"]),
        (["payment_card", "card"], ["payment card numbers"]),
        ({"something_new": 3}, ["something new"]),
        (None, []),
        ("email", []),
    ],
)
def test_category_words(categories: object, words: list[str]) -> None:
    assert sorted(category_words(categories)) == sorted(words)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"approx_people": -1}, "approx_people"),
        ({"people_told": "maybe"}, "people_told"),
        ({"what_happened": "x" * 4001}, "what_happened"),
        ({"unknown_question": "x"}, "unknown_question"),
        ({"data_categories": "not a list"}, "data_categories"),
    ],
)
def test_bad_answers_are_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ReportFields.parse(data)
    assert refused.value.extra["field"] == field


def test_every_field_is_a_question_of_the_form() -> None:
    assert [name for name, _ in QUESTIONS] == list(ReportFields.model_fields)
