"""The check-in's fast path: what it skips, and that skipping never changes an answer.

A check-in re-evaluates compliance only when the posture or the effective policy (or its
version) changed, or the device was last judged stale; it looks for commands only when
something was queued since a check-in last found the queue empty, and never delivers a
command past its expiry, whether or not the maintenance job has marked it yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.devices import protocol as protocol_module
from spillguard.devices import services as services_module
from spillguard.devices.commands import CommandService, run_maintenance
from spillguard.devices.enrollment import EnrollmentService, enroll_device
from spillguard.devices.models import (
    Command,
    CommandType,
    ComplianceChange,
    CompliancePolicyRecord,
    Device,
    DeviceGroup,
)
from spillguard.devices.policies import PolicyService
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.posture import Platform
from spillguard.devices.protocol import ProtocolService, authenticate_device
from spillguard.devices.schemas import CheckinRequest, EnrollDevice
from spillguard.devices.services import GroupService
from tests.factories.devices import SECURE, SWIPE_UNENCRYPTED, posture
from tests.factories.users import UserFactory

ENCRYPTION_ONLY: dict[str, Any] = {"name": "Phones", "encryption_required": True}


def admin_principal(users: UserFactory) -> Principal:
    user = users.create("admin")
    return Principal("user", user.id, user.email, Role.ADMIN)


@pytest.fixture
def admin(users: UserFactory) -> Principal:
    return admin_principal(users)


@pytest.fixture
def phone(db: Session, admin: Principal, keys: KeyRing) -> tuple[Device, str, int]:
    """A phone in a group whose policy requires encryption: (device, credential, policy id)."""
    record = PolicyService(db, admin).create(CompliancePolicy.model_validate(ENCRYPTION_ONLY))
    group = GroupService(db, admin).create("Sales", None, record.id)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=group.id,
        uses_allowed=1,
        expires_in_hours=1,
        base_url="https://mdm.example.com",
    )
    enrolled = enroll_device(
        db, keys, Principal.anonymous(), issued.token, EnrollDevice(name="P", platform=Platform.IOS)
    )
    db.commit()
    return enrolled.device, enrolled.credential, record.id


def checkin(
    db: Session, keys: KeyRing, settings: Settings, device_id: int, credential: str, body: Any
) -> list[Command]:
    """A check-in as the API runs it: authenticate in a fresh session, check in, commit."""
    db.expire_all()
    device = authenticate_device(
        db, keys, f"Device {device_id}.{credential}", Principal.anonymous()
    )
    request = CheckinRequest.model_validate({"posture": posture(body)})
    commands = ProtocolService(db, device, Principal.anonymous(), settings).checkin(request)
    db.commit()
    return commands


@contextmanager
def statements(db: Session) -> Iterator[list[str]]:
    """The SQL statements the session's engine runs inside the block."""
    seen: list[str] = []
    engine = db.get_bind()

    def record(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(" ".join(sql.split()).upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the compliance evaluation the services make."""
    calls: list[int] = []
    real = services_module.evaluate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(services_module, "evaluate", counting)
    return calls


def test_an_unchanged_check_in_is_one_select_and_one_update(
    db: Session, keys: KeyRing, settings: Settings, phone: tuple[Device, str, int]
) -> None:
    device, credential, _ = phone
    checkin(db, keys, settings, device.id, credential, SECURE)  # first: evaluated, queue looked at
    with statements(db) as seen:
        assert checkin(db, keys, settings, device.id, credential, SECURE) == []
    work = [s for s in seen if s.split()[0] in {"SELECT", "UPDATE", "INSERT", "DELETE"}]
    assert len(work) == 2, work
    assert work[0].startswith("SELECT") and "FROM DEVICES" in work[0]
    assert work[1].startswith("UPDATE DEVICES")
    assert not any("DEVICE_COMMANDS" in s for s in seen)


def test_unchanged_posture_and_policy_skip_the_evaluation(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: tuple[Device, str, int],
    evaluations: list[int],
) -> None:
    device, credential, _ = phone
    checkin(db, keys, settings, device.id, credential, SECURE)
    assert len(evaluations) == 1
    checkin(db, keys, settings, device.id, credential, SECURE)
    checkin(db, keys, settings, device.id, credential, SECURE)
    assert len(evaluations) == 1
    db.refresh(device)
    assert device.compliant is True and device.compliance_basis is not None
    checkin(db, keys, settings, device.id, credential, SWIPE_UNENCRYPTED)  # posture changed
    assert len(evaluations) == 2
    db.refresh(device)
    assert device.compliant is False


def test_a_policy_change_is_seen_at_the_next_check_in_with_the_same_posture(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: tuple[Device, str, int],
) -> None:
    """Even when the rules change behind the service's back (another process, a restore),
    the new version of the policy re-judges a device whose posture did not change."""
    device, credential, policy_id = phone
    checkin(db, keys, settings, device.id, credential, SWIPE_UNENCRYPTED)
    db.refresh(device)
    assert device.compliant is False
    lax = CompliancePolicy.model_validate({"name": "Phones"}).model_dump(mode="json")
    db.execute(
        update(CompliancePolicyRecord)
        .where(CompliancePolicyRecord.id == policy_id)
        .values(rules=lax, updated_at=datetime.now(UTC))
    )
    db.commit()
    checkin(db, keys, settings, device.id, credential, SWIPE_UNENCRYPTED)
    db.refresh(device)
    assert device.compliant is True and device.compliance_reasons == []


def test_a_new_group_policy_is_seen_at_the_next_check_in(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: tuple[Device, str, int],
    admin: Principal,
) -> None:
    device, credential, _ = phone
    checkin(db, keys, settings, device.id, credential, SWIPE_UNENCRYPTED)
    strict = PolicyService(db, admin).create(
        CompliancePolicy.model_validate({"name": "Strict", "min_passcode_type": "pin"})
    )
    db.commit()
    # Point the group at the new policy without the service's re-evaluation.
    db.execute(
        update(DeviceGroup).where(DeviceGroup.id == device.group_id).values(policy_id=strict.id)
    )
    db.commit()
    checkin(db, keys, settings, device.id, credential, SWIPE_UNENCRYPTED)
    db.refresh(device)
    assert device.compliance_policy_id == strict.id
    assert device.compliance_reasons == ["Passcode is a swipe; policy requires a PIN"]


def test_a_stale_verdict_is_re_judged_by_the_next_check_in(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    admin: Principal,
    phone: tuple[Device, str, int],
) -> None:
    device, credential, policy_id = phone
    PolicyService(db, admin).replace(
        policy_id,
        CompliancePolicy.model_validate({**ENCRYPTION_ONLY, "max_checkin_age_seconds": 3600}),
    )
    db.commit()
    checkin(db, keys, settings, device.id, credential, SECURE)
    run_maintenance(db, settings, now=datetime.now(UTC) + timedelta(hours=2))
    db.commit()
    db.refresh(device)
    assert device.compliant is False and device.compliance_basis is None
    checkin(db, keys, settings, device.id, credential, SECURE)  # same posture, same policy
    db.refresh(device)
    assert device.compliant is True


def test_expired_commands_are_not_delivered_before_maintenance_runs(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    admin: Principal,
    phone: tuple[Device, str, int],
) -> None:
    device, credential, _ = phone
    svc = CommandService(db, admin, settings)
    sound = svc.queue(device.id, CommandType.PLAY_SOUND).command
    lock = svc.queue(device.id, CommandType.LOCK, {"message": "Call IT"}).command
    db.execute(
        update(Command)
        .where(Command.id == sound.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.commit()
    delivered = checkin(db, keys, settings, device.id, credential, SECURE)
    assert [c.id for c in delivered] == [lock.id]
    db.refresh(sound)
    assert sound.status == "queued" and sound.deliveries == 0
    result = run_maintenance(db, settings)
    db.commit()
    db.refresh(sound)
    assert result.expired == 1 and sound.status == "expired"


def test_a_command_queued_after_an_empty_check_in_is_delivered_at_the_next(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    admin: Principal,
    phone: tuple[Device, str, int],
) -> None:
    device, credential, _ = phone
    assert checkin(db, keys, settings, device.id, credential, SECURE) == []
    db.refresh(device)
    assert device.commands_checked == device.commands_queued
    queued = CommandService(db, admin, settings).queue(device.id, CommandType.PLAY_SOUND)
    db.commit()
    delivered = checkin(db, keys, settings, device.id, credential, SECURE)
    assert [c.id for c in delivered] == [queued.command.id]
    # Sent but not acknowledged: delivered again, as before.
    again = checkin(db, keys, settings, device.id, credential, SECURE)
    assert [c.id for c in again] == [queued.command.id] and again[0].deliveries == 2


def test_a_command_queued_while_a_check_in_runs_is_not_lost(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    admin: Principal,
    phone: tuple[Device, str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race the counter exists for: the check-in has read the device (nothing queued)
    when an administrator queues a lock in another transaction, which commits before the
    check-in's own commit.  The check-in may miss it, but the next one must deliver it."""
    device, credential, _ = phone
    checkin(db, keys, settings, device.id, credential, SECURE)
    other: Session = Session(bind=db.get_bind())
    real = protocol_module.effective_policy
    queued: list[int] = []

    def queue_meanwhile(session: Session, dev: Device) -> Any:
        if not queued:
            made = CommandService(other, admin, settings).queue(dev.id, CommandType.LOCK)
            other.commit()
            queued.append(made.command.id)
        return real(session, dev)

    monkeypatch.setattr(protocol_module, "effective_policy", queue_meanwhile)
    try:
        first = checkin(db, keys, settings, device.id, credential, SECURE)
    finally:
        other.close()
    assert queued
    later = [c.id for c in first] + [
        c.id for c in checkin(db, keys, settings, device.id, credential, SECURE)
    ]
    assert queued[0] in later


def test_history_counts_only_changes_of_verdict(
    db: Session, keys: KeyRing, settings: Settings, phone: tuple[Device, str, int]
) -> None:
    device, credential, _ = phone
    for body in (SECURE, SECURE, SWIPE_UNENCRYPTED, SWIPE_UNENCRYPTED, SECURE):
        checkin(db, keys, settings, device.id, credential, body)
    rows = db.scalars(
        select(ComplianceChange.compliant)
        .where(ComplianceChange.device_id == device.id)
        .order_by(ComplianceChange.id)
    )
    # enrollment (no posture: fails), secure, unencrypted, secure again.
    assert list(rows) == [False, True, False, True]
