"""Conditional access: may this content reach this person's phone?

Pure rules (:func:`device_decision`, :func:`recipient_decision`) over plain data, and
the lookups that feed them (:func:`recipient_devices`). The mail filter, the download
gateway and the access-decision endpoint all decide here, so the three never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.models import User
from spillguard.devices.models import Device, DeviceState
from spillguard.inspection.classify import Label

DEFAULT_PROTECTED_LABEL = Label.CONFIDENTIAL
"""Content at or above this label reaches only compliant phones."""


@dataclass(frozen=True)
class DeviceVerdict:
    """What the platform knows of one phone, as far as access decisions need it."""

    device_id: int
    name: str
    state: str
    compliant: bool | None
    blocked: bool
    reasons: tuple[str, ...] = ()
    owner_id: int | None = None


@dataclass(frozen=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reason_text(self) -> str:
        return " ".join(self.reasons)


def device_decision(
    device: DeviceVerdict | None,
    label: Label,
    *,
    protected: Label = DEFAULT_PROTECTED_LABEL,
) -> Decision:
    """May content labelled ``label`` go to this phone? Reasons are for the phone's user."""
    if label < protected:
        return Decision(True, ())
    if device is None:
        return Decision(
            False, ("This phone is not enrolled; enrol it with Spillguard, then try again.",)
        )
    if device.state != DeviceState.ACTIVE.value:
        words = {
            DeviceState.LOST.value: "This phone has been reported lost.",
            DeviceState.WIPED.value: "This phone has been wiped.",
            DeviceState.RETIRED.value: "This phone has been retired from management.",
        }
        return Decision(False, (words.get(device.state, "This phone is not active."),))
    if device.compliant is None:
        return Decision(
            False,
            (
                "This phone has not reported its security settings yet; open the Spillguard agent "
                "so it checks in, then try again.",
            ),
        )
    if not device.compliant:
        reasons = tuple(_then_try_again(r) for r in device.reasons) or (
            "This phone does not meet the security policy.",
        )
        return Decision(False, reasons)
    if device.blocked:
        return Decision(False, ("This phone is blocked from company data.",))
    return Decision(True, ())


def _then_try_again(reason: str) -> str:
    """A compliance reason turned into an instruction ("…; fix it, then try again")."""
    text = reason.rstrip(". ")
    return f"{text}. Fix this on your phone, then try again."


def recipient_decision(
    devices: Sequence[DeviceVerdict], label: Label, *, protected: Label = DEFAULT_PROTECTED_LABEL
) -> Decision:
    """May content labelled ``label`` reach this person's mailbox, which syncs to every one
    of their phones? Only if they have at least one active phone and every phone that may
    still sync (active or lost, see :func:`user_devices`) may have it."""
    if label < protected:
        return Decision(True, ())
    active = [d for d in devices if d.state == DeviceState.ACTIVE.value]
    if not active:
        return Decision(False, ("The recipient has no enrolled phone.",))
    # A lost phone that was not wiped may still sync the mailbox: it counts, and refuses.
    # A wiped or retired phone holds nothing and syncs nothing: it neither allows nor refuses.
    syncing = [d for d in devices if d.state in (DeviceState.ACTIVE.value, DeviceState.LOST.value)]
    refusals = [(d, device_decision(d, label, protected=protected)) for d in syncing]
    reasons = tuple(
        f"{d.name}: {decision.reason_text}" for d, decision in refusals if not decision.allow
    )
    return Decision(not reasons, reasons)


def verdict_of(device: Device) -> DeviceVerdict:
    return DeviceVerdict(
        device_id=device.id,
        name=device.name,
        state=device.state,
        compliant=device.compliant,
        blocked=bool(device.blocked_for_corporate_data),
        reasons=tuple(device.compliance_reasons or ()),
        owner_id=device.owner_id,
    )


def user_by_email(session: Session, address: str) -> User | None:
    """The console/API user with this e-mail address (case-insensitive), if any."""
    return session.scalar(select(User).where(func.lower(User.email) == address.strip().lower()))


def user_devices(session: Session, user_id: int) -> list[DeviceVerdict]:
    """Every phone of a user that could still hold mail (active or lost; not wiped/retired)."""
    rows = session.scalars(
        select(Device)
        .where(
            Device.owner_id == user_id,
            Device.state.in_([DeviceState.ACTIVE.value, DeviceState.LOST.value]),
        )
        .order_by(Device.id)
    )
    return [verdict_of(d) for d in rows]
