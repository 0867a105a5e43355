"""Custom identifiers declared as data: a pattern, an optional check digit, context words.

An organisation's own numbers (loyalty cards, customer or contract numbers) are
declared in configuration rather than code::

    [[spillguard.inspection.custom_identifiers]]
    name = "loyalty_number"
    pattern = '\\bLC[ \\-]?\\d{4}[ \\-]?\\d{4}[ \\-]?\\d{4}\\b'
    check_digit = "luhn"
    context_words = ["loyalty", "rewards", "member"]

The pattern must be in the syntax both scan backends accept (RE2's, without
look-around or back-references); it is compiled when the declaration is read, so a
bad pattern is a configuration error, not a failed scan.  The value found is
normalised by removing spaces and hyphens and upper-casing; the check digit runs over
its digits (Luhn, mod 11, Verhoeff) or over all of it (ISO 7064 mod 97-10).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spillguard.inspection.detectors.base import Detector, compact, digits_of
from spillguard.inspection.detectors.checkdigits import CHECK_DIGITS, DIGITS_ONLY

CheckDigitName = Literal["luhn", "mod11", "iso7064_mod97_10", "verhoeff"]


_EMPTY_PROBES = ("x", "0", " ", "x 0", "-\n.")


def _hyperscan_accepts(pattern: str) -> None:
    """Refuse a pattern hyperscan cannot compile (RE2 took it), which would silently
    move every scan of the installation to the slower RE2 backend.  Where hyperscan is
    not installed, RE2 is the backend anyway and nothing more is checked."""
    try:
        import hyperscan
    except ImportError:  # pragma: no cover - hyperscan is installed where it builds
        return
    mode = hyperscan.HS_MODE_STREAM | hyperscan.HS_MODE_SOM_HORIZON_LARGE
    database = hyperscan.Database(mode=mode)
    flags = hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8
    try:
        database.compile(expressions=[pattern.encode()], ids=[0], elements=1, flags=[flags])
    except hyperscan.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"pattern is not in the syntax both scan backends accept (hyperscan: {reason})"
        ) from None


class CustomIdentifier(BaseModel):
    """One organisation-specific identifier, as declared in configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        description="Detector and entity name, e.g. loyalty_number.",
    )
    pattern: str = Field(min_length=1, max_length=2000, description="Candidate regex (RE2).")
    check_digit: CheckDigitName | None = None
    context_words: tuple[str, ...] = ()
    requires_context: bool = False
    ignore_case: bool = False
    confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    context_boost: float = Field(default=0.2, ge=0.0, le=1.0)
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re2

        options = re2.Options()
        options.log_errors = False  # RE2 would also write the error to stderr
        try:
            compiled = re2.compile(value, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"pattern is not valid RE2 syntax: {reason}") from None
        if compiled.search("") is not None:
            raise ValueError("pattern matches the empty string")
        for probe in _EMPTY_PROBES:  # '\b\d*' matches nothing at "" but "" inside "x"
            if any(m.start() == m.end() for m in compiled.finditer(probe)):
                raise ValueError(
                    "pattern can match an empty string inside a text (make every part "
                    "match at least one character)"
                )
        _hyperscan_accepts(value)
        return value

    @model_validator(mode="after")
    def _context_words_when_required(self) -> CustomIdentifier:
        if self.requires_context and not self.context_words:
            raise ValueError("requires_context = true needs context_words")
        return self

    def detector(self) -> Detector:
        """The detector this declaration describes."""
        check = CHECK_DIGITS[self.check_digit] if self.check_digit else None
        digits_only = self.check_digit in DIGITS_ONLY

        def validate(candidate: str) -> str | None:
            value = compact(candidate)
            if not value:
                return None
            if check is not None and not check(digits_of(value) if digits_only else value):
                return None
            return value

        return Detector(
            name=self.name,
            entity=self.name,
            pattern=f"(?i){self.pattern}" if self.ignore_case else self.pattern,
            validate=validate,
            context_words=self.context_words,
            confidence=self.confidence,
            context_boost=self.context_boost,
            requires_context=self.requires_context,
            description=self.description or f"custom identifier {self.name}",
        )
