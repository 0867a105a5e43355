"""E-mail addresses.

The fast pattern finds the ``@domain.tld`` part (the ``@`` is a literal the scanner can
jump to); the local part is then read leftwards from the ``@``.  Addresses are
normalised to lower case: mailbox names are case-insensitive in practice, and exact
data match needs one spelling.
"""

from __future__ import annotations

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = ("email", "e-mail", "mail", "email address", "contact", "reply")

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_MAX_LOCAL = 64
_MAX_DOMAIN = 253

PATTERN = r"@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b"


def extend_local_part(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Grow the ``@domain`` candidate leftwards over the characters of a local part."""
    left = start
    while left > 0 and text[left - 1] in _LOCAL_CHARS:
        left -= 1
        if start - left > _MAX_LOCAL:
            return None
    # Quotes and dots that open the run belong to the sentence, not the address.
    while left < start and text[left] in ".'":
        left += 1
    if left == start:
        return None
    return left, end


def validate(candidate: str) -> str | None:
    """The lower-cased address, if it is a well-formed mailbox at a plausible domain."""
    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain:
        return None
    if len(local) > _MAX_LOCAL or len(domain) > _MAX_DOMAIN:
        return None
    if local[0] == "." or local[-1] == "." or ".." in local:
        return None
    if not _LOCAL_CHARS.issuperset(local):
        return None
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return None
    for label in labels:
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return None
        if not _LABEL_CHARS.issuperset(label):
            return None
    if not labels[-1].isalpha():
        return None
    return f"{local.lower()}@{'.'.join(labels)}"


def email_detector() -> Detector:
    """The e-mail address detector."""
    return Detector(
        name="email",
        entity=Entity.EMAIL,
        pattern=PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.9,
        context_boost=0.05,
        refine=extend_local_part,
        standalone=False,
        description="e-mail addresses, lower-cased",
    )
