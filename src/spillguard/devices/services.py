"""Device inventory and groups, the module's audit actions and errors, and compliance
re-evaluation (shared by check-in, policy changes and assignment changes).

The other services live next to this one: ``enrollment`` (enrollments and the device side
of enrolling), ``protocol`` (device authentication, check-in, results, location),
``commands`` (the command queue, report lost, the maintenance job) and ``policies``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.devices.compliance import evaluate
from spillguard.devices.models import (
    ComplianceChange,
    CompliancePolicyRecord,
    Device,
    DeviceGroup,
    DeviceLocation,
    DeviceState,
)
from spillguard.devices.policy import CompliancePolicy, Rule
from spillguard.devices.posture import Posture
from spillguard.incidents import timeline as incident_timeline
from spillguard.incidents.models import TimelineKind

NO_POLICY_NOTE = "No compliance policy applies to this device."


class DeviceAuditAction(StrEnum):
    ENROLLMENT_CREATED = "devices:enrollment:created"
    ENROLLMENT_REVOKED = "devices:enrollment:revoked"
    ENROLLMENT_REFUSED = "devices:enrollment:refused"
    DEVICE_ENROLLED = "devices:device:enrolled"
    DEVICE_UPDATED = "devices:device:updated"
    DEVICE_REPORTED_LOST = "devices:device:reported-lost"
    DEVICE_WIPED = "devices:device:wiped"
    DEVICE_RETIRED = "devices:device:retired"
    GROUP_CREATED = "devices:group:created"
    GROUP_UPDATED = "devices:group:updated"
    POLICY_CREATED = "devices:policy:created"
    POLICY_UPDATED = "devices:policy:updated"
    POLICY_DELETED = "devices:policy:deleted"
    COMMAND_QUEUED = "devices:command:queued"
    COMMAND_REFUSED = "devices:command:refused"
    COMMAND_CANCELLED = "devices:command:cancelled"
    COMMAND_ACKNOWLEDGED = "devices:command:acknowledged"
    COMMAND_FAILED = "devices:command:failed"
    COMPLIANCE_CHANGED = "devices:compliance:changed"
    CHECKIN_REJECTED = "devices:checkin:rejected"
    LOCATION_REJECTED = "devices:location:rejected"


class DeviceNotFound(NotFound):
    slug = "device-not-found"
    title = "Device not found"


class GroupNotFound(NotFound):
    slug = "device-group-not-found"
    title = "Device group not found"


class PolicyNotFound(NotFound):
    slug = "compliance-policy-not-found"
    title = "Compliance policy not found"


class DeviceNotManaged(Conflict):
    slug = "device-not-managed"
    title = "Device is no longer managed"


def device_principal(device_id: int, base: Principal) -> Principal:
    """The principal a device acts as in the audit trail (no role: it holds no permission)."""
    return Principal(
        kind="device",
        user_id=None,
        label=f"device {device_id}",
        role=None,
        source_ip=base.source_ip,
        request_id=base.request_id,
    )


def effective_policy(session: Session, device: Device) -> CompliancePolicyRecord | None:
    """The device's own policy, else its group's, else none.

    ``session.get`` answers from the identity map when the caller loaded the rows already
    (the check-in loads device, group and policy in one query).
    """
    if device.policy_id is not None:
        return session.get(CompliancePolicyRecord, device.policy_id)
    if device.group_id is not None:
        group = session.get(DeviceGroup, device.group_id)
        if group is not None and group.policy_id is not None:
            return session.get(CompliancePolicyRecord, group.policy_id)
    return None


# Parsed policies, per process, keyed by (id, updated_at): every change of a policy's rules
# sets a new updated_at (PolicyService.replace), so a stale entry is never used, in this
# worker or any other; the key is read from the database with the policy each time.
_PARSED: dict[tuple[int, datetime], CompliancePolicy] = {}
_PARSED_LIMIT = 256


def parsed_policy(record: CompliancePolicyRecord) -> CompliancePolicy:
    """``record.rules`` as a :class:`CompliancePolicy`, parsed once per policy version."""
    key = (record.id, record.updated_at)
    policy = _PARSED.get(key)
    if policy is None:
        policy = CompliancePolicy.model_validate(record.rules)
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[key] = policy
    return policy


def compliance_basis(posture_digest: str | None, record: CompliancePolicyRecord | None) -> str:
    """What a verdict depends on besides the clock: the posture and the policy version."""
    if record is None:
        return compliance_basis_of(posture_digest, None, None)
    return compliance_basis_of(posture_digest, record.id, record.updated_at)


def compliance_basis_of(
    posture_digest: str | None, policy_id: int | None, policy_version: datetime | None
) -> str:
    """:func:`compliance_basis` from the policy's id and ``updated_at`` (None: no policy)."""
    policy = (
        "-"
        if policy_id is None or policy_version is None
        else (f"{policy_id}@{policy_version.isoformat()}")
    )
    return hashlib.sha256(f"{posture_digest or '-'}|{policy}".encode()).hexdigest()


