"""Hypothesis strategies and builders for postures and compliance policies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from spillguard.devices.policy import CompliancePolicy, Consequence, Rule, is_comparable_version
from spillguard.devices.posture import PasscodeType, Platform, Posture

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def posture_data(**changes: Any) -> dict[str, Any]:
    """A check-in body of a well-kept Android phone, with ``changes`` applied."""
    data: dict[str, Any] = {
        "platform": "android",
        "os_version": "14",
        "model": "Pixel 8",
        "serial": "R5CT1234ABC",
        "passcode": {"type": "pin", "length": 6},
        "storage_encrypted": True,
        "auto_lock_seconds": 60,
        "rooted": False,
        "agent_version": "1.4.0",
        "managed_documents": [
            {"sha256": SHA, "file_name": "loyalty-top-1000.xlsx", "size": 48_213}
        ],
        "reported_at": "2025-03-14T09:29:00+00:00",
    }
    data.update(changes)
    return data


def posture(**changes: Any) -> Posture:
    return Posture.model_validate(posture_data(**changes))


# --- random JSON -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

# --- valid postures and policies ---------------------------------------------------------

# Small ranges and common values, so that device values often equal policy limits: the
# boundaries are where comparison mistakes hide.
dotted = st.lists(st.integers(0, 20), min_size=1, max_size=3).map(
    lambda parts: ".".join(map(str, parts))
) | st.sampled_from(["14", "16.7", "17.0", "17.4.1", "17.10", "6.1"])
LOCK_SECONDS = [30, 60, 120, 300, 600, 3600]
CHECKIN_AGES = [60, 3600, 86_400, 3 * 86_400]
lock_limits = st.sampled_from(LOCK_SECONDS) | st.integers(1, 7200)
checkin_limits = st.sampled_from(CHECKIN_AGES) | st.integers(60, 30 * 86_400)
silences = st.sampled_from([0, *CHECKIN_AGES, 86_401]) | st.integers(0, 60 * 86_400)
device_versions = dotted | st.sampled_from(
    ["17.0b1", "17.4.1", "17.10", "6.1.0-18-amd64", "14.0-beta", "beta", "v16"]
)


@st.composite
def passcodes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(PasscodeType))
    if kind in (PasscodeType.NONE, PasscodeType.SWIPE):
        length = draw(st.sampled_from([None, 0]))
    else:
        length = draw(st.none() | st.integers(0, 12) | st.integers(0, 64))
    return {"type": kind.value, "length": length}


postures = st.builds(
    lambda platform, version, code, encrypted, lock, rooted, agent: posture(
        platform=platform.value,
        os_version=version,
        passcode=code,
        storage_encrypted=encrypted,
        auto_lock_seconds=lock,
        rooted=rooted,
        agent_version=agent,
    ),
    st.sampled_from(Platform),
    device_versions,
    passcodes(),
    st.booleans(),
    st.none() | st.sampled_from([0, *LOCK_SECONDS]) | st.integers(0, 3600),
    st.booleans(),
    st.none() | device_versions,
)

rule_consequences = st.fixed_dictionaries(
    {
        "consequence": st.sampled_from(Consequence),
        "grace_seconds": st.integers(0, 7 * 86_400),
    }
)


@st.composite
def policies(draw: st.DrawFn) -> CompliancePolicy:
    kind = draw(st.sampled_from(PasscodeType))
    has_length = kind.strength >= PasscodeType.PATTERN.strength
    agent_required = draw(st.booleans())
    return CompliancePolicy.model_validate(
        {
            "name": draw(st.sampled_from(["Sales phones", "Field staff", "Board"])),
            "min_passcode_type": kind,
            "min_passcode_length": (
                draw(st.integers(0, 12) | st.integers(0, 64)) if has_length else 0
            ),
            "allow_simple_passcode": draw(st.booleans()),
            "max_auto_lock_seconds": draw(st.none() | lock_limits),
            "encryption_required": draw(st.booleans()),
            "max_failed_attempts": draw(st.none() | st.integers(1, 100)),
            "min_os_version": draw(st.dictionaries(st.sampled_from(Platform), dotted)),
            "block_rooted": draw(st.booleans()),
            "agent_required": agent_required,
            "min_agent_version": draw(st.none() | dotted) if agent_required else None,
            "max_checkin_age_seconds": draw(st.none() | checkin_limits),
            "consequences": draw(st.dictionaries(st.sampled_from(Rule), rule_consequences)),
        }
    )


@st.composite
def weaker_policies(draw: st.DrawFn, policy: CompliancePolicy) -> CompliancePolicy:
    """A policy no stricter than ``policy`` in any rule (each rule kept, relaxed or off)."""
    kind = draw(
        st.sampled_from(
            [t for t in PasscodeType if t.strength <= policy.min_passcode_type.strength]
        )
    )
    has_length = kind.strength >= PasscodeType.PATTERN.strength
    lock = policy.max_auto_lock_seconds
    stale = policy.max_checkin_age_seconds
    agent_required = policy.agent_required and draw(st.booleans())
    minimums = {
        platform: draw(st.sampled_from([version, "0"]))
        for platform, version in policy.min_os_version.items()
        if draw(st.booleans())
    }
    return policy.model_copy(
        update={
            "min_passcode_type": kind,
            "min_passcode_length": (
                draw(
                    st.just(policy.min_passcode_length) | st.integers(0, policy.min_passcode_length)
                )
                if has_length
                else 0
            ),
            "max_auto_lock_seconds": (
                None
                if lock is None
                else draw(st.none() | st.just(lock) | st.integers(lock, lock * 2))
            ),
            "encryption_required": policy.encryption_required and draw(st.booleans()),
            "min_os_version": minimums,
            "block_rooted": policy.block_rooted and draw(st.booleans()),
            "agent_required": agent_required,
            "min_agent_version": (
                draw(st.sampled_from([None, policy.min_agent_version])) if agent_required else None
            ),
            "max_checkin_age_seconds": (
                None
                if stale is None
                else draw(st.none() | st.just(stale) | st.integers(stale, stale * 2))
            ),
        }
    )


@st.composite
def tightest_policies(draw: st.DrawFn, device: Posture, silence: int) -> CompliancePolicy:
    """The strictest policy ``device`` still meets, with a random subset of rules on.

    Every limit equals the device's own value, so each rule sits exactly on its boundary.
    """
    rules: dict[str, Any] = {"name": "Boundary"}
    code = device.passcode
    if draw(st.booleans()):
        rules["min_passcode_type"] = code.type
        if code.type.strength >= PasscodeType.PATTERN.strength and code.length is not None:
            rules["min_passcode_length"] = min(code.length, 64)
    if device.auto_lock_seconds is not None and draw(st.booleans()):
        rules["max_auto_lock_seconds"] = max(device.auto_lock_seconds, 1)
    rules["encryption_required"] = device.storage_encrypted and draw(st.booleans())
    if is_comparable_version(device.os_version) and draw(st.booleans()):
        rules["min_os_version"] = {device.platform: device.os_version}
    rules["block_rooted"] = not device.rooted and draw(st.booleans())
    if device.agent_version is not None and draw(st.booleans()):
        rules["agent_required"] = True
        if is_comparable_version(device.agent_version) and draw(st.booleans()):
            rules["min_agent_version"] = device.agent_version
    if draw(st.booleans()):
        rules["max_checkin_age_seconds"] = max(silence, 60)
    return CompliancePolicy.model_validate(rules)
