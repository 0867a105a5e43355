"""Policy export, validated against Apple's payload YAML and Android's discovery document."""

from __future__ import annotations

import json
import plistlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from spillguard.devices.export import (
    APPLE_PASSCODE_PAYLOAD_TYPE,
    android_api_level,
    android_policy,
    android_policy_dict,
    apple_configuration_profile,
    apple_profile,
)
from spillguard.devices.policy import CompliancePolicy
from tests.unit.devices.apple_schema import COMMON_PAYLOAD_KEYS, PayloadSchema
from tests.unit.devices.discovery import Discovery
from tests.unit.devices.strategies import policies

VENDOR = Path(__file__).resolve().parents[2] / "data" / "vendor-schemas"
APPLE_PROFILES = VENDOR / "apple-device-management" / "mdm" / "profiles"


@pytest.fixture(scope="module")
def passcode_schema() -> PayloadSchema:
    return PayloadSchema.load(APPLE_PROFILES / "com.apple.mobiledevice.passwordpolicy.yaml")


@pytest.fixture(scope="module")
def top_level_schema() -> PayloadSchema:
    return PayloadSchema.load(APPLE_PROFILES / "TopLevel.yaml")


@pytest.fixture(scope="module")
def discovery() -> Discovery:
    return Discovery.load(VENDOR / "android-management" / "androidmanagement.v1.json")


def policy(**rules: Any) -> CompliancePolicy:
    return CompliancePolicy.model_validate({"name": "Sales phones", **rules})


STRICT = policy(
    min_passcode_type="pin",
    min_passcode_length=6,
    allow_simple_passcode=False,
    max_auto_lock_seconds=300,
    encryption_required=True,
    max_failed_attempts=10,
    min_os_version={"ios": "17.0", "android": "14"},
    block_rooted=True,
    agent_required=True,
    max_checkin_age_seconds=86_400,
)


def apple_errors(
    profile: dict[str, Any], top_level: PayloadSchema, passcode: PayloadSchema
) -> list[str]:
    """Every problem with a profile: its own keys, then each payload's."""
    errors = top_level.validate(profile)
    common = {name: top_level.keys[name] for name in COMMON_PAYLOAD_KEYS}
    common["PayloadType"] = {
        "key": "PayloadType",
        "type": "<string>",
        "presence": "required",
        "rangelist": [passcode.payload_type],
    }
    for index, payload in enumerate(profile.get("PayloadContent", [])):
        errors.extend(
            f"PayloadContent[{index}].{problem}"
            for problem in passcode.validate(payload, extra_keys=common)
        )
    return errors


def read_back(policy_: CompliancePolicy, **options: Any) -> dict[str, Any]:
    exported = apple_configuration_profile(policy_, **options)
    loaded: dict[str, Any] = plistlib.loads(exported.content)
    return loaded


# --- the validators themselves catch mistakes ------------------------------------------------


def test_the_apple_validator_catches_wrong_keys_types_and_ranges(
    top_level_schema: PayloadSchema, passcode_schema: PayloadSchema
) -> None:
    profile = read_back(STRICT)
    payload = profile["PayloadContent"][0]
    payload["maxInactivity"] = 30  # minutes: above iOS's 15
    payload["minLength"] = "6"
    payload["forcePIN"] = 1
    payload["requirePasscode"] = True
    payload["customRegex"] = {"passwordContentRegex": ".*"}  # macOS only
    del payload["PayloadUUID"]
    profile["PayloadVersion"] = 2
    errors = apple_errors(profile, top_level_schema, passcode_schema)
    assert sorted(errors) == sorted(
        [
            "PayloadVersion: 2 is not one of [1]",
            "PayloadContent[0].PayloadUUID: required key is missing",
            "PayloadContent[0].maxInactivity: 30 is above the maximum 15",
            "PayloadContent[0].minLength: expected <integer>, got str '6'",
            "PayloadContent[0].forcePIN: expected <boolean>, got int 1",
            "PayloadContent[0].requirePasscode: not a key of com.apple.mobiledevice.passwordpolicy",
            "PayloadContent[0].customRegex: does not exist on iOS",
        ]
    )


