"""The index build's fast path gives the digests, counts and index of the plain one.

``EdmIndexBuilder.add`` hashes one customer's values with the HMAC written out and
without (kind, digest) pairs; ``hash_values`` (what the customer directory stores) and
the dispatching ``normalise`` are the reference it must agree with.  The normalisers'
own fast paths (ASCII folding, plain digit runs read against the +44 numbering plan,
loyalty digits) are compared with what they replace.
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from datetime import date

import pytest
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.core.errors import InvalidInput
from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndexBuilder, EdmSettings, FieldKind
from spillguard.customers.edm import FieldHasher
from spillguard.customers.fields import (
    PRIMARY,
    LoyaltyFormat,
    _fold,
    _normalise_phone_slow,
    hash_inputs,
    normalise,
    normalise_loyalty,
    normalise_phone,
)

KEY = KeyRing(bytes(range(32)))

_VALUES = {
    FieldKind.NAME: ["Dr Siân O'Brien-Smith MBE", "Jo", "Mary Ann Evans", "   ", "Lord"],
    FieldKind.FIRST_NAME: ["Zoë", "Jean-Luc", "", "Mr"],
    FieldKind.LAST_NAME: ["O'Neill", "Smith", "12"],
    FieldKind.EMAIL: ["Jo.Bloggs@Example.ORG", "<mailto:a@b.co.uk>", "not an address", "a@b"],
    FieldKind.PHONE: [
        "07700 900123",
        "+44 (0)20 7946 0123",
        "0044 7700-900-456",
        "12345",
        "+1 415 555 0100",
    ],
    FieldKind.POSTCODE: ["sw1a1aa", "EC1A 1BB", "ZZ99 9ZZZ"],
    FieldKind.ADDRESS: ["12 High St., Leeds", "Flat 3; 4 Mill Rd", "Road", "1 2 3 4 5 6 7 8 9"],
    FieldKind.DATE_OF_BIRTH: [
        "01/02/1980",
        "1980-02-01",
        "1st February 1980",
        "31/02/1980",
        "3000-01-01",
    ],
    FieldKind.LOYALTY_NUMBER: ["LC 1234-5678-9012", "lc123456789012", "LC 12", "١٢٣٤٥٦٧٨"],
    FieldKind.CARD: ["4111 1111 1111 1111", "4111-1111-1111-1112", "abc"],
    FieldKind.CONTRACT_RENEWAL_DATE: ["01/02/30", "2031-12-31", "soon"],
}


def _reference_hash_values(builder: EdmIndexBuilder, values, today: date):
    """hash_values as it was, through the dispatching ``normalise`` for every kind."""
    digest = FieldHasher(KEY)
    pairs: set[tuple[FieldKind, int]] = set()
    invalid: dict[str, int] = {}
    names: dict[FieldKind, str] = {}
    for kind, raw in values.items():
        for item in (raw,) if isinstance(raw, str) else raw:
            if not item or not item.strip():
                continue
            if kind in (FieldKind.FIRST_NAME, FieldKind.LAST_NAME, FieldKind.NAME):
                value = builder._normalisers[kind](item)  # the name-part rule, unchanged
            else:
                value = normalise(
                    kind,
                    item,
                    region=builder.settings.phone_region,
                    loyalty=builder.settings.loyalty,
                    today=today,
                )
            if value is None:
                invalid[kind.value] = invalid.get(kind.value, 0) + 1
                continue
            if kind in PRIMARY:
                pairs.add((kind, digest(kind, value)))
                continue
            if kind in (FieldKind.FIRST_NAME, FieldKind.LAST_NAME):
                names.setdefault(kind, value)
            for pair_kind, pair_value in hash_inputs(kind, value):
                pairs.add((pair_kind, digest(pair_kind, pair_value)))
    if len(names) == 2:
        full = f"{names[FieldKind.FIRST_NAME]} {names[FieldKind.LAST_NAME]}"
        pairs.add((FieldKind.NAME, digest(FieldKind.NAME, full)))
    return pairs, invalid


_ROW = st.dictionaries(
    st.sampled_from(list(FieldKind)),
    st.one_of(
        st.sampled_from([v for values in _VALUES.values() for v in values]),
        st.lists(st.sampled_from([v for values in _VALUES.values() for v in values]), max_size=3),
        st.text(max_size=12),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(_ROW, st.sampled_from([None, "luhn"]))
def test_fast_add_hashes_exactly_what_hash_values_and_normalise_give(values, check_digit):
    options = EdmSettings(loyalty=LoyaltyFormat(check_digit=check_digit))
    fast = EdmIndexBuilder(KEY, options)
    plain = EdmIndexBuilder(KEY, options)
    reference = EdmIndexBuilder(KEY, options)
    primaries, supporting = fast._split_digests(values)
    pairs = plain.hash_values(values)
    expected_pairs, expected_invalid = _reference_hash_values(reference, values, date.today())
    assert pairs == expected_pairs
    assert primaries == {d for k, d in pairs if k in PRIMARY}
    assert supporting == {d for k, d in pairs if k not in PRIMARY}
    assert fast.stats.invalid == plain.stats.invalid == expected_invalid


def _rows(count: int, seed: int) -> list[tuple[str, dict[FieldKind, str]]]:
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    return [
        (
            f"C{i:04d}",
            {
                FieldKind.NAME: fake.name(),
                FieldKind.EMAIL: fake.email(),
                FieldKind.PHONE: fake.phone_number(),
                FieldKind.POSTCODE: fake.postcode(),
                FieldKind.DATE_OF_BIRTH: fake.date_of_birth().strftime("%d/%m/%Y"),
            },
        )
        for i in range(count)
    ]


def _same_index(one, other, customers: int) -> None:
    for name in ("_ids", "_primary_keys", "_primary_owners", "_offsets"):
        assert getattr(one, name) == getattr(other, name), name
    for number in range(customers):
        assert sorted(one._supporting_of(number)) == sorted(other._supporting_of(number))


def test_worker_processes_build_the_index_one_process_builds():
    rows = _rows(250, seed=5)
    alone = EdmIndexBuilder(KEY)
    for customer_id, values in rows:
        alone.add(customer_id, values)
    workers = EdmIndexBuilder(KEY)
    workers.add_many(rows, workers=2, chunk_size=37)  # chunks merged in order
    assert workers.stats == alone.stats and workers.stats.customers == 250
    _same_index(workers.build(), alone.build(), 250)


def test_worker_processes_refuse_an_id_repeated_across_chunks():
    rows = _rows(40, seed=6)
    rows.append(rows[3])
    with pytest.raises(InvalidInput, match="appears more than once"):
        EdmIndexBuilder(KEY).add_many(rows, workers=2, chunk_size=16)


def test_indexes_built_the_fast_and_the_plain_way_are_identical():
    fake = Faker("en_GB")
    fake.seed_instance(3)
    rows = []
    for i in range(300):
        rows.append(
            (
                f"C{i:04d}",
                {
                    FieldKind.NAME: fake.name(),
                    FieldKind.EMAIL: fake.email(),
                    FieldKind.PHONE: fake.phone_number(),
                    FieldKind.POSTCODE: fake.postcode(),
                    FieldKind.ADDRESS: fake.street_address(),
                    FieldKind.DATE_OF_BIRTH: fake.date_of_birth().strftime("%d/%m/%Y"),
                    FieldKind.LOYALTY_NUMBER: f"LC {fake.numerify('############')}",
                },
            )
        )
    fast = EdmIndexBuilder(KEY)
    plain = EdmIndexBuilder(KEY)
    for customer_id, values in rows:
        fast.add(customer_id, values)
        pairs = plain.hash_values(values)
        plain.add_hashed(
            customer_id,
            {d for k, d in pairs if k in PRIMARY},
            {d for k, d in pairs if k not in PRIMARY},
        )
    assert fast.stats == plain.stats
    assert fast.stats.primary_values > 600 and fast.stats.supporting_values > 1200
    one, other = fast.build(), plain.build()
    for name in ("_ids", "_primary_keys", "_primary_owners", "_offsets"):
        assert getattr(one, name) == getattr(other, name), name
    # A customer's supporting digests are a set: the order inside the slice is free.
    for number in range(len(rows)):
        assert sorted(one._supporting_of(number)) == sorted(other._supporting_of(number))


# --- normalisers' fast paths -------------------------------------------------------


def _reference_fold(value: str) -> str:
    """fields._fold as it was: NFKC, case fold, accents dropped, apostrophes dropped."""
    text = unicodedata.normalize("NFKC", value).casefold()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"['\u2019\u02bc`]", "", text)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=20) | st.text(alphabet=string.printable, max_size=20))
def test_fold_agrees_with_its_reference(value):
    assert _fold(value) == _reference_fold(value)


_PLAIN_PHONE_PREFIXES = ["7700900", "2079460", "1632960", "7", "20", "800", "845", "44", "180020"]


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(
        ["", "0", "00", "+44", "0044", "+44 0", "0044 0", "+44 180020", *_PLAIN_PHONE_PREFIXES]
    ),
    st.text(alphabet="0123456789 -./", max_size=16),
)
def test_plain_digit_runs_are_read_as_libphonenumber_reads_them(prefix, rest):
    """Digit runs with or without +44, 0044, 0 (and a national prefix after +44)."""
    text = prefix + rest
    assert normalise_phone(text, "GB") == _normalise_phone_slow(text.strip(), "GB")


def test_plain_digit_runs_agree_with_libphonenumber_on_many_numbers():
    rng = random.Random(9)
    checked = valid = 0
    for _ in range(4000):
        prefix = rng.choice(["", *_PLAIN_PHONE_PREFIXES, "4", "1", "3", "9"])
        length = rng.choice([3, 7, 9, 10, 11, 12, 16, 19])
        digits = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix)))
        if digits.startswith("0"):
            continue
        d = digits
        for text in (
            d,
            f"{d[:4]} {d[4:]}",
            f"{d[:3]}-{d[3:6]}-{d[6:]}",
            f"{d[:2]}.{d[2:]}",
            f"{d[:2]}/{d[2:4]}/{d[4:]}",
        ):
            expected = _normalise_phone_slow(text, "GB")
            assert normalise_phone(text, "GB") == expected, text
            checked += 1
            valid += expected is not None
    assert checked > 10_000 and valid > 1_000


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="LCXlc 0123456789-٣", max_size=24))
def test_loyalty_digits_are_the_ascii_digits(value):
    text = value.strip()
    expected = None
    if text and len(text) <= 64 and LoyaltyFormat().compiled().fullmatch(text):
        expected = "".join(ch for ch in text if "0" <= ch <= "9") or None
    assert normalise_loyalty(value) == expected
