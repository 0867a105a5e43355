"""The device side of the protocol: authenticate a device credential, check in, report
command results and location (docs/device-protocol.md is the contract)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session, defer, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import AuthenticationRequired, Conflict
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.roles import Principal, mark_authz_checked
from spillguard.core.settings import Settings
from spillguard.devices.commands import CommandNotFound, CommandService, DeviceNotLost
from spillguard.devices.enrollment import CREDENTIAL_PREFIX
from spillguard.devices.models import (
    PENDING_STATUSES,
    Command,
    CommandStatus,
    CommandType,
    CompliancePolicyRecord,
    Device,
    DeviceGroup,
    DeviceLocation,
    DeviceState,
    PostureSnapshot,
)
from spillguard.devices.posture import ReportedAtInFuture, check_reported_at
from spillguard.devices.schemas import CheckinRequest, CommandResultIn, LocationIn
from spillguard.devices.services import (
    DeviceAuditAction,
    compliance_basis,
    device_principal,
    effective_policy,
    reevaluate,
)
from spillguard.incidents import timeline as incident_timeline
from spillguard.incidents.models import TimelineKind

log = structlog.get_logger("spillguard.devices")

# "Device <id>.<credential>"
DEVICE_HEADER = re.compile(r"^Device ([1-9][0-9]{0,17})\.(\S{1,200})$", re.IGNORECASE)


class DeviceAuthenticationRequired(AuthenticationRequired):
    challenge = "Device"


class DeviceCredentialMismatch(DeviceAuthenticationRequired):
    slug = "device-credential-mismatch"
    title = "Device credential does not match the device"
    keep_changes = True


class DeviceCredentialRevoked(DeviceAuthenticationRequired):
    slug = "device-credential-revoked"
    title = "Device credential revoked"
    keep_changes = True


class CommandFinished(Conflict):
    slug = "command-finished"
    title = "Command already finished"


# Built once: constructing a statement and its cache key costs more than running it.
# Device, group and policies in one query, so the check-in's effective_policy() answers
# from the identity map.  Only the columns a check-in reads: every column costs the
# driver and the ORM on each check-in, and the stored posture (replaced by the reported
# one) and the policy's rules (parsed once per version, devices.services.parsed_policy)
# are the widest.  Another attribute loads when first read.
_POLICY_KEY = (CompliancePolicyRecord.id, CompliancePolicyRecord.updated_at)
_DEVICE_BY_DIGEST = (
    select(Device)
    .where(Device.credential_digest == bindparam("digest"))
    .options(
        defer(Device.posture),
        joinedload(Device.policy).load_only(*_POLICY_KEY),
        joinedload(Device.group)
        .load_only(DeviceGroup.id, DeviceGroup.policy_id)
        .joinedload(DeviceGroup.policy)
        .load_only(*_POLICY_KEY),
    )
)
# SET columns come from the parameters given (Core "UPDATE … WHERE id = :device_id").
_DEVICES = cast(Table, Device.__table__)
_UPDATE_DEVICE = _DEVICES.update().where(_DEVICES.c.id == bindparam("device_id"))


def authenticate_device(
    session: Session, keys: KeyRing, header: str | None, base: Principal
) -> Device:
    """The device an ``Authorization: Device <id>.<credential>`` header stands for."""
    match = DEVICE_HEADER.match((header or "").strip())
    if match is None:
        raise DeviceAuthenticationRequired(
            "Send the device credential as 'Authorization: Device <device_id>.<credential>'."
        )
    claimed, secret = int(match.group(1)), match.group(2)
    if not secret.startswith(CREDENTIAL_PREFIX):
        raise DeviceAuthenticationRequired("The device credential is malformed.")
    digest = keys.digest(KeyPurpose.DEVICE_CREDENTIAL_DIGEST, secret)
    device = session.scalar(_DEVICE_BY_DIGEST, {"digest": digest})
    if device is None:
        log.warning("device_credential_unknown", claimed_device=claimed)
        raise DeviceAuthenticationRequired("The device credential is unknown.")
    if device.id != claimed:
        record_event(
            session,
            device_principal(device.id, base),
            DeviceAuditAction.CHECKIN_REJECTED,
            object_type="device",
            object_id=claimed,
            outcome="failure",
            details={"reason": "credential of another device", "credential_of": device.id},
        )
        raise DeviceCredentialMismatch(
            "This credential belongs to another device.", device_id=claimed
        )
    if device.credential_revoked_at is not None:
        record_event(
            session,
            device_principal(device.id, base),
            DeviceAuditAction.CHECKIN_REJECTED,
            object_type="device",
            object_id=device.id,
            outcome="failure",
            details={"reason": f"device {device.state}", "state": device.state},
        )
        raise DeviceCredentialRevoked(
            f"The device was {device.state}; its credential no longer works.",
            state=device.state,
        )
    mark_authz_checked()
    return device


def posture_digest(posture: dict[str, object]) -> str:
    """Digest of a posture without its timestamp: equal digests mean nothing changed."""
    body = {k: v for k, v in posture.items() if k != "reported_at"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class ProtocolService:
    """What one authenticated device may do."""

    def __init__(
        self, session: Session, device: Device, base: Principal, settings: Settings
    ) -> None:
        self.session = session
        self.device = device
        self.principal = device_principal(device.id, base)
        self.settings = settings
        self.skew = timedelta(seconds=settings.device_clock_skew_seconds)

    def checkin(self, body: CheckinRequest) -> list[Command]:
        """Store posture, apply results, re-judge compliance; the commands to deliver.

        The common check-in (nothing queued, posture and policy unchanged) costs the
        authentication SELECT and one UPDATE of the device row at commit:

        - compliance is re-evaluated only when its basis (posture digest, effective policy
          and its version) differs from the stored verdict's, which the last evaluation
          clears when the device was found stale (devices.services.reevaluate);
        - the pending-command query runs only when something was queued since a check-in
          last found the queue empty (``commands_queued`` vs ``commands_checked``), and it
          leaves out commands past their expiry; marking them expired is the maintenance
          job's work, not the check-in's.
        """
        now = utcnow()
        check_reported_at(body.posture, now, self.skew)
        for result in body.results:
            self.apply_result(result.command_id, result, now)
        device = self.device
        # Read before the pending-command query: a command queued after this read raises
        # the counter again, so the next check-in looks even if this one missed it.
        queued_seen = device.commands_queued
        stored = body.posture.model_dump(mode="json")
        digest = posture_digest(stored)
        fresh: dict[str, Any] = {
            "posture": stored,
            "platform": body.posture.platform.value,
            "os_version": body.posture.os_version,
            "model": body.posture.model,
            "serial": body.posture.serial,
            "last_checkin_at": now,
        }
        if digest != device.posture_digest:
            self.session.add(PostureSnapshot(device_id=device.id, received_at=now, posture=stored))
            fresh["posture_digest"] = digest
        record = effective_policy(self.session, device)
        if device.compliance_basis != compliance_basis(digest, record):
            self._assign(fresh)
            reevaluate(
                self.session,
                self.principal,
                device,
                cause="checkin",
                now=now,
                posture=body.posture,
                record=record,
            )
            fresh = {}
        else:
            fresh["compliance_evaluated_at"] = now
        pending: list[Command] = []
        if queued_seen != device.commands_checked:
            with self.session.no_autoflush:
                pending = list(
                    self.session.scalars(
                        select(Command)
                        .where(
                            Command.device_id == device.id,
                            Command.status.in_(PENDING_STATUSES),
                            Command.expires_at > now,
                        )
                        .order_by(Command.id)
                    )
                )
            if not pending:
                fresh["commands_checked"] = queued_seen
        for command in pending:
            command.status = CommandStatus.SENT.value
            command.sent_at = now
            command.deliveries += 1
        self._store(fresh)
        return pending

    def _assign(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self.device, name, value)

    def _store(self, values: dict[str, Any]) -> None:
        """Write the device's new values: with the ORM's flush when it has other changes
        of the device to write anyway, else as one Core UPDATE (the common check-in, where
        the unit of work's bookkeeping would cost more than the statement)."""
        if not values:
            return
        if self.session.is_modified(self.device):
            self._assign(values)
            return
        self.session.connection().execute(_UPDATE_DEVICE, {"device_id": self.device.id, **values})
        for name, value in values.items():
            set_committed_value(self.device, name, value)

    def apply_result(
        self, command_id: int, result: CommandResultIn, now: datetime | None = None
    ) -> Command:
        now = now or utcnow()
        command = self.session.get(Command, command_id)
        if command is None or command.device_id != self.device.id:
            raise CommandNotFound(f"This device has no command {command_id}.")
        final = {"acknowledged": CommandStatus.ACKNOWLEDGED, "error": CommandStatus.ERROR}
        if command.status not in PENDING_STATUSES:
            if final.get(result.status) == command.status:
                return command  # the same result again: harmless
            raise CommandFinished(
                f"Command {command_id} is already {command.status}.", command_status=command.status
            )
        if result.location is not None:
            self.store_location(result.location, command_id=command.id, now=now)
        if result.status == "not_now":
            command.status = CommandStatus.QUEUED.value
            return command
        command.status = final[result.status].value
        command.finished_at = now
        command.error_reason = result.reason if result.status == "error" else None
        kind = CommandType(command.type)
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.COMMAND_ACKNOWLEDGED
            if result.status == "acknowledged"
            else DeviceAuditAction.COMMAND_FAILED,
            object_type="device",
            object_id=self.device.id,
            outcome="success" if result.status == "acknowledged" else "failure",
            details={"command_id": command.id, "type": kind.value, "reason": result.reason},
        )
        incident_timeline.device_event(
            self.session,
            self.device.id,
            TimelineKind.COMMAND,
            f"The phone acknowledged the {kind.value} command."
            if result.status == "acknowledged"
            else f"The phone reported the {kind.value} command failed.",
            actor_label="device",
            data={"command_id": command.id, "type": kind.value, "status": result.status},
            at=now,
        )
        if result.status == "acknowledged" and kind in (CommandType.WIPE, CommandType.RETIRE):
            self._end_management(kind, now)
        return command

    def _end_management(self, kind: CommandType, now: datetime) -> None:
        device = self.device
        device.state = (
            DeviceState.WIPED if kind is CommandType.WIPE else DeviceState.RETIRED
        ).value
        device.credential_revoked_at = now
        device.lost_message = device.lost_phone = None
        CommandService(self.session, self.principal, self.settings)._cancel_pending(
            device, None, now, reason=f"device {device.state}"
        )
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.DEVICE_WIPED
            if kind is CommandType.WIPE
            else DeviceAuditAction.DEVICE_RETIRED,
            object_type="device",
            object_id=device.id,
            details={"credential_revoked_at": now.isoformat()},
        )

    def store_location(
        self, location: LocationIn, *, command_id: int | None = None, now: datetime | None = None
    ) -> DeviceLocation:
        """Keep a location, only while the device is in lost mode."""
        now = now or utcnow()
        if self.device.state != DeviceState.LOST.value:
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.LOCATION_REJECTED,
                object_type="device",
                object_id=self.device.id,
                outcome="failure",
                details={"reason": "not in lost mode", "state": self.device.state},
            )
            raise LocationRefused(
                "Location is accepted only while the device is in lost mode; nothing was stored."
            )
        if location.captured_at - now > self.skew:
            raise ReportedAtInFuture(
                "captured_at lies further in the future than the allowed clock skew.",
                field="captured_at",
            )
        row = DeviceLocation(
            device_id=self.device.id,
            latitude=location.latitude,
            longitude=location.longitude,
            accuracy_m=location.accuracy_m,
            captured_at=location.captured_at,
            received_at=now,
            command_id=command_id,
        )
        self.session.add(row)
        self.session.flush()
        return row


class LocationRefused(DeviceNotLost):
    """A location outside lost mode: refused, nothing stored, the attempt audited."""

    keep_changes = True
