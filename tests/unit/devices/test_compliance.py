"""Compliance: every rule passing and failing with its exact reason, and consequences."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spillguard.devices.compliance import (
    RuleFailure,
    Verdict,
    describe_duration,
    describe_limit,
    evaluate,
    schedule_consequences,
    track_first_seen,
)
from spillguard.devices.policy import (
    CompliancePolicy,
    Consequence,
    Rule,
    RuleConsequence,
    compare_versions,
)
from spillguard.devices.posture import PasscodeType, Posture
from tests.unit.devices.strategies import (
    NOW,
    policies,
    posture,
    postures,
    silences,
    tightest_policies,
    weaker_policies,
)

RECENT = NOW - timedelta(minutes=10)


def policy(**rules: Any) -> CompliancePolicy:
    return CompliancePolicy.model_validate({"name": "Sales phones", **rules})


def check(
    device: Posture | None,
    rules: CompliancePolicy,
    *,
    last_checkin_at: Any = RECENT,
    agent_present: bool = True,
) -> Verdict:
    return evaluate(
        device, rules, last_checkin_at=last_checkin_at, now=NOW, agent_present=agent_present
    )


def reasons(verdict: Verdict) -> list[str]:
    return [failure.reason for failure in verdict.failures]


STRICT = policy(
    min_passcode_type="pin",
    min_passcode_length=6,
    max_auto_lock_seconds=300,
    encryption_required=True,
    min_os_version={"ios": "17.0", "android": "14"},
    block_rooted=True,
    agent_required=True,
    min_agent_version="1.4",
    max_checkin_age_seconds=86_400,
)


def test_a_well_kept_phone_meets_a_strict_policy() -> None:
    verdict = check(posture(), STRICT)
    assert verdict.compliant
    assert verdict.failures == ()
    assert verdict.reasons == ()


def test_the_story_one_phone_fails_on_passcode_encryption_and_agent() -> None:
    # Swipe to unlock, unencrypted, no management agent: the phone left in the restaurant.
    phone = posture(
        platform="ios",
        os_version="17.5",
        passcode={"type": "swipe", "length": None},
        storage_encrypted=False,
        agent_version=None,
    )
    story_policy = policy(
        min_passcode_type="pin",
        min_passcode_length=6,
        encryption_required=True,
        agent_required=True,
    )
    verdict = check(phone, story_policy, agent_present=False)
    assert not verdict.compliant
    assert [failure.rule for failure in verdict.failures] == [
        Rule.PASSCODE,
        Rule.ENCRYPTION,
        Rule.AGENT,
    ]
    assert reasons(verdict) == [
        "Passcode is a swipe; policy requires a PIN of at least 6 digits",
        "Storage is not encrypted; policy requires encryption",
        "No management agent reports from this device",
    ]


def test_a_policy_with_no_rules_switched_on_accepts_anything() -> None:
    empty = policy()
    assert empty.enabled_rules() == ()
    verdict = check(
        posture(passcode={"type": "none", "length": None}, storage_encrypted=False, rooted=True),
        empty,
        last_checkin_at=None,
        agent_present=False,
    )
    assert verdict.compliant


# --- passcode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passcode", "rules", "reason"),
    [
        (
            {"type": "none", "length": None},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
            "No passcode is set; policy requires a PIN of at least 6 digits",
        ),
        (
            {"type": "swipe", "length": None},
            {"min_passcode_type": "pattern"},
            "Passcode is a swipe; policy requires a pattern",
        ),
        (
            {"type": "pattern", "length": 9},
            {"min_passcode_type": "pin", "min_passcode_length": 4},
            "Passcode is a pattern of 9 dots; policy requires a PIN of at least 4 digits",
        ),
        (
            {"type": "pin", "length": 4},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
            "Passcode is a PIN of 4 digits; policy requires a PIN of at least 6 digits",
        ),
        (
            {"type": "pin", "length": 1},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
            "Passcode is a PIN of 1 digit; policy requires a PIN of at least 6 digits",
        ),
        (
            {"type": "pin", "length": None},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
            "Passcode is a PIN of unknown length; policy requires a PIN of at least 6 digits",
        ),
        (
            {"type": "pin", "length": 8},
            {"min_passcode_type": "alphanumeric", "min_passcode_length": 8},
            "Passcode is a PIN of 8 digits;"
            " policy requires an alphanumeric password of at least 8 characters",
        ),
        (
            {"type": "alphanumeric", "length": 5},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
            "Passcode is an alphanumeric password of 5 characters;"
            " policy requires a PIN of at least 6 digits",
        ),
        (
            {"type": "pattern", "length": 3},
            {"min_passcode_type": "pattern", "min_passcode_length": 4},
            "Passcode is a pattern of 3 dots; policy requires a pattern of at least 4 dots",
        ),
    ],
    ids=[
        "none",
        "swipe-vs-pattern",
        "pattern-vs-pin",
        "short-pin",
        "one-digit",
        "unknown-length",
        "pin-vs-password",
        "short-password",
        "short-pattern",
    ],
)
def test_passcode_rule_fails_with_the_reason(
    passcode: dict[str, Any], rules: dict[str, Any], reason: str
) -> None:
    verdict = check(posture(passcode=passcode), policy(**rules))
    failure = verdict.failed(Rule.PASSCODE)
    assert failure is not None
    assert reasons(verdict) == [reason]


@pytest.mark.parametrize(
    ("passcode", "rules"),
    [
        ({"type": "pin", "length": 6}, {"min_passcode_type": "pin", "min_passcode_length": 6}),
        (
            {"type": "alphanumeric", "length": 6},
            {"min_passcode_type": "pin", "min_passcode_length": 6},
        ),
        ({"type": "pin", "length": None}, {"min_passcode_type": "pin"}),
        ({"type": "swipe", "length": None}, {"min_passcode_type": "swipe"}),
        ({"type": "pattern", "length": 4}, {"min_passcode_type": "swipe"}),
    ],
    ids=["exact", "stronger-type", "no-length-rule", "swipe-allowed", "pattern-over-swipe"],
)
def test_passcode_rule_passes(passcode: dict[str, Any], rules: dict[str, Any]) -> None:
    assert check(posture(passcode=passcode), policy(**rules)).compliant


def test_passcode_types_are_ordered_by_strength() -> None:
    assert [t.value for t in sorted(PasscodeType, key=lambda t: t.strength)] == [
        "none",
        "swipe",
        "pattern",
        "pin",
        "alphanumeric",
    ]


# --- auto-lock, encryption, rooted ----------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "limit", "reason"),
    [
        (None, 300, "Screen never locks automatically; policy requires auto-lock within 5 minutes"),
        (600, 300, "Screen locks after 10 minutes of inactivity; policy allows at most 5 minutes"),
        (301, 300, "Screen locks after 301 seconds of inactivity; policy allows at most 5 minutes"),
        (120, 90, "Screen locks after 2 minutes of inactivity; policy allows at most 90 seconds"),
    ],
)
def test_auto_lock_rule_fails_with_the_reason(seconds: int | None, limit: int, reason: str) -> None:
    verdict = check(posture(auto_lock_seconds=seconds), policy(max_auto_lock_seconds=limit))
    assert verdict.failed(Rule.AUTO_LOCK) is not None
    assert reasons(verdict) == [reason]


@pytest.mark.parametrize("seconds", [0, 30, 300])
def test_auto_lock_rule_passes_at_or_under_the_limit(seconds: int) -> None:
    assert check(posture(auto_lock_seconds=seconds), policy(max_auto_lock_seconds=300)).compliant


def test_encryption_rule() -> None:
    rules = policy(encryption_required=True)
    assert check(posture(storage_encrypted=True), rules).compliant
    verdict = check(posture(storage_encrypted=False), rules)
    assert reasons(verdict) == ["Storage is not encrypted; policy requires encryption"]
    assert check(posture(storage_encrypted=False), policy()).compliant


@pytest.mark.parametrize(
    ("platform", "reason"),
    [
        ("ios", "Device is jailbroken; policy blocks rooted and jailbroken devices"),
        ("android", "Device is rooted; policy blocks rooted and jailbroken devices"),
        ("linux", "Device is rooted; policy blocks rooted and jailbroken devices"),
    ],
)
def test_rooted_rule(platform: str, reason: str) -> None:
    rules = policy(block_rooted=True)
    assert check(posture(platform=platform, rooted=False), rules).compliant
    assert reasons(check(posture(platform=platform, rooted=True), rules)) == [reason]
    assert check(posture(platform=platform, rooted=True), policy()).compliant


# --- OS version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        ("17.4.1", "17.10", -1),
        ("17.10", "17.4.1", 1),
        ("17", "17.0", 0),
        ("17.0.0", "17", 0),
        ("16.7", "17.0", -1),
        ("17.0b1", "17.0", -1),
        ("14.0-beta", "14", -1),
        ("v16", "16", 0),
        ("6.1.0-18-amd64", "6.1", 0),
        ("6.1.0-18-amd64", "6.2", -1),
        ("5.15.0-105-generic", "6.1", -1),
        ("12", "9", 1),
        ("beta", "17.0", None),
        ("17.0", "unknown", None),
    ],
)
def test_versions_compare_as_versions_not_as_text(left: str, right: str, order: int | None) -> None:
    assert compare_versions(left, right) == order


@pytest.mark.parametrize(
    ("platform", "version", "reason"),
    [
        ("ios", "16.7", "iOS 16.7 is older than the required 17.0"),
        ("ios", "17.0b1", "iOS 17.0b1 is older than the required 17.0"),
        ("android", "13", "Android 13 is older than the required 14"),
        ("linux", "5.15.0-105-generic", "Linux 5.15.0-105-generic is older than the required 6.1"),
        (
            "ios",
            "beta",
            'iOS version "beta" is not a version number; policy requires 17.0 or later',
        ),
    ],
)
def test_os_version_rule_fails_with_the_reason(platform: str, version: str, reason: str) -> None:
    rules = policy(min_os_version={"ios": "17.0", "android": "14", "linux": "6.1"})
    verdict = check(posture(platform=platform, os_version=version), rules)
    assert reasons(verdict) == [reason]


@pytest.mark.parametrize(
    ("platform", "version"),
    [
        ("ios", "17.0"),
        ("ios", "17.10"),
        ("ios", "18"),
        ("android", "14"),
        ("android", "15"),
        ("linux", "6.1.0-18-amd64"),
        ("other", "1"),
    ],
)
def test_os_version_rule_passes(platform: str, version: str) -> None:
    rules = policy(min_os_version={"ios": "17.0", "android": "14", "linux": "6.1"})
    assert check(posture(platform=platform, os_version=version), rules).compliant


def test_a_policy_minimum_must_itself_be_a_version() -> None:
    with pytest.raises(ValidationError) as caught:
        policy(min_os_version={"ios": "latest"})
    assert caught.value.errors()[0]["loc"] == ("min_os_version", "ios")
    with pytest.raises(ValidationError):
        policy(min_os_version={"windows": "11"})


# --- agent -------------------------------------------------------------------------------------


def test_agent_rule() -> None:
    rules = policy(agent_required=True)
    assert check(posture(), rules).compliant
    no_agent = "No management agent reports from this device"
    assert reasons(check(posture(), rules, agent_present=False)) == [no_agent]
    assert reasons(check(posture(agent_version=None), rules)) == [no_agent]
    assert check(posture(agent_version=None), policy(), agent_present=False).compliant


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("1.2.0", "Management agent 1.2.0 is older than the required 1.4"),
        ("1.4.0rc1", "Management agent 1.4.0rc1 is older than the required 1.4"),
        (
            "dev",
            'Management agent version "dev" is not a version number; policy requires 1.4 or later',
        ),
    ],
)
def test_minimum_agent_version(version: str, reason: str) -> None:
    rules = policy(agent_required=True, min_agent_version="1.4")
    assert reasons(check(posture(agent_version=version), rules)) == [reason]
    assert check(posture(agent_version="1.10.0"), rules).compliant


# --- stale check-in ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("silent", "reason"),
    [
        (timedelta(days=3), "Device has not checked in for 3 days; policy allows 24 hours"),
        (timedelta(hours=30), "Device has not checked in for 30 hours; policy allows 24 hours"),
        (
            timedelta(days=1, seconds=1),
            "Device has not checked in for 24 hours; policy allows 24 hours",
        ),
    ],
)
def test_a_stale_device_fails_with_the_reason(silent: timedelta, reason: str) -> None:
    rules = policy(max_checkin_age_seconds=86_400)
    assert reasons(check(posture(), rules, last_checkin_at=NOW - silent)) == [reason]


def test_a_device_exactly_at_the_limit_is_not_stale() -> None:
    rules = policy(max_checkin_age_seconds=86_400)
    assert check(posture(), rules, last_checkin_at=NOW - timedelta(days=1)).compliant


def test_a_device_that_never_checked_in_is_stale() -> None:
    rules = policy(max_checkin_age_seconds=3600)
    assert reasons(check(None, rules, last_checkin_at=None)) == [
        "Device has never checked in; policy allows 60 minutes"
    ]


def test_stale_uses_the_server_receipt_time_not_the_device_clock() -> None:
    # The device claims it reported a minute ago, but the server last heard from it days ago.
    rules = policy(max_checkin_age_seconds=86_400)
    fresh_claim = posture(reported_at=(NOW - timedelta(minutes=1)).isoformat())
    assert not check(fresh_claim, rules, last_checkin_at=NOW - timedelta(days=3)).compliant


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (119, "119 seconds"),
        (120, "2 minutes"),
        (7199, "119 minutes"),
        (7200, "2 hours"),
        (86_400, "24 hours"),
        (172_800, "2 days"),
        (259_300, "3 days"),
    ],
)
def test_durations_read_in_whole_units(seconds: int, text: str) -> None:
    assert describe_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "90 seconds"),
        (300, "5 minutes"),
        (3600, "60 minutes"),
        (86_400, "24 hours"),
        (90_000, "25 hours"),
        (604_800, "7 days"),
    ],
)
def test_policy_limits_read_exactly(seconds: int, text: str) -> None:
    assert describe_limit(seconds) == text


# --- no posture yet ---------------------------------------------------------------------------


def test_a_device_without_posture_fails_every_rule_it_cannot_prove() -> None:
    # It checked in recently (enrollment counts) but sent no posture, so only stale passes.
    verdict = check(None, STRICT)
    assert [failure.rule for failure in verdict.failures] == [
        rule for rule in Rule if rule is not Rule.STALE
    ]
    assert reasons(verdict) == [
        "Passcode cannot be checked: the device has not reported its posture;"
        " policy requires a PIN of at least 6 digits",
        "Auto-lock cannot be checked: the device has not reported its posture;"
        " policy requires auto-lock within 5 minutes",
        "Storage encryption cannot be checked: the device has not reported its posture;"
        " policy requires encryption",
        "OS version cannot be checked: the device has not reported its posture;"
        " policy requires at least Android 14, iOS 17.0",
        "Root and jailbreak status cannot be checked: the device has not reported its posture;"
        " policy blocks rooted and jailbroken devices",
        "No management agent reports from this device",
    ]


# --- policy validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        {"min_passcode_type": "swipe", "min_passcode_length": 4},
        {"min_passcode_length": 6},
        {"min_agent_version": "1.0"},
        {"min_passcode_type": "pin", "min_passcode_length": -1},
        {"max_auto_lock_seconds": 0},
        {"max_checkin_age_seconds": 10},
        {"max_failed_attempts": 0},
        {"consequences": {"stale": {"consequence": "wipe", "grace_seconds": 0}}},
        {"consequences": {"stale": {"consequence": "lock", "grace_seconds": -1}}},
        {"consequences": {"teleport": {"consequence": "lock"}}},
        {"encryption_required": "yes"},
        {"colour": "blue"},
    ],
)
def test_impossible_policies_are_refused(rules: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(**rules)


@pytest.mark.parametrize("name", ["", "Sales\nphones", "x" * 101])
def test_a_policy_needs_a_short_single_line_name(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CompliancePolicy.model_validate({"name": name})
    assert caught.value.errors()[0]["loc"] == ("name",)


# --- consequences -----------------------------------------------------------------------------


def test_each_failure_carries_its_configured_consequence() -> None:
    rules = policy(
        encryption_required=True,
        block_rooted=True,
        consequences={"encryption": {"consequence": "block_corporate_data", "grace_seconds": 3600}},
    )
    verdict = check(posture(storage_encrypted=False, rooted=True), rules)
    assert verdict.failures == (
        RuleFailure(
            rule=Rule.ENCRYPTION,
            reason="Storage is not encrypted; policy requires encryption",
            consequence=Consequence.BLOCK_CORPORATE_DATA,
            grace_seconds=3600,
        ),
        RuleFailure(
            rule=Rule.ROOTED,
            reason="Device is rooted; policy blocks rooted and jailbroken devices",
            consequence=Consequence.NOTIFY,
            grace_seconds=0,
        ),
    )
    assert rules.consequence_for(Rule.STALE) == RuleConsequence()


GRACEFUL = policy(
    encryption_required=True,
    max_checkin_age_seconds=86_400,
    consequences={
        "encryption": {"consequence": "block_corporate_data", "grace_seconds": 3600},
        "stale": {"consequence": "lock", "grace_seconds": 2 * 86_400},
    },
)


def test_a_consequence_waits_for_its_grace_period() -> None:
    first = NOW - timedelta(minutes=59)
    failures = check(posture(storage_encrypted=False), GRACEFUL).failures
    schedule = schedule_consequences(failures, {Rule.ENCRYPTION: first}, NOW)
    assert schedule.due == ()
    assert [(item.rule, item.consequence) for item in schedule.pending] == [
        (Rule.ENCRYPTION, Consequence.BLOCK_CORPORATE_DATA)
    ]
    assert schedule.next_due_at == first + timedelta(hours=1)

    later = schedule_consequences(failures, {Rule.ENCRYPTION: first}, NOW + timedelta(minutes=1))
    assert [(item.rule, item.consequence) for item in later.due] == [
        (Rule.ENCRYPTION, Consequence.BLOCK_CORPORATE_DATA)
    ]
    assert later.pending == ()
    assert later.next_due_at is None


def test_a_consequence_without_grace_is_due_at_once() -> None:
    failures = check(posture(storage_encrypted=False), policy(encryption_required=True)).failures
    schedule = schedule_consequences(failures, {}, NOW)
    assert [(item.consequence, item.due_at) for item in schedule.due] == [(Consequence.NOTIFY, NOW)]


def test_consequences_fall_due_in_time_order() -> None:
    device = posture(storage_encrypted=False)
    failures = check(device, GRACEFUL, last_checkin_at=NOW - timedelta(days=5)).failures
    first_seen = {Rule.ENCRYPTION: NOW - timedelta(days=4), Rule.STALE: NOW - timedelta(days=4)}
    schedule = schedule_consequences(failures, first_seen, NOW)
    assert [(item.rule, item.consequence) for item in schedule.due] == [
        (Rule.ENCRYPTION, Consequence.BLOCK_CORPORATE_DATA),  # due 1 hour after first seen
        (Rule.STALE, Consequence.LOCK),  # due 2 days after first seen
    ]
    assert [item.due_at for item in schedule.due] == [
        NOW - timedelta(days=4) + timedelta(hours=1),
        NOW - timedelta(days=2),
    ]


def test_first_seen_times_survive_until_the_rule_passes_again() -> None:
    bad = check(posture(storage_encrypted=False), GRACEFUL)
    started = track_first_seen({}, bad, NOW)
    assert started == {Rule.ENCRYPTION: NOW}

    still_bad = track_first_seen(started, bad, NOW + timedelta(hours=5))
    assert still_bad == {Rule.ENCRYPTION: NOW}

    fixed = track_first_seen(still_bad, check(posture(), GRACEFUL), NOW + timedelta(hours=6))
    assert fixed == {}

    again = track_first_seen(fixed, bad, NOW + timedelta(hours=7))
    assert again == {Rule.ENCRYPTION: NOW + timedelta(hours=7)}
    assert schedule_consequences(bad.failures, again, NOW + timedelta(hours=7)).due == ()


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data(), postures | st.none(), policies(), st.none() | silences)
def test_a_weaker_policy_never_adds_failures(
    data: st.DataObject, device: Posture | None, strict: CompliancePolicy, silent: int | None
) -> None:
    weaker = data.draw(weaker_policies(strict))
    last = None if silent is None else NOW - timedelta(seconds=silent)
    agent_present = data.draw(st.booleans())
    under_strict = check(device, strict, last_checkin_at=last, agent_present=agent_present)
    under_weaker = check(device, weaker, last_checkin_at=last, agent_present=agent_present)
    strict_rules = {failure.rule for failure in under_strict.failures}
    assert {failure.rule for failure in under_weaker.failures} <= strict_rules
    if under_strict.compliant:
        assert under_weaker.compliant


@settings(max_examples=300, deadline=None)
@given(st.data(), postures, silences)
def test_a_compliant_posture_stays_compliant_under_a_weaker_policy(
    data: st.DataObject, device: Posture, silent: int
) -> None:
    # The strictest policy the device meets puts every rule exactly on its boundary.
    tight = data.draw(tightest_policies(device, silent))
    last = NOW - timedelta(seconds=silent)
    assert check(device, tight, last_checkin_at=last).compliant, tight
    weaker = data.draw(weaker_policies(tight))
    assert check(device, weaker, last_checkin_at=last).compliant, weaker


@settings(max_examples=200, deadline=None)
@given(postures | st.none(), policies())
def test_one_reason_per_failed_rule_and_only_enabled_rules(
    device: Posture | None, rules: CompliancePolicy
) -> None:
    verdict = check(device, rules)
    failed = [failure.rule for failure in verdict.failures]
    assert len(failed) == len(set(failed))
    assert set(failed) <= set(rules.enabled_rules())
    assert failed == sorted(failed, key=list(Rule).index)
    assert all(failure.reason and "\n" not in failure.reason for failure in verdict.failures)
    assert verdict.compliant == (not failed)
