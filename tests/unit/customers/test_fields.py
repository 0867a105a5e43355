"""Normalisers: format variants of one value meet; invalid values give None, never raise."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from spillguard.customers.fields import (
    PRIMARY,
    SUPPORTING,
    FieldKind,
    LoyaltyFormat,
    normalise,
    normalise_date,
    normalise_loyalty,
    normalise_phone,
)
from spillguard.inspection.detectors.phone import is_drama_number


def test_every_kind_is_primary_or_supporting_never_both():
    assert set(FieldKind) == PRIMARY | SUPPORTING
    assert not PRIMARY & SUPPORTING
    assert {FieldKind.EMAIL, FieldKind.PHONE, FieldKind.LOYALTY_NUMBER, FieldKind.CARD} == PRIMARY


@pytest.mark.parametrize(
    ("kind", "variants", "expected"),
    [
        (
            FieldKind.EMAIL,
            [
                " Jane.Doe@Example.CO.UK ",
                "jane.doe@example.co.uk",
                "mailto:JANE.DOE@example.co.uk",
                "<jane.doe@EXAMPLE.co.uk>",
            ],
            "jane.doe@example.co.uk",
        ),
        (FieldKind.EMAIL, ["jo@münchen.de", "JO@MÜNCHEN.DE"], "jo@xn--mnchen-3ya.de"),
        (
            FieldKind.PHONE,
            [
                "07700 900123",
                "+44 7700 900123",
                "+44 (0)7700 900123",
                "0044 7700 900123",
                "07700-900-123",
                "(07700) 900123",
                "+447700900123",
            ],
            "+447700900123",
        ),
        (FieldKind.PHONE, ["020 7946 0018", "+44 20 7946 0018"], "+442079460018"),
        (FieldKind.PHONE, ["+1 415 555 2671", "001 415 555 2671"], "+14155552671"),
        (FieldKind.POSTCODE, ["SW1A 1AA", "sw1a1aa", " Sw1A  1aA ".replace("  ", " ")], "SW1A1AA"),
        (FieldKind.NAME, ["Mrs Jane   DOE", "jane doe", "Jane Doe.", "  JANE DOE "], "jane doe"),
        (FieldKind.NAME, ["Dr. Siân O'Brien-Smith MBE", "sian obrien smith"], "sian obrien smith"),
        (FieldKind.LAST_NAME, ["Lord", "LORD"], "lord"),
        (
            FieldKind.DATE_OF_BIRTH,
            [
                "01/02/1980",
                "1/2/1980",
                "1 Feb 1980",
                "1st February 1980",
                "1980-02-01",
                "February 1, 1980",
                "01.02.1980",
                "01-02-80",
            ],
            "1980-02-01",
        ),
        (
            FieldKind.CARD,
            ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"],
            "4111111111111111",
        ),
        (
            FieldKind.LOYALTY_NUMBER,
            ["LC 1234-5678-9012", "lc123456789012", "123456789012"],
            "123456789012",
        ),
        (
            FieldKind.ADDRESS,
            ["12 High St., Leeds", "12 high street", "12 HIGH STREET\nLeeds"],
            "12 high street",
        ),
    ],
)
def test_format_variants_meet(kind, variants, expected):
    assert {normalise(kind, v) for v in variants} == {expected}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (FieldKind.EMAIL, "not an email"),
        (FieldKind.EMAIL, "a@b"),
        (FieldKind.EMAIL, "a..b@example.com"),
        (FieldKind.PHONE, "07700"),
        (FieldKind.PHONE, "01234 5"),
        (FieldKind.PHONE, "phone me"),
        (FieldKind.POSTCODE, "QQ1 1AA"),
        (FieldKind.POSTCODE, "12345"),
        (FieldKind.NAME, "!!! 123"),
        (FieldKind.DATE_OF_BIRTH, "31/02/1980"),
        (FieldKind.DATE_OF_BIRTH, "2999-01-01"),
        (FieldKind.DATE_OF_BIRTH, "01/01/1850"),
        (FieldKind.CARD, "4111 1111 1111 1112"),
        (FieldKind.CARD, "4111 abcd 1111 1111"),
        (FieldKind.LOYALTY_NUMBER, "12"),
        (FieldKind.ADDRESS, "Leeds"),
    ],
)
def test_invalid_values_normalise_to_none(kind, value):
    assert normalise(kind, value) is None


def test_numeric_dates_are_day_first_and_renewals_may_be_future():
    assert normalise_date("03/04/2001") == "2001-04-03"
    assert normalise(FieldKind.CONTRACT_RENEWAL_DATE, "01/03/2099") == "2099-03-01"
    assert normalise(FieldKind.DATE_OF_BIRTH, "01/03/2099") is None


def test_loyalty_format_is_configurable():
    strict = LoyaltyFormat(pattern=r"LC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}", check_digit="luhn")
    number = "12345678901" + luhn.calc_check_digit("12345678901")
    written = f"lc {number[:4]}-{number[4:8]}-{number[8:]}"
    assert normalise_loyalty(written, strict) == number
    assert normalise_loyalty("XX 1234 5678 9012", strict) is None
    assert normalise_loyalty("LC 1234 5678 9012", strict) is None  # fails Luhn
    with pytest.raises(ValueError, match="empty string"):
        LoyaltyFormat(pattern=r"\d*")


def test_fast_uk_phone_path_agrees_with_libphonenumber():
    rng = random.Random(4)
    for _ in range(3000):
        national = rng.choice("123578") + "".join(
            rng.choice("0123456789") for _ in range(rng.choice((8, 9, 9, 9)))
        )
        number = phonenumbers.parse("0" + national, "GB")
        valid = phonenumbers.is_valid_number(number) or is_drama_number(number)
        expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert normalise_phone("0" + national) == (expected if valid else None), national


@given(st.sampled_from(list(FieldKind)), st.text(max_size=80))
def test_normalise_never_raises(kind, value):
    result = normalise(kind, value)
    assert result is None or isinstance(result, str)
