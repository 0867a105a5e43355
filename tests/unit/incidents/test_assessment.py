"""The exposure risk rating (pure): GDPR Art 33/34 logic over plain facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spillguard.incidents.assessment import ExposureFacts, Protections, Risk, assess

WIPED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ENCRYPTED_PIN = Protections(
    posture_known=True, passcode_type="pin", passcode_length=6, storage_encrypted=True
)
SWIPE_PLAIN = Protections(posture_known=True, passcode_type="swipe", storage_encrypted=False)


def lost(protections: Protections | None, customers: int = 1000) -> ExposureFacts:
    return ExposureFacts(
        incident_type="lost-device",
        customer_count=customers,
        documents=1,
        categories={"email": 1000, "phone": 1000},
        protections=protections,
    )


def with_wipe(p: Protections) -> Protections:
    return Protections(**{**p.__dict__, "wipe_acknowledged_at": WIPED})


def test_encrypted_pin_and_wiped_is_unintelligible_no_one_needs_telling() -> None:
    result = assess(lost(with_wipe(ENCRYPTED_PIN)))
    assert result.risk is Risk.LOW
    assert not result.notify_regulator and not result.notify_individuals
    assert "unintelligible" in result.reasons[0] and "Art 34(3)(a)" in result.reasons[0]
    assert "2026-12-01 09:30 UTC" in result.reasons[0]
    assert "1,000 customers" in result.reasons[0]


def test_encrypted_pin_without_a_wipe_is_medium_tell_the_regulator() -> None:
    result = assess(lost(ENCRYPTED_PIN))
    assert result.risk is Risk.MEDIUM
    assert result.notify_regulator and not result.notify_individuals
    assert "no wipe has been acknowledged" in result.reasons[0]


def test_swipe_only_unencrypted_is_high_everyone_must_be_told() -> None:
    result = assess(lost(SWIPE_PLAIN))
    assert result.risk is Risk.HIGH
    assert result.notify_regulator and result.notify_individuals
    assert "'swipe'" in result.reasons[0] and "not encrypted" in result.reasons[0]
    assert any("email, phone" in r for r in result.reasons)


def test_a_late_wipe_does_not_undo_the_exposure_of_a_careless_phone() -> None:
    result = assess(lost(with_wipe(SWIPE_PLAIN)))
    assert result.risk is Risk.HIGH and result.notify_individuals
    assert "readable until then" in result.reasons[0]


@pytest.mark.parametrize(
    "protections",
    [
        Protections(posture_known=True, passcode_type="pin", storage_encrypted=False),
        Protections(posture_known=True, passcode_type="pattern", storage_encrypted=True),
        Protections(posture_known=True, passcode_type="none", storage_encrypted=True),
        Protections(
            posture_known=True, passcode_type="alphanumeric", storage_encrypted=True, rooted=True
        ),
        Protections(posture_known=False),
        None,
    ],
)
def test_any_missing_protection_makes_it_high(protections: Protections | None) -> None:
    result = assess(lost(protections and with_wipe(protections)))
    assert result.risk is Risk.HIGH
    assert result.notify_individuals


def test_no_customer_data_is_low_and_nobody_is_told() -> None:
    result = assess(lost(SWIPE_PLAIN, customers=0))
    assert result.risk is Risk.LOW
    assert not result.notify_regulator and not result.notify_individuals


def test_an_insider_leak_is_high_whatever_protected_the_devices() -> None:
    facts = ExposureFacts(
        incident_type="insider-leak", customer_count=3, protections=with_wipe(ENCRYPTED_PIN)
    )
    result = assess(facts)
    assert result.risk is Risk.HIGH and result.notify_individuals
    assert "3 customers" in result.reasons[0]


@given(
    customers=st.integers(min_value=0, max_value=10**7),
    lock=st.sampled_from(["none", "swipe", "pattern", "pin", "alphanumeric", None]),
    encrypted=st.sampled_from([True, False, None]),
    rooted=st.sampled_from([True, False, None]),
    wiped=st.booleans(),
    kind=st.sampled_from(["lost-device", "insider-leak", "header-leak", "other"]),
)
def test_every_outcome_is_consistent(
    customers: int,
    lock: str | None,
    encrypted: bool | None,
    rooted: bool | None,
    wiped: bool,
    kind: str,
) -> None:
    """Individuals are told only at high risk; high risk always tells both; a reason always
    comes first; nothing outside low/medium/high."""
    p = Protections(
        posture_known=lock is not None,
        passcode_type=lock,
        storage_encrypted=encrypted,
        rooted=rooted,
        wipe_acknowledged_at=WIPED if wiped else None,
    )
    result = assess(ExposureFacts(incident_type=kind, customer_count=customers, protections=p))
    assert result.reasons
    assert result.notify_individuals == (result.risk is Risk.HIGH)
    if result.risk is Risk.HIGH:
        assert result.notify_regulator
    if customers == 0:
        assert result.risk is Risk.LOW
