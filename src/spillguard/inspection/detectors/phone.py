"""Phone numbers, validated against the national numbering plans in libphonenumber.

A number written without ``+`` or ``00`` is read in the configured region (GB by
default).  Where that region writes numbers with a trunk prefix (the ``0`` of
``07700 900123``), a national number must carry it: a bare ten-digit run is far more
often an order number than a phone number.  Ofcom's drama ranges (``07700 900xxx``,
``020 7946 0xxx``…) are accepted although libphonenumber calls them invalid: they are
reserved for fiction and test data, can never reach a real person, and test corpora
and demonstrations are written with them.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = (
    "phone",
    "telephone",
    "tel",
    "mobile",
    "mob",
    "cell",
    "call",
    "ring",
    "contact",
    "number",
    "sms",
    "text",
    "whatsapp",
    "fax",
    "landline",
    "phone number",
    "mobile number",
)

_SEP = r"[ \-]"
_INTERNATIONAL = rf"(?:\+|\b00)\d{{1,3}}{_SEP}?(?:\(0\){_SEP}?)?"

# Ofcom "numbers for TV, radio and other drama", as national significant numbers
# (10 digits): the seven-digit prefix of each 1,000-number block.
_DRAMA_PREFIXES = frozenset(
    {
        "2079460",
        "1134960",
        "1144960",
        "1154960",
        "1164960",
        "1174960",
        "1184960",
        "1214960",
        "1314960",
        "1414960",
        "1514960",
        "1614960",
        "1914980",
        "2890180",
        "2920180",
        "1632960",
        "7700900",
        "8081570",
        "9098790",
        "3069990",
    }
)


def is_drama_number(number: PhoneNumber) -> bool:
    """Whether ``number`` lies in one of Ofcom's ranges reserved for drama and tests."""
    national = str(number.national_number)
    return number.country_code == 44 and len(national) == 10 and national[:7] in _DRAMA_PREFIXES


def phone_detector(
    region: str = "GB", *, require_trunk_prefix: bool = True, accept_drama_numbers: bool = True
) -> Detector:
    """The phone-number detector for ``region`` (an ISO 3166 code such as ``GB``).

    Set ``require_trunk_prefix`` to ``False`` for regions whose numbers are written
    without one (``(415) 555-0100``).
    """
    region = region.upper()
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        raise ValueError(f"unknown phone region {region!r}")
    trunk = metadata.national_prefix or ""
    need_trunk = require_trunk_prefix and bool(trunk)
    if need_trunk:
        national = rf"(?:\({trunk}\d{{1,4}}\){_SEP}?|\b{trunk})"
    else:
        national = rf"(?:\(\d{{1,5}}\){_SEP}?|\b)"
    pattern = rf"(?:{_INTERNATIONAL}|{national})\d(?:{_SEP}?\d){{5,13}}\b"

    home_code = phonenumbers.country_code_for_region(region)

    def _valid(number: PhoneNumber) -> bool:
        # Trying the home region first skips libphonenumber's search through every
        # region sharing the country code (+44: GB, GG, JE, IM), the slow part.
        if number.country_code == home_code and phonenumbers.is_valid_number_for_region(
            number, region
        ):
            return True
        return bool(phonenumbers.is_valid_number(number))

    def validate(candidate: str) -> str | None:
        text = candidate.strip()
        international = text.startswith(("+", "00"))
        if need_trunk and not international and not text.lstrip("(").startswith(trunk):
            return None
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            return None
        if not (accept_drama_numbers and is_drama_number(number)) and not _valid(number):
            return None
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)

    return Detector(
        name="phone",
        entity=Entity.PHONE,
        pattern=pattern,
        validate=validate,
        context_words=CONTEXT_WORDS,
        confidence=0.7,
        context_boost=0.2,
        split_on_failure=True,
        description=f"phone numbers (libphonenumber, default region {region}), as E.164",
    )
