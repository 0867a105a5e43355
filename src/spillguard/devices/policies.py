"""Compliance policies: create, change, delete, export; every change re-evaluates the
devices the policy applies to."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict
from spillguard.core.roles import Permission, Principal
from spillguard.devices.export import PolicyExport, android_policy, apple_configuration_profile
from spillguard.devices.models import CompliancePolicyRecord, Device, DeviceGroup
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.services import (
    DeviceAuditAction,
    PolicyNotFound,
    managed_devices_of_policy,
    reevaluate_many,
)


class PolicyService:
    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def listing(self, *, limit: int, offset: int) -> tuple[list[CompliancePolicyRecord], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        total = self.session.scalar(select(func.count()).select_from(CompliancePolicyRecord)) or 0
        rows = self.session.scalars(
            select(CompliancePolicyRecord)
            .order_by(CompliancePolicyRecord.name)
            .limit(limit)
            .offset(offset)
        )
        return list(rows), total

    def get(self, policy_id: int) -> CompliancePolicyRecord:
        self.principal.require(Permission.DEVICES_VIEW)
        return self._get(policy_id)

    def _get(self, policy_id: int) -> CompliancePolicyRecord:
        record = self.session.get(CompliancePolicyRecord, policy_id)
        if record is None:
            raise PolicyNotFound(f"No compliance policy with id {policy_id}.")
        return record

    def assignments(self, policy_id: int) -> tuple[list[int], list[int]]:
        """Ids of the groups and devices the policy is assigned to."""
        groups = self.session.scalars(
            select(DeviceGroup.id)
            .where(DeviceGroup.policy_id == policy_id)
            .order_by(DeviceGroup.id)
        )
        devices = self.session.scalars(
            select(Device.id).where(Device.policy_id == policy_id).order_by(Device.id)
        )
        return list(groups), list(devices)

    def _check_name(self, name: str, policy_id: int | None = None) -> None:
        other = self.session.scalar(
            select(CompliancePolicyRecord).where(CompliancePolicyRecord.name == name)
        )
        if other is not None and other.id != policy_id:
            raise Conflict(f"A compliance policy named {name!r} already exists.", field="name")

    def create(self, policy: CompliancePolicy) -> CompliancePolicyRecord:
        self.principal.require(Permission.DEVICES_MANAGE)
        self._check_name(policy.name)
        record = CompliancePolicyRecord(
            name=policy.name,
            rules=policy.model_dump(mode="json"),
            created_by_id=self.principal.user_id,
        )
        self.session.add(record)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.POLICY_CREATED,
            object_type="compliance_policy",
            object_id=record.id,
            details={"name": policy.name, "rules": record.rules},
        )
        return record

    def replace(self, policy_id: int, policy: CompliancePolicy) -> CompliancePolicyRecord:
        """Replace the policy's rules and re-evaluate every device it applies to."""
        self.principal.require(Permission.DEVICES_MANAGE)
        record = self._get(policy_id)
        self._check_name(policy.name, record.id)
        before = record.rules
        record.name = policy.name
        record.rules = policy.model_dump(mode="json")
        record.updated_at = utcnow()
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.POLICY_UPDATED,
            object_type="compliance_policy",
            object_id=record.id,
            details={"name": policy.name, "before": before, "after": record.rules},
        )
        devices = managed_devices_of_policy(self.session, record.id)
        reevaluate_many(self.session, self.principal, devices, cause="policy-change")
        return record

    def delete(self, policy_id: int) -> None:
        """Delete a policy; its devices fall back to their group's policy, or none."""
        self.principal.require(Permission.DEVICES_MANAGE)
        record = self._get(policy_id)
        devices = managed_devices_of_policy(self.session, record.id)
        self.session.execute(
            update(Device)
            .where(Device.policy_id == record.id)
            .values(policy_id=None)
            .execution_options(synchronize_session="fetch")
        )
        self.session.execute(
            update(DeviceGroup)
            .where(DeviceGroup.policy_id == record.id)
            .values(policy_id=None)
            .execution_options(synchronize_session="fetch")
        )
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.POLICY_DELETED,
            object_type="compliance_policy",
            object_id=record.id,
            details={"name": record.name},
        )
        self.session.delete(record)
        self.session.flush()
        for device in devices:
            self.session.refresh(device)
        reevaluate_many(self.session, self.principal, devices, cause="policy-change")

    def export(self, policy_id: int, fmt: str) -> PolicyExport:
        """The policy as an Apple ``.mobileconfig`` (``apple``) or Android JSON (``android``)."""
        self.principal.require(Permission.DEVICES_VIEW)
        policy = CompliancePolicy.model_validate(self._get(policy_id).rules)
        if fmt == "apple":
            return apple_configuration_profile(policy)
        return android_policy(policy)
