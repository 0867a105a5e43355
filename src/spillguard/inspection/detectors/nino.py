"""UK National Insurance numbers, with the prefixes HMRC allocates.

Two prefix letters, six digits, a suffix A-D.  HMRC never uses D, F, I, Q, U or V as
either prefix letter, nor O as the second; the prefixes BG, GB, KN, NK, NT, TN and ZZ
are not allocated (ZZ is the well-known placeholder).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = (
    "national insurance",
    "national insurance number",
    "ni number",
    "ni no",
    "nino",
    "nin",
    "insurance number",
    "ni",
)

PATTERN = r"(?i)\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"

INVALID_FIRST = frozenset("DFIQUV")
INVALID_SECOND = frozenset("DFIOQUV")
INVALID_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_SHAPE = re.compile(r"[A-Z]{2}\d{6}[A-D]")


def valid_prefix(prefix: str) -> bool:
    """Whether HMRC allocates NINOs with this two-letter prefix."""
    prefix = prefix.upper()
    return (
        len(prefix) == 2
        and prefix.isalpha()
        and prefix[0] not in INVALID_FIRST
        and prefix[1] not in INVALID_SECOND
        and prefix not in INVALID_PREFIXES
    )


def validate(candidate: str) -> str | None:
    """The NINO in compact capitals (``AB123456C``), if its prefix is allocated."""
    value = candidate.replace(" ", "").upper()
    if not _SHAPE.fullmatch(value) or not valid_prefix(value[:2]):
        return None
    return value


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# validate() as one regex over ASCII upper-cased compact values: the prefix rules as
# letter classes and a look-ahead for the refused prefixes.
_VALID = re.compile(
    "(?!" + "|".join(sorted(INVALID_PREFIXES)) + ")"
    "[" + "".join(c for c in _LETTERS if c not in INVALID_FIRST) + "]"
    "[" + "".join(c for c in _LETTERS if c not in INVALID_SECOND) + "]"
    "[0-9]{6}[A-D]"
)


def validate_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate`` of each candidate: ASCII ones upper-cased and compacted together and
    checked by one regex holding the prefix rules; others through ``validate``."""
    joined = "\n".join(candidates)
    if joined.count("\n") != len(candidates) - 1 or not joined.isascii():
        return list(map(validate, candidates))
    values = joined.replace(" ", "").upper().split("\n")
    return [
        v if m is not None else None
        for v, m in zip(values, map(_VALID.fullmatch, values), strict=True)
    ]


def nino_detector() -> Detector:
    """The UK National Insurance number detector."""
    return Detector(
        name="uk_nino",
        entity=Entity.NINO,
        pattern=PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.8,
        context_boost=0.15,
        description="UK National Insurance numbers (HMRC prefix rules), compact",
        validate_many=validate_many,
    )
