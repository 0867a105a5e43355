"""Device tables: groups, enrollments, devices, posture history, compliance policies and
history, the command queue, and locations (kept only while a device is lost)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from spillguard.core.db import Base, UTCDateTime, utcnow
from spillguard.core.models import BigId, User


class DeviceState(StrEnum):
    ACTIVE = "active"
    LOST = "lost"
    WIPED = "wiped"
    RETIRED = "retired"


class CommandType(StrEnum):
    LOCK = "lock"
    LOST_MODE_ON = "lost_mode_on"
    LOST_MODE_OFF = "lost_mode_off"
    LOCATE = "locate"
    PLAY_SOUND = "play_sound"
    WIPE = "wipe"
    SELECTIVE_WIPE = "selective_wipe"
    RETIRE = "retire"


class CommandStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    ERROR = "error"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


PENDING_STATUSES = (CommandStatus.QUEUED.value, CommandStatus.SENT.value)
FINISHED_STATUSES = (
    CommandStatus.ACKNOWLEDGED.value,
    CommandStatus.ERROR.value,
    CommandStatus.EXPIRED.value,
    CommandStatus.CANCELLED.value,
)


class CompliancePolicyRecord(Base):
    """A named compliance policy; ``rules`` is a ``devices.policy.CompliancePolicy`` as JSON.

    It applies to the groups and devices whose ``policy_id`` names it (a device's own
    assignment beats its group's).
    """

    __tablename__ = "device_policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class DeviceGroup(Base):
    """A set of devices sharing a compliance policy (e.g. "Sales phones")."""

    __tablename__ = "device_groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(500))
    policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_policies.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    policy: Mapped[CompliancePolicyRecord | None] = relationship()


class Enrollment(Base):
    """An invitation for devices of one user to enrol; only the token's digest is stored."""

    __tablename__ = "device_enrollments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_groups.id", ondelete="SET NULL"), index=True
    )
    uses_allowed: Mapped[int] = mapped_column(Integer, default=1)
    uses_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    group: Mapped[DeviceGroup | None] = relationship()


class Device(Base):
    """An enrolled phone or computer.  Holds the latest posture and compliance verdict."""

    __tablename__ = "devices"
    __table_args__ = (
        Index("ix_devices_state_last_checkin", "state", "last_checkin_at"),
        Index("ix_devices_last_checkin_at", "last_checkin_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128))
    os_version: Mapped[str | None] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_groups.id", ondelete="SET NULL"), index=True
    )
    policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_policies.id", ondelete="SET NULL"), index=True
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_enrollments.id", ondelete="SET NULL"), index=True
    )
    credential_digest: Mapped[str] = mapped_column(String(64), unique=True)
    credential_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=DeviceState.ACTIVE.value)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_checkin_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest posture (as reported) and a digest of it without its timestamp, so a
    # history row is written only when something changed.
    posture: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    posture_digest: Mapped[str | None] = mapped_column(String(64))
    # The latest verdict: None until first evaluated.
    compliant: Mapped[bool | None] = mapped_column(Boolean, index=True)
    compliance_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    compliance_policy_id: Mapped[int | None] = mapped_column(BigId)
    compliance_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the stored verdict was computed from (posture digest, policy id and version),
    # kept only while that verdict would hold at any check-in (no "stale" failure): a
    # check-in with the same basis skips re-evaluation (devices.services.compliance_basis).
    compliance_basis: Mapped[str | None] = mapped_column(String(64))
    # The command queue's change counter: raised by every queueing; a check-in that finds
    # nothing pending records the value it saw in ``commands_checked``, and the next
    # check-in looks for commands only if the two differ (one SELECT saved per check-in).
    commands_queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    commands_checked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Consequences of non-compliance (devices.consequences): the job's state as JSON, and
    # the block for corporate data the exposure gateway reads, with when it began.
    consequence_state: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    blocked_for_corporate_data: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    blocked_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lost mode: message and phone shown on the lock screen, who reported it and when.
    lost_message: Mapped[str | None] = mapped_column(String(200))
    lost_phone: Mapped[str | None] = mapped_column(String(32))
    lost_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lost_reported_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    group: Mapped[DeviceGroup | None] = relationship()
    policy: Mapped[CompliancePolicyRecord | None] = relationship()


class PostureSnapshot(Base):
    """A posture as reported, written when it differs from the device's previous one."""

    __tablename__ = "device_posture_snapshots"
    __table_args__ = (Index("ix_device_posture_snapshots_device_at", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    posture: Mapped[dict[str, Any]] = mapped_column(JSON)


class ComplianceChange(Base):
    """A change of a device's compliance verdict, with the reasons at that moment."""

    __tablename__ = "device_compliance_changes"
    __table_args__ = (Index("ix_device_compliance_changes_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    compliant: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    policy_id: Mapped[int | None] = mapped_column(BigId)
    cause: Mapped[str] = mapped_column(String(32))


class Command(Base):
    """One command for one device and its lifecycle (see docs/device-protocol.md)."""

    __tablename__ = "device_commands"
    __table_args__ = (
        # A device's pending commands (every check-in), and the expiry / pruning sweeps.
        Index("ix_device_commands_device_status", "device_id", "status"),
        Index("ix_device_commands_status_expires", "status", "expires_at"),
        Index("ix_device_commands_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.QUEUED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_label: Mapped[str | None] = mapped_column(String(320))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_reason: Mapped[str | None] = mapped_column(Text)


class DeviceLocation(Base):
    """A location a device reported while in lost mode (never stored otherwise)."""

    __tablename__ = "device_locations"
    __table_args__ = (Index("ix_device_locations_device_at", "device_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    latitude: Mapped[float]
    longitude: Mapped[float]
    accuracy_m: Mapped[float | None]
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    command_id: Mapped[int | None] = mapped_column(BigId)
