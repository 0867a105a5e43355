"""Check-digit algorithms, by name, for built-in and custom identifiers.

The registry is the vocabulary a custom identifier may name in configuration
(``check_digit = "luhn"``).  Maintained implementations come from python-stdnum; the
weighted modulus 11 used by NHS numbers (and by many loyalty and account numbers) is
defined here because stdnum has no general form of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter, mul

from stdnum import luhn as _luhn
from stdnum import verhoeff as _verhoeff
from stdnum.iso7064 import mod_97_10 as _mod_97_10

CheckDigit = Callable[[str], bool]


# A digit's contribution when doubled: 2d, less 9 when that has two digits.
_DOUBLED = {str(d): (2 * d) // 10 + (2 * d) % 10 for d in range(10)}
_DIGIT = {str(d): d for d in range(10)}


def luhn(value: str) -> bool:
    """Luhn (ISO/IEC 7812-1): payment cards, IMEIs, many loyalty cards."""
    if not value.isdigit() or len(value) < 2:
        return False
    if not value.isascii():  # other scripts' digits: python-stdnum decides (it refuses)
        return bool(_luhn.is_valid(value))
    # Same sum as python-stdnum's checksum: from the right, every second digit doubled.
    total = sum(map(_DIGIT.__getitem__, value[::-2])) + sum(
        map(_DOUBLED.__getitem__, value[-2::-2])
    )
    return total % 10 == 0


_DOUBLED_DIGIT = str.maketrans({str(d): str((2 * d) // 10 + (2 * d) % 10) for d in range(10)})
_EVERY_OTHER = itemgetter(slice(None, None, -2))  # from the last digit
_EVERY_OTHER_DOUBLED = itemgetter(slice(-2, None, -2))  # from the last but one


def luhn_many(values: Sequence[str]) -> list[bool]:
    """:func:`luhn` of each value.  For ASCII digit strings the sum is taken with
    string operations over all of them (a digit string's digit sum is the sum of its
    bytes less 48 per digit); anything else goes through :func:`luhn`."""
    out: list[bool] = []
    kept = map(_EVERY_OTHER, values)
    doubled = map(str.translate, map(_EVERY_OTHER_DOUBLED, values), repeat(_DOUBLED_DIGIT))
    for value, plain, twice in zip(values, kept, doubled, strict=True):
        if len(value) < 2 or not (value.isascii() and value.isdigit()):
            out.append(luhn(value))
            continue
        total = sum(plain.encode()) + sum(twice.encode()) - 48 * len(value)
        out.append(total % 10 == 0)
    return out


_NHS_WEIGHTS = tuple(range(10, 1, -1))
_NHS_ZERO = 48 * sum(_NHS_WEIGHTS)


def mod11_many(values: Sequence[str]) -> list[bool]:
    """:func:`mod11` of each value; ten ASCII digits (NHS numbers) by a weighted sum
    of their bytes, anything else through :func:`mod11`."""
    out: list[bool] = []
    for value in values:
        if len(value) != 10 or not (value.isascii() and value.isdigit()):
            out.append(mod11(value))
            continue
        total = sum(map(mul, value[:9].encode(), _NHS_WEIGHTS)) - _NHS_ZERO
        expected = 11 - total % 11
        if expected == 11:
            expected = 0
        out.append(expected != 10 and expected == ord(value[9]) - 48)
    return out


def mod11(value: str) -> bool:
    """Weighted modulus 11 with weights n+1…2 over the payload, as for NHS numbers.

    The last digit is the check digit: ``11 - (sum mod 11)``, where 11 becomes 0 and a
    result of 10 means the payload cannot carry a valid number.
    """
    if not value.isdigit() or len(value) < 2:
        return False
    payload, check = value[:-1], int(value[-1])
    total = sum(map(mul, map(int, payload), range(len(payload) + 1, 1, -1)))
    expected = 11 - total % 11
    if expected == 11:
        expected = 0
    return expected != 10 and expected == check


def iso7064_mod97_10(value: str) -> bool:
    """ISO 7064 Mod 97-10 over letters and digits (the IBAN check, ISO 13616)."""
    return value.isalnum() and len(value) >= 3 and bool(_mod_97_10.is_valid(value))


def verhoeff(value: str) -> bool:
    """The Verhoeff dihedral check, which catches every single error and adjacent swap."""
    return value.isdigit() and len(value) >= 2 and bool(_verhoeff.is_valid(value))


CHECK_DIGITS: dict[str, CheckDigit] = {
    "luhn": luhn,
    "mod11": mod11,
    "iso7064_mod97_10": iso7064_mod97_10,
    "verhoeff": verhoeff,
}
"""Every check-digit algorithm a custom identifier may name."""

# Which characters each algorithm reads: digit algorithms ignore letter prefixes
# ("LC-6339…"), mod 97-10 reads letters too.
DIGITS_ONLY: frozenset[str] = frozenset({"luhn", "mod11", "verhoeff"})
