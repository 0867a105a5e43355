"""Policy export to the formats real device channels take.

- :func:`apple_configuration_profile`: an Apple configuration profile (``.mobileconfig``,
  an XML property list written with :mod:`plistlib`) holding one
  ``com.apple.mobiledevice.passwordpolicy`` payload.  Identifiers and UUIDs are derived
  from the policy (UUID version 5), so exporting the same policy twice gives the same
  bytes and a changed policy gets a new PayloadUUID under the same PayloadIdentifier,
  which devices treat as an update of the installed profile.
- :func:`android_policy`: an Android Management API ``Policy`` resource (JSON), with a
  ``passwordPolicies`` entry, ``encryptionPolicy``, ``maximumTimeToLock`` and
  ``minimumApiLevel``.  The deprecated ``passwordRequirements`` field is not written.

Key names, types, ranges and enum values follow Apple's payload schema
(apple/device-management ``mdm/profiles/com.apple.mobiledevice.passwordpolicy.yaml``)
and the Android Management API discovery document (``schemas.Policy`` and
``schemas.PasswordRequirements``); the tests check the output against both.

Some Spillguard rules have no setting in a format (minimum OS version in a profile,
rooted devices, agent, stale check-ins) or only an approximate one (Apple counts
auto-lock in whole minutes up to 15).  Those are never invented: each export returns
``notes`` saying, in plain words, what was left out or rounded and why.  Spillguard
still evaluates every rule at check-in; the export only makes the device enforce what
it can.  See docs/devices.md for the mapping tables.
"""

from __future__ import annotations

import json
import plistlib
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from spillguard.devices.policy import CompliancePolicy, compare_versions
from spillguard.devices.posture import PasscodeType, Platform

APPLE_PASSCODE_PAYLOAD_TYPE: Final = "com.apple.mobiledevice.passwordpolicy"
APPLE_PROFILE_MEDIA_TYPE: Final = "application/x-apple-aspen-config"
ANDROID_POLICY_MEDIA_TYPE: Final = "application/json"
DEFAULT_IDENTIFIER_PREFIX: Final = "dev.spillguard"

# Ranges from Apple's payload schema (iOS): minLength 0-16, maxFailedAttempts 2-11,
# maxInactivity 0-15 minutes.
APPLE_MAX_MIN_LENGTH: Final = 16
APPLE_MIN_FAILED_ATTEMPTS: Final = 2
APPLE_MAX_FAILED_ATTEMPTS: Final = 11
APPLE_MAX_INACTIVITY_MINUTES: Final = 15

# Android release -> API level, oldest first (developer.android.com "API levels").
# 12L (API 32) reports release "12", so it is not a separate row.
ANDROID_API_LEVELS: Final[tuple[tuple[str, int], ...]] = (
    ("5.0", 21),
    ("5.1", 22),
    ("6.0", 23),
    ("7.0", 24),
    ("7.1", 25),
    ("8.0", 26),
    ("8.1", 27),
    ("9", 28),
    ("10", 29),
    ("11", 30),
    ("12", 31),
    ("13", 33),
    ("14", 34),
    ("15", 35),
    ("16", 36),
)

# Fixed namespace for every UUID Spillguard derives for exports.
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_DNS, "spillguard.dev")
_REVERSE_DNS = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

_CHECKED_AT_CHECKIN = "Spillguard checks it at every check-in"


@dataclass(frozen=True, slots=True)
class PolicyExport:
    """One exported file: its bytes, type, suggested name, and what could not be exported."""

    content: bytes
    media_type: str
    filename: str
    notes: tuple[str, ...]


def policy_slug(policy: CompliancePolicy) -> str:
    """The policy name as a file-name and identifier safe word ("Sales phones" -> sales-phones)."""
    slug = re.sub(r"[^a-z0-9]+", "-", policy.name.lower()).strip("-")
    if slug:
        return slug
    return "policy-" + uuid.uuid5(_NAMESPACE, policy.name).hex[:12]


def _fingerprint(policy: CompliancePolicy) -> str:
    # Canonical JSON of the whole policy: any change gives a new UUID.
    return json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\n".join(parts))).upper()


# --- Apple -----------------------------------------------------------------------------


