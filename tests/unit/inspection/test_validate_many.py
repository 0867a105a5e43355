"""Validating a column at once gives each candidate's own answer.

Each detector's ``validate_many`` (used by the column-wise table scan) must return
exactly ``[validate(c) for c in candidates]``: on the corpus's values, on random
near-misses, on other scripts' digits and on the edge cases of each check.  So must
the helpers they use (``luhn_many``, ``mod11_many``, the card IIN table) and the bulk
finding constructor.
"""

from __future__ import annotations

import ipaddress
import random
import string
from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.inspection.corpus import identifiers as ids
from spillguard.inspection.corpus.generator import _Gen
from spillguard.inspection.detectors import build_detectors
from spillguard.inspection.detectors.checkdigits import luhn, luhn_many, mod11, mod11_many
from spillguard.inspection.detectors.ip import validate_ipv6, validate_ipv6_many
from spillguard.inspection.detectors.payment_card import _lengths_by_prefix, card_scheme
from spillguard.inspection.detectors.phone import phone_detector
from spillguard.inspection.engine import Finding, make_findings

DETECTORS = {d.name: d for d in build_detectors()}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _near(rng: random.Random, value: str) -> str:
    at = rng.randrange(len(value)) if value else 0
    return value[:at] + rng.choice(string.digits + " -Aa٣") + value[at + 1 :]


def _candidates(name: str, rng: random.Random, g: _Gen) -> list[str]:
    make = {
        "phone": g.phone,
        "payment_card": g.card,
        "nhs_number": lambda: g.nhs(context=True),
        "nhs_number_unspaced": lambda: ids.nhs_number(rng),
        "iban": g.iban,
        "uk_nino": g.nino,
        "date_of_birth": g.dob,
        "ipv6": lambda: ids.ipv6(rng),
    }[name]
    values = [make() for _ in range(1500)]
    values += [_near(rng, v) for v in values[:1500]]
    values += [
        "",
        " ",
        "\n",
        _digits(rng, 10),
        _digits(rng, 16),
        " ".join(_digits(rng, 4) for _ in range(4)),
        "٤١١١١١١١١١١١١١١١",
        "4111 1111-1111 1111",
        "AB 12 34 56 C",
        "ab123456c",
        "29/02/1900",
        "29/02/2000",
        "31.12.1899",
        "2099-01-01",
        "+44 (0)7700 900123",
        "0044 7700 900123",
        "+44 180020 123456",
        "07700 900123 ",
        "GB82 WEST 1234 5698 7654 32",
        "gb82 west 1234 5698 7654 32",
        "2001:db8::1",
        "::ffff:1.2.3.4",
    ]
    return values


@pytest.mark.parametrize(
    "name",
    [
        "phone",
        "payment_card",
        "nhs_number",
        "nhs_number_unspaced",
        "iban",
        "uk_nino",
        "date_of_birth",
        "ipv6",
    ],
)
def test_validate_many_gives_each_candidates_own_answer(name):
    detector = DETECTORS[name]
    assert detector.validate_many is not None
    rng = random.Random(name)
    values = _candidates(name, rng, _Gen(3))
    expected = [detector.validate(v) for v in values]
    assert detector.validate_all(values) == expected
    assert sum(v is not None for v in expected) > 500  # both answers well represented
    assert detector.validate_all([]) == []
    for one in values[:50]:  # a list of one
        assert detector.validate_all([one]) == [detector.validate(one)]


