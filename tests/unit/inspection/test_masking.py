"""Masked forms: recognisable to a person, useless to a thief, and never an exception."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spillguard.inspection import Entity, InspectionEngine, mask
from spillguard.inspection.masking import MASK
from tests.factories import identifiers as ids


@pytest.mark.parametrize(
    ("value", "entity", "masked"),
    [
        ("+447700900021", Entity.PHONE, "07700 9•••21"),
        ("+442079460958", Entity.PHONE, "020 794• ••58"),
        ("+14155552671", Entity.PHONE, "+1 415-55•-••71"),
        ("4242424242424242", Entity.PAYMENT_CARD, "•••• •••• •••• 4242"),
        ("378282246310005", Entity.PAYMENT_CARD, "•••• •••• ••• 0005"),
        ("jane.doe@example.co.uk", Entity.EMAIL, "j•••@example.co.uk"),
        ("SW1A 1AA", Entity.POSTCODE, "SW1A •••"),
        ("GB82WEST12345698765432", Entity.IBAN, "GB82 •••• •••• •••• ••54 32"),
        ("12-34-56 12345678", Entity.UK_BANK_ACCOUNT, "••-••-56 ••••5678"),
        ("AB123456C", Entity.NINO, "AB •• •• •• C"),
        ("9434765919", Entity.NHS_NUMBER, "••• ••• 5919"),
        ("1985-03-12", Entity.DATE_OF_BIRTH, "1985-••-••"),
        ("192.168.1.25", Entity.IP_ADDRESS, "192.168.•.•"),
        ("2001:db8::8a2e:370:7334", Entity.IP_ADDRESS, "2001:db8:•••"),
        ("LC633912345678", "loyalty_number", "•••••••••••678"),
    ],
)
def test_each_entity_has_a_readable_masked_form(value, entity, masked):
    assert mask(value, entity) == masked


def test_phone_numbers_of_other_regions_are_masked_in_international_form():
    assert mask("+447700900021", Entity.PHONE, region="US") == "+44 7700 ••••21"
    assert mask("+14155552671", Entity.PHONE, region="US") == "(415) 55•-••71"


def test_the_email_mask_hides_the_length_of_the_mailbox():
    assert mask("a@example.com", Entity.EMAIL) == "a•••@example.com"
    assert mask("alexandra@example.com", Entity.EMAIL) == "a•••@example.com"


@pytest.mark.parametrize(
    ("value", "entity"),
    [
        ("not a phone", Entity.PHONE),
        ("no-at-sign", Entity.EMAIL),
        ("12", Entity.PAYMENT_CARD),
        ("nonsense", Entity.IP_ADDRESS),
        ("SW1A1AA", Entity.POSTCODE),
    ],
)
def test_unexpected_values_fall_back_to_the_generic_mask(value, entity):
    masked = mask(value, entity)
    assert masked.startswith(MASK)
    assert value not in masked
    assert sum(ch != MASK for ch in masked) <= min(4, len(value) // 4)


def test_generated_identifiers_never_appear_whole_in_their_masks():
    rng = random.Random(12)
    samples = [
        *((ids.luhn_number(rng, "4", 16), Entity.PAYMENT_CARD) for _ in range(20)),
        *((ids.nino(rng, spaced=False), Entity.NINO) for _ in range(20)),
        *((ids.nhs_number(rng, spaced=False), Entity.NHS_NUMBER) for _ in range(20)),
        *(("+44" + ids.drama_mobile(rng).replace(" ", "")[1:], Entity.PHONE) for _ in range(20)),
    ]
    for value, entity in samples:
        masked = mask(value, entity)
        assert value not in masked.replace(" ", "")
        assert MASK in masked


def test_engine_findings_carry_the_mask_of_their_value():
    engine = InspectionEngine()
    result = engine.scan_text("NI AB 12 34 56 C, NHS 943 476 5919, mail jo@example.org")
    assert [(f.entity, f.masked) for f in result.findings] == [
        (Entity.NINO, "AB •• •• •• C"),
        (Entity.NHS_NUMBER, "••• ••• 5919"),
        (Entity.EMAIL, "j•••@example.org"),
    ]


ENTITIES = st.sampled_from([*(str(e) for e in Entity), "loyalty_number"])


@given(value=st.text(max_size=40).filter(lambda v: MASK not in v), entity=ENTITIES)
def test_mask_never_raises_and_never_shows_a_whole_value(value, entity):
    masked = mask(value, entity)
    assert isinstance(masked, str)
    if len(value.strip()) >= 4:
        assert value not in masked
