"""Consequences of non-compliance: applied once a failure outlasts its grace period, once per
failure episode, and the corporate-data block lifted when the device complies again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.devices.api import device_public
from spillguard.devices.commands import CommandService
from spillguard.devices.consequences import (
    apply_consequences,
    blocked_device_ids,
    is_blocked_for_corporate_data,
)
from spillguard.devices.enrollment import EnrollmentService, enroll_device
from spillguard.devices.models import (
    PENDING_STATUSES,
    Command,
    CommandType,
    CompliancePolicyRecord,
    Device,
)
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.posture import Platform
from spillguard.devices.protocol import ProtocolService
from spillguard.devices.schemas import CheckinRequest, EnrollDevice
from spillguard.devices.services import DeviceService
from tests.factories.devices import SECURE, SWIPE_UNENCRYPTED, posture
from tests.factories.users import UserFactory

HOUR = timedelta(hours=1)


def admin_principal(users: UserFactory) -> Principal:
    user = users.create("admin")
    return Principal("user", user.id, user.email, Role.ADMIN)


def enrolled(db: Session, users: UserFactory, keys: KeyRing, policy: dict[str, Any]) -> Device:
    admin = admin_principal(users)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=None,
        uses_allowed=1,
        expires_in_hours=1,
        base_url="https://mdm.example.com",
    )
    device = enroll_device(
        db,
        keys,
        Principal.anonymous(),
        issued.token,
        EnrollDevice(name="Phone", platform=Platform.ANDROID),
    ).device
    rules = CompliancePolicy.model_validate({"name": "Phones", **policy})
    record = CompliancePolicyRecord(name="Phones", rules=rules.model_dump(mode="json"))
    db.add(record)
    db.flush()
    DeviceService(db, admin).update(device.id, fields={"policy_id"}, policy_id=record.id)
    db.commit()
    return device


def checkin(db: Session, device: Device, settings: Settings, body: dict[str, Any]) -> None:
    request = CheckinRequest.model_validate({"posture": posture(body)})
    ProtocolService(db, device, Principal.anonymous(), settings).checkin(request)
    db.commit()


def run(db: Session, settings: Settings, after: timedelta) -> None:
    apply_consequences(db, settings, now=datetime.now(UTC) + after)
    db.commit()


def events(db: Session, device: Device, action: str) -> list[dict[str, Any]]:
    rows = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.object_id == str(device.id))
        .order_by(AuditEvent.id)
    )
    return [row.details for row in rows]


def pending_locks(db: Session, device: Device) -> list[Command]:
    return list(
        db.scalars(
            select(Command).where(
                Command.device_id == device.id,
                Command.type == CommandType.LOCK.value,
                Command.status.in_(PENDING_STATUSES),
            )
        )
    )


LOCK_PASSCODE = {
    "min_passcode_type": "pin",
    "min_passcode_length": 6,
    "consequences": {"passcode": {"consequence": "lock", "grace_seconds": 3600}},
}


def test_nothing_happens_while_the_grace_period_lasts(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(db, users, keys, LOCK_PASSCODE)
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=timedelta(minutes=50))
    assert pending_locks(db, device) == []
    assert events(db, device, "devices:consequence:applied") == []
    # The job's bookkeeping is not a change of verdict: the history still shows two.
    history, total = DeviceService(db, admin_principal(users)).compliance_history(
        device.id, limit=10, offset=0
    )
    assert total == 2 and [c.compliant for c in history] == [False, True]


def test_lock_is_queued_once_the_grace_has_passed_and_only_once(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(db, users, keys, LOCK_PASSCODE)
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=timedelta(minutes=10))  # seen, still in grace
    run(db, settings, after=HOUR + timedelta(minutes=1))
    run(db, settings, after=2 * HOUR)  # a second run after the grace: nothing new
    locks = pending_locks(db, device)
    assert len(locks) == 1
    assert "Passcode is a swipe" in locks[0].params["message"]
    assert locks[0].created_by_label == "devices.consequences"
    applied = events(db, device, "devices:consequence:applied")
    assert [(e["rule"], e["consequence"]) for e in applied] == [("passcode", "lock")]
    assert applied[0]["collapsed"] is False and applied[0]["command_id"] == locks[0].id


def test_grace_counts_from_when_the_device_became_non_compliant(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    """The first run after the grace applies it, even if the job never saw the failure."""
    device = enrolled(db, users, keys, LOCK_PASSCODE)
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=HOUR + timedelta(seconds=5))
    assert len(pending_locks(db, device)) == 1


def test_lock_collapses_with_a_pending_lock(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(db, users, keys, LOCK_PASSCODE)
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    queued = CommandService(db, admin_principal(users), settings).queue(
        device.id, CommandType.LOCK, {"message": "Please call IT"}
    )
    db.commit()
    run(db, settings, after=2 * HOUR)
    locks = pending_locks(db, device)
    assert [lock.id for lock in locks] == [queued.command.id]
    applied = events(db, device, "devices:consequence:applied")
    assert applied[0]["collapsed"] is True and applied[0]["command_id"] == queued.command.id


def test_block_is_applied_then_lifted_when_compliant_again(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(
        db,
        users,
        keys,
        {
            "encryption_required": True,
            "consequences": {"encryption": {"consequence": "block_corporate_data"}},
        },
    )
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    assert not is_blocked_for_corporate_data(db, device.id)
    run(db, settings, after=timedelta(seconds=1))  # no grace: due at once
    assert is_blocked_for_corporate_data(db, device.id)
    assert blocked_device_ids(db, [device.id]) == {device.id}
    assert device_public(db, device).blocked_for_corporate_data is True
    run(db, settings, after=timedelta(minutes=5))
    assert len(events(db, device, "devices:consequence:applied")) == 1

    checkin(db, device, settings, SECURE)
    run(db, settings, after=timedelta(minutes=10))
    run(db, settings, after=timedelta(minutes=11))
    assert not is_blocked_for_corporate_data(db, device.id)
    assert device_public(db, device).blocked_for_corporate_data is False
    lifted = events(db, device, "devices:consequence:lifted")
    assert len(lifted) == 1
    assert lifted[0]["rules"] == ["encryption"] and lifted[0]["why"] == "compliant again"

    # A new failure is a new episode: blocked (and audited) again.
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=timedelta(minutes=20))
    assert is_blocked_for_corporate_data(db, device.id)
    assert len(events(db, device, "devices:consequence:applied")) == 2


def test_notify_records_the_intent_with_the_rules(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(
        db, users, keys, {"min_passcode_type": "pin", "encryption_required": True}
    )  # no consequence configured: notify, no grace
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=timedelta(seconds=1))
    run(db, settings, after=timedelta(seconds=2))
    due = events(db, device, "devices:consequence:notify-due")
    assert len(due) == 1
    assert due[0]["device_id"] == device.id and due[0]["rules"] == ["passcode", "encryption"]
    assert pending_locks(db, device) == [] and not is_blocked_for_corporate_data(db, device.id)


def test_a_rule_failing_later_gets_its_own_grace(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(
        db,
        users,
        keys,
        {
            "min_passcode_type": "pin",
            "encryption_required": True,
            "consequences": {
                "passcode": {"consequence": "notify", "grace_seconds": 0},
                "encryption": {"consequence": "lock", "grace_seconds": 3600},
            },
        },
    )
    checkin(db, device, settings, {**SECURE, "passcode": {"type": "swipe", "length": None}})
    run(db, settings, after=timedelta(minutes=1))
    checkin(db, device, settings, SWIPE_UNENCRYPTED)  # encryption now fails too
    run(db, settings, after=timedelta(minutes=30))  # encryption first seen by this run
    run(db, settings, after=timedelta(minutes=80))  # 50 minutes later: still in grace
    assert pending_locks(db, device) == []
    run(db, settings, after=timedelta(minutes=91))
    assert len(pending_locks(db, device)) == 1


@pytest.mark.parametrize("job", ["devices.consequences"])
def test_the_job_is_registered(app: FastAPI, job: str) -> None:
    assert job in [j.name for j in app.state.jobs]


def test_block_waits_for_its_grace_and_lives_in_the_device_columns(
    db: Session, users: UserFactory, keys: KeyRing, settings: Settings
) -> None:
    device = enrolled(
        db,
        users,
        keys,
        {
            "encryption_required": True,
            "consequences": {
                "encryption": {"consequence": "block_corporate_data", "grace_seconds": 7200}
            },
        },
    )
    checkin(db, device, settings, SWIPE_UNENCRYPTED)
    run(db, settings, after=timedelta(minutes=1))
    db.refresh(device)
    assert device.blocked_for_corporate_data is False and device.blocked_since is None
    assert device.consequence_state is not None  # the first failure is remembered
    assert device.consequence_state["first_seen"].keys() == {"encryption"}
    run(db, settings, after=timedelta(minutes=119))
    db.refresh(device)
    assert device.blocked_for_corporate_data is False, "still within the two hours of grace"

    run(db, settings, after=timedelta(minutes=121))
    db.refresh(device)
    assert device.blocked_for_corporate_data is True
    assert device.blocked_since is not None
    assert device.blocked_since > datetime.now(UTC) + timedelta(minutes=120)
    assert device.consequence_state["blocked_by"] == ["encryption"]
    blocked_ids = db.scalars(select(Device.id).where(Device.blocked_for_corporate_data.is_(True)))
    assert list(blocked_ids) == [device.id]

    checkin(db, device, settings, SECURE)
    run(db, settings, after=timedelta(minutes=130))
    db.refresh(device)
    assert device.blocked_for_corporate_data is False and device.blocked_since is None
    assert device.consequence_state is None, "nothing left to remember once compliant"
    assert not is_blocked_for_corporate_data(db, device.id)
