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

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spillguard.inspection.detectors.base import Detector, compact, digits_of
from spillguard.inspection.detectors.checkdigits import CHECK_DIGITS, DIGITS_ONLY

CheckDigitName = Literal["luhn", "mod11", "iso7064_mod97_10", "verhoeff"]


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
        return value

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
