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

import re
from collections.abc import Sequence
from functools import lru_cache

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


_NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
_JUNK = str.maketrans("", "", " -()")
# UK numbers in the shapes the fast path reads (see ``validate_many``): +44, 0044 or a
# trunk 0, an optional (0) after the code, then digits with spaces or hyphens.
_UK_SHAPE = re.compile(
    r"(?:\+44|0044)[ \-]?(?:\(0\)[ \-]?)?[1-9][0-9 \-]*[0-9]|0[1-9][0-9 \-]*[0-9]"
)
_UK_PREFIX = re.compile(r"^(?:\+44|0044|0)", re.MULTILINE)
_UK_SHAPES = re.compile(f"(?:(?:{_UK_SHAPE.pattern})\n)*+")
_SLOW_NATIONAL = re.compile(r"^180020", re.MULTILINE)


@lru_cache(maxsize=8)
def numbering_plan(country_code: int) -> dict[int, re.Pattern[str]]:
    """Every region sharing ``country_code`` (+44: GB, GG, JE, IM): one regex per length.

    A national number matching it is what libphonenumber's ``is_valid_number`` calls
    valid (a region's general description, one of its number types, a possible length),
    for a few microseconds instead of the 50-200 µs of ``parse`` plus validation.
    """
    # Per length, per region: the region's general description (a look-ahead, asked
    # once) and the number types that have that length, any of which may match:
    # (?=G)(?:A|B) is (?=G)(?:A)|(?=G)(?:B), with G evaluated once instead of per type.
    by_length: dict[int, list[str]] = {}
    for region in phonenumbers.region_codes_for_country_code(country_code):
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.general_desc is None:
            continue
        general = metadata.general_desc
        types: dict[int, list[str]] = {}
        for name in _NUMBER_TYPES:
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            for length in desc.possible_length or general.possible_length or ():
                types.setdefault(length, []).append(f"(?:{desc.national_number_pattern})")
        for length, descs in types.items():
            by_length.setdefault(length, []).append(
                f"(?=(?:{general.national_number_pattern})$)(?:{'|'.join(descs)})"
            )
    return {length: re.compile("|".join(rules)) for length, rules in by_length.items()}


@lru_cache(maxsize=8)
def _national_rule(country_code: int, drama: bool) -> re.Pattern[str]:
    """One regex for "valid national number" under the numbering plan of
    ``country_code`` (every length's rules, each behind a length look-ahead; ten-digit
    numbers first, the common length: the order changes nothing else), and, with
    ``drama``, Ofcom's drama ranges.  Compiled on first use: it is large."""
    plan = numbering_plan(country_code)
    lengths = sorted(plan, key=lambda n: (n != 10, n))
    branches = [f"(?=[0-9]{{{n}}}\\Z)(?:{plan[n].pattern})" for n in lengths]
    if drama:
        branches.insert(1, "(?:" + "|".join(sorted(_DRAMA_PREFIXES)) + ")[0-9]{3}")
    return re.compile("|".join(branches))


def phone_detector(
    region: str = "GB",
    *,
    require_trunk_prefix: bool = True,
    accept_drama_numbers: bool = True,
    fast_path: bool = True,
) -> Detector:
    """The phone-number detector for ``region`` (an ISO 3166 code such as ``GB``).

    Set ``require_trunk_prefix`` to ``False`` for regions whose numbers are written
    without one (``(415) 555-0100``).  ``fast_path`` (region GB only) reads common UK
    shapes against the numbering plan before falling back to libphonenumber; turning it
    off gives the same answers, slower.
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

    plan = numbering_plan(44) if fast_path and region == "GB" else None

    def fast(text: str) -> str | None:
        """E.164 of a UK number in a common shape, ``""`` when it is not valid, or
        ``None`` when this path cannot tell.

        ``+44…``, ``0044…`` (an optional ``(0)`` after the code) and ``0…`` followed by
        a national number are what libphonenumber would parse to that national number,
        so its validity is decided by the numbering plan of +44 (every region sharing
        it, as ``is_valid_number``) plus the drama ranges; anything else goes the slow
        way.  A unit test compares the two paths on random numbers of every shape.
        """
        if plan is None:
            return None
        compact = text.replace("(0)", "").translate(_JUNK)
        if compact.startswith("+44"):
            national = compact[3:]
        elif compact.startswith("0044"):
            national = compact[4:]
        elif compact.startswith("0") and not compact.startswith("00"):
            national = compact[1:]
        else:
            return None
        # "0…" and "180020…" are national prefixes libphonenumber may strip again.
        if not national.isdigit() or national.startswith(("0", "180020")):
            return None
        if accept_drama_numbers and len(national) == 10 and national[:7] in _DRAMA_PREFIXES:
            return "+44" + national
        rule = plan.get(len(national))
        if rule is not None and rule.fullmatch(national) is not None:
            return "+44" + national
        return ""

    def validate(candidate: str) -> str | None:
        text = candidate.strip()
        international = text.startswith(("+", "00"))
        if need_trunk and not international and not text.lstrip("(").startswith(trunk):
            return None
        quick = fast(text)
        if quick is not None:
            return quick or None
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            return None
        if not (accept_drama_numbers and is_drama_number(number)) and not _valid(number):
            return None
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)

    def validate_many(candidates: Sequence[str]) -> list[str | None]:
        """``validate`` of each candidate; UK numbers in common shapes decided together.

        For a candidate in one of the shapes of ``_UK_SHAPE`` the fast path of
        ``validate`` strips ``(0)``, spaces and hyphens and the prefix, and asks the
        numbering plan (or the drama ranges) about the national number: here that is
        done for the whole list with one ``str.translate`` and one prefix ``re.sub``,
        then one regex per number (the plan's rules for every length, and the drama
        ranges, in one alternation).  Anything else goes through ``validate``.
        """
        if plan is None or not need_trunk or trunk != "0":
            return list(map(validate, candidates))
        national_rule = _national_rule(44, accept_drama_numbers)
        joined = "\n".join(candidates)
        if joined.count("\n") != len(candidates) - 1:  # a candidate holds a line break
            return list(map(validate, candidates))
        compact = _UK_PREFIX.sub("", joined.replace("(0)", "").translate(_JUNK))
        nationals = compact.split("\n")
        valid = map(national_rule.fullmatch, nationals)
        if _UK_SHAPES.fullmatch(joined + "\n") and not _SLOW_NATIONAL.search(compact):
            return [
                None if ok is None else "+44" + n for n, ok in zip(nationals, valid, strict=True)
            ]
        shaped = map(_UK_SHAPE.fullmatch, candidates)
        out: list[str | None] = []
        for candidate, shape, national, ok in zip(
            candidates, shaped, nationals, valid, strict=True
        ):
            if shape is None or national.startswith("180020"):
                out.append(validate(candidate))
            else:
                out.append(None if ok is None else "+44" + national)
        return out

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
        validate_many=validate_many,
    )
