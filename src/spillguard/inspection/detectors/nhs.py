"""NHS numbers: ten digits, the last a weighted modulus 11 check digit.

Written ``485 777 3456`` (3-3-4, the form the NHS prints) or as one run.  One random
ten-digit number in eleven passes mod 11, and unbroken ten-digit runs are everywhere
(order, parcel and account numbers), so the unbroken form counts only with a health
word nearby; the 3-3-4 form counts on its own.  Numbers made of one repeated digit
pass the check (``1111111111``) but are placeholders, never issued.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spillguard.inspection.detectors.base import Detector, Entity, digits_of
from spillguard.inspection.detectors.checkdigits import mod11, mod11_many

CONTEXT_WORDS = (
    "nhs",
    "nhs number",
    "nhs no",
    "patient",
    "health",
    "gp",
    "hospital",
    "chi",
    "medical",
    "clinic",
)

SPACED_PATTERN = r"\b\d{3}[ \-]\d{3}[ \-]\d{4}\b"
UNSPACED_PATTERN = r"\b\d{10}\b"


def validate(candidate: str) -> str | None:
    """The NHS number as ten digits, if laid out 3-3-4 (or unbroken) and mod 11 holds."""
    spaces = candidate.count(" ")
    hyphens = candidate.count("-")
    # No separator, or exactly two of one kind.
    if (spaces or hyphens) and (spaces, hyphens) not in ((2, 0), (0, 2)):
        return None
    number = candidate.replace(" ", "").replace("-", "") if spaces or hyphens else candidate
    if not (number.isascii() and number.isdigit()):
        number = digits_of(candidate)
    if len(number) != 10 or len(set(number)) == 1 or not mod11(number):
        return None
    return number


_PLAIN = re.compile(r"[0-9]{3}([ -])[0-9]{3}\1[0-9]{4}|[0-9]{10}")


def validate_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate`` of each candidate; 3-3-4 with one separator and ten-digit runs
    decided together (separators removed for all at once, mod 11 by
    :func:`mod11_many`)."""
    joined = "\n".join(candidates)
    if joined.count("\n") != len(candidates) - 1:
        return list(map(validate, candidates))
    numbers = joined.replace(" ", "").replace("-", "").split("\n")
    checked = mod11_many(numbers)
    out: list[str | None] = []
    for candidate, number, good in zip(candidates, numbers, checked, strict=True):
        if _PLAIN.fullmatch(candidate) is None:
            out.append(validate(candidate))
        else:
            out.append(number if good and number.count(number[0]) != 10 else None)
    return out


def nhs_detector() -> Detector:
    """NHS numbers written 3-3-4."""
    return Detector(
        name="nhs_number",
        entity=Entity.NHS_NUMBER,
        pattern=SPACED_PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.7,
        context_boost=0.25,
        description="NHS numbers written 3-3-4 (mod 11 check digit), as ten digits",
        validate_many=validate_many,
    )


def nhs_unspaced_detector() -> Detector:
    """NHS numbers written as one ten-digit run (needs a health word nearby)."""
    return Detector(
        name="nhs_number_unspaced",
        entity=Entity.NHS_NUMBER,
        pattern=UNSPACED_PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.9,
        requires_context=True,
        description="NHS numbers as one ten-digit run (mod 11), only beside a health word",
        validate_many=validate_many,
    )