def reevaluate(
    session: Session,
    principal: Principal,
    device: Device,
    *,
    cause: str,
    now: datetime,
    posture: Posture | None = None,
    record: CompliancePolicyRecord | Literal[False] | None = False,
) -> bool:
    """Judge the device against its effective policy; record and audit a changed verdict.

    A change is a switch between compliant and not (or of the policy judging it); the
    reasons at that moment are stored with it.  Returns True if the verdict changed.
    ``record`` is the effective policy when the caller has looked it up already.

    The verdict's basis (:func:`compliance_basis`) is kept when the verdict holds at any
    check-in, that is unless the device failed the "stale" rule (a check-in passes it);
    a check-in with an unchanged basis then needs no re-evaluation.
    """
    if record is False:
        record = effective_policy(session, device)
    if posture is None and device.posture is not None:
        posture = Posture.model_validate(device.posture)
    stale = False
    if record is None:
        compliant, reasons = True, []
    else:
        verdict = evaluate(
            posture,
            parsed_policy(record),
            last_checkin_at=device.last_checkin_at,
            now=now,
        )
        compliant, reasons = verdict.compliant, list(verdict.reasons)
        stale = verdict.failed(Rule.STALE) is not None
    policy_id = record.id if record else None
    changed = device.compliant is None or (
        device.compliant != compliant or device.compliance_policy_id != policy_id
    )
    previous = device.compliant
    device.compliant = compliant
    device.compliance_reasons = reasons
    device.compliance_policy_id = policy_id
    device.compliance_evaluated_at = now
    device.compliance_basis = None if stale else compliance_basis(device.posture_digest, record)
    if changed:
        session.add(
            ComplianceChange(
                device_id=device.id,
                at=now,
                compliant=compliant,
                reasons=reasons,
                policy_id=policy_id,
                cause=cause,
            )
        )
        record_event(
            session,
            principal,
            DeviceAuditAction.COMPLIANCE_CHANGED,
            object_type="device",
            object_id=device.id,
            details={
                "compliant": compliant,
                "previous": previous,
                "reasons": reasons,
                "policy_id": policy_id,
                "cause": cause,
            },
        )
        if previous is not None:
            incident_timeline.device_event(
                session,
                device.id,
                TimelineKind.COMPLIANCE,
                "The phone became compliant."
                if compliant
                else "The phone became non-compliant: " + "; ".join(reasons),
                actor_label=principal.label,
                data={"compliant": compliant, "reasons": reasons, "cause": cause},
                at=now,
            )
    return changed


def reevaluate_many(
    session: Session, principal: Principal, devices: list[Device], *, cause: str
) -> int:
    now = utcnow()
    return sum(reevaluate(session, principal, d, cause=cause, now=now) for d in devices)


def managed_devices_of_policy(session: Session, policy_id: int) -> list[Device]:
    """Devices the policy applies to now (its own, or through a group without override)."""
    groups = select(DeviceGroup.id).where(DeviceGroup.policy_id == policy_id)
    query = select(Device).where(
        Device.state.in_([DeviceState.ACTIVE.value, DeviceState.LOST.value]),
        (Device.policy_id == policy_id)
        | (Device.policy_id.is_(None) & Device.group_id.in_(groups))
        | (Device.compliance_policy_id == policy_id),
    )
    return list(session.scalars(query.order_by(Device.id)))


@dataclass(frozen=True)
class DeviceFilter:
    state: str | None = None
    group_id: int | None = None
    owner_id: int | None = None
    platform: str | None = None
    compliant: bool | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.state:
            query = query.where(Device.state == self.state)
        if self.group_id is not None:
            query = query.where(Device.group_id == self.group_id)
        if self.owner_id is not None:
            query = query.where(Device.owner_id == self.owner_id)
        if self.platform:
            query = query.where(Device.platform == self.platform)
        if self.compliant is not None:
            query = query.where(Device.compliant.is_(self.compliant))
        return query


