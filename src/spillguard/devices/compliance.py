"""Compliance evaluation: posture x policy -> verdict, and when consequences fall due.

Both functions here are pure: no database, no clock (``now`` is passed in), no I/O.  The
devices service calls :func:`evaluate` at every check-in and policy change, stores the
verdict, and uses :func:`track_first_seen` and :func:`schedule_consequences` to decide
which consequences (notify, block corporate data, lock) to apply once each failure has
outlasted its grace period.

Every failed rule gives exactly one reason, written for the person holding the phone and
the help desk answering them, for example "Passcode is a swipe; policy requires a PIN of
at least 6 digits".  A device that has never reported its posture fails every posture
rule the policy switches on ("... cannot be checked: the device has not reported its
posture"), so an enrolled but silent device is never compliant by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from spillguard.devices.policy import (
    CompliancePolicy,
    Consequence,
    Rule,
    compare_versions,
)
from spillguard.devices.posture import Passcode, PasscodeType, Platform, Posture


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """One failed rule: its id, the reason in plain words, and what follows."""

    rule: Rule
    reason: str
    consequence: Consequence
    grace_seconds: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`evaluate`: compliant exactly when nothing failed."""

    failures: tuple[RuleFailure, ...]

    @property
    def compliant(self) -> bool:
        return not self.failures

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(failure.reason for failure in self.failures)

    def failed(self, rule: Rule) -> RuleFailure | None:
        """The failure of ``rule``, or ``None`` if it passed or is switched off."""
        return next((f for f in self.failures if f.rule is rule), None)


@dataclass(frozen=True, slots=True)
class ScheduledConsequence:
    """A consequence of a failing rule and the moment its grace period ends."""

    rule: Rule
    consequence: Consequence
    due_at: datetime


@dataclass(frozen=True, slots=True)
class ConsequenceSchedule:
    """Consequences due now (grace elapsed) and those still waiting, soonest first."""

    due: tuple[ScheduledConsequence, ...]
    pending: tuple[ScheduledConsequence, ...]

    @property
    def next_due_at(self) -> datetime | None:
        """When the next pending consequence falls due, for the scheduler to wake up."""
        return self.pending[0].due_at if self.pending else None


# --- wording -------------------------------------------------------------------------

