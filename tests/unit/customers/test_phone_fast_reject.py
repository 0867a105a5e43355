"""normalise_phone_many's decisions before libphonenumber give libphonenumber's answers.

The reference is libphonenumber itself (``_normalise_phone_slow`` on the stripped value,
as ``normalise_phone`` used it for any value with a letter) and the unchanged
one-at-a-time ``normalise_phone``; values are SKUs, vanity numbers, ``tel:`` forms,
extensions, +44 / 0044 / 44 / 0 forms, zero-led digit runs (drama numbers among them)
and free mixtures of letters, digits and punctuation.
"""

from __future__ import annotations

import re

import phonenumbers
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spillguard.customers.fields import (
    _normalise_phone_slow,
    normalise_phone,
    normalise_phone_many,
)
from spillguard.inspection.detectors.phone import _DRAMA_PREFIXES

DRAMA = sorted(_DRAMA_PREFIXES)
digits = st.text("0123456789", min_size=0, max_size=14)
letters = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
punct = st.sampled_from(["", " ", "-", ".", "/", ": ", "#", "_", "(", ")", "(0)", "x", " ext. "])
prefix = st.sampled_from(
    ["", "SKU-", "tel:", "TEL:", "Tel: ", "Mob ", "phone ", "ORD", "#", "x", "ext", "++", "+"]
)
national = st.sampled_from(["+44", "0044", "44", "0", "", "+1", "00", "000", "+44 (0)", "180020"])


@st.composite
def phone_like(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 7))
    if kind == 0:  # catalogue SKUs and order numbers
        return f"{draw(letters)}{draw(punct)}{draw(digits)}"
    if kind == 1:  # vanity numbers: letters after the first digit
        head = draw(st.sampled_from(["0800", "0800-", "+44 800 ", "1-800-", "0345 ", "0"]))
        return f"{draw(prefix)}{head}{draw(letters)}{draw(st.sampled_from(['', '-', ' ']))}"
    if kind == 2:  # numbers with a country form, a prefix and an extension
        subscriber = draw(st.sampled_from(["7700 900123", "20 7946 0018", "7400 000000"]))
        tail = draw(st.sampled_from(["", " ext 12", " x3", "#4", ";ext=5", ";phone-context=+44"]))
        return f"{draw(prefix)}{draw(national)}{subscriber}{tail}"
    if kind == 3:  # zero-led digit runs, drama numbers among them
        body = draw(st.sampled_from(DRAMA)) + draw(st.text("0123456789", min_size=3, max_size=3))
        zeros = "0" * draw(st.integers(0, 6))
        rest = draw(st.sampled_from([body, body[:-1], body + "1", draw(digits)]))
        return f"{draw(prefix)}{zeros}{rest}"
    if kind == 4:  # drama numbers in every written form
        body = draw(st.sampled_from(DRAMA)) + draw(st.text("0123456789", min_size=3, max_size=3))
        return f"{draw(prefix)}{draw(national)}{body}"
    alphabet = st.sampled_from(list("0123456789+ -.()/;:#xXtelTELSKU=,A\t"))
    return "".join(draw(st.lists(alphabet, max_size=30)))


def reference(value: str) -> str | None:
    text = value.strip()
    if not text or len(text) > 40:
        return None
    return _normalise_phone_slow(text, "GB")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(phone_like(), min_size=1, max_size=8))
@example(["SKU-0000001", "SKU-0005376", "0800-FLOWERS", "tel:+447700900123"])
@example(["SKU-0007700900123", "SKU-0000007700900123", "ABC-07700 900123", "x0000000000"])
@example(["Tel: 0044 7700 900123 ext. 12", "tel:07700900123;phone-context=+44", "--", "#"])
def test_many_agrees_with_libphonenumber_and_one_at_a_time(values: list[str]) -> None:
    many = normalise_phone_many(values)
    assert many == [normalise_phone(value) for value in values]
    for value, got in zip(values, many, strict=True):
        text = value.strip()
        if text and not set(text) <= set("0123456789+ \t-.()/"):
            assert got == reference(value), value  # the values that went to libphonenumber


def test_catalogue_skus_are_rejected_and_drama_numbers_kept():
    skus = [f"SKU-{n:07d}" for n in range(1, 200)]
    assert normalise_phone_many(skus) == [None] * len(skus)
    drama = "SKU-0007700900123"  # libphonenumber: +44 with leading zeros, drama range
    assert normalise_phone_many([drama]) == [reference(drama)]
    assert reference(drama) is not None


def test_gb_patterns_never_start_with_zero():
    """The zero-led rule rests on this: no region of +44 has a number starting 0."""
    for region in phonenumbers.region_codes_for_country_code(44):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        pattern = metadata.general_desc.national_number_pattern
        for length in range(2, 18):
            for fill in "0123456789":
                assert not re.fullmatch(pattern, "0" + fill * (length - 1)), region
