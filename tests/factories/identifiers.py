"""Builders of valid (and deliberately invalid) UK identifiers for inspection tests.

Faker's en_GB provider does not follow HMRC's NINO prefix rules (it happily produces
``ZZ 123456 T``) and has no NHS numbers, so these are built here from the published
rules.  Each takes a ``random.Random`` so tests are repeatable.
"""

from __future__ import annotations

import random
import string

from stdnum import luhn

NINO_FIRST = [c for c in string.ascii_uppercase if c not in "DFIQUV"]
NINO_SECOND = [c for c in string.ascii_uppercase if c not in "DFIOQUV"]
NINO_UNALLOCATED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def nino(rng: random.Random, *, spaced: bool = True) -> str:
    """A National Insurance number HMRC could have allocated (``AB 12 34 56 C``)."""
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in NINO_UNALLOCATED:
            break
    digits = f"{rng.randrange(1_000_000):06d}"
    suffix = rng.choice("ABCD")
    if spaced:
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{prefix}{digits}{suffix}"


def nhs_check_digit(payload: str) -> int | None:
    """The mod 11 check digit for nine payload digits, or None when none exists."""
    total = sum(int(d) * w for d, w in zip(payload, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_number(rng: random.Random, *, spaced: bool = True) -> str:
    """A valid NHS number (mod 11), not a repeated-digit placeholder."""
    while True:
        payload = f"{rng.randrange(400_000_000, 800_000_000):09d}"
        check = nhs_check_digit(payload)
        if check is not None and len(set(payload + str(check))) > 1:
            number = payload + str(check)
            break
    return f"{number[:3]} {number[3:6]} {number[6:]}" if spaced else number


def luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix``."""
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + str(luhn.calc_check_digit(body))


def grouped(number: str, size: int = 4, sep: str = " ") -> str:
    """``number`` in groups of ``size`` (the way cards are printed)."""
    return sep.join(number[i : i + size] for i in range(0, len(number), size))


def drama_mobile(rng: random.Random) -> str:
    """A UK mobile number from Ofcom's drama range (never reaches a real person)."""
    return f"07700 900{rng.randrange(1000):03d}"


def sort_code(rng: random.Random) -> str:
    """A sort code ``NN-NN-NN`` (not all zeros)."""
    return "-".join(f"{rng.randrange(1, 100):02d}" for _ in range(3))


def account_number(rng: random.Random) -> str:
    """An eight-digit UK bank account number."""
    return f"{rng.randrange(10_000_000, 100_000_000)}"


# Text that looks like customer data to a careless detector and holds none: order and
# invoice numbers, timestamps, SKUs, Luhn-valid non-card numbers, parcel tracking
# numbers, version strings, MAC addresses and clock times.
HARD_NEGATIVES = [
    "Order ORD-2024-000123 shipped",
    "Order #40512345678 confirmed",
    "Timestamp 2024-01-15T10:30:45Z and 20240115103045",
    "SKU-4111111111111111 and SKU 4111-1111 in stock",
    "EAN 5012345678900 on the label",
    "Royal Mail tracking AB123456789GB",
    "UPS 1Z999AA10123456784",
    "DHL waybill 9434765919",
    "Invoice INV-00012345, PO 4500012345",
    "Windows 10.0.19041.1 build",
    "MAC 00:1A:2B:3C:4D:5E at 10:30:45",
    "Luhn-valid 4222222222222 and 9999999999999995",
    "Meeting 12/03/2024, room 12-34-56, call ext 4455",
]
