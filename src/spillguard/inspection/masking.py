"""Masked forms of found values: enough to recognise, not enough to use.

Findings show ``mask(value, entity)`` by default (``07700 9•••21``,
``•••• •••• •••• 4242``, ``j•••@example.com``).  Full values are shown only to a role
that needs them, on request, and that view is audited (DESIGN.md: the tool must never
become the leak).  Masking never raises: an unexpected value falls back to the
generic form, which keeps at most the last quarter (and never more than four
characters) of the value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from spillguard.inspection.detectors.base import Entity

MASK = "•"


def mask(value: str, entity: str, *, region: str = "GB") -> str:
    """The masked form of a normalised ``value`` of kind ``entity``.

    ``region`` decides whether a phone number is shown in national form (numbers of
    that region) or international form.
    """
    try:
        masker = _MASKERS.get(entity)
        if masker is not None:
            masked = masker(value, region)
            # A short or odd value can come back whole from a format-keeping masker.
            if masked is not None and (value.strip() not in masked or len(value.strip()) < 4):
                return masked
    except (ValueError, IndexError, NumberParseException):
        pass
    return mask_generic(value)


def mask_generic(value: str) -> str:
    """All but the last quarter of ``value`` (at most four characters) hidden."""
    keep = min(4, len(value) // 4)
    return MASK * (len(value) - keep) + value[len(value) - keep :]


def _mask_digits(formatted: str, keep_head: int, hide: int) -> str:
    """Hide ``hide`` digits after the first ``keep_head`` digits, keeping layout."""
    out = []
    seen = 0
    for ch in formatted:
        if ch.isdigit():
            seen += 1
            out.append(MASK if keep_head < seen <= keep_head + hide else ch)
        else:
            out.append(ch)
    return "".join(out)


def _phone(value: str, region: str) -> str | None:
    number = phonenumbers.parse(value, None if value.startswith("+") else region)
    # Country code, not region, decides: cheaper, and +44 covers Jersey and Guernsey too.
    national = number.country_code == phonenumbers.country_code_for_region(region.upper())
    style = PhoneNumberFormat.NATIONAL if national else PhoneNumberFormat.INTERNATIONAL
    formatted = phonenumbers.format_number(number, style)
    count = sum(ch.isdigit() for ch in formatted)
    hide = max(3, count - 8)
    return _mask_digits(formatted, count - 2 - hide, hide)


def _email(value: str, region: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return None
    return f"{local[0]}{MASK * 3}@{domain}"


def _grouped(masked: str, size: int = 4) -> str:
    return " ".join(masked[i : i + size] for i in range(0, len(masked), size))


def _card(value: str, region: str) -> str | None:
    if not value.isdigit() or len(value) < 12:
        return None
    return f"{_grouped(MASK * (len(value) - 4))} {value[-4:]}"


def _postcode(value: str, region: str) -> str | None:
    outward, space, _inward = value.partition(" ")
    return f"{outward} {MASK * 3}" if space else None


def _iban(value: str, region: str) -> str | None:
    if len(value) < 12:
        return None
    return _grouped(value[:4] + MASK * (len(value) - 8) + value[-4:])


def _bank_account(value: str, region: str) -> str | None:
    sort_code, space, account = value.partition(" ")
    if not space or len(sort_code) != 8 or len(account) != 8:
        return None
    return f"{MASK * 2}-{MASK * 2}-{sort_code[-2:]} {MASK * 4}{account[-4:]}"


def _nino(value: str, region: str) -> str | None:
    if len(value) != 9:
        return None
    return f"{value[:2]} {MASK * 2} {MASK * 2} {MASK * 2} {value[-1]}"


def _nhs(value: str, region: str) -> str | None:
    if len(value) != 10:
        return None
    return f"{MASK * 3} {MASK * 3} {value[-4:]}"


def _date_of_birth(value: str, region: str) -> str | None:
    year, dash, _rest = value.partition("-")
    if not dash or len(year) != 4:
        return None
    return f"{year}-{MASK * 2}-{MASK * 2}"


def _ip(value: str, region: str) -> str | None:
    address = ipaddress.ip_address(value)
    if address.version == 4:
        first, second, _third, _fourth = value.split(".")
        return f"{first}.{second}.{MASK}.{MASK}"
    groups = address.exploded.split(":")
    return f"{int(groups[0], 16):x}:{int(groups[1], 16):x}:{MASK * 3}"


_MASKERS: dict[str, Callable[[str, str], str | None]] = {
    Entity.PHONE: _phone,
    Entity.EMAIL: _email,
    Entity.PAYMENT_CARD: _card,
    Entity.POSTCODE: _postcode,
    Entity.IBAN: _iban,
    Entity.UK_BANK_ACCOUNT: _bank_account,
    Entity.NINO: _nino,
    Entity.NHS_NUMBER: _nhs,
    Entity.DATE_OF_BIRTH: _date_of_birth,
    Entity.IP_ADDRESS: _ip,
}
