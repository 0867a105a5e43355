"""Honeytoken generation without a database: phone ranges, the directory's id format, and
identities that are believable, valid for exact data match, and reproducible by key."""

from __future__ import annotations

from datetime import date

import pytest
from faker import Faker

from spillguard.core.errors import InvalidInput
from spillguard.core.keys import KeyRing
from spillguard.customers.fields import normalise_email, normalise_phone, normalise_postcode
from spillguard.customers.honeytokens import (
    SEED_PURPOSE,
    derive_identity,
    derived_phone,
    infer_id_format,
    national,
    parse_phone_range,
)

FAKE = Faker("en_GB")


def test_the_default_drama_range_and_spaced_or_international_forms_parse() -> None:
    drama = parse_phone_range("07700900000-07700900999")
    assert drama.size == 1000
    assert drama.number(0) == "+447700900000" and drama.number(999) == "+447700900999"
    assert str(drama) == "07700 900000-07700 900999"
    spaced = parse_phone_range(" +44 7700 900100 - 07700 900199 ")
    assert (spaced.start, spaced.size) == (447700900100, 100)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("07700900000", "START-END"),
        ("07700900999-07700900000", "must follow"),
        ("07700900000-0770090", "valid phone"),
        ("banana-07700900999", "valid phone"),
        ("07700-900000-07700900999", "START-END"),
        ("07400000000-07499999999", "10,000,000"),
    ],
)
def test_bad_phone_ranges_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_phone_range(text)
    assert why in refused.value.detail


def test_the_id_format_follows_the_directory() -> None:
    ids = [f"C{n:07d}" for n in range(1000, 4000)] + ["legacy-7"]
    shape = infer_id_format(ids)
    assert (shape.prefix, shape.width, shape.low, shape.high) == ("C", 7, 1000, 3999)
    assert shape.make(1234) == "C0001234"
    assert infer_id_format(ids, prefix="HT").make(5) == "HT0000005"
    # A handful of ids cannot tell a span: anywhere the width allows.
    few = infer_id_format(["CUST-001", "CUST-002"])
    assert (few.prefix, few.width, few.low, few.high) == ("CUST-", 3, 100, 999)
    assert infer_id_format([]).make(7) == "C0000007"
    with pytest.raises(InvalidInput):
        infer_id_format(ids, prefix="no spaces")


def test_an_identity_is_valid_for_exact_data_match_and_fixed_by_key_and_id() -> None:
    seed = KeyRing(b"k" * 32).derive(SEED_PURPOSE)
    phones = parse_phone_range("07700900000-07700900999")
    one = derive_identity(FAKE, seed, "C0001234", 0, email_domain="corp.example", phones=phones)
    assert one == derive_identity(
        FAKE, seed, "C0001234", 0, email_domain="corp.example", phones=phones
    )
    other_draw = derive_identity(
        FAKE, seed, "C0001234", 1, email_domain="corp.example", phones=phones
    )
    assert other_draw.name != one.name or other_draw.phone != one.phone
    other_key = KeyRing(b"x" * 32).derive(SEED_PURPOSE)
    assert (
        derive_identity(FAKE, other_key, "C0001234", 0, email_domain="corp.example", phones=phones)
        != one
    )

    assert normalise_email(one.email) == one.email and one.email.endswith("@corp.example")
    assert normalise_phone(one.phone) == one.phone
    assert 447700900000 <= int(one.phone[1:]) <= 447700900999
    assert national(one.phone).startswith("07700 900")
    assert normalise_postcode(one.postcode) is not None
    assert date(1941, 1, 1) <= one.date_of_birth <= date(2005, 12, 31)
    assert "\n" not in one.street and one.first_name and one.last_name and one.town
    # The phone number depends on the key, the id and the draw alone (not on Faker).
    assert derived_phone(seed, "C0001234", 0, phones) == one.phone