def test_the_discovery_validator_catches_wrong_fields_types_and_enums(
    discovery: Discovery,
) -> None:
    bad = {
        "passwordPolicies": [
            {"passwordQuality": "PIN", "passwordMinimumLength": "6", "pinLength": 6}
        ],
        "maximumTimeToLock": 300_000,
        "encryptionPolicy": "ON",
        "minimumApiLevel": 2**40,
        "passwordRequirements": {"passwordQuality": "NUMERIC"},
    }
    report = discovery.validate(bad, "Policy")
    assert sorted(report.errors) == sorted(
        [
            "Policy.passwordPolicies[0].passwordQuality: 'PIN' is not one of "
            + str(
                discovery.schemas["PasswordRequirements"]["properties"]["passwordQuality"]["enum"]
            ),
            "Policy.passwordPolicies[0].passwordMinimumLength: expected an integer, got str",
            "Policy.passwordPolicies[0]: unknown field 'pinLength'",
            "Policy.maximumTimeToLock: expected a string, got int",
            "Policy.encryptionPolicy: 'ON' is not one of ['ENCRYPTION_POLICY_UNSPECIFIED',"
            " 'ENABLED_WITHOUT_PASSWORD', 'ENABLED_WITH_PASSWORD']",
            f"Policy.minimumApiLevel: {2**40} is outside int32",
        ]
    )
    assert report.deprecated == ["Policy.passwordRequirements"]


# --- Apple configuration profile ---------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"min_passcode_type": "swipe"},
        {"min_passcode_type": "pattern", "min_passcode_length": 4},
        {"min_passcode_type": "pin", "min_passcode_length": 6, "max_failed_attempts": 10},
        {"min_passcode_type": "alphanumeric", "min_passcode_length": 64, "max_failed_attempts": 1},
        {"max_auto_lock_seconds": 1, "max_failed_attempts": 100},
        {"max_auto_lock_seconds": 7 * 24 * 3600, "encryption_required": True},
    ],
    ids=["empty", "swipe", "pattern", "pin", "extreme-password", "tiny-lock", "huge-lock"],
)
def test_the_apple_profile_matches_apples_schema(
    rules: dict[str, Any], top_level_schema: PayloadSchema, passcode_schema: PayloadSchema
) -> None:
    profile = read_back(policy(**rules))
    assert apple_errors(profile, top_level_schema, passcode_schema) == []


@settings(max_examples=150, deadline=None)
@given(policies())
def test_every_valid_policy_exports_a_valid_apple_profile(
    top_level_schema: PayloadSchema, passcode_schema: PayloadSchema, rules: CompliancePolicy
) -> None:
    assert apple_errors(read_back(rules), top_level_schema, passcode_schema) == []


def test_the_profile_round_trips_through_plistlib() -> None:
    exported = apple_configuration_profile(STRICT, organization="Example Retail Ltd")
    built, _ = apple_profile(STRICT, organization="Example Retail Ltd")
    assert plistlib.loads(exported.content) == built
    assert exported.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert exported.media_type == "application/x-apple-aspen-config"
    assert exported.filename == "sales-phones.mobileconfig"


def test_the_passcode_rules_map_onto_apples_keys() -> None:
    profile = read_back(STRICT, identifier_prefix="com.example")
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadIdentifier"] == "com.example.compliance.sales-phones"
    assert profile["PayloadDisplayName"] == "Spillguard: Sales phones"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == APPLE_PASSCODE_PAYLOAD_TYPE
    assert payload["PayloadIdentifier"] == "com.example.compliance.sales-phones.passcode"
    settings_ = {key: value for key, value in payload.items() if not key.startswith("Payload")}
    assert settings_ == {
        "forcePIN": True,
        "allowSimple": False,
        "requireAlphanumeric": False,
        "minLength": 6,
        "maxFailedAttempts": 10,
        "maxInactivity": 5,  # Apple counts minutes: 300 seconds
    }


def test_an_alphanumeric_policy_requires_letters_on_apple_devices() -> None:
    payload = read_back(policy(min_passcode_type="alphanumeric", min_passcode_length=8))[
        "PayloadContent"
    ][0]
    assert payload["requireAlphanumeric"] is True
    assert payload["forcePIN"] is True
    assert payload["minLength"] == 8


def test_an_empty_policy_forces_nothing() -> None:
    payload = read_back(policy())["PayloadContent"][0]
    assert payload["forcePIN"] is False
    assert payload["requireAlphanumeric"] is False
    assert "minLength" not in payload
    assert "maxInactivity" not in payload
    assert "maxFailedAttempts" not in payload