class DeviceService:
    """The inventory: list, read, rename and assign devices; compliance and location history."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def get(self, device_id: int) -> Device:
        self.principal.require(Permission.DEVICES_VIEW)
        return self._get(device_id)

    def _get(self, device_id: int) -> Device:
        device = self.session.get(Device, device_id)
        if device is None:
            raise DeviceNotFound(f"No device with id {device_id}.")
        return device

    def listing(self, flt: DeviceFilter, *, limit: int, offset: int) -> tuple[list[Device], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        base = flt.apply(select(Device))
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(base.order_by(Device.id.desc()).limit(limit).offset(offset))
        return list(rows), total

    def update(
        self,
        device_id: int,
        *,
        fields: set[str],
        name: str | None = None,
        group_id: int | None = None,
        policy_id: int | None = None,
    ) -> Device:
        """Rename a device or change its group or own policy (only the ``fields`` given)."""
        self.principal.require(Permission.DEVICES_MANAGE)
        device = self._get(device_id)
        changes: dict[str, object] = {}
        if "name" in fields:
            if name is None:
                raise InvalidInput("A device needs a name.", field="name")
            changes["name"] = name
            device.name = name
        if "group_id" in fields:
            if group_id is not None and self.session.get(DeviceGroup, group_id) is None:
                raise GroupNotFound(f"No device group with id {group_id}.")
            changes["group_id"] = group_id
            device.group_id = group_id
        if "policy_id" in fields:
            if (
                policy_id is not None
                and self.session.get(CompliancePolicyRecord, policy_id) is None
            ):
                raise PolicyNotFound(f"No compliance policy with id {policy_id}.")
            changes["policy_id"] = policy_id
            device.policy_id = policy_id
        if changes:
            self.session.flush()
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.DEVICE_UPDATED,
                object_type="device",
                object_id=device.id,
                details=changes,
            )
            if {"group_id", "policy_id"} & changes.keys() and device.state in (
                DeviceState.ACTIVE.value,
                DeviceState.LOST.value,
            ):
                reevaluate(self.session, self.principal, device, cause="assignment", now=utcnow())
        return device

    def compliance_history(
        self, device_id: int, *, limit: int, offset: int
    ) -> tuple[list[ComplianceChange], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        self._get(device_id)
        base = select(ComplianceChange).where(ComplianceChange.device_id == device_id)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(ComplianceChange.id.desc()).limit(limit).offset(offset)
        )
        return list(rows), total

    def locations(
        self, device_id: int, *, limit: int, offset: int
    ) -> tuple[list[DeviceLocation], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        self._get(device_id)
        base = select(DeviceLocation).where(DeviceLocation.device_id == device_id)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(DeviceLocation.id.desc()).limit(limit).offset(offset)
        )
        return list(rows), total

    def owner_email(self, device: Device) -> str:
        owner = self.session.get(User, device.owner_id)
        return owner.email if owner else ""


class GroupService:
    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def listing(self, *, limit: int, offset: int) -> tuple[list[DeviceGroup], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        total = self.session.scalar(select(func.count()).select_from(DeviceGroup)) or 0
        rows = self.session.scalars(
            select(DeviceGroup).order_by(DeviceGroup.name).limit(limit).offset(offset)
        )
        return list(rows), total

    def get(self, group_id: int) -> DeviceGroup:
        self.principal.require(Permission.DEVICES_VIEW)
        return self._get(group_id)

    def _get(self, group_id: int) -> DeviceGroup:
        group = self.session.get(DeviceGroup, group_id)
        if group is None:
            raise GroupNotFound(f"No device group with id {group_id}.")
        return group

    def _check_name(self, name: str, group_id: int | None = None) -> None:
        other = self.session.scalar(select(DeviceGroup).where(DeviceGroup.name == name))
        if other is not None and other.id != group_id:
            raise Conflict(f"A device group named {name!r} already exists.", field="name")

    def _check_policy(self, policy_id: int | None) -> None:
        if policy_id is not None and self.session.get(CompliancePolicyRecord, policy_id) is None:
            raise PolicyNotFound(f"No compliance policy with id {policy_id}.")

    def create(self, name: str, description: str | None, policy_id: int | None) -> DeviceGroup:
        self.principal.require(Permission.DEVICES_MANAGE)
        self._check_name(name)
        self._check_policy(policy_id)
        group = DeviceGroup(name=name, description=description, policy_id=policy_id)
        self.session.add(group)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.GROUP_CREATED,
            object_type="device_group",
            object_id=group.id,
            details={"name": name, "policy_id": policy_id},
        )
        return group

    def update(
        self,
        group_id: int,
        *,
        fields: set[str],
        name: str | None = None,
        description: str | None = None,
        policy_id: int | None = None,
    ) -> DeviceGroup:
        self.principal.require(Permission.DEVICES_MANAGE)
        group = self._get(group_id)
        changes: dict[str, object] = {}
        if "name" in fields:
            if name is None:
                raise InvalidInput("A group needs a name.", field="name")
            self._check_name(name, group.id)
            group.name = changes["name"] = name  # type: ignore[assignment]
        if "description" in fields:
            group.description = description
            changes["description"] = description
        if "policy_id" in fields:
            self._check_policy(policy_id)
            group.policy_id = policy_id
            changes["policy_id"] = policy_id
        self.session.flush()
        if changes:
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.GROUP_UPDATED,
                object_type="device_group",
                object_id=group.id,
                details=changes,
            )
        if "policy_id" in changes:
            members = self.session.scalars(
                select(Device).where(
                    Device.group_id == group.id,
                    Device.state.in_([DeviceState.ACTIVE.value, DeviceState.LOST.value]),
                )
            )
            reevaluate_many(self.session, self.principal, list(members), cause="assignment")
        return group
