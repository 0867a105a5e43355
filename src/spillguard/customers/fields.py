"""Field kinds of the customer directory and the normalisers that make variants meet.

Exact data match compares keyed hashes, so ``07700 900123`` in a spreadsheet and
``+44 7700 900123`` in an e-mail must become the same string before they are hashed.
Each field kind has one normaliser; the same normaliser runs over the imported
customer list and over what is found in scanned content.  A value that is not a valid
instance of its kind normalises to ``None`` (the importer skips and counts it): a
normaliser never raises.

Kinds are **primary** (rare and specific enough to find a candidate customer: e-mail,
phone, loyalty number, card) or **supporting** (common on their own, they confirm a
candidate: names, postcode, date of birth, address, contract renewal date).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date
from enum import StrEnum
from functools import lru_cache
from itertools import repeat

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat
from pydantic import BaseModel, ConfigDict, Field, field_validator

from spillguard.inspection.detectors.checkdigits import luhn, luhn_many
from spillguard.inspection.detectors.email import validate as _validate_email
from spillguard.inspection.detectors.phone import _DRAMA_PREFIXES, is_drama_number, numbering_plan
from spillguard.inspection.detectors.postcode import validate as _validate_postcode

__all__ = [
    "PRIMARY",
    "SUPPORTING",
    "FieldKind",
    "LoyaltyFormat",
    "hash_inputs",
    "normalise",
    "normalise_address",
    "normalise_card",
    "normalise_card_many",
    "normalise_date",
    "normalise_email",
    "normalise_loyalty",
    "normalise_loyalty_many",
    "normalise_name",
    "normalise_phone",
    "normalise_phone_many",
    "normalise_postcode",
]


class FieldKind(StrEnum):
    """What a column of the customer list holds.  The value is part of every hash."""

    NAME = "name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    EMAIL = "email"
    PHONE = "phone"
    POSTCODE = "postcode"
    ADDRESS = "address"
    DATE_OF_BIRTH = "date_of_birth"
    LOYALTY_NUMBER = "loyalty_number"
    CARD = "card"
    CONTRACT_RENEWAL_DATE = "contract_renewal_date"


PRIMARY: frozenset[FieldKind] = frozenset(
    {FieldKind.EMAIL, FieldKind.PHONE, FieldKind.LOYALTY_NUMBER, FieldKind.CARD}
)
"""Kinds that point at a candidate customer on their own (found by pattern, then hash)."""

SUPPORTING: frozenset[FieldKind] = frozenset(set(FieldKind) - PRIMARY)
"""Kinds that confirm a candidate: a record match needs one of them near the primary."""


# --- e-mail -----------------------------------------------------------------------


def normalise_email(value: str) -> str | None:
    """``local@domain`` lower-cased, the domain in IDNA (punycode) form; else ``None``.

    ``mailto:`` and surrounding angle brackets are dropped.  The result is what the
    e-mail detector reports for the same address, so the two meet.
    """
    text = value.strip().strip("<>").strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return _validate_email(f"{local}@{domain}")


# --- phone ------------------------------------------------------------------------

_PHONE_JUNK = str.maketrans("", "", " \t-.()/\u00a0")
_PHONE_CHARS = frozenset("0123456789+ \t-.()/\u00a0")
_PLAIN_NUMBER_CHARS = frozenset("0123456789 -./")


def _valid_national(country_code: int, national: str) -> bool:
    rule = numbering_plan(country_code).get(len(national))
    return rule is not None and rule.fullmatch(national) is not None


def normalise_phone(value: str, region: str = "GB") -> str | None:
    """The number in E.164 (``+447700900123``), read in ``region`` when it has no ``+``.

    Spaces, hyphens, dots, brackets and a ``(0)`` after the country code are ignored;
    ``00`` is read as ``+``.  Valid means libphonenumber's numbering plan, or one of
    Ofcom's drama ranges (as the phone detector accepts them).  UK numbers written as
    ``+44…``, ``0044…`` or ``0…`` take a fast path over the same plan.
    """
    text = value.strip()
    if not text or len(text) > 40:
        return None
    if not set(text) <= _PHONE_CHARS:
        return _normalise_phone_slow(text, region)
    compact = text.replace("(0)", "").translate(_PHONE_JUNK)
    if region == "GB":
        if compact.startswith("+44"):
            national = compact[3:]
        elif compact.startswith("0044"):
            national = compact[4:]
        elif compact.startswith("0") and not compact.startswith("00"):
            national = compact[1:]
        elif set(text) <= _PLAIN_NUMBER_CHARS and not compact.startswith(("0", "44", "180020")):
            # Digits without +, 00 or trunk 0 (a card, an order number…): libphonenumber
            # reads them as a national number as written (nothing to strip: no country
            # code 44, no national prefix 0 or 180020), so the plan decides here too.
            national = compact
        else:
            return _normalise_phone_slow(text, region)
        if not national.isdigit() or national.startswith(("0", "180020")):
            # "+44 07700…": libphonenumber strips a national prefix (0 or 180020) that
            # follows the country code; it decides these itself.
            return _normalise_phone_slow(text, region)
        if (len(national) == 10 and national[:7] in _DRAMA) or _valid_national(44, national):
            return "+44" + national
        return None
    return _normalise_phone_slow(text, region)


_DRAMA = frozenset(_DRAMA_PREFIXES)
_PHONE_TEXT = re.compile(r"[0-9+ \t\-.()/]*")  # the ASCII characters of _PHONE_CHARS
_PLAIN_TEXT = re.compile(r"[0-9 \-./]*")  # _PLAIN_NUMBER_CHARS


def normalise_phone_many(values: Sequence[str], region: str = "GB") -> list[str | None]:
    """:func:`normalise_phone` of each value (the same answers, for a table's cells).

    For ASCII values in region GB the fast path's compaction is done for all values at
    once (one ``replace`` and one ``translate`` of the joined values) and its
    character tests by regex; its decisions are then taken value by value, and what it
    leaves to libphonenumber goes through :func:`_gb_before_libphonenumber` first.
    """
    texts = list(map(str.strip, values))
    joined = "\n".join(texts)
    if region != "GB" or joined.count("\n") != len(texts) - 1 or not joined.isascii():
        return [normalise_phone(value, region) for value in values]
    compacts = joined.replace("(0)", "").translate(_PHONE_JUNK).split("\n")
    phone_chars = map(_PHONE_TEXT.fullmatch, texts)
    plain_chars = map(_PLAIN_TEXT.fullmatch, texts)
    plan = numbering_plan(44)
    out: list[str | None] = []
    for text, compact, chars, plain in zip(texts, compacts, phone_chars, plain_chars, strict=True):
        if not text or len(text) > 40:
            out.append(None)
            continue
        if chars is None:
            out.append(_gb_before_libphonenumber(text))
            continue
        if compact.startswith("+44"):
            national = compact[3:]
        elif compact.startswith("0044"):
            national = compact[4:]
        elif compact.startswith("0") and not compact.startswith("00"):
            national = compact[1:]
        elif plain is not None and not compact.startswith(("0", "44", "180020")):
            national = compact
        else:
            out.append(_gb_before_libphonenumber(text))
            continue
        if not national.isdigit() or national.startswith(("0", "180020")):
            out.append(_gb_before_libphonenumber(text))
            continue
        rule = plan.get(len(national))
        if (len(national) == 10 and national[:7] in _DRAMA) or (
            rule is not None and rule.fullmatch(national) is not None
        ):
            out.append("+44" + national)
        else:
            out.append(None)
    return out


def _gb_before_libphonenumber(text: str) -> str | None:
    """What libphonenumber answers for a stripped ASCII ``text`` in region GB, exactly.

    Two cases are decided without it (the rest go to it unchanged):

    * Without ``;`` (so no RFC 3966 ``phone-context`` or ``isub``), ``phonenumbers.parse``
      reads from the first ``+`` or digit and drops everything before it ("SKU-",
      "tel:", "Mob "), so the value is the rest's, decided by the fast path when the
      rest has only phone characters (vanity letters *after* the first digit, as in
      ``0800-FLOWERS``, still go to libphonenumber); no ``+`` or digit at all is
      ``NOT_A_NUMBER``.
    * Plain digits starting ``000`` (after any such prefix): ``00`` is not the GB
      international prefix when a ``0`` follows, so the number stays +44 with leading
      zeros that no GB, GG, IM or JE pattern allows; only the drama check, which reads
      the number without its leading zeros, can accept it, and only with exactly ten
      digits left.
    """
    if ";" not in text:
        start = _NUMBER_START.search(text)
        if start is None:
            return None
        rest = text[start.start() :]
        if _ZERO_LED.fullmatch(rest) and len(rest.lstrip("0")) != 10:
            return None
        if start.start() and _PHONE_TEXT.fullmatch(rest) is not None:
            return normalise_phone_many([rest])[0]  # its fast path may decide it
    return _normalise_phone_slow(text, "GB")


_NUMBER_START = re.compile(r"[0-9+]")  # libphonenumber's start characters, in ASCII
_ZERO_LED = re.compile(r"000[0-9]*")


def _normalise_phone_slow(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    if not (is_drama_number(number) or phonenumbers.is_valid_number(number)):
        return None
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


# --- postcode ---------------------------------------------------------------------


def normalise_postcode(value: str) -> str | None:
    """A UK postcode in capitals without spaces (``SW1A1AA``), if it follows Royal Mail's
    format rules; any case and spacing are accepted."""
    text = value.strip()
    if len(text) > 10:
        return None
    checked = _validate_postcode(text.upper())
    return checked.replace(" ", "") if checked else None


# --- names and addresses ----------------------------------------------------------

TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "doctor",
        "prof",
        "professor",
        "sir",
        "dame",
        "lady",
        "lord",
        "rev",
        "revd",
        "reverend",
        "fr",
        "master",
    }
)
SUFFIXES = frozenset(
    {"jr", "jnr", "sr", "snr", "ii", "iii", "iv", "phd", "md", "mbe", "obe", "cbe", "dds", "esq"}
)
_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_NOT_LETTER = re.compile(r"[\W\d_]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def _fold(value: str) -> str:
    """NFKC, case-folded, accents removed (``Zoë`` meets ``Zoe``), apostrophes dropped."""
    if value.isascii():
        # ASCII is its own NFKC form and case-folds as it lower-cases; of the
        # apostrophes only ' and ` are ASCII.
        return value.lower().replace("'", "").replace("`", "")
    text = unicodedata.normalize("NFKC", value).casefold()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _APOSTROPHES.sub("", text)


def name_tokens(value: str) -> list[str]:
    """The words of a name: folded, punctuation as spaces, titles and suffixes dropped.

    ``"Dr. Siân O'Brien-Smith MBE"`` gives ``["sian", "obrien", "smith"]``.
    """
    tokens = _NOT_LETTER.sub(" ", _fold(value)).split()
    # A title or suffix alone is somebody's name (the surname "Lord"), so one word stays.
    while len(tokens) > 1 and tokens[0] in TITLES:
        tokens.pop(0)
    while len(tokens) > 1 and tokens[-1] in SUFFIXES:
        tokens.pop()
    return tokens


def normalise_name(value: str) -> str | None:
    """The name's words joined by single spaces (see :func:`name_tokens`), or ``None``."""
    tokens = name_tokens(value)
    return " ".join(tokens) if tokens else None


_ADDRESS_WORDS = {
    "rd": "road",
    "st": "street",
    "str": "street",
    "ave": "avenue",
    "av": "avenue",
    "ln": "lane",
    "dr": "drive",
    "cl": "close",
    "ct": "court",
    "cres": "crescent",
    "pl": "place",
    "sq": "square",
    "gdns": "gardens",
    "tce": "terrace",
    "terr": "terrace",
    "pk": "park",
    "gr": "grove",
    "hse": "house",
    "flt": "flat",
}
MAX_ADDRESS_TOKENS = 8
_FIRST_LINE_END = re.compile(r"[,\n;]")


def address_tokens(value: str) -> list[str]:
    """The words of an address line, folded, with common abbreviations spelled out."""
    return [_ADDRESS_WORDS.get(t, t) for t in _NOT_ALNUM.sub(" ", _fold(value)).split()]


def normalise_address(value: str) -> str | None:
    """The **first line** of an address (up to the first comma or line break), folded.

    ``"12 High St., Leeds"`` gives ``"12 high street"``.  Only the first line is used
    because it is what identifies a home in prose ("lives at 12 High Street"); town and
    postcode are separate, commoner facts.  Lines of one word or more than
    :data:`MAX_ADDRESS_TOKENS` words are refused (too vague or not an address line).
    """
    first = _FIRST_LINE_END.split(value.strip(), maxsplit=1)[0]
    tokens = address_tokens(first)
    if not 2 <= len(tokens) <= MAX_ADDRESS_TOKENS:
        return None
    return " ".join(tokens)


# --- dates ------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_NUMERIC_DATE = re.compile(r"(\d{1,2})\s*([/.\-])\s*(\d{1,2})\s*\2\s*(\d{4}|\d{2})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?")
_DAY_MONTH = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+)\.?,?\s+(\d{4})")
_MONTH_DAY = re.compile(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})")