@pytest.mark.parametrize(
    ("rules", "key", "value", "note"),
    [
        (
            {"max_auto_lock_seconds": 90},
            "maxInactivity",
            1,
            "Maximum auto-lock 90 seconds: Apple sets auto-lock in whole minutes from 1 to 15;"
            " exported as 1 minutes.",
        ),
        (
            {"max_auto_lock_seconds": 30},
            "maxInactivity",
            1,
            "Maximum auto-lock 30 seconds: Apple sets auto-lock in whole minutes from 1 to 15;"
            " exported as 1 minutes.",
        ),
        (
            {"max_auto_lock_seconds": 3600},
            "maxInactivity",
            15,
            "Maximum auto-lock 3600 seconds: Apple sets auto-lock in whole minutes from 1 to 15;"
            " exported as 15 minutes.",
        ),
        (
            {"max_failed_attempts": 1},
            "maxFailedAttempts",
            2,
            "Maximum failed attempts 1: Apple allows 2 to 11; exported as 2.",
        ),
        (
            {"max_failed_attempts": 20},
            "maxFailedAttempts",
            11,
            "Maximum failed attempts 20: Apple allows 2 to 11; exported as 11.",
        ),
        (
            {"min_passcode_type": "pin", "min_passcode_length": 20},
            "minLength",
            16,
            "Minimum passcode length 20: Apple allows at most 16; exported as 16.",
        ),
        (
            {"encryption_required": True},
            "forcePIN",
            True,
            "Encryption required: Apple devices encrypt storage whenever a passcode is set"
            " (Data Protection); exported as 'passcode required' (forcePIN).",
        ),
        (
            {"min_passcode_type": "pattern"},
            "forcePIN",
            True,
            "Minimum passcode type pattern: Apple devices have no pattern lock; exported as"
            " 'passcode required' (forcePIN).",
        ),
        (
            {"min_passcode_type": "swipe"},
            "forcePIN",
            False,
            "Minimum passcode type swipe: Apple devices have no swipe lock, so no passcode"
            " setting is exported for it.",
        ),
    ],
    ids=[
        "lock-90s",
        "lock-30s",
        "lock-1h",
        "attempts-1",
        "attempts-20",
        "length-20",
        "encryption",
        "pattern",
        "swipe",
    ],
)
def test_values_apple_cannot_hold_exactly_are_adjusted_and_noted(
    rules: dict[str, Any], key: str, value: Any, note: str
) -> None:
    exported = apple_configuration_profile(policy(**rules))
    assert plistlib.loads(exported.content)["PayloadContent"][0][key] == value
    assert note in exported.notes


def test_exact_values_produce_no_notes() -> None:
    rules = policy(
        min_passcode_type="pin",
        min_passcode_length=6,
        max_auto_lock_seconds=120,
        max_failed_attempts=10,
    )
    assert apple_configuration_profile(rules).notes == ()
    assert android_policy(rules).notes == ()


def test_rules_without_an_apple_setting_are_listed_not_invented() -> None:
    exported = apple_configuration_profile(STRICT)
    notes = " ".join(exported.notes)
    for rule in (
        "Minimum OS version",
        "Rooted or jailbroken",
        "Agent required",
        "Maximum time since last check-in",
    ):
        assert rule in notes
    payload = plistlib.loads(exported.content)["PayloadContent"][0]
    assert set(payload) <= {
        "PayloadType",
        "PayloadVersion",
        "PayloadIdentifier",
        "PayloadUUID",
        "PayloadDisplayName",
        "forcePIN",
        "allowSimple",
        "requireAlphanumeric",
        "minLength",
        "maxFailedAttempts",
        "maxInactivity",
    }


def test_exports_are_reproducible_and_change_with_the_policy() -> None:
    first = apple_configuration_profile(STRICT)
    assert apple_configuration_profile(STRICT).content == first.content
    assert android_policy(STRICT).content == android_policy(STRICT).content

    changed = STRICT.model_copy(update={"min_passcode_length": 8})
    before, after = read_back(STRICT), read_back(changed)
    assert before["PayloadIdentifier"] == after["PayloadIdentifier"]  # an update, same profile
    assert before["PayloadUUID"] != after["PayloadUUID"]
    assert before["PayloadContent"][0]["PayloadUUID"] != after["PayloadContent"][0]["PayloadUUID"]
    for value in (before["PayloadUUID"], before["PayloadContent"][0]["PayloadUUID"]):
        assert uuid.UUID(value).version == 5
        assert value == value.upper()
    assert before["PayloadUUID"] != before["PayloadContent"][0]["PayloadUUID"]


def test_identifiers_come_from_the_organisation_and_policy_name() -> None:
    assert (
        read_back(policy(name="Field staff — UK"), identifier_prefix="uk.co.example")[
            "PayloadIdentifier"
        ]
        == "uk.co.example.compliance.field-staff-uk"
    )
    only_symbols = read_back(policy(name="Политика"))["PayloadIdentifier"]
    assert only_symbols.startswith("dev.spillguard.compliance.policy-")
    with pytest.raises(ValueError, match="reverse-DNS"):
        apple_configuration_profile(STRICT, identifier_prefix="not a domain")


