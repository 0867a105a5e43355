"""Bank identifiers: IBANs anywhere, and UK sort code with account number.

IBANs are checked by python-stdnum (ISO 13616: country, length and BBAN format per
country, ISO 7064 mod 97-10).  A UK sort code alone is six digits that dates and
reference numbers also produce, so it counts only with an eight-digit account number
within a few words of it and a banking word nearby.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache
from operator import add, itemgetter
from typing import Any

from stdnum import iban as _iban

from spillguard.inspection.detectors.base import Detector, Entity

IBAN_CONTEXT_WORDS = ("iban", "bank", "account", "transfer", "bic", "swift", "payee")
BANK_CONTEXT_WORDS = (
    "sort code",
    "sort-code",
    "sortcode",
    "s/c",
    "account",
    "account number",
    "acc",
    "acct",
    "a/c",
    "bank",
    "bank details",
    "direct debit",
    "standing order",
    "payee",
)

IBAN_PATTERN = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"
SORT_CODE_PATTERN = r"\b\d\d[ \-]\d\d[ \-]\d\d\b"

_GAP = 40
_ACCOUNT_AFTER = re.compile(rf"[^\d\n]{{1,{_GAP}}}?(?<![0-9A-Za-z])(\d{{8}})(?![0-9A-Za-z])")
_ACCOUNT_BEFORE = re.compile(rf"(?<![0-9A-Za-z])(\d{{8}})(?![0-9A-Za-z])[^\d\n]{{1,{_GAP}}}$")
_SORT_CODE = re.compile(r"(?<!\d)(\d\d)([ \-])(\d\d)\2(\d\d)(?!\d)")
_ACCOUNT = re.compile(r"(?<![0-9A-Za-z])\d{8}(?![0-9A-Za-z])")


_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_BASE36 = {ch: str(int(ch, 36)) for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_BASE36_TABLE = str.maketrans({ch: value for ch, value in _BASE36.items() if not ch.isdigit()})


def validate_iban(candidate: str) -> str | None:
    """The IBAN in compact form, if its country format and mod 97 check hold."""
    value = candidate.replace(" ", "").upper()
    # Shape and mod 97 first: both are conditions of stdnum's check too, and cost a
    # microsecond where stdnum's registry lookup costs tens (a wrongly checked IBAN in
    # prose is retried on every sub-span).
    if _IBAN_SHAPE.fullmatch(value) is None:
        return None
    ascii_only = value.isascii()
    rearranged = value[4:] + value[:4]
    if ascii_only:
        numeric = rearranged.translate(_BASE36_TABLE)
    else:  # other scripts' digits (\d match them): no IBAN holds them
        if not all(ch in _BASE36 for ch in rearranged):
            return None
        numeric = "".join(_BASE36[ch] for ch in rearranged)
    if int(numeric) % 97 != 1:
        return None
    rules = _country_rules(value[:2])
    if rules is None:
        valid = bool(_iban.is_valid(value))
    else:
        structure, national = rules
        valid = structure is not None and structure.match(value[4:]) is not None
        valid = valid and (national is None or bool(national.is_valid(value)))
    if not valid:
        return None
    # stdnum's compact changes nothing in an ASCII value of this shape: its character
    # map touches no ASCII letter or digit, no separator is left, it is upper case.
    return value if ascii_only else str(_iban.compact(value))


_LETTERS = string.ascii_uppercase
_REARRANGE_TAIL = itemgetter(slice(4, None))
_REARRANGE_HEAD = itemgetter(slice(0, 4))


def validate_iban_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate_iban`` of each candidate: ASCII ones compacted, rearranged and read
    as numbers together (mod 97), then the country rules; others one by one."""
    joined = "\n".join(candidates)
    if joined.count("\n") != len(candidates) - 1 or not joined.isascii():
        return list(map(validate_iban, candidates))
    values = joined.replace(" ", "").upper().split("\n")
    shaped = map(_IBAN_SHAPE.fullmatch, values)
    rearranged = "\n".join(map(add, map(_REARRANGE_TAIL, values), map(_REARRANGE_HEAD, values)))
    # Letters to their numbers for the whole column at once: one ``str.replace`` per
    # letter present is a C-level pass each, where ``str.translate`` to two-character
    # strings looks every character up in a mapping.
    for letter in _LETTERS:
        if letter in rearranged:
            rearranged = rearranged.replace(letter, _BASE36[letter])
    numeric = rearranged.split("\n")
    out: list[str | None] = []
    for candidate, value, shape, number in zip(candidates, values, shaped, numeric, strict=True):
        if shape is None or int(number) % 97 != 1:
            out.append(None)
            continue
        rules = _country_rules(value[:2])
        if rules is None:
            out.append(validate_iban(candidate))
            continue
        structure, national = rules
        valid = structure is not None and structure.match(value[4:]) is not None
        valid = valid and (national is None or bool(national.is_valid(value)))
        out.append(value if valid else None)
    return out