def normalise_date(value: str, *, past: bool = True, today: date | None = None) -> str | None:
    """An ISO date (``1980-02-01``) from the common UK ways of writing one; else ``None``.

    Numeric dates are read **day first**: ``01/02/1980`` is 1 February 1980 (UK
    order), as are ``1.2.1980``, ``1-2-80``, ``1 Feb 1980``, ``1st February 1980``,
    ``February 1, 1980`` and ISO ``1980-02-01``.  A two-digit year is placed in the
    last hundred years when ``past`` (dates of birth) and in 2000-2099 otherwise
    (renewal dates).  Years before 1900 are refused; so are future dates when ``past``.
    """
    text = value.strip().lower()
    if not text or len(text) > 40:
        return None
    now = today or date.today()
    parts: tuple[int, int, int] | None = None
    if match := _NUMERIC_DATE.fullmatch(text):
        day, _sep, month, year = match.groups()
        full = int(year)
        if len(year) == 2:
            full += 2000
            if past and full > now.year:
                full -= 100
        parts = (full, int(month), int(day))
    elif match := _ISO_DATE.fullmatch(text):
        year, month, day = match.groups()
        parts = (int(year), int(month), int(day))
    elif match := _DAY_MONTH.fullmatch(text):
        day, word, year = match.groups()
        if word in _MONTHS:
            parts = (int(year), _MONTHS[word], int(day))
    elif match := _MONTH_DAY.fullmatch(text):
        word, day, year = match.groups()
        if word in _MONTHS:
            parts = (int(year), _MONTHS[word], int(day))
    if parts is None:
        return None
    try:
        when = date(*parts)
    except ValueError:
        return None
    if when.year < 1900 or (past and when > now):
        return None
    return when.isoformat()


