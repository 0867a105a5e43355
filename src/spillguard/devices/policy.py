"""Compliance policies: the rules a device must meet, and what happens when it does not.

A :class:`CompliancePolicy` is plain, immutable data (a frozen pydantic model, so the
policy editor and the API can validate a submitted policy with the same class).  Every
rule is off by default; a policy that switches none on is satisfied by any device.

Rules (ids in :class:`Rule`, checked by :func:`spillguard.devices.compliance.evaluate`):

- ``passcode``: passcode type at least ``min_passcode_type`` (none < swipe < pattern <
  pin < alphanumeric) and, if ``min_passcode_length`` > 0, at least that long;
- ``auto_lock``: the screen locks by itself within ``max_auto_lock_seconds``;
- ``encryption``: storage is encrypted, if ``encryption_required``;
- ``os_version``: the OS is at least ``min_os_version[platform]`` for that platform;
- ``rooted``: the device is not rooted / jailbroken, if ``block_rooted``;
- ``agent``: a Spillguard agent reports from the device, if ``agent_required``, and is at
  least ``min_agent_version`` when one is set;
- ``stale``: the device checked in within ``max_checkin_age_seconds``.

``max_failed_attempts`` and ``allow_simple_passcode`` are enforced by the device itself
(they are exported to the Apple and Android formats); a device cannot report them, so
they are never evaluated here.

Each rule has a :class:`RuleConsequence`: notify the user, block corporate data, or lock
the device, once the failure has lasted ``grace_seconds``.  Rules without one configured
default to "notify, no grace".

Version comparison (:func:`compare_versions`): if both versions are valid PEP 440
versions (``packaging.version``: "17.4.1", "17.10", "14", "17.0b1") they are compared as
such, so 17.4.1 < 17.10 and a pre-release sorts before its release.  Otherwise both are
compared as tuples of the leading dot-separated numbers ("6.1.0-18-amd64" -> 6.1.0),
trailing zeros ignored (17 == 17.0).  A version with no leading number cannot be
compared, and a device reporting one fails the rule rather than passing it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from spillguard.devices.posture import (
    MAX_AUTO_LOCK_SECONDS,
    PasscodeType,
    Platform,
    VersionText,
)

MAX_POLICY_PASSCODE_LENGTH: Final = 64
MAX_GRACE_SECONDS: Final = 365 * 24 * 3600
MAX_CHECKIN_AGE_SECONDS: Final = 365 * 24 * 3600
MIN_CHECKIN_AGE_SECONDS: Final = 60

_LEADING_NUMBERS = re.compile(r"^[vV]?(\d+(?:\.\d+)*)")


class Rule(StrEnum):
    """The id of each compliance rule, in the order reasons are listed."""

    PASSCODE = "passcode"
    AUTO_LOCK = "auto_lock"
    ENCRYPTION = "encryption"
    OS_VERSION = "os_version"
    ROOTED = "rooted"
    AGENT = "agent"
    STALE = "stale"


class Consequence(StrEnum):
    """What Spillguard does about a failed rule once its grace period has passed."""

    NOTIFY = "notify"
    BLOCK_CORPORATE_DATA = "block_corporate_data"
    LOCK = "lock"


def _numeric_release(text: str) -> tuple[int, ...] | None:
    match = _LEADING_NUMBERS.match(text.strip())
    if match is None:
        return None
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def _pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def is_comparable_version(text: str) -> bool:
    """Whether :func:`compare_versions` can place ``text`` on the version line."""
    return _pep440(text) is not None or _numeric_release(text) is not None


def compare_versions(left: str, right: str) -> int | None:
    """-1, 0 or 1 as ``left`` is older than, equal to or newer than ``right``.

    ``None`` when either cannot be compared (see the module docstring for the rule).
    """
    left_pep, right_pep = _pep440(left), _pep440(right)
    if left_pep is not None and right_pep is not None:
        return (left_pep > right_pep) - (left_pep < right_pep)
    left_num, right_num = _numeric_release(left), _numeric_release(right)
    if left_num is None or right_num is None:
        return None
    return (left_num > right_num) - (left_num < right_num)


def _comparable(value: str) -> str:
    if not is_comparable_version(value):
        raise ValueError(f"{value!r} is not a version number such as 17.4 or 14")
    return value


PolicyVersion = Annotated[VersionText, AfterValidator(_comparable)]


class RuleConsequence(BaseModel):
    """The consequence of one failed rule and how long the failure may last first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    consequence: Consequence = Consequence.NOTIFY
    grace_seconds: int = Field(default=0, strict=True, ge=0, le=MAX_GRACE_SECONDS)


DEFAULT_CONSEQUENCE: Final = RuleConsequence()


class CompliancePolicy(BaseModel):
    """A named set of compliance rules with a consequence per rule (see module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(strict=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    min_passcode_type: PasscodeType = PasscodeType.NONE
    min_passcode_length: int = Field(default=0, strict=True, ge=0, le=MAX_POLICY_PASSCODE_LENGTH)
    allow_simple_passcode: bool = Field(default=True, strict=True)
    max_auto_lock_seconds: int | None = Field(
        default=None, strict=True, ge=1, le=MAX_AUTO_LOCK_SECONDS
    )
    encryption_required: bool = Field(default=False, strict=True)
    max_failed_attempts: int | None = Field(default=None, strict=True, ge=1, le=100)
    min_os_version: dict[Platform, PolicyVersion] = Field(default_factory=dict)
    block_rooted: bool = Field(default=False, strict=True)
    agent_required: bool = Field(default=False, strict=True)
    min_agent_version: PolicyVersion | None = None
    max_checkin_age_seconds: int | None = Field(
        default=None, strict=True, ge=MIN_CHECKIN_AGE_SECONDS, le=MAX_CHECKIN_AGE_SECONDS
    )
    consequences: dict[Rule, RuleConsequence] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules_are_consistent(self) -> CompliancePolicy:
        if self.min_passcode_length and self.min_passcode_type.strength < (
            PasscodeType.PATTERN.strength
        ):
            raise ValueError(
                "min_passcode_length needs min_passcode_type pattern, pin or alphanumeric:"
                f" a {self.min_passcode_type.value} has no length"
            )
        if self.min_agent_version is not None and not self.agent_required:
            raise ValueError("min_agent_version needs agent_required")
        return self

    def enabled_rules(self) -> tuple[Rule, ...]:
        """The rules this policy switches on, in reason order."""
        enabled = {
            Rule.PASSCODE: self.min_passcode_type is not PasscodeType.NONE,
            Rule.AUTO_LOCK: self.max_auto_lock_seconds is not None,
            Rule.ENCRYPTION: self.encryption_required,
            Rule.OS_VERSION: bool(self.min_os_version),
            Rule.ROOTED: self.block_rooted,
            Rule.AGENT: self.agent_required,
            Rule.STALE: self.max_checkin_age_seconds is not None,
        }
        return tuple(rule for rule in Rule if enabled[rule])

    def consequence_for(self, rule: Rule) -> RuleConsequence:
        """The configured consequence of ``rule``, or notify with no grace."""
        return self.consequences.get(rule, DEFAULT_CONSEQUENCE)
