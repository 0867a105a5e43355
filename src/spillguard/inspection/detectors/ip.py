"""IP addresses, parsed by the standard ``ipaddress`` module.

Dotted runs longer than four parts (``10.0.1.2.5`` version strings) are not addresses.
IPv6 needs at least three written groups, or an embedded IPv4 address, so that
``a::b`` in source code and loopback ``::1`` are not reported; clock times and MAC
addresses fail to parse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from spillguard.inspection.detectors.base import Detector, Entity

CONTEXT_WORDS = (
    "ip",
    "ip address",
    "ipv4",
    "ipv6",
    "host",
    "client",
    "remote",
    "source",
    "src",
    "dst",
    "destination",
    "address",
    "login from",
    "connected from",
)

IPV4_PATTERN = r"\b(?:\d{1,3}\.){3}\d{1,3}\b"
IPV6_PATTERN = (
    r"(?:\b[0-9A-Fa-f]{1,4}|\B:):[0-9A-Fa-f:]{0,37}"
    r"(?:[0-9A-Fa-f]\b|:\B|\b(?:\d{1,3}\.){3}\d{1,3}\b)"
)

_DOTTED_BEFORE = re.compile(r"\d\.$")
_DOTTED_AFTER = re.compile(r"\.\d")
_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{1,4}")


def not_in_longer_dotted_run(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Reject a candidate that is part of a longer dotted number (``1.2.3.4.5``)."""
    if _DOTTED_BEFORE.search(text[max(0, start - 2) : start]):
        return None
    if _DOTTED_AFTER.match(text, end):
        return None
    return start, end


def validate_ipv4(candidate: str) -> str | None:
    """The address in dotted-decimal form, if it parses (no leading zeros)."""
    try:
        return str(ipaddress.IPv4Address(candidate))
    except ValueError:
        return None


def validate_ipv6(candidate: str) -> str | None:
    """The address in compressed form, if it parses and is written out far enough."""
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    if "." not in candidate and len(_HEX_GROUP.findall(candidate)) < 3:
        return None
    return address.compressed


_PLAIN_V6 = re.compile(r"[0-9A-Fa-f:]{2,39}")


def _plain_ipv6(candidate: str) -> str | None:
    """``validate_ipv6`` of hex groups and colons only, without ``ipaddress``: the
    parse of ``IPv6Address._ip_int_from_string`` (3 to 9 parts, at most one empty part
    inside, an empty first or last part only as ``::``, 1-4 hex digits a group) and the
    compressed form of ``_string_from_ip_int`` (lower case, no leading zeros, the first
    longest run of two or more zero groups as ``::``)."""
    parts = candidate.split(":")
    count = len(parts)
    if not 3 <= count <= 9:
        return None
    skip = None
    for i in range(1, count - 1):
        if not parts[i]:
            if skip is not None:
                return None
            skip = i
    if skip is not None:
        high, low = skip, count - skip - 1
        if not parts[0]:
            high -= 1
            if high:
                return None
        if not parts[-1]:
            low -= 1
            if low:
                return None
        skipped = 8 - (high + low)
        if skipped < 1:
            return None
        groups = parts[:high] + ["0"] * skipped + (parts[count - low :] if low else [])
    else:
        if count != 8 or not parts[0] or not parts[-1]:
            return None
        groups = parts
    if any(not 1 <= len(g) <= 4 for g in groups):
        return None
    if len(_HEX_GROUP.findall(candidate)) < 3:
        return None
    hextets = [f"{int(g, 16):x}" for g in groups]
    best_start, best_length, start, length = -1, 0, -1, 0
    for index, hextet in enumerate(hextets):
        if hextet == "0":
            length += 1
            if start == -1:
                start = index
            if length > best_length:
                best_length, best_start = length, start
        else:
            length, start = 0, -1
    if best_length > 1:
        end = best_start + best_length
        if end == len(hextets):
            hextets += [""]
        hextets[best_start:end] = [""]
        if best_start == 0:
            hextets = ["", *hextets]
    return ":".join(hextets)


# Eight groups written out, none with a leading zero: the compressed form is the
# address in lower case, unless two zero groups in a row make a "::".
_FULL_V6 = re.compile(r"(?:[1-9A-Fa-f][0-9A-Fa-f]{0,3}|0)(?::(?:[1-9A-Fa-f][0-9A-Fa-f]{0,3}|0)){7}")


def validate_ipv6_many(candidates: Sequence[str]) -> list[str | None]:
    """``validate_ipv6`` of each candidate: eight groups without leading zeros or a run
    of zero groups are their own compressed form (lower case), other hex groups and
    colons are read by :func:`_plain_ipv6` (the same answers, a fifth of the time), the
    rest by ``ipaddress``."""
    out: list[str | None] = []
    for candidate in candidates:
        if _FULL_V6.fullmatch(candidate) and ":0:0:" not in f":{candidate}:":
            out.append(candidate.lower())
        elif _PLAIN_V6.fullmatch(candidate):
            out.append(_plain_ipv6(candidate))
        else:
            out.append(validate_ipv6(candidate))
    return out


def ipv4_detector() -> Detector:
    """The IPv4 address detector."""
    return Detector(
        name="ipv4",
        entity=Entity.IP_ADDRESS,
        pattern=IPV4_PATTERN,
        validate=validate_ipv4,
        context_words=CONTEXT_WORDS,
        confidence=0.6,
        context_boost=0.3,
        refine=not_in_longer_dotted_run,
        standalone=False,
        description="IPv4 addresses (ipaddress module)",
    )


def ipv6_detector() -> Detector:
    """The IPv6 address detector."""
    return Detector(
        name="ipv6",
        entity=Entity.IP_ADDRESS,
        pattern=IPV6_PATTERN,
        validate=validate_ipv6,
        context_words=CONTEXT_WORDS,
        confidence=0.6,
        context_boost=0.3,
        refine=not_in_longer_dotted_run,
        standalone=False,
        description="IPv6 addresses (ipaddress module), compressed",
        validate_many=validate_ipv6_many,
    )