# --- card and loyalty number ------------------------------------------------------


def normalise_card(value: str) -> str | None:
    """The card number's digits (12-19 of them, Luhn-valid), spaces and hyphens removed."""
    text = value.strip()
    if len(text) > 40 or any(ch not in "0123456789 -" for ch in text):
        return None
    digits = text.replace(" ", "").replace("-", "")
    if not 12 <= len(digits) <= 19 or not luhn(digits):
        return None
    return digits


_CARD_TEXT = re.compile(r"[0-9 \-]{0,40}")


def normalise_card_many(values: Sequence[str]) -> list[str | None]:
    """:func:`normalise_card` of each value: the character and length tests by regex,
    separators removed from all values at once, Luhn by ``luhn_many``."""
    texts = list(map(str.strip, values))
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:
        return list(map(normalise_card, values))
    numbers = joined.replace(" ", "").replace("-", "").split("\n")
    shaped = map(_CARD_TEXT.fullmatch, texts)
    checked = luhn_many(numbers)
    return [
        n if shape is not None and 12 <= len(n) <= 19 and good else None
        for n, shape, good in zip(numbers, shaped, checked, strict=True)
    ]


class LoyaltyFormat(BaseModel):
    """How the organisation's loyalty numbers look: configuration, not code.

    ``pattern`` must match the whole written value (any case; spaces and hyphens as
    written); the normalised value is its digits only, so ``LC 1234-5678-9012`` and
    ``lc123456789012`` meet.  ``check_digit="luhn"`` also requires a Luhn-valid number.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(
        default=r"[A-Za-z]{0,4}[ \-]?\d(?:[ \-]?\d){5,19}",
        description="Regex for a whole loyalty number as written (Python syntax).",
    )
    check_digit: str | None = Field(default=None, pattern=r"^luhn$")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"loyalty number pattern does not compile: {exc}") from None
        if compiled.fullmatch(""):
            raise ValueError("loyalty number pattern matches the empty string")
        return value

    def compiled(self) -> re.Pattern[str]:
        """The pattern, compiled case-insensitively."""
        return _compile_loyalty(self.pattern)


@lru_cache(maxsize=16)
def _compile_loyalty(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_DEFAULT_LOYALTY = LoyaltyFormat()
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]")


def normalise_loyalty(value: str, loyalty: LoyaltyFormat = _DEFAULT_LOYALTY) -> str | None:
    """The digits of a loyalty number that matches the configured format, or ``None``."""
    text = value.strip()
    if not text or len(text) > 64 or not loyalty.compiled().fullmatch(text):
        return None
    digits = _NOT_ASCII_DIGIT.sub("", text)
    if not digits or (loyalty.check_digit == "luhn" and not luhn(digits)):
        return None
    return digits


_NOT_ASCII_DIGIT_OR_BREAK = re.compile(r"[^0-9\n]")


def normalise_loyalty_many(
    values: Sequence[str], loyalty: LoyaltyFormat = _DEFAULT_LOYALTY
) -> list[str | None]:
    """:func:`normalise_loyalty` of each value: the format tested value by value, the
    digits taken from all values at once, Luhn (when configured) by ``luhn_many``."""
    texts = list(map(str.strip, values))
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:
        return [normalise_loyalty(value, loyalty) for value in values]
    pattern = loyalty.compiled()
    digits = _NOT_ASCII_DIGIT_OR_BREAK.sub("", joined).split("\n")
    fits = [bool(t) and len(t) <= 64 and pattern.fullmatch(t) is not None for t in texts]
    checked = luhn_many(digits) if loyalty.check_digit == "luhn" else repeat(True)
    return [
        d if fit and d and good else None
        for d, fit, good in zip(digits, fits, checked, strict=False)
    ]


# --- dispatch ---------------------------------------------------------------------


def normalise(
    kind: FieldKind,
    value: str,
    *,
    region: str = "GB",
    loyalty: LoyaltyFormat = _DEFAULT_LOYALTY,
    today: date | None = None,
) -> str | None:
    """Normalise ``value`` as ``kind``; ``None`` when it is not a valid one.  Never raises."""
    try:
        if not isinstance(value, str):
            return None
        if kind is FieldKind.EMAIL:
            return normalise_email(value)
        if kind is FieldKind.PHONE:
            return normalise_phone(value, region)
        if kind is FieldKind.POSTCODE:
            return normalise_postcode(value)
        if kind in (FieldKind.NAME, FieldKind.FIRST_NAME, FieldKind.LAST_NAME):
            return normalise_name(value)
        if kind is FieldKind.ADDRESS:
            return normalise_address(value)
        if kind is FieldKind.DATE_OF_BIRTH:
            return normalise_date(value, past=True, today=today)
        if kind is FieldKind.CONTRACT_RENEWAL_DATE:
            return normalise_date(value, past=False, today=today)
        if kind is FieldKind.CARD:
            return normalise_card(value)
        if kind is FieldKind.LOYALTY_NUMBER:
            return normalise_loyalty(value, loyalty)
    except Exception:  # a normaliser must never stop an import or a scan
        return None
    return None


def hash_inputs(kind: FieldKind, normalised: str) -> list[tuple[FieldKind, str]]:
    """The (kind, value) pairs stored for one normalised value of a customer.

    A full name is stored whole, as first + last name (without middle names), and its
    first and last words as ``first_name`` and ``last_name``, so "Jane Doe", "Jane" or
    "Doe" near the customer's e-mail address each confirm it.  A one-word name is
    stored as both first and last name.  Other kinds are stored as they are.
    """
    if kind is FieldKind.NAME:
        tokens = normalised.split()
        pairs = [(FieldKind.NAME, normalised)]
        if len(tokens) > 2:
            pairs.append((FieldKind.NAME, f"{tokens[0]} {tokens[-1]}"))
        pairs.append((FieldKind.FIRST_NAME, tokens[0]))
        pairs.append((FieldKind.LAST_NAME, tokens[-1]))
        return pairs
    return [(kind, normalised)]
