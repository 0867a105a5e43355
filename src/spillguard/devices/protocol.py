"""The device side of the protocol: authenticate a device credential, check in, report
command results and location (docs/device-protocol.md is the contract)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

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
    Device,
    DeviceLocation,
    DeviceState,
    PostureSnapshot,
)
from spillguard.devices.posture import ReportedAtInFuture, check_reported_at
from spillguard.devices.schemas import CheckinRequest, CommandResultIn, LocationIn
from spillguard.devices.services import DeviceAuditAction, device_principal, reevaluate

log = structlog.get_logger("spillguard.devices")

_HEADER = re.compile(r"^Device ([1-9][0-9]{0,17})\.(\S{1,200})$", re.IGNORECASE)


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


def authenticate_device(
    session: Session, keys: KeyRing, header: str | None, base: Principal
) -> Device:
    """The device an ``Authorization: Device <id>.<credential>`` header stands for."""
    match = _HEADER.match((header or "").strip())
    if match is None:
        raise DeviceAuthenticationRequired(
            "Send the device credential as 'Authorization: Device <device_id>.<credential>'."
        )
    claimed, secret = int(match.group(1)), match.group(2)
    if not secret.startswith(CREDENTIAL_PREFIX):
        raise DeviceAuthenticationRequired("The device credential is malformed.")
    digest = keys.digest(KeyPurpose.DEVICE_CREDENTIAL_DIGEST, secret)
    device = session.scalar(select(Device).where(Device.credential_digest == digest))
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
        """Store posture, apply results, re-judge compliance; the commands to deliver."""
        now = utcnow()
        check_reported_at(body.posture, now, self.skew)
        for result in body.results:
            self.apply_result(result.command_id, result, now)
        device = self.device
        stored = body.posture.model_dump(mode="json")
        digest = posture_digest(stored)
        if digest != device.posture_digest:
            self.session.add(PostureSnapshot(device_id=device.id, received_at=now, posture=stored))
            device.posture_digest = digest
        device.posture = stored
        device.platform = body.posture.platform.value
        device.os_version = body.posture.os_version
        device.model = body.posture.model
        device.serial = body.posture.serial
        device.last_checkin_at = now
        reevaluate(
            self.session, self.principal, device, cause="checkin", now=now, posture=body.posture
        )
        CommandService(self.session, self.principal, self.settings).expire_overdue(device.id, now)
        pending = list(
            self.session.scalars(
                select(Command)
                .where(Command.device_id == device.id, Command.status.in_(PENDING_STATUSES))
                .order_by(Command.id)
            )
        )
        for command in pending:
            command.status = CommandStatus.SENT.value
            command.sent_at = now
            command.deliveries += 1
        return pending

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
