"""Payment card numbers (PANs): Luhn check, issuer ranges and lengths.

A Luhn-valid number is not yet a card: one random number in ten passes Luhn.  The
issuer identification number (IIN) must fall in a range a scheme issues today, and the
length must be one that scheme uses.  Deliberately left out: 13-digit Visa (no longer
issued, and EAN-13 barcodes starting with 4 would pass) and Maestro numbers shorter
than 16 digits (12-digit parcel and order numbers would pass).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import repeat
from operator import contains, itemgetter

from spillguard.inspection.detectors.base import Detector, Entity, digits_of
from spillguard.inspection.detectors.checkdigits import luhn, luhn_many

CONTEXT_WORDS = (
    "card",
    "card number",
    "credit",
    "debit",
    "visa",
    "mastercard",
    "master card",
    "amex",
    "american express",
    "maestro",
    "discover",
    "jcb",
    "unionpay",
    "diners",
    "pan",
    "cvv",
    "cvc",
    "expiry",
    "exp",
    "valid thru",
    "payment",
)

PATTERN = r"\b\d(?:[ \-]?\d){12,18}\b"

_SIXTEEN_TO_NINETEEN = (16, 17, 18, 19)

# (scheme, lowest IIN, highest IIN, lengths): the IIN range is compared on as many
# leading digits as its bounds have.
SCHEMES: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    ("visa", "4", "4", (16, 19)),
    ("mastercard", "51", "55", (16,)),
    ("mastercard", "2221", "2720", (16,)),
    ("amex", "34", "34", (15,)),
    ("amex", "37", "37", (15,)),
    ("discover", "6011", "6011", _SIXTEEN_TO_NINETEEN),
    ("discover", "644", "649", _SIXTEEN_TO_NINETEEN),
    ("discover", "65", "65", _SIXTEEN_TO_NINETEEN),
    ("jcb", "3528", "3589", _SIXTEEN_TO_NINETEEN),
    ("unionpay", "62", "62", _SIXTEEN_TO_NINETEEN),
    ("diners", "36", "36", (14, *_SIXTEEN_TO_NINETEEN)),
    ("diners", "300", "305", (14, *_SIXTEEN_TO_NINETEEN)),
    ("diners", "38", "39", _SIXTEEN_TO_NINETEEN),
    ("mir", "2200", "2204", _SIXTEEN_TO_NINETEEN),
    ("maestro", "5018", "5018", _SIXTEEN_TO_NINETEEN),
    ("maestro", "5020", "5020", _SIXTEEN_TO_NINETEEN),
    ("maestro", "5038", "5038", _SIXTEEN_TO_NINETEEN),
    ("maestro", "5893", "5893", _SIXTEEN_TO_NINETEEN),
    ("maestro", "6304", "6304", _SIXTEEN_TO_NINETEEN),
    ("maestro", "6759", "6759", _SIXTEEN_TO_NINETEEN),
    ("maestro", "6761", "6763", _SIXTEEN_TO_NINETEEN),
)


# The schemes whose IIN range can hold a number starting with each digit (every range's
# bounds share their first digit), so a number is compared with a few ranges, not all.
_BY_FIRST_DIGIT = {
    digit: tuple(s for s in SCHEMES if s[1][0] <= digit <= s[2][0]) for digit in "0123456789"
}


def card_scheme(number: str) -> str | None:
    """The scheme issuing ``number`` (digits only) at its length, or ``None``."""
    for scheme, low, high, lengths in _BY_FIRST_DIGIT.get(number[:1], SCHEMES):
        if len(number) in lengths and low <= number[: len(low)] <= high:
            return scheme
    return None


# The lengths some scheme issues for numbers starting with each four digits (every IIN
# bound has four digits at most, so a range covers the four-digit prefixes from its low
# bound padded with 0s to its high bound padded with 9s): what ``card_scheme`` answers
# about validity, as one lookup.  Made on first use.
@lru_cache(maxsize=1)
def _lengths_by_prefix() -> dict[str, frozenset[int]]:
    lengths: dict[str, set[int]] = {}
    for _scheme, low, high, sizes in SCHEMES:
        first = int(low.ljust(4, "0"))
        last = int(high.ljust(4, "9"))
        for n in range(first, last + 1):
            lengths.setdefault(f"{n:04d}", set()).update(s for s in sizes if s >= 14)
    shared: dict[frozenset[int], frozenset[int]] = {}
    return {p: shared.setdefault(frozenset(s), frozenset(s)) for p, s in lengths.items()}


_NONE: frozenset[int] = frozenset()


# Shapes whose checks come down to digits, IIN and Luhn: a digit run, or 4-4-4-4 and
# 4-6-5 groups with one separator (``validate`` accepts each, and reads these digits).
_PLAIN = re.compile(
    r"[0-9]{14,19}|[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}|[0-9]{4}([ -])[0-9]{6}\2[0-9]{5}"
)
_FIRST_FOUR = itemgetter(slice(0, 4))


def validate_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate`` of each candidate; the plain shapes decided together (separators
    removed for all at once, IIN and length by table, Luhn by :func:`luhn_many`)."""
    joined = "\n".join(candidates)
    if joined.count("\n") != len(candidates) - 1:
        return list(map(validate, candidates))
    numbers = joined.replace(" ", "").replace("-", "").split("\n")
    plain = map(_PLAIN.fullmatch, candidates)
    by_prefix = _lengths_by_prefix()
    issued = map(
        contains,
        map(by_prefix.get, map(_FIRST_FOUR, numbers), repeat(_NONE)),
        map(len, numbers),
    )
    checked = luhn_many(numbers)
    out: list[str | None] = []
    for candidate, shape, number, ok, good in zip(
        candidates, plain, numbers, issued, checked, strict=True
    ):
        if shape is None:
            out.append(validate(candidate))
        else:
            out.append(number if ok and good else None)
    return out


def validate(candidate: str) -> str | None:
    """The card number as digits, if Luhn-valid with a current IIN and length."""
    # Every scheme issues 14 to 19 digits: a cheap length test first, since a long run
    # of digit groups is retried on each of its sub-spans.
    spaces = candidate.count(" ")
    hyphens = candidate.count("-")
    if not 14 <= len(candidate) - spaces - hyphens <= 19:
        return None
    if spaces and hyphens:  # one separator style (single_separator_style)
        return None
    if spaces or hyphens:
        groups = candidate.split(" " if spaces else "-")
        # Printed cards group digits in threes to sixes; only the last group may be short.
        if any(not 3 <= len(group) <= 8 for group in groups[:-1]):
            return None
        number = candidate.replace(" " if spaces else "-", "")
    else:
        number = candidate
    if not (number.isascii() and number.isdigit()):
        number = digits_of(candidate)
    if card_scheme(number) is None or not luhn(number):
        return None
    return number


def payment_card_detector() -> Detector:
    """The payment card detector."""
    return Detector(
        name="payment_card",
        entity=Entity.PAYMENT_CARD,
        pattern=PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.85,
        context_boost=0.1,
        split_on_failure=True,
        description="payment card numbers (Luhn, current IIN ranges and lengths), as digits",
        validate_many=validate_many,
    )
