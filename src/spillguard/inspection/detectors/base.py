"""What a detector is: a candidate pattern, a validator, context words and a confidence.

The candidate pattern is written in the subset of regular-expression syntax that both
hyperscan and RE2 accept (no look-around, no back-references), so one definition serves
both scan backends.  A pattern only proposes candidates cheaply; the validator decides
(check digits, number plans, calendars) and returns the normalised value, or ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

Validator = Callable[[str], str | None]
"""Take the candidate text, return its normalised value, or ``None`` when it is not one."""

ManyValidator = Callable[[Sequence[str]], list[str | None]]
"""Validate many candidates at once: the answers of :data:`Validator` for each, in order."""

Refiner = Callable[[str, int, int], tuple[int, int] | None]
"""Given the whole text and a candidate span, return the span to validate, or ``None``.

Used where the fast pattern finds only an anchor (the ``@domain`` of an e-mail address,
the sort code of a bank account) and the rest is found by looking around it.
"""

# Characters that join a candidate to a wider identifier ("SKU-4111…", "ORD#0123…").
_JOINERS = frozenset("-_/#\\")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_TOKEN_CHARS = _ALNUM | _JOINERS
TOKEN_CHARS = _TOKEN_CHARS
"""Letters, digits and joiners: a candidate next to none of them is not glued."""
_GLUE_REACH = 32
_SEPARATORS = frozenset(" -")


class Entity(StrEnum):
    """The kinds of customer data the built-in detectors report."""

    PHONE = "phone_number"
    EMAIL = "email_address"
    POSTCODE = "uk_postcode"
    PAYMENT_CARD = "payment_card"
    IBAN = "iban"
    UK_BANK_ACCOUNT = "uk_bank_account"
    NINO = "uk_nino"
    NHS_NUMBER = "nhs_number"
    DATE_OF_BIRTH = "date_of_birth"
    IP_ADDRESS = "ip_address"


@dataclass(frozen=True)
class Detector:
    """One kind of identifier: how to find candidates and how to tell a real one.

    ``confidence`` applies to a validated finding with no context word nearby;
    ``context_boost`` is added (capped at 1.0) when one of ``context_words`` occurs
    within ``context_before`` characters before, inside, or ``context_after``
    characters after the finding.  With ``requires_context`` a finding without a
    context word is dropped (dates of birth, bank accounts).  ``standalone`` drops a
    candidate glued to a wider identifier by a joiner (``SKU-4111…``).
    ``split_on_failure`` retries validation on sub-spans cut at spaces and hyphens,
    for digit runs that a greedy pattern may join to a neighbouring number.
    ``validate_many``, when given, validates a list of candidates at once (a table
    column) with exactly the answers of ``validate``; :meth:`validate_all` uses it.
    """

    name: str
    entity: str
    pattern: str
    validate: Validator
    context_words: tuple[str, ...] = ()
    confidence: float = 0.5
    context_boost: float = 0.0
    requires_context: bool = False
    context_before: int = 48
    context_after: int = 24
    refine: Refiner | None = None
    standalone: bool = True
    split_on_failure: bool = False
    description: str = ""
    validate_many: ManyValidator | None = field(default=None, repr=False, compare=False)
    _context_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not self.entity:
            raise ValueError("a detector needs a name and an entity")
        if not 0.0 <= self.confidence <= 1.0 or not 0.0 <= self.context_boost <= 1.0:
            raise ValueError(f"detector {self.name}: confidence values must be within 0..1")
        if self.requires_context and not self.context_words:
            raise ValueError(f"detector {self.name}: requires_context needs context words")
        object.__setattr__(self, "_context_re", context_pattern(self.context_words))

    def validate_all(self, candidates: Sequence[str]) -> list[str | None]:
        """``validate`` of each candidate, in order (through ``validate_many`` if set)."""
        if self.validate_many is not None:
            return self.validate_many(candidates)
        return list(map(self.validate, candidates))

    def has_context(self, text: str, start: int, end: int) -> bool:
        """Whether a context word occurs near (or inside) ``text[start:end]``."""
        if self._context_re is None:
            return False
        window = text[max(0, start - self.context_before) : end + self.context_after]
        return self._context_re.search(window) is not None

    def score(self, context: bool) -> float:
        """The confidence of a validated finding, with or without context nearby."""
        if context:
            return round(min(1.0, self.confidence + self.context_boost), 4)
        return self.confidence


def context_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for a list of context words or phrases.

    A space in a phrase also matches underscores and hyphens, so ``date of birth``
    matches a ``date_of_birth`` column header.  Words match whole, never inside
    another word (``born`` does not match ``stubborn``).
    """
    alternatives = []
    for word in sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True):
        parts = [re.escape(part) for part in word.split()]
        alternatives.append(r"[\s_\-]+".join(parts))
    if not alternatives:
        return None
    return re.compile(
        r"(?<![a-z0-9])(?:" + "|".join(alternatives) + r")(?![a-z0-9])", re.IGNORECASE
    )


def is_glued(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is part of a wider identifier such as ``ORD-0123…``.

    True when the characters joined to the candidate (through ``-``, ``_``, ``/``,
    ``#`` or ``\\``, or directly) include a letter.  Digits on both sides of a joiner
    are left alone, so ``07700900123/07700900456`` still holds two phone numbers.
    """
    left = start
    while left > 0 and start - left < _GLUE_REACH and text[left - 1] in _TOKEN_CHARS:
        left -= 1
    right = end
    while right < len(text) and right - end < _GLUE_REACH and text[right] in _TOKEN_CHARS:
        right += 1
    outside = text[left:start] + text[end:right]
    return any(ch.isalpha() for ch in outside)


def separator_subspans(candidate: str) -> Iterator[tuple[int, int]]:
    """Sub-spans of ``candidate`` cut at separator runs, longest first, then leftmost.

    ``"ref 4111 1111 1111 1111"``-like runs of digit groups can be captured whole by a
    greedy pattern; the real identifier is one of these sub-spans.
    """
    starts = [0]
    ends = []
    for i in range(1, len(candidate)):
        if candidate[i] in _SEPARATORS and candidate[i - 1] not in _SEPARATORS:
            ends.append(i)
        if candidate[i - 1] in _SEPARATORS and candidate[i] not in _SEPARATORS:
            starts.append(i)
    ends.append(len(candidate))
    spans = [(s, e) for s in starts for e in ends if e > s and (s, e) != (0, len(candidate))]
    spans.sort(key=lambda span: (span[0] - span[1], span[0]))
    yield from spans


def digits_of(text: str) -> str:
    """The ASCII digits of ``text``, in order."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def compact(text: str) -> str:
    """``text`` without spaces and hyphens, upper-cased."""
    return "".join(ch for ch in text if ch not in _SEPARATORS).upper()


def single_separator_style(text: str) -> bool:
    """Whether ``text`` separates its groups with one kind of separator, or none."""
    used = {ch for ch in text if ch in _SEPARATORS}
    return len(used) <= 1
