"""Generators of valid UK identifiers, and of deliberately invalid look-alikes.

Built from the published rules, independently of the detectors' validators (the
corpus is the oracle the detectors are scored against, so it must not borrow their
code).  Every function takes a ``random.Random`` so a seed gives the same output.
"""

from __future__ import annotations

import random
import string

NINO_FIRST = [c for c in string.ascii_uppercase if c not in "DFIQUV"]
NINO_SECOND = [c for c in string.ascii_uppercase if c not in "DFIOQUV"]
NINO_UNALLOCATED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})

# Royal Mail postcode letters per position.
_PC_FIRST = "ABCDEFGHIJKLMNOPRSTUWYZ"  # not Q V X
_PC_SECOND = "ABCDEFGHKLMNOPQRSTUVWXY"  # not I J Z
_PC_THIRD_A9A = "ABCDEFGHJKPSTUW"
_PC_FOURTH_AA9A = "ABEHMNPRVWXY"
_PC_INWARD = "ABDEFGHJLNPQRSTUWXYZ"  # not C I K M O V

# UK mobile blocks valid in libphonenumber for every number in them.
_MOBILE_BLOCKS = ("71", "72", "73", "75", "78", "79")
# Ofcom drama ranges (never allocated to a person).
_DRAMA_LANDLINES = ("020 7946 0{:03d}", "0161 496 0{:03d}", "0117 496 0{:03d}", "0113 496 0{:03d}")


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


# -- NINO ---------------------------------------------------------------------------


def nino_prefix_valid(prefix: str) -> bool:
    """HMRC's rules for the two prefix letters."""
    return (
        len(prefix) == 2
        and prefix[0] in NINO_FIRST
        and prefix[1] in NINO_SECOND
        and prefix not in NINO_UNALLOCATED
    )


def nino_compact(rng: random.Random) -> str:
    """A NINO HMRC could have allocated, compact (``AB123456C``)."""
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in NINO_UNALLOCATED:
            return prefix + digits(rng, 6) + rng.choice("ABCD")


def invalid_nino_compact(rng: random.Random) -> str:
    """NINO-shaped with a prefix HMRC never allocates (``QQ``, ``GB``, ``DA``…)."""
    while True:
        prefix = rng.choice(string.ascii_uppercase) + rng.choice(string.ascii_uppercase)
        if not nino_prefix_valid(prefix):
            return prefix + digits(rng, 6) + rng.choice("ABCD")


def format_nino(compact: str, style: str) -> str:
    """``spaced`` (``AB 12 34 56 C``), ``compact`` or ``lower`` (spaced, lower case)."""
    spaced = f"{compact[:2]} {compact[2:4]} {compact[4:6]} {compact[6:8]} {compact[8]}"
    if style == "compact":
        return compact
    if style == "lower":
        return spaced.lower()
    return spaced


# -- NHS number ---------------------------------------------------------------------