@pytest.mark.parametrize("drama", [True, False])
def test_phone_many_agrees_for_every_setting(drama):
    for fast in (True, False):
        detector = phone_detector(accept_drama_numbers=drama, fast_path=fast)
        rng = random.Random(5)
        values = [
            rng.choice(("0", "+44 ", "+44", "0044 ", "+44 (0)", "00", "+1 ", "(0"))
            + _digits(rng, rng.randint(6, 11))
            for _ in range(3000)
        ]
        assert detector.validate_all(values) == [detector.validate(v) for v in values]
    other = phone_detector("US", require_trunk_prefix=False)
    values = ["(415) 555-0100", "+1 415 555 0100", "07700 900123"]
    assert other.validate_all(values) == [other.validate(v) for v in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789 -٣", max_size=22), max_size=8))
def test_luhn_and_mod11_many_agree(values):
    assert luhn_many(values) == [luhn(v) for v in values]
    assert mod11_many(values) == [mod11(v) for v in values]


def test_card_prefix_table_is_card_scheme():
    for prefix in map("".join, product(string.digits, repeat=4)):
        lengths = frozenset(n for n in range(14, 20) if card_scheme(prefix + "0" * (n - 4)))
        assert _lengths_by_prefix().get(prefix, frozenset()) == lengths, prefix


def test_ipv6_many_agrees_with_ipaddress():
    rng = random.Random(11)
    values = []
    for _ in range(20000):
        address = ipaddress.IPv6Address(
            rng.getrandbits(128) & rng.choice((2**128 - 1, 0xFFFF, 0xFFFF << 96))
        )
        values.append(rng.choice((address.compressed, address.exploded, address.exploded.upper())))
        values.append(
            "".join(rng.choice("0123456789abcdefABCDEF:::") for _ in range(rng.randint(1, 40)))
        )
    values += ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8"]
    values += [":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "1:::2", "00000::1", "1:2", "fe80::1%eth0"]
    # Eight groups written out: their own compressed form unless zero groups run.
    values += ["1:0:0:1:0:0:0:1", "1:0:1:0:1:0:1:0", "0:1:0:1:0:1:0:0", "A:B:C:D:E:F:0:0"]
    values += ["0:0:1:2:3:4:5:6", "1:2:3:0:5:6:7:8", "1:2:3:4:5:6:7:08", "1:2:3:4:5:6:7:89abc"]
    assert validate_ipv6_many(values) == [validate_ipv6(v) for v in values]
    assert validate_ipv6_many(["2001:DB8:1:0:0:0:0:1"]) == ["2001:db8:1::1"]


def test_dob_many_reads_day_month_year_as_the_calendar_does():
    """``dd/mm/yyyy`` (and ``.``, ``-``) are read as ISO dates the other way round: every
    calendar edge gives ``validate``'s answer."""
    detector = DETECTORS["date_of_birth"]
    rng = random.Random(13)
    values = [
        f"{rng.randint(0, 32):02d}{sep}{rng.randint(0, 13):02d}{sep}{rng.randint(1880, 2040)}"
        for sep in "/.-"
        for _ in range(2000)
    ]
    values += ["29/02/1900", "29/02/2000", "29.02.2023", "31-04-1990", "00/01/1990", "01/00/1990"]
    values += ["31/12/1899", "01/01/1900", "01/02.2000", "01/01/0000", "1/2/1990", "01/02/90"]
    values += ["\u0660\u0661/\u0660\u0662/\u0661\u0669\u0669\u0660"]  # Arabic-Indic digits
    values += ["1990-02-29", "1992-02-29", "0000-01-01"]
    expected = [detector.validate(v) for v in values]
    assert detector.validate_all(values) == expected
    assert 3000 < sum(v is not None for v in expected) < len(values)


def test_bulk_findings_are_ordinary_findings():
    values = [f"+4477009001{i:02d}" for i in range(40)]
    starts = list(range(0, 400, 10))
    ends = [s + 12 for s in starts]
    for count in (0, 1, 7, 8, 40):
        made = make_findings(
            "phone_number", "phone", starts[:count], ends[:count], 0.9, True, values[:count], "GB"
        )
        plain = [
            Finding("phone_number", "phone", s, e, 0.9, True, v, "GB")
            for s, e, v in zip(starts[:count], ends[:count], values[:count], strict=True)
        ]
        assert made == plain
        assert [tuple(f) for f in made] == [tuple(f) for f in plain]
        assert all(
            type(f) is Finding and f.masked == p.masked for f, p in zip(made, plain, strict=True)
        )
