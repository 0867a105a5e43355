"""The command queue: queue (collapsing duplicates), list, cancel and clear commands;
"report lost" in one action; and the maintenance job that keeps the queue bounded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import affected, utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.jobs import Job
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.devices.consequences import consequences_job as consequences_job
from spillguard.devices.models import (
    FINISHED_STATUSES,
    PENDING_STATUSES,
    Command,
    CommandStatus,
    CommandType,
    Device,
    DeviceLocation,
    DeviceState,
    PostureSnapshot,
)
from spillguard.devices.schemas import Message, Phone, Strict
from spillguard.devices.services import (
    DeviceAuditAction,
    DeviceNotFound,
    DeviceNotManaged,
    reevaluate,
)
from spillguard.incidents import timeline as incident_timeline
from spillguard.incidents.models import TimelineKind


class CommandNotFound(NotFound):
    slug = "command-not-found"
    title = "Command not found"


class DeviceNotLost(Conflict):
    slug = "device-not-lost"
    title = "Device is not in lost mode"


class WipeConfirmationMismatch(InvalidInput):
    """The typed device name does not match; the refused wipe is audited (kept)."""

    slug = "wipe-confirmation-mismatch"
    title = "Wipe not confirmed"
    keep_changes = True


class LockParams(Strict):
    message: Message | None = None
    phone: Phone | None = None


class LostModeParams(Strict):
    message: Message
    phone: Phone | None = None


class NoParams(Strict):
    pass


PARAMS: dict[CommandType, type[BaseModel]] = {
    CommandType.LOCK: LockParams,
    CommandType.LOST_MODE_ON: LostModeParams,
}
# Queueing one of these cancels pending commands of the listed types (they contradict it).
CONTRADICTS: dict[CommandType, tuple[CommandType, ...]] = {
    CommandType.LOST_MODE_OFF: (CommandType.LOST_MODE_ON, CommandType.LOCATE),
    CommandType.LOST_MODE_ON: (CommandType.LOST_MODE_OFF,),
}
PERMISSION_OF: dict[CommandType, Permission] = {CommandType.WIPE: Permission.DEVICES_WIPE}


def validate_params(kind: CommandType, params: dict[str, Any]) -> dict[str, Any]:
    model = PARAMS.get(kind, NoParams)
    try:
        parsed = model.model_validate(params)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(["params", *(str(p) for p in err["loc"])]),
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        raise InvalidInput(
            f"Invalid parameters for a {kind.value} command.", field="params", errors=errors
        ) from None
    return parsed.model_dump(exclude_none=True)


@dataclass(frozen=True)
class Queued:
    command: Command
    collapsed: bool


class CommandService:
    def __init__(self, session: Session, principal: Principal, settings: Settings) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings

    def _device(self, device_id: int, *, for_update: bool = False) -> Device:
        query = select(Device).where(Device.id == device_id)
        if for_update:
            # Serialise queueing per device, so two racing requests cannot both add a lock.
            query = query.with_for_update()
        device = self.session.scalar(query)
        if device is None:
            raise DeviceNotFound(f"No device with id {device_id}.")
        return device

    def listing(
        self, device_id: int, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[Command], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        self._device(device_id)
        base = select(Command).where(Command.device_id == device_id)
        if status == "pending":
            base = base.where(Command.status.in_(PENDING_STATUSES))
        elif status:
            base = base.where(Command.status == status)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(base.order_by(Command.id.desc()).limit(limit).offset(offset))
        return list(rows), total

    def queue(
        self,
        device_id: int,
        kind: CommandType,
        params: dict[str, Any] | None = None,
        *,
        confirm_name: str | None = None,
        expires_in_seconds: int | None = None,
    ) -> Queued:
        """Queue a command, or return the identical pending one (duplicates collapse)."""
        self.principal.require(PERMISSION_OF.get(kind, Permission.DEVICES_COMMAND))
        device = self._device(device_id, for_update=True)
        clean = validate_params(kind, params or {})
        if kind is CommandType.WIPE and confirm_name != device.name:
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.COMMAND_REFUSED,
                object_type="device",
                object_id=device.id,
                outcome="failure",
                details={"type": kind.value, "reason": "device name not confirmed"},
            )
            raise WipeConfirmationMismatch(
                "To wipe this device, type its name exactly in confirm_name.",
                field="confirm_name",
            )
        return self._queue(device, kind, clean, expires_in_seconds=expires_in_seconds)

    def _queue(
        self,
        device: Device,
        kind: CommandType,
        params: dict[str, Any],
        *,
        expires_in_seconds: int | None = None,
    ) -> Queued:
        if device.state not in (DeviceState.ACTIVE.value, DeviceState.LOST.value):
            raise DeviceNotManaged(
                f"The device is {device.state}; it no longer takes commands.", state=device.state
            )
        now = utcnow()
        if kind is CommandType.LOCATE and device.state != DeviceState.LOST.value:
            raise DeviceNotLost("A device can be located only in lost mode; report it lost first.")
        self.expire_overdue(device.id, now)
        for other in CONTRADICTS.get(kind, ()):
            self._cancel_pending(device, other, now, reason=f"superseded by {kind.value}")
        ttl = expires_in_seconds or self.settings.device_command_ttl_seconds
        existing = self.session.scalar(
            select(Command)
            .where(
                Command.device_id == device.id,
                Command.type == kind.value,
                Command.status.in_(PENDING_STATUSES),
            )
            .order_by(Command.id)
            .limit(1)
        )
        collapsed = existing is not None
        if existing is not None:
            command = existing
            if command.status == CommandStatus.QUEUED.value:
                # Not delivered yet: the newer parameters and expiry win.
                command.params = params
                command.expires_at = max(command.expires_at, now + timedelta(seconds=ttl))
        else:
            command = Command(
                device_id=device.id,
                type=kind.value,
                params=params,
                status=CommandStatus.QUEUED.value,
                created_at=now,
                created_by_id=self.principal.user_id,
                created_by_label=self.principal.label,
                expires_at=now + timedelta(seconds=ttl),
                deliveries=0,
            )
            self.session.add(command)
        # Tell the device's next check-in to look at its queue (see Device.commands_queued).
        device.commands_queued = (device.commands_queued or 0) + 1
        self.session.flush()
        if kind is CommandType.LOST_MODE_ON:
            device.state = DeviceState.LOST.value
            device.lost_message = params.get("message")
            device.lost_phone = params.get("phone")
            if device.lost_reported_at is None:
                device.lost_reported_at = now
                device.lost_reported_by_id = self.principal.user_id
        elif kind is CommandType.LOST_MODE_OFF and device.state == DeviceState.LOST.value:
            # Location is no longer accepted from this moment on.
            device.state = DeviceState.ACTIVE.value
            device.lost_message = device.lost_phone = None
            device.lost_reported_at = device.lost_reported_by_id = None
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.COMMAND_QUEUED,
            object_type="device",
            object_id=device.id,
            details={
                "command_id": command.id,
                "type": kind.value,
                "params": params,
                "collapsed": collapsed,
                "expires_at": command.expires_at.isoformat(),
            },
        )
        if not collapsed:
            incident_timeline.device_event(
                self.session,
                device.id,
                TimelineKind.COMMAND,
                f"Command queued for the phone: {kind.value} (by {self.principal.label}).",
                actor_label=self.principal.label,
                data={"command_id": command.id, "type": kind.value},
                at=now,
            )
        return Queued(command, collapsed)

    def _cancel_pending(
        self, device: Device, kind: CommandType | None, now: datetime, *, reason: str
    ) -> int:
        query = select(Command).where(
            Command.device_id == device.id, Command.status.in_(PENDING_STATUSES)
        )
        if kind is not None:
            query = query.where(Command.type == kind.value)
        cancelled = list(self.session.scalars(query))
        for command in cancelled:
            command.status = CommandStatus.CANCELLED.value
            command.finished_at = now
            command.error_reason = reason
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.COMMAND_CANCELLED,
                object_type="device",
                object_id=device.id,
                details={"command_id": command.id, "type": command.type, "reason": reason},
            )
        return len(cancelled)

    def cancel(self, device_id: int, command_id: int) -> Command:
        self.principal.require(Permission.DEVICES_COMMAND)
        device = self._device(device_id, for_update=True)
        command = self.session.get(Command, command_id)
        if command is None or command.device_id != device.id:
            raise CommandNotFound(f"Device {device_id} has no command {command_id}.")
        if command.status not in PENDING_STATUSES:
            raise Conflict(
                f"The command is already {command.status}.", command_status=command.status
            )
        command.status = CommandStatus.CANCELLED.value
        command.finished_at = utcnow()
        command.error_reason = f"cancelled by {self.principal.label}"
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.COMMAND_CANCELLED,
            object_type="device",
            object_id=device.id,
            details={"command_id": command.id, "type": command.type},
        )
        return command

    def clear(self, device_id: int) -> int:
        """Cancel every pending command of the device; returns how many."""
        self.principal.require(Permission.DEVICES_COMMAND)
        device = self._device(device_id, for_update=True)
        return self._cancel_pending(
            device, None, utcnow(), reason=f"queue cleared by {self.principal.label}"
        )

    def report_lost(self, device_id: int, message: str, phone: str | None) -> list[Command]:
        """Lost mode, lock with the message, and locate, in one audited action."""
        self.principal.require(Permission.DEVICES_REPORT_LOST)
        device = self._device(device_id, for_update=True)
        now = utcnow()
        params = {"message": message, **({"phone": phone} if phone else {})}
        # The lost-device incident opens (or the open one is reused) in this transaction,
        # before the commands, so their queueing lands on its timeline.
        from spillguard.incidents.services import open_for_lost_device

        incident, _ = open_for_lost_device(self.session, self.principal, device, reported_at=now)
        device.lost_reported_at = now
        device.lost_reported_by_id = self.principal.user_id
        commands = [
            self._queue(device, CommandType.LOST_MODE_ON, params).command,
            self._queue(device, CommandType.LOCK, params).command,
            self._queue(device, CommandType.LOCATE, {}).command,
        ]
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.DEVICE_REPORTED_LOST,
            object_type="device",
            object_id=device.id,
            details={
                "reported_by": self.principal.label,
                "reported_at": now.isoformat(),
                "message": message,
                "phone": phone,
                "command_ids": [c.id for c in commands],
                "incident_id": incident.id,
            },
        )
        return commands

    def expire_overdue(self, device_id: int | None, now: datetime) -> int:
        """Mark pending commands past their expiry as expired (one device, or all)."""
        stmt = update(Command).where(
            Command.status.in_(PENDING_STATUSES), Command.expires_at <= now
        )
        if device_id is not None:
            stmt = stmt.where(Command.device_id == device_id)
        return affected(
            self.session.execute(
                stmt.values(status=CommandStatus.EXPIRED.value, finished_at=now).execution_options(
                    synchronize_session=False
                )
            )
        )


@dataclass(frozen=True)
class MaintenanceResult:
    expired: int
    commands_deleted: int
    snapshots_deleted: int
    locations_deleted: int
    stale_reevaluated: int

    def __str__(self) -> str:
        return (
            f"expired={self.expired} commands_deleted={self.commands_deleted} "
            f"snapshots_deleted={self.snapshots_deleted} "
            f"locations_deleted={self.locations_deleted} stale={self.stale_reevaluated}"
        )


STALE_BATCH = 1000


def run_maintenance(
    session: Session, settings: Settings, now: datetime | None = None
) -> MaintenanceResult:
    """Expire overdue commands, delete finished ones past retention, trim history, and
    re-evaluate devices that may have gone stale since their last check-in."""
    now = now or utcnow()
    system = Principal.system("devices.maintenance")
    expired = CommandService(session, system, settings).expire_overdue(None, now)
    cutoff = now - timedelta(days=settings.device_command_retention_days)
    commands_deleted = affected(
        session.execute(
            delete(Command)
            .where(Command.status.in_(FINISHED_STATUSES), Command.finished_at < cutoff)
            .execution_options(synchronize_session=False)
        )
    )
    history_cutoff = now - timedelta(days=settings.device_history_retention_days)
    snapshots_deleted = affected(
        session.execute(
            delete(PostureSnapshot)
            .where(PostureSnapshot.received_at < history_cutoff)
            .execution_options(synchronize_session=False)
        )
    )
    locations_deleted = affected(
        session.execute(
            delete(DeviceLocation)
            .where(DeviceLocation.received_at < history_cutoff)
            .execution_options(synchronize_session=False)
        )
    )
    # A device that stops checking in can only be found stale by the server: re-judge the
    # compliant ones that have been silent for at least the smallest allowed limit (60 s).
    silent = list(
        session.scalars(
            select(Device)
            .where(
                Device.state.in_([DeviceState.ACTIVE.value, DeviceState.LOST.value]),
                Device.compliant.is_(True),
                Device.compliance_policy_id.is_not(None),
                Device.last_checkin_at < now - timedelta(seconds=60),
            )
            .order_by(Device.compliance_evaluated_at)
            .limit(STALE_BATCH)
        )
    )
    stale = sum(reevaluate(session, system, d, cause="stale", now=now) for d in silent)
    return MaintenanceResult(expired, commands_deleted, snapshots_deleted, locations_deleted, stale)


def maintenance_job(settings: Settings) -> Job:
    return Job(
        "devices.maintenance",
        settings.device_maintenance_interval_seconds,
        lambda session: run_maintenance(session, settings),
    )