def nhs_check_digit(payload: str) -> int | None:
    """Mod 11 check digit for nine digits (weights 10..2); None when it would be 10."""
    total = sum(int(d) * w for d, w in zip(payload, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_valid(number: str) -> bool:
    return (
        len(number) == 10
        and number.isdigit()
        and nhs_check_digit(number[:9]) == int(number[9])
        and len(set(number)) > 1
    )


def nhs_number(rng: random.Random) -> str:
    """Ten digits passing mod 11, not a repeated-digit placeholder."""
    while True:
        payload = f"{rng.randrange(400_000_000, 800_000_000):09d}"
        check = nhs_check_digit(payload)
        if check is not None and len(set(payload + str(check))) > 1:
            return payload + str(check)


def invalid_nhs_number(rng: random.Random) -> str:
    """Ten digits in the NHS range whose last digit fails mod 11."""
    while True:
        number = f"{rng.randrange(400_000_000, 800_000_000):09d}" + rng.choice(string.digits)
        if not nhs_valid(number):
            return number


def format_nhs(number: str, style: str) -> str:
    """``spaced`` (3 3 4), ``hyphen`` (3-3-4) or ``compact``."""
    if style == "compact":
        return number
    sep = "-" if style == "hyphen" else " "
    return f"{number[:3]}{sep}{number[3:6]}{sep}{number[6:]}"


# -- payment cards ------------------------------------------------------------------


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + digits(rng, length - len(prefix) - 1)
    return body + luhn_check_digit(body)


def card_number(rng: random.Random) -> str:
    """Visa (16), Mastercard 51-55 or 2221-2720 (16) or Amex 34/37 (15)."""
    scheme = rng.random()
    if scheme < 0.45:
        return luhn_number(rng, "4", 16)
    if scheme < 0.70:
        return luhn_number(rng, str(rng.randint(51, 55)), 16)
    if scheme < 0.85:
        return luhn_number(rng, str(rng.randint(2221, 2720)), 16)
    return luhn_number(rng, rng.choice(("34", "37")), 15)


def format_card(number: str, style: str) -> str:
    """``spaced``, ``hyphen`` (4-4-4-4, Amex 4-6-5) or ``compact``."""
    if style == "compact":
        return number
    sep = "-" if style == "hyphen" else " "
    if len(number) == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def luhn_non_card(rng: random.Random) -> str:
    """A Luhn-valid number that is no payment card: IMEI-like 15 digits starting 35,
    or 16 digits starting with 9 or 1 (no scheme issues those ranges)."""
    kind = rng.random()
    if kind < 0.5:
        return luhn_number(rng, "35" + digits(rng, 4), 15)
    return luhn_number(rng, rng.choice(("9", "1")), 16)


# -- IBAN and UK bank details --------------------------------------------------------


def _iban_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return f"{98 - int(numeric) % 97:02d}"


def iban(rng: random.Random) -> str:
    """A valid IBAN, compact: mostly GB, some DE, IE and NL."""
    country = rng.choices(("GB", "DE", "IE", "NL"), weights=(6, 2, 1, 1))[0]
    if country in ("GB", "IE"):
        bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban = bank + digits(rng, 14)
    elif country == "DE":
        bban = digits(rng, 18)
    else:
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + digits(rng, 10)
    return country + _iban_check(country, bban) + bban


def iban_valid(value: str) -> bool:
    compact = value.replace(" ", "")
    numeric = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(numeric) % 97 == 1


def format_iban(value: str, style: str) -> str:
    if style == "compact":
        return value
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def sort_code(rng: random.Random, sep: str = "-") -> str:
    """``NN-NN-NN`` (or with spaces), never all zeros."""
    return sep.join(f"{rng.randrange(1, 100):02d}" for _ in range(3))


def account_number(rng: random.Random) -> str:
    return f"{rng.randrange(10_000_000, 100_000_000)}"


# -- phones, postcodes, dates, IPs ------------------------------------------------------


def mobile_national(rng: random.Random) -> str:
    """A UK mobile as eleven digits starting ``07``."""
    return "07" + rng.choice(_MOBILE_BLOCKS) + digits(rng, 7)


def format_phone(national: str, style: str) -> str:
    """Styles: ``spaced`` (07911 123456), ``compact``, ``intl`` (+44 7911 123456),
    ``intl_compact`` (+447911123456), ``0044`` (0044 7911 123456), ``hyphen``
    (07911-123456), ``intl_trunk`` (+44 (0)7911 123456)."""
    rest = national[1:]
    if style == "compact":
        return national
    if style == "intl":
        return f"+44 {rest[:4]} {rest[4:]}"
    if style == "intl_compact":
        return "+44" + rest
    if style == "0044":
        return f"0044 {rest[:4]} {rest[4:]}"
    if style == "hyphen":
        return f"{national[:5]}-{national[5:]}"
    if style == "intl_trunk":
        return f"+44 (0){rest[:4]} {rest[4:]}"
    return f"{national[:5]} {national[5:]}"


def drama_landline(rng: random.Random) -> str:
    return rng.choice(_DRAMA_LANDLINES).format(rng.randrange(1000))


def postcode(rng: random.Random) -> str:
    """A postcode following Royal Mail's letter rules, ``OUTWARD INWARD``."""
    shape = rng.choice(("A9", "A99", "AA9", "AA99", "A9A", "AA9A", "AA9", "AA99"))
    out = []
    for i, ch in enumerate(shape):
        if ch == "9":
            out.append(rng.choice(string.digits[1:] if i == 1 else string.digits))
        elif i == 0:
            out.append(rng.choice(_PC_FIRST))
        elif i == 1:
            out.append(rng.choice(_PC_SECOND))
        elif shape == "A9A":
            out.append(rng.choice(_PC_THIRD_A9A))
        else:
            out.append(rng.choice(_PC_FOURTH_AA9A))
    inward = rng.choice(string.digits) + rng.choice(_PC_INWARD) + rng.choice(_PC_INWARD)
    return "".join(out) + " " + inward


def ipv4(rng: random.Random) -> str:
    first = rng.choice((81, 86, 92, 109, 151, 176, 185, 194, 212, 217, 10, 172, 192))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randrange(1, 0x10000):x}" for _ in range(6)]
    return "2001:db8:" + ":".join(groups)