@lru_cache(maxsize=512)
def _country_rules(country: str) -> tuple[re.Pattern[str] | None, Any] | None:
    """python-stdnum's IBAN rules for one country: its BBAN structure and national check.

    The same checks ``stdnum.iban.validate`` makes, looked up once per country instead
    of once per candidate (the registry lookup is most of its cost); ``None`` when
    stdnum's internals are not as expected, and the public function is used instead.
    """
    try:
        info = _iban._ibandb.info(country)
        properties = info[0][1] if info and info[0][0] == country else {}
        if not properties:
            return None, None
        return _iban._struct_to_re(properties.get("bban", "")), _iban._get_cc_module(country)
    except Exception:
        return None


def find_account_number(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Widen a sort-code candidate to the eight-digit account number beside it.

    The account number may follow (``12-34-56, account 12345678``) or precede the sort
    code, within 40 characters on the same line and with no other digits between.
    """
    after = _ACCOUNT_AFTER.match(text, end, min(len(text), end + _GAP + 8))
    if after is not None:
        return start, after.end(1)
    window_start = max(0, start - _GAP - 8)
    before = _ACCOUNT_BEFORE.search(text[window_start:start])
    if before is not None:
        return window_start + before.start(1), end
    return None


def validate_bank_account(candidate: str) -> str | None:
    """``NN-NN-NN NNNNNNNN`` (sort code and account number) from the widened candidate."""
    sort_codes = list(_SORT_CODE.finditer(candidate))
    accounts = _ACCOUNT.findall(candidate)
    if len(sort_codes) != 1 or len(accounts) != 1:
        return None
    code = sort_codes[0]
    digits = code.group(1) + code.group(3) + code.group(4)
    if digits == "000000":
        return None
    return f"{digits[:2]}-{digits[2:4]}-{digits[4:]} {accounts[0]}"


def iban_detector() -> Detector:
    """The IBAN detector."""
    return Detector(
        name="iban",
        entity=Entity.IBAN,
        pattern=IBAN_PATTERN,
        validate=validate_iban,
        context_words=IBAN_CONTEXT_WORDS,
        confidence=0.9,
        context_boost=0.05,
        split_on_failure=True,
        description="IBANs (ISO 13616 via python-stdnum), compact",
        validate_many=validate_iban_many,
    )


def uk_bank_account_detector() -> Detector:
    """The UK sort code and account number detector (needs a banking word nearby)."""
    return Detector(
        name="uk_bank_account",
        entity=Entity.UK_BANK_ACCOUNT,
        pattern=SORT_CODE_PATTERN,
        validate=validate_bank_account,
        context_words=BANK_CONTEXT_WORDS,
        confidence=0.85,
        context_boost=0.0,
        requires_context=True,
        refine=find_account_number,
        description="UK sort code with an 8-digit account number nearby, context-gated",
    )