# --- Android Management API ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {"min_passcode_type": "swipe", "max_failed_attempts": 5},
        {"min_passcode_type": "pattern", "min_passcode_length": 4},
        {"min_passcode_type": "pin", "min_passcode_length": 6},
        {
            "min_passcode_type": "alphanumeric",
            "min_passcode_length": 64,
            "allow_simple_passcode": False,
        },
        {"max_auto_lock_seconds": 7 * 24 * 3600, "encryption_required": True},
        {"min_os_version": {"android": "99"}},
    ],
    ids=["empty", "swipe", "pattern", "pin", "password", "lock-encryption", "future-android"],
)
def test_the_android_policy_matches_the_discovery_document(
    rules: dict[str, Any], discovery: Discovery
) -> None:
    body = json.loads(android_policy(policy(**rules)).content)
    report = discovery.validate(body, "Policy")
    assert report.errors == []
    assert report.deprecated == []


@settings(max_examples=150, deadline=None)
@given(policies())
def test_every_valid_policy_exports_a_valid_android_policy(
    discovery: Discovery, rules: CompliancePolicy
) -> None:
    report = discovery.validate(json.loads(android_policy(rules).content), "Policy")
    assert (report.errors, report.deprecated) == ([], [])


def test_the_rules_map_onto_android_fields() -> None:
    exported = android_policy(STRICT)
    assert exported.media_type == "application/json"
    assert exported.filename == "sales-phones.android-policy.json"
    assert json.loads(exported.content) == {
        "passwordPolicies": [
            {
                "passwordScope": "SCOPE_DEVICE",
                "passwordQuality": "NUMERIC_COMPLEX",
                "passwordMinimumLength": 6,
                "maximumFailedPasswordsForWipe": 10,
            }
        ],
        "encryptionPolicy": "ENABLED_WITHOUT_PASSWORD",
        "maximumTimeToLock": "300000",  # milliseconds, int64 as a string
        "minimumApiLevel": 34,
    }


@pytest.mark.parametrize(
    ("rules", "quality"),
    [
        ({"min_passcode_type": "pattern"}, "SOMETHING"),
        ({"min_passcode_type": "pin"}, "NUMERIC"),
        ({"min_passcode_type": "pin", "allow_simple_passcode": False}, "NUMERIC_COMPLEX"),
        ({"min_passcode_type": "alphanumeric"}, "ALPHABETIC"),
    ],
)
def test_passcode_types_map_to_password_quality(rules: dict[str, Any], quality: str) -> None:
    body, _ = android_policy_dict(policy(**rules))
    assert body["passwordPolicies"][0]["passwordQuality"] == quality


def test_an_empty_policy_exports_an_empty_android_policy() -> None:
    body, notes = android_policy_dict(policy())
    assert body == {}
    assert notes == []


def test_a_pattern_length_is_noted_not_exported() -> None:
    body, notes = android_policy_dict(policy(min_passcode_type="pattern", min_passcode_length=5))
    assert "passwordMinimumLength" not in body["passwordPolicies"][0]
    assert any(note.startswith("Minimum pattern length") for note in notes)


def test_swipe_has_no_android_quality() -> None:
    body, notes = android_policy_dict(policy(min_passcode_type="swipe"))
    assert body == {}
    assert any(note.startswith("Minimum passcode type swipe") for note in notes)


@pytest.mark.parametrize(
    ("release", "level"),
    [
        ("5.0", 21),
        ("8.1", 27),
        ("9", 28),
        ("12", 31),
        ("13", 33),
        ("14", 34),
        ("14.0", 34),
        ("15", 35),
        ("16", 36),
        ("4.4", 21),
        ("13.5", 34),
        ("17", None),
    ],
)
def test_android_releases_map_to_api_levels(release: str, level: int | None) -> None:
    assert android_api_level(release) == level


def test_a_minimum_android_version_between_releases_rounds_up_with_a_note() -> None:
    body, notes = android_policy_dict(policy(min_os_version={"android": "13.5"}))
    assert body == {"minimumApiLevel": 34}
    assert (
        "Minimum Android version 13.5: exported as minimumApiLevel 34 (Android 14),"
        " the first API level at or above it." in notes
    )


def test_an_unknown_future_android_version_is_noted_not_guessed() -> None:
    body, notes = android_policy_dict(policy(min_os_version={"android": "99", "ios": "17"}))
    assert "minimumApiLevel" not in body
    assert any(note.startswith("Minimum Android version 99") for note in notes)
    assert any(note.startswith("Minimum OS versions for other platforms") for note in notes)


def test_rules_without_an_android_field_are_listed_not_invented() -> None:
    exported = android_policy(STRICT)
    notes = " ".join(exported.notes)
    for rule in ("Rooted or jailbroken", "Agent required", "Maximum time since last check-in"):
        assert rule in notes
    assert "passwordRequirements" not in json.loads(exported.content)  # deprecated field
