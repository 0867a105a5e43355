"""Device services against the database: enrollment rules, the command lifecycle and its
expiry, the maintenance job keeping queues bounded, and compliance history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.db import Base
from spillguard.core.errors import PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.devices.commands import CommandService, run_maintenance
from spillguard.devices.enrollment import (
    EnrollmentService,
    EnrollmentTokenExpired,
    enroll_device,
)
from spillguard.devices.models import (
    Command,
    CommandType,
    ComplianceChange,
    CompliancePolicyRecord,
    Device,
    Enrollment,
)
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.posture import Platform, Posture
from spillguard.devices.protocol import ProtocolService
from spillguard.devices.schemas import CheckinRequest, CommandResultIn, EnrollDevice
from spillguard.devices.services import DeviceService
from tests.factories.devices import SECURE, SWIPE_UNENCRYPTED, posture
from tests.factories.users import UserFactory


def admin_principal(users: UserFactory) -> Principal:
    user = users.create("admin")
    return Principal("user", user.id, user.email, Role.ADMIN)


@pytest.fixture
def device(db: Session, users: UserFactory, keys: KeyRing) -> Device:
    admin = admin_principal(users)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=None,
        uses_allowed=1,
        expires_in_hours=1,
        base_url="https://mdm.example.com",
    )
    enrolled = enroll_device(
        db,
        keys,
        Principal.anonymous(),
        issued.token,
        EnrollDevice(name="Tab", platform=Platform.IOS),
    )
    db.commit()
    return enrolled.device


def checkin(db: Session, device: Device, settings: Settings, body: dict) -> list[Command]:
    request = CheckinRequest.model_validate({"posture": posture(body)})
    commands = ProtocolService(db, device, Principal.anonymous(), settings).checkin(request)
    db.commit()
    return commands


def test_enrollment_url_carries_the_token_in_the_fragment(
    db: Session, users: UserFactory, keys: KeyRing
) -> None:
    admin = admin_principal(users)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=None,
        uses_allowed=3,
        expires_in_hours=2,
        base_url="https://mdm.example.com/",
    )
    assert issued.url == f"https://mdm.example.com/api/device/v1/enroll#token={issued.token}"
    stored = db.get(Enrollment, issued.enrollment.id)
    assert stored is not None and issued.token not in stored.token_digest


def test_expired_enrollment_is_refused(db: Session, users: UserFactory, keys: KeyRing) -> None:
    admin = admin_principal(users)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=None,
        uses_allowed=1,
        expires_in_hours=1,
        base_url="https://x.example",
    )
    db.commit()
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(EnrollmentTokenExpired):
        enroll_device(
            db,
            keys,
            Principal.anonymous(),
            issued.token,
            EnrollDevice(name="Late", platform=Platform.ANDROID),
            checkin_now=later,
        )


def test_auditor_cannot_enrol(db: Session, users: UserFactory, keys: KeyRing) -> None:
    auditor = users.create("auditor")
    principal = Principal("user", auditor.id, auditor.email, Role.AUDITOR)
    with pytest.raises(PermissionDenied):
        EnrollmentService(db, principal, keys).create(
            user_id=auditor.id, group_id=None, uses_allowed=1, expires_in_hours=1, base_url="x"
        )


def test_command_lifecycle_and_expiry(
    db: Session, users: UserFactory, settings: Settings, device: Device
) -> None:
    admin = admin_principal(users)
    svc = CommandService(db, admin, settings)
    short = svc.queue(device.id, CommandType.PLAY_SOUND, expires_in_seconds=60).command
    lock = svc.queue(device.id, CommandType.LOCK, {"message": "Stop"}).command
    db.commit()
    assert (short.status, lock.status) == ("queued", "queued")
    delivered = checkin(db, device, settings, SECURE)
    assert [c.id for c in delivered] == [short.id, lock.id]
    assert all(c.status == "sent" and c.deliveries == 1 for c in delivered)
    # Queueing a lock again while one is sent returns the sent one unchanged.
    again = svc.queue(device.id, CommandType.LOCK, {"message": "Other"})
    assert again.collapsed and again.command.params == {"message": "Stop"}
    # The short one expires and is no longer delivered.
    result = run_maintenance(db, settings, now=datetime.now(UTC) + timedelta(seconds=120))
    db.commit()
    assert result.expired == 1
    db.refresh(short)
    assert short.status == "expired"
    assert [c.id for c in checkin(db, device, settings, SECURE)] == [lock.id]
    protocol = ProtocolService(db, device, Principal.anonymous(), settings)
    protocol.apply_result(lock.id, CommandResultIn(status="acknowledged"))
    db.commit()
    assert lock.status == "acknowledged" and lock.finished_at is not None


def test_maintenance_keeps_the_queue_bounded(
    db: Session, users: UserFactory, settings: Settings, device: Device
) -> None:
    admin = admin_principal(users)
    svc = CommandService(db, admin, settings)
    for _ in range(5):
        svc.queue(device.id, CommandType.PLAY_SOUND)
        svc.clear(device.id)
    db.commit()
    assert db.scalar(select(func.count()).select_from(Command)) == 5
    soon = run_maintenance(db, settings)
    assert soon.commands_deleted == 0, "within retention nothing goes"
    later = datetime.now(UTC) + timedelta(days=settings.device_command_retention_days + 1)
    result = run_maintenance(db, settings, now=later)
    db.commit()
    assert result.commands_deleted == 5
    assert db.scalar(select(func.count()).select_from(Command)) == 0


def test_compliance_history_only_on_change_and_stale_devices(
    db: Session, users: UserFactory, settings: Settings, device: Device
) -> None:
    admin = admin_principal(users)
    rules = CompliancePolicy(name="Strict", encryption_required=True, max_checkin_age_seconds=3600)
    record = CompliancePolicyRecord(name="Strict", rules=rules.model_dump(mode="json"))
    db.add(record)
    db.flush()
    DeviceService(db, admin).update(device.id, fields={"policy_id"}, policy_id=record.id)
    db.commit()
    for body in (SWIPE_UNENCRYPTED, SWIPE_UNENCRYPTED, SECURE, SECURE, SWIPE_UNENCRYPTED):
        checkin(db, device, settings, body)
    changes = list(
        db.scalars(select(ComplianceChange).where(ComplianceChange.device_id == device.id))
    )
    # enrollment (no policy), assignment (fails: no posture), then secure, then unencrypted.
    assert [c.compliant for c in changes] == [True, False, True, False]
    checkin(db, device, settings, SECURE)
    result = run_maintenance(db, settings, now=datetime.now(UTC) + timedelta(hours=2))
    db.commit()
    assert result.stale_reevaluated == 1
    db.refresh(device)
    assert device.compliant is False
    assert device.compliance_reasons[0].startswith("Device has not checked in for 2 hours")


def test_posture_round_trips_through_storage(
    db: Session, settings: Settings, device: Device
) -> None:
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    db.refresh(device)
    assert device.posture is not None
    assert Posture.model_validate(device.posture).passcode.type == "swipe"


def test_maintenance_job_is_registered(app: FastAPI) -> None:
    assert "devices.maintenance" in [job.name for job in app.state.jobs]


def test_migrations_match_the_models(app: FastAPI) -> None:
    """The migrated schema has every table, column and index the models declare."""
    with app.state.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
