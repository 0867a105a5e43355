"""IP addresses, parsed by the standard ``ipaddress`` module.

Dotted runs longer than four parts (``10.0.1.2.5`` version strings) are not addresses.
IPv6 needs at least three written groups, or an embedded IPv4 address, so that
``a::b`` in source code and loopback ``::1`` are not reported; clock times and MAC
addresses fail to parse.
"""

from __future__ import annotations

import ipaddress
import re

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
    )
