"""UK postcodes, checked against the Royal Mail format rules.

Outward code formats A9, A99, AA9, AA99, A9A and AA9A with the letters each position
may hold; inward code a digit and two letters outside C, I, K, M, O and V.  Special
cases: ``GIR 0AA`` and the British overseas territories (``ASCN 1ZZ``, ``STHL 1ZZ``…).
Upper case only: lower-case postcodes are rare in the records we look for, and a
caseless pattern costs two to three times the scan speed.
"""

from __future__ import annotations

import re

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = ("postcode", "post code", "postal code", "address", "zip", "zip code")

PATTERN = r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR|[A-Z]{4}) ?\d[A-Z]{2}\b"

_TERRITORIES = frozenset({"ASCN", "BBND", "BIQQ", "FIQQ", "PCRN", "SIQQ", "STHL", "TDCU", "TKCA"})
_INWARD = re.compile(r"\d[ABD-HJLNP-UW-Z]{2}")
_OUTWARD = re.compile(
    r"[A-PR-UWYZ]\d\d?"  # A9, A99
    r"|[A-PR-UWYZ][A-HK-Y]\d\d?"  # AA9, AA99
    r"|[A-PR-UWYZ]\d[ABCDEFGHJKPSTUW]"  # A9A
    r"|[A-PR-UWYZ][A-HK-Y]\d[ABEHMNPRVWXY]"  # AA9A
)


def validate(candidate: str) -> str | None:
    """The postcode as ``OUTWARD INWARD`` in capitals, if it follows the format rules."""
    code = candidate.replace(" ", "").upper()
    if not 5 <= len(code) <= 8:
        return None
    outward, inward = code[:-3], code[-3:]
    if outward == "GIR":
        return "GIR 0AA" if inward == "0AA" else None
    if outward in _TERRITORIES:
        return f"{outward} 1ZZ" if inward == "1ZZ" else None
    if _OUTWARD.fullmatch(outward) and _INWARD.fullmatch(inward):
        return f"{outward} {inward}"
    return None


def postcode_detector() -> Detector:
    """The UK postcode detector."""
    return Detector(
        name="uk_postcode",
        entity=Entity.POSTCODE,
        pattern=PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.75,
        context_boost=0.2,
        description="UK postcodes (Royal Mail format rules), as OUTWARD INWARD",
    )
