"""Dates of birth: a real calendar date that counts only beside a birth word.

Any document is full of dates; a date is personal data of this kind only when the
text says so ("DOB", "date of birth", "born").  Numeric dates are read day first
(UK order); ISO dates year first; month names in English, full or abbreviated.
Two-digit years are placed in the last hundred years.  Dates in the future or before
1900 are not birth dates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = (
    "dob",
    "d.o.b",
    "d.o.b.",
    "date of birth",
    "birth date",
    "birthdate",
    "birthday",
    "born",
    "born on",
    "birth",
)

_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_ORDINAL = r"(?:st|nd|rd|th)?"
PATTERN = (
    r"\b(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
    r"|\d{4}-\d{1,2}-\d{1,2}"
    rf"|\d{{1,2}}{_ORDINAL} (?:of )?{_MONTH},? \d{{4}}"
    rf"|{_MONTH} \d{{1,2}}{_ORDINAL},? \d{{4}})\b"
)

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH_WORDS = frozenset(
    {
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "sept",
        *_MONTHS,
    }
)
_NUMERIC = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})")
_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DAY_MONTH = re.compile(r"(\d{1,2})(?:st|nd|rd|th)? (?:of )?([A-Za-z]+),? (\d{4})")
_MONTH_DAY = re.compile(r"([A-Za-z]+) (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})")


def _month(word: str) -> int | None:
    word = word.lower()
    return _MONTHS[word[:3]] if word in _MONTH_WORDS else None


def _full_year(two_digits: str, today: date) -> int:
    year = 2000 + int(two_digits)
    return year if year <= today.year else year - 100


def parse_birth_date(candidate: str, today: Callable[[], date] = date.today) -> date | None:
    """The date written in ``candidate``, if it could be somebody's date of birth."""
    return _birth_date(candidate, today())


def _birth_date(candidate: str, now: date) -> date | None:
    parts: tuple[int | None, int | None, int] | None = None
    if match := _NUMERIC.fullmatch(candidate):
        day, _sep, month, year = match.groups()
        full = int(year) if len(year) == 4 else _full_year(year, now)
        parts = (int(day), int(month), full)
    elif match := _ISO.fullmatch(candidate):
        year, month, day = match.groups()
        parts = (int(day), int(month), int(year))
    elif match := _DAY_MONTH.fullmatch(candidate):
        day, month_word, year = match.groups()
        parts = (int(day), _month(month_word), int(year))
    elif match := _MONTH_DAY.fullmatch(candidate):
        month_word, day, year = match.groups()
        parts = (int(day), _month(month_word), int(year))
    if parts is None:
        return None
    day_n, month_n, year_n = parts
    if day_n is None or month_n is None:
        return None
    try:
        born = date(year_n, month_n, day_n)
    except ValueError:
        return None
    if born.year < 1900 or born > now:
        return None
    return born


def validate(candidate: str) -> str | None:
    """The date in ISO form (``1985-03-12``), if it is a plausible date of birth."""
    born = parse_birth_date(candidate)
    return born.isoformat() if born else None


_PLAIN_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_DMY = re.compile(r"([0-9]{2})([/.-])([0-9]{2})\2([0-9]{4})")
_EARLIEST = date(1900, 1, 1)


def validate_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate`` of each candidate, asking for today's date once.  ``yyyy-mm-dd``
    is what ``_birth_date`` reads as ISO (no other form fits it), and ``dd/mm/yyyy``
    (with ``.`` or ``-``) the same date written the other way round, so both are read
    by ``date.fromisoformat``, which accepts exactly the calendar dates of that form."""
    now = date.today()
    out: list[str | None] = []
    for candidate in candidates:
        if _PLAIN_ISO.fullmatch(candidate):
            iso = candidate
        elif match := _PLAIN_DMY.fullmatch(candidate):
            # dd/mm/yyyy (or . or -): ``_birth_date`` reads day, month and a four-digit
            # year from it, i.e. the ISO date written the other way round.
            iso = f"{match[4]}-{match[3]}-{match[1]}"
        else:
            born = _birth_date(candidate, now)
            out.append(born.isoformat() if born else None)
            continue
        try:
            born = date.fromisoformat(iso)
        except ValueError:
            out.append(None)
            continue
        # ``isoformat`` of a date read from ``yyyy-mm-dd`` is that same text.
        out.append(None if born < _EARLIEST or born > now else iso)
    return out


def date_of_birth_detector() -> Detector:
    """The date-of-birth detector (context-gated)."""
    return Detector(
        name="date_of_birth",
        entity=Entity.DATE_OF_BIRTH,
        pattern=PATTERN,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.85,
        context_boost=0.0,
        requires_context=True,
        description="dates of birth (calendar-valid, past, only beside a birth word), ISO",
        validate_many=validate_many,
    )