_PASSCODE_NOUN = {
    PasscodeType.SWIPE: "a swipe",
    PasscodeType.PATTERN: "a pattern",
    PasscodeType.PIN: "a PIN",
    PasscodeType.ALPHANUMERIC: "an alphanumeric password",
}
_LENGTH_UNIT = {
    PasscodeType.PATTERN: ("dot", "dots"),
    PasscodeType.PIN: ("digit", "digits"),
    PasscodeType.ALPHANUMERIC: ("character", "characters"),
}
_NO_POSTURE = "cannot be checked: the device has not reported its posture"


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def describe_duration(seconds: float) -> str:
    """A duration in the largest whole unit people use: "3 days", "24 hours", "90 seconds".

    Days are used from two days up, hours from two hours, minutes from two minutes, so a
    policy of 86,400 seconds reads "24 hours".  Partial units are rounded down.
    """
    whole = max(0, int(seconds))
    for size, singular, plural in (
        (86_400, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
    ):
        if whole >= 2 * size:
            return _plural(whole // size, singular, plural)
    return _plural(whole, "second", "seconds")


def describe_limit(seconds: int) -> str:
    """A policy limit, exactly: the largest unit that divides it ("5 minutes", "90 seconds")."""
    for size, singular, plural in (
        (86_400, "day", "days"),
        (3_600, "hour", "hours"),
        (60, "minute", "minutes"),
    ):
        if seconds >= 2 * size and seconds % size == 0:
            return _plural(seconds // size, singular, plural)
    return _plural(seconds, "second", "seconds")


def _describe_passcode(passcode: Passcode) -> str:
    if passcode.type is PasscodeType.NONE:
        return "No passcode is set"
    noun = _PASSCODE_NOUN[passcode.type]
    unit = _LENGTH_UNIT.get(passcode.type)
    if unit is None:
        return f"Passcode is {noun}"
    if passcode.length is None:
        return f"Passcode is {noun} of unknown length"
    return f"Passcode is {noun} of {_plural(passcode.length, *unit)}"


def _describe_requirement(policy: CompliancePolicy) -> str:
    noun = _PASSCODE_NOUN[policy.min_passcode_type]
    unit = _LENGTH_UNIT.get(policy.min_passcode_type)
    if unit is None or policy.min_passcode_length == 0:
        return noun
    return f"{noun} of at least {_plural(policy.min_passcode_length, *unit)}"


# --- rules ---------------------------------------------------------------------------
# Each returns the reason the rule fails, or None when it passes.


def _passcode(posture: Posture | None, policy: CompliancePolicy) -> str | None:
    required = _describe_requirement(policy)
    if posture is None:
        return f"Passcode {_NO_POSTURE}; policy requires {required}"
    passcode = posture.passcode
    too_weak = passcode.type.strength < policy.min_passcode_type.strength
    too_short = policy.min_passcode_length > 0 and (
        passcode.length is None or passcode.length < policy.min_passcode_length
    )
    if too_weak or too_short:
        return f"{_describe_passcode(passcode)}; policy requires {required}"
    return None


def _auto_lock(posture: Posture | None, policy: CompliancePolicy) -> str | None:
    limit = policy.max_auto_lock_seconds
    if limit is None:  # rule switched off
        return None
    if posture is None:
        return f"Auto-lock {_NO_POSTURE}; policy requires auto-lock within {describe_limit(limit)}"
    actual = posture.auto_lock_seconds
    if actual is None:
        return (
            "Screen never locks automatically;"
            f" policy requires auto-lock within {describe_limit(limit)}"
        )
    if actual > limit:
        return (
            f"Screen locks after {describe_limit(actual)} of inactivity;"
            f" policy allows at most {describe_limit(limit)}"
        )
    return None


def _encryption(posture: Posture | None, policy: CompliancePolicy) -> str | None:
    if posture is None:
        return f"Storage encryption {_NO_POSTURE}; policy requires encryption"
    if not posture.storage_encrypted:
        return "Storage is not encrypted; policy requires encryption"
    return None


def _os_version(posture: Posture | None, policy: CompliancePolicy) -> str | None:
    if posture is None:
        minimums = ", ".join(
            f"{platform.label} {version}"
            for platform, version in sorted(policy.min_os_version.items())
        )
        return f"OS version {_NO_POSTURE}; policy requires at least {minimums}"
    required = policy.min_os_version.get(posture.platform)
    if required is None:
        return None
    label = posture.platform.label
    order = compare_versions(posture.os_version, required)
    if order is None:
        return (
            f'{label} version "{posture.os_version}" is not a version number;'
            f" policy requires {required} or later"
        )
    if order < 0:
        return f"{label} {posture.os_version} is older than the required {required}"
    return None


def _rooted(posture: Posture | None, policy: CompliancePolicy) -> str | None:
    if posture is None:
        return (
            f"Root and jailbreak status {_NO_POSTURE}; policy blocks rooted and jailbroken devices"
        )
    if posture.rooted:
        state = "jailbroken" if posture.platform is Platform.IOS else "rooted"
        return f"Device is {state}; policy blocks rooted and jailbroken devices"
    return None


def _agent(posture: Posture | None, policy: CompliancePolicy, *, agent_present: bool) -> str | None:
    if not agent_present or posture is None or posture.agent_version is None:
        return "No management agent reports from this device"
    required = policy.min_agent_version
    if required is None:
        return None
    order = compare_versions(posture.agent_version, required)
    if order is None:
        return (
            f'Management agent version "{posture.agent_version}" is not a version number;'
            f" policy requires {required} or later"
        )
    if order < 0:
        return f"Management agent {posture.agent_version} is older than the required {required}"
    return None


def _stale(
    policy: CompliancePolicy, *, last_checkin_at: datetime | None, now: datetime
) -> str | None:
    limit = policy.max_checkin_age_seconds
    if limit is None:  # rule switched off
        return None
    if last_checkin_at is None:
        return f"Device has never checked in; policy allows {describe_limit(limit)}"
    silent = (now - last_checkin_at).total_seconds()
    if silent > limit:
        return (
            f"Device has not checked in for {describe_duration(silent)};"
            f" policy allows {describe_limit(limit)}"
        )
    return None


def evaluate(
    posture: Posture | None,
    policy: CompliancePolicy,
    *,
    last_checkin_at: datetime | None,
    now: datetime,
    agent_present: bool = True,
) -> Verdict:
    """Judge ``posture`` (``None`` if never reported) under ``policy`` at time ``now``.

    ``last_checkin_at`` is the server's time of the device's last check-in (``None`` if
    it never checked in); ``agent_present`` is false when the posture came from
    somewhere other than a Spillguard agent.  Only rules the policy switches on are
    checked; failures come in :class:`Rule` order, one reason each.
    """
    failures: list[RuleFailure] = []
    for rule in policy.enabled_rules():
        if rule is Rule.PASSCODE:
            reason = _passcode(posture, policy)
        elif rule is Rule.AUTO_LOCK:
            reason = _auto_lock(posture, policy)
        elif rule is Rule.ENCRYPTION:
            reason = _encryption(posture, policy)
        elif rule is Rule.OS_VERSION:
            reason = _os_version(posture, policy)
        elif rule is Rule.ROOTED:
            reason = _rooted(posture, policy)
        elif rule is Rule.AGENT:
            reason = _agent(posture, policy, agent_present=agent_present)
        else:
            reason = _stale(policy, last_checkin_at=last_checkin_at, now=now)
        if reason is not None:
            configured = policy.consequence_for(rule)
            failures.append(
                RuleFailure(
                    rule=rule,
                    reason=reason,
                    consequence=configured.consequence,
                    grace_seconds=configured.grace_seconds,
                )
            )
    return Verdict(failures=tuple(failures))


def track_first_seen(
    previous: Mapping[Rule, datetime], verdict: Verdict, now: datetime
) -> dict[Rule, datetime]:
    """When each currently failing rule started failing.

    A rule that was already failing keeps its first-seen time, a new failure starts at
    ``now``, and a rule that passes again is dropped (its grace starts afresh if it
    fails later).
    """
    return {failure.rule: previous.get(failure.rule, now) for failure in verdict.failures}


def schedule_consequences(
    failures: Iterable[RuleFailure],
    first_seen: Mapping[Rule, datetime],
    now: datetime,
) -> ConsequenceSchedule:
    """Split the failures' consequences into those due at ``now`` and those still in grace.

    A consequence is due once ``now`` reaches first-seen + grace; a grace of zero is due
    at once.  A failure with no first-seen time counts as first seen ``now``.
    """
    due: list[ScheduledConsequence] = []
    pending: list[ScheduledConsequence] = []
    for failure in failures:
        started = first_seen.get(failure.rule, now)
        item = ScheduledConsequence(
            rule=failure.rule,
            consequence=failure.consequence,
            due_at=started + timedelta(seconds=failure.grace_seconds),
        )
        (due if item.due_at <= now else pending).append(item)
    return ConsequenceSchedule(due=_by_time(due), pending=_by_time(pending))


def _by_time(items: Sequence[ScheduledConsequence]) -> tuple[ScheduledConsequence, ...]:
    order = list(Rule)
    return tuple(sorted(items, key=lambda item: (item.due_at, order.index(item.rule))))