def apple_passcode_settings(policy: CompliancePolicy) -> tuple[dict[str, Any], list[str]]:
    """The passcode payload's own keys for ``policy``, and notes on what did not map."""
    notes: list[str] = []
    settings: dict[str, Any] = {}
    kind = policy.min_passcode_type
    needs_secret = kind.strength >= PasscodeType.PATTERN.strength

    if kind is PasscodeType.SWIPE:
        notes.append(
            "Minimum passcode type swipe: Apple devices have no swipe lock, so no passcode"
            " setting is exported for it."
        )
    if kind is PasscodeType.PATTERN:
        notes.append(
            "Minimum passcode type pattern: Apple devices have no pattern lock; exported as"
            " 'passcode required' (forcePIN)."
        )
    if policy.encryption_required:
        notes.append(
            "Encryption required: Apple devices encrypt storage whenever a passcode is set"
            " (Data Protection); exported as 'passcode required' (forcePIN)."
        )
    settings["forcePIN"] = needs_secret or policy.encryption_required
    settings["allowSimple"] = policy.allow_simple_passcode
    settings["requireAlphanumeric"] = kind is PasscodeType.ALPHANUMERIC

    if policy.min_passcode_length:
        length = min(policy.min_passcode_length, APPLE_MAX_MIN_LENGTH)
        if length != policy.min_passcode_length:
            notes.append(
                f"Minimum passcode length {policy.min_passcode_length}: Apple allows at most"
                f" {APPLE_MAX_MIN_LENGTH}; exported as {length}."
            )
        settings["minLength"] = length

    if policy.max_failed_attempts is not None:
        attempts = min(
            max(policy.max_failed_attempts, APPLE_MIN_FAILED_ATTEMPTS), APPLE_MAX_FAILED_ATTEMPTS
        )
        if attempts != policy.max_failed_attempts:
            notes.append(
                f"Maximum failed attempts {policy.max_failed_attempts}: Apple allows"
                f" {APPLE_MIN_FAILED_ATTEMPTS} to {APPLE_MAX_FAILED_ATTEMPTS}; exported as"
                f" {attempts}."
            )
        settings["maxFailedAttempts"] = attempts

    if policy.max_auto_lock_seconds is not None:
        seconds = policy.max_auto_lock_seconds
        # Whole minutes, rounded down so the device never allows longer than the policy,
        # except that one minute is the shortest Apple offers.
        minutes = min(max(seconds // 60, 1), APPLE_MAX_INACTIVITY_MINUTES)
        if minutes * 60 != seconds:
            notes.append(
                f"Maximum auto-lock {seconds} seconds: Apple sets auto-lock in whole minutes"
                f" from 1 to {APPLE_MAX_INACTIVITY_MINUTES}; exported as {minutes} minutes."
            )
        settings["maxInactivity"] = minutes

    notes.extend(_server_side_notes(policy, include_os_version=True))
    return settings, notes


def _server_side_notes(policy: CompliancePolicy, *, include_os_version: bool) -> list[str]:
    notes: list[str] = []
    if include_os_version and policy.min_os_version:
        notes.append(f"Minimum OS version: the format has no such setting; {_CHECKED_AT_CHECKIN}.")
    if policy.block_rooted:
        notes.append(
            f"Rooted or jailbroken devices blocked: the format has no such setting;"
            f" {_CHECKED_AT_CHECKIN}."
        )
    if policy.agent_required:
        notes.append(
            f"Agent required: the format cannot install or check the Spillguard agent;"
            f" {_CHECKED_AT_CHECKIN}."
        )
    if policy.max_checkin_age_seconds is not None:
        notes.append(
            "Maximum time since last check-in: only the server can see a silent device;"
            " Spillguard checks it on its own schedule."
        )
    if policy.consequences:
        notes.append(
            "Consequences and grace periods (notify, block corporate data, lock) are applied"
            " by Spillguard, not by the device."
        )
    return notes


def apple_profile(
    policy: CompliancePolicy,
    *,
    identifier_prefix: str = DEFAULT_IDENTIFIER_PREFIX,
    organization: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The configuration profile as a property-list dictionary, and the export notes.

    ``identifier_prefix`` is the organisation's reverse-DNS name; the profile's
    PayloadIdentifier is ``<prefix>.compliance.<policy slug>``.
    """
    if not _REVERSE_DNS.match(identifier_prefix):
        raise ValueError(f"identifier_prefix {identifier_prefix!r} is not a reverse-DNS name")
    settings, notes = apple_passcode_settings(policy)
    identifier = f"{identifier_prefix}.compliance.{policy_slug(policy)}"
    fingerprint = _fingerprint(policy)
    passcode_payload: dict[str, Any] = {
        "PayloadType": APPLE_PASSCODE_PAYLOAD_TYPE,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.passcode",
        "PayloadUUID": _uuid(identifier, "passcode", fingerprint),
        "PayloadDisplayName": "Passcode",
        **settings,
    }
    profile: dict[str, Any] = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": _uuid(identifier, "profile", fingerprint),
        "PayloadDisplayName": f"Spillguard: {policy.name}",
        "PayloadDescription": (
            f"Passcode settings of the Spillguard compliance policy '{policy.name}'."
        ),
        "PayloadContent": [passcode_payload],
    }
    if organization:
        profile["PayloadOrganization"] = organization
    return profile, notes


def apple_configuration_profile(
    policy: CompliancePolicy,
    *,
    identifier_prefix: str = DEFAULT_IDENTIFIER_PREFIX,
    organization: str | None = None,
) -> PolicyExport:
    """``policy`` as an unsigned ``.mobileconfig`` file (XML property list)."""
    profile, notes = apple_profile(
        policy, identifier_prefix=identifier_prefix, organization=organization
    )
    content = plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
    return PolicyExport(
        content=content,
        media_type=APPLE_PROFILE_MEDIA_TYPE,
        filename=f"{policy_slug(policy)}.mobileconfig",
        notes=tuple(notes),
    )


# --- Android ---------------------------------------------------------------------------


def android_api_level(release: str) -> int | None:
    """The lowest API level whose Android release is at least ``release``, if known."""
    for version, level in ANDROID_API_LEVELS:
        order = compare_versions(version, release)
        if order is not None and order >= 0:
            return level
    return None


def android_policy_dict(policy: CompliancePolicy) -> tuple[dict[str, Any], list[str]]:
    """``policy`` as an Android Management API Policy resource, and the export notes."""
    notes: list[str] = []
    result: dict[str, Any] = {}
    kind = policy.min_passcode_type
    requirements: dict[str, Any] = {"passwordScope": "SCOPE_DEVICE"}

    if kind is PasscodeType.SWIPE:
        notes.append(
            "Minimum passcode type swipe: Android has no password quality for a swipe (it is"
            f" no lock at all), so none is exported; {_CHECKED_AT_CHECKIN}."
        )
    if kind is PasscodeType.PATTERN:
        requirements["passwordQuality"] = "SOMETHING"
        if policy.min_passcode_length:
            notes.append(
                "Minimum pattern length: Android enforces passwordMinimumLength only for"
                f" numeric and stronger qualities; {_CHECKED_AT_CHECKIN}."
            )
    elif kind is PasscodeType.PIN:
        requirements["passwordQuality"] = (
            "NUMERIC" if policy.allow_simple_passcode else "NUMERIC_COMPLEX"
        )
    elif kind is PasscodeType.ALPHANUMERIC:
        # A Spillguard "alphanumeric" passcode is any password with letters, which is
        # Android's ALPHABETIC ("alphabetic (or symbol) characters"); ALPHANUMERIC would
        # also demand digits, stricter than the policy.
        requirements["passwordQuality"] = "ALPHABETIC"
        if not policy.allow_simple_passcode:
            notes.append(
                "Simple passcodes refused: Android has this setting for PINs only"
                " (NUMERIC_COMPLEX); not exported for passwords."
            )
    if policy.min_passcode_length and kind in (PasscodeType.PIN, PasscodeType.ALPHANUMERIC):
        requirements["passwordMinimumLength"] = policy.min_passcode_length
    if policy.max_failed_attempts is not None:
        requirements["maximumFailedPasswordsForWipe"] = policy.max_failed_attempts
    if len(requirements) > 1:
        result["passwordPolicies"] = [requirements]

    if policy.encryption_required:
        result["encryptionPolicy"] = "ENABLED_WITHOUT_PASSWORD"
    if policy.max_auto_lock_seconds is not None:
        # int64 fields travel as decimal strings in Google's JSON mapping.
        result["maximumTimeToLock"] = str(policy.max_auto_lock_seconds * 1000)

    android_minimum = policy.min_os_version.get(Platform.ANDROID)
    if android_minimum is not None:
        level = android_api_level(android_minimum)
        if level is None:
            notes.append(
                f"Minimum Android version {android_minimum}: newer than any API level this"
                f" Spillguard knows, so minimumApiLevel is not exported; {_CHECKED_AT_CHECKIN}."
            )
        else:
            release = next(v for v, lvl in ANDROID_API_LEVELS if lvl == level)
            if compare_versions(release, android_minimum) != 0:
                notes.append(
                    f"Minimum Android version {android_minimum}: exported as minimumApiLevel"
                    f" {level} (Android {release}), the first API level at or above it."
                )
            result["minimumApiLevel"] = level
    if any(platform is not Platform.ANDROID for platform in policy.min_os_version):
        notes.append(
            "Minimum OS versions for other platforms do not apply to Android and are not exported."
        )
    notes.extend(_server_side_notes(policy, include_os_version=False))
    return result, notes


def android_policy(policy: CompliancePolicy) -> PolicyExport:
    """``policy`` as Android Management API Policy JSON (for ``enterprises.policies.patch``)."""
    body, notes = android_policy_dict(policy)
    content = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
    return PolicyExport(
        content=content,
        media_type=ANDROID_POLICY_MEDIA_TYPE,
        filename=f"{policy_slug(policy)}.android-policy.json",
        notes=tuple(notes),
    )
