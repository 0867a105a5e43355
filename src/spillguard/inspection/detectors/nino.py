"""UK National Insurance numbers, with the prefixes HMRC allocates.

Two prefix letters, six digits, a suffix A-D.  HMRC never uses D, F, I, Q, U or V as
either prefix letter, nor O as the second; the prefixes BG, GB, KN, NK, NT, TN and ZZ
are not allocated (ZZ is the well-known placeholder).
"""

from __future__ import annotations

import re

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
    )
