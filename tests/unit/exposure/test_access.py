"""Conditional-access rules, without a database: which phone may receive which label,
and the plain words a refused person reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spillguard.exposure.access import DeviceVerdict, device_decision, recipient_decision
from spillguard.inspection.classify import Label

GOOD = DeviceVerdict(1, "Work phone", "active", True, False)
SWIPE = DeviceVerdict(
    2,
    "Old phone",
    "active",
    False,
    False,
    ("Passcode is a swipe; policy requires a PIN of at least 6 digits.",),
)


def test_below_the_protected_label_anything_goes() -> None:
    assert device_decision(None, Label.INTERNAL).allow
    assert device_decision(SWIPE, Label.PUBLIC).allow
    assert recipient_decision([], Label.INTERNAL).allow


def test_a_compliant_phone_gets_confidential_content() -> None:
    assert device_decision(GOOD, Label.CONFIDENTIAL).allow
    assert device_decision(GOOD, Label.RESTRICTED).allow


def test_refusals_say_what_to_do() -> None:
    refused = device_decision(SWIPE, Label.CONFIDENTIAL)
    assert not refused.allow
    assert refused.reason_text == (
        "Passcode is a swipe; policy requires a PIN of at least 6 digits. "
        "Fix this on your phone, then try again."
    )
    assert "not enrolled" in device_decision(None, Label.CONFIDENTIAL).reason_text
    unknown = DeviceVerdict(3, "New", "active", None, False)
    assert "not reported" in device_decision(unknown, Label.CONFIDENTIAL).reason_text
    blocked = DeviceVerdict(4, "Blocked", "active", True, True)
    assert "blocked" in device_decision(blocked, Label.CONFIDENTIAL).reason_text
    for state, words in (("lost", "lost"), ("wiped", "wiped"), ("retired", "retired")):
        gone = DeviceVerdict(5, "Gone", state, True, False)
        assert words in device_decision(gone, Label.CONFIDENTIAL).reason_text


def test_a_mailbox_needs_every_phone_that_syncs_it_to_pass() -> None:
    assert recipient_decision([GOOD], Label.CONFIDENTIAL).allow
    mixed = recipient_decision([GOOD, SWIPE], Label.CONFIDENTIAL)
    assert not mixed.allow and mixed.reasons[0].startswith("Old phone: Passcode is a swipe")
    assert "no enrolled phone" in recipient_decision([], Label.CONFIDENTIAL).reason_text
    lost = DeviceVerdict(6, "Lost phone", "lost", True, False)
    assert not recipient_decision([GOOD, lost], Label.CONFIDENTIAL).allow
    assert not recipient_decision([lost], Label.CONFIDENTIAL).allow


def test_the_protected_label_is_configurable() -> None:
    assert device_decision(SWIPE, Label.CONFIDENTIAL, protected=Label.RESTRICTED).allow
    assert not device_decision(SWIPE, Label.INTERNAL, protected=Label.INTERNAL).allow


@given(
    st.lists(
        st.builds(
            DeviceVerdict,
            st.integers(1, 99),
            st.text(min_size=1, max_size=10),
            st.sampled_from(["active", "lost", "wiped", "retired"]),
            st.sampled_from([True, False, None]),
            st.booleans(),
        ),
        max_size=5,
    ),
    st.sampled_from(list(Label)),
)
def test_a_mailbox_is_allowed_only_if_every_syncing_phone_is(
    devices: list[DeviceVerdict], label: Label
) -> None:
    decision = recipient_decision(devices, label)
    if label < Label.CONFIDENTIAL:
        assert decision.allow
        return
    syncing = [d for d in devices if d.state in ("active", "lost")]
    expected = any(d.state == "active" for d in syncing) and all(
        device_decision(d, label).allow for d in syncing
    )
    assert decision.allow is expected
    assert decision.allow or decision.reasons
