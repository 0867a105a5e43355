"""The fast path of unchanged check-ins (devices.fast_checkin) and the write-behind of
their "last seen" times (devices.lastseen), on SQLite and PostgreSQL.

The fast path must answer exactly what the ordinary check-in would, store exactly what it
would (once the writer has written), and leave every other check-in to the ordinary path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from spillguard.core import db as dbmod
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.devices import fast_checkin as fast_module
from spillguard.devices.commands import CommandService, run_maintenance
from spillguard.devices.enrollment import EnrollmentService, enroll_device
from spillguard.devices.fast_checkin import FastCheckin
from spillguard.devices.lastseen import LastSeenWriter
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
from spillguard.devices.schemas import CheckinRequest, CheckinResult, EnrollDevice
from spillguard.devices.services import GroupService
from tests.factories.devices import SECURE, SWIPE_UNENCRYPTED, posture
from tests.factories.users import UserFactory

ENCRYPTION_ONLY: dict[str, Any] = {"name": "Phones", "encryption_required": True}


@pytest.fixture
def admin(users: UserFactory) -> Principal:
    user = users.create("admin")
    return Principal("user", user.id, user.email, Role.ADMIN)


class Phone:
    """An enrolled phone in a group whose policy requires encryption."""

    def __init__(self, device_id: int, credential: str, policy_id: int, group_id: int) -> None:
        self.id = device_id
        self.credential = credential
        self.policy_id = policy_id
        self.group_id = group_id

    @property
    def header(self) -> str:
        return f"Device {self.id}.{self.credential}"


def enroll_phone(db: Session, admin: Principal, keys: KeyRing, name: str = "P") -> Phone:
    record = db.scalar(
        select(CompliancePolicyRecord).where(CompliancePolicyRecord.name == "Phones")
    )
    if record is None:
        record = PolicyService(db, admin).create(CompliancePolicy.model_validate(ENCRYPTION_ONLY))
    group = db.scalar(select(DeviceGroup).where(DeviceGroup.name == "Sales"))
    if group is None:
        group = GroupService(db, admin).create("Sales", None, record.id)
    issued = EnrollmentService(db, admin, keys).create(
        user_id=admin.user_id or 0,
        group_id=group.id,
        uses_allowed=1,
        expires_in_hours=1,
        base_url="https://mdm.example.com",
    )
    enrolled = enroll_device(
        db,
        keys,
        Principal.anonymous(),
        issued.token,
        EnrollDevice(name=name, platform=Platform.ANDROID),
    )
    db.commit()
    return Phone(enrolled.device.id, enrolled.credential, record.id, group.id)


@pytest.fixture
def phone(db: Session, admin: Principal, keys: KeyRing) -> Phone:
    return enroll_phone(db, admin, keys)


@pytest.fixture
def fast(app: FastAPI, keys: KeyRing, settings: Settings) -> Iterator[FastCheckin]:
    """A fast path whose writer writes only when told to (flush) or closed."""
    engine = app.state.engine
    checkins = FastCheckin(engine, keys, settings, LastSeenWriter(engine, interval=3600))
    yield checkins
    checkins.close()


def ordinary(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    body: dict[str, Any],
    results: list[dict[str, Any]] | None = None,
) -> list[Command]:
    """A check-in the ordinary way (authenticate, ProtocolService.checkin, commit)."""
    db.expire_all()
    device = authenticate_device(db, keys, phone.header, Principal.anonymous())
    request = CheckinRequest(
        posture=posture(body),  # type: ignore[arg-type]
        results=[CheckinResult.model_validate(r) for r in results or []],
    )
    commands = ProtocolService(db, device, Principal.anonymous(), settings).checkin(request)
    db.commit()
    return commands


def raw(body: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"posture": posture(body), **extra}).encode()


def stored(db: Session, device_id: int) -> Device:
    db.expire_all()
    device = db.get(Device, device_id)
    assert device is not None
    return device


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- what the fast path answers and stores -------------------------------------------------


def test_an_unchanged_check_in_is_answered_now_and_stored_at_the_next_write(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    before = stored(db, phone.id)
    first_seen, first_evaluated = before.last_checkin_at, before.compliance_evaluated_at

    answer = fast.answer(phone.header, raw(SECURE))

    assert answer is not None
    body = json.loads(answer)
    assert body == {
        "device_id": phone.id,
        "state": "active",
        "server_time": body["server_time"],
        "next_checkin_seconds": settings.device_checkin_interval_seconds,
        "compliance": {"compliant": True, "reasons": []},
        "commands": [],
    }
    seen_at = parse_time(body["server_time"])
    assert first_seen is not None and seen_at > first_seen
    # Nothing written yet: the writer holds the time ...
    assert stored(db, phone.id).last_checkin_at == first_seen
    assert fast.writer.pending == 1
    # ... and writes it, with the verdict's confirmation, at its next write.
    assert fast.writer.flush() == 1
    after = stored(db, phone.id)
    assert after.last_checkin_at == seen_at
    assert after.compliance_evaluated_at == seen_at != first_evaluated
    assert fast.writer.pending == 0


def test_the_answer_is_the_ordinary_paths_answer_for_a_non_compliant_phone(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    device = stored(db, phone.id)
    answer = fast.answer(phone.header, raw(SWIPE_UNENCRYPTED))
    assert answer is not None
    assert json.loads(answer)["compliance"] == {
        "compliant": False,
        "reasons": device.compliance_reasons,
    }
    assert device.compliance_reasons == ["Storage is not encrypted; policy requires encryption"]


def test_a_phone_without_a_policy_takes_the_fast_path(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    GroupService(db, admin).update(phone.group_id, fields={"policy_id"}, policy_id=None)
    db.commit()
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    answer = fast.answer(phone.header, raw(SWIPE_UNENCRYPTED))
    assert answer is not None
    assert json.loads(answer)["compliance"] == {"compliant": True, "reasons": []}


def test_a_phone_with_its_own_policy_is_judged_by_it_on_the_fast_path(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    own = PolicyService(db, admin).create(
        CompliancePolicy.model_validate({"name": "Strict", "min_passcode_type": "pin"})
    )
    db.execute(update(Device).where(Device.id == phone.id).values(policy_id=own.id))
    db.commit()
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    assert stored(db, phone.id).compliance_policy_id == own.id
    answer = fast.answer(phone.header, raw(SWIPE_UNENCRYPTED))
    assert answer is not None
    assert json.loads(answer)["compliance"]["reasons"] == [
        "Passcode is a swipe; policy requires a PIN"
    ]
    # The group's policy changing does not matter to a phone with its own ...
    GroupService(db, admin).update(phone.group_id, fields={"policy_id"}, policy_id=None)
    db.commit()
    assert fast.answer(phone.header, raw(SWIPE_UNENCRYPTED)) is not None
    # ... its own policy's version does.
    db.execute(
        update(CompliancePolicyRecord)
        .where(CompliancePolicyRecord.id == own.id)
        .values(updated_at=datetime.now(UTC))
    )
    db.commit()
    assert fast.answer(phone.header, raw(SWIPE_UNENCRYPTED)) is None


# --- what it leaves to the ordinary path ---------------------------------------------------


def declines(fast: FastCheckin, header: str, body: bytes) -> bool:
    return fast.answer(header, body) is None and fast.writer.pending == 0


def test_a_changed_posture_goes_the_ordinary_way(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    assert declines(fast, phone.header, raw(SWIPE_UNENCRYPTED))
    assert declines(fast, phone.header, raw({**SECURE, "os_version": "15"}))
    documents = [{"sha256": "ab" * 32, "file_name": "offer.pdf", "size": 3}]
    assert declines(fast, phone.header, raw({**SECURE, "managed_documents": documents}))
    assert fast.answer(phone.header, raw(SECURE)) is not None


def test_a_phone_never_judged_goes_the_ordinary_way(phone: Phone, fast: FastCheckin) -> None:
    assert declines(fast, phone.header, raw(SECURE))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed JSON"),
        pytest.param(b"", id="empty"),
        pytest.param(
            json.dumps({"posture": posture(storage_encrypted="true")}).encode(), id="lax bool"
        ),
        pytest.param(json.dumps({"posture": posture(), "extra": 1}).encode(), id="unknown field"),
        pytest.param(
            json.dumps(
                {
                    "posture": posture(
                        reported_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
                    )
                }
            ).encode(),
            id="reported in the future",
        ),
        pytest.param(
            json.dumps(
                {"posture": posture(), "results": [{"command_id": 1, "status": "acknowledged"}]}
            ).encode(),
            id="command results",
        ),
    ],
)
def test_bodies_the_fast_path_does_not_answer(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    body: bytes,
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    assert declines(fast, phone.header, body)


def test_credentials_the_fast_path_does_not_answer(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    other = enroll_phone(db, admin, keys, name="Other")
    ordinary(db, keys, settings, phone, SECURE)
    ordinary(db, keys, settings, other, SECURE)
    body = raw(SECURE)
    for header in (
        None,
        "",
        f"Bearer {phone.credential}",
        f"Device {phone.id}.{phone.credential[4:]}",  # without the sgd_ prefix
        f"Device {phone.id}.sgd_{'A' * 43}",  # unknown credential
        f"Device {other.id}.{phone.credential}",  # another device's id
        f"Device 0.{phone.credential}",
    ):
        assert declines(fast, header, body), header  # type: ignore[arg-type]
    assert fast.answer(f"device {phone.id}.{phone.credential}", body) is not None


def test_a_queued_command_goes_the_ordinary_way_until_the_queue_is_empty(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    sound = CommandService(db, admin, settings).queue(phone.id, CommandType.PLAY_SOUND).command
    db.commit()
    assert declines(fast, phone.header, raw(SECURE))
    delivered = ordinary(db, keys, settings, phone, SECURE)
    assert [c.id for c in delivered] == [sound.id]
    # Sent, not yet acknowledged: still the ordinary way (it is sent again).
    assert declines(fast, phone.header, raw(SECURE))
    ordinary(
        db, keys, settings, phone, SECURE, [{"command_id": sound.id, "status": "acknowledged"}]
    )
    ordinary(db, keys, settings, phone, SECURE)  # finds the queue empty
    assert fast.answer(phone.header, raw(SECURE)) is not None


def test_a_lost_phone_goes_the_ordinary_way(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    commands = CommandService(db, admin, settings).report_lost(phone.id, "Call IT", None)
    db.commit()
    results = [
        {"command_id": c.id, "status": "acknowledged"} for c in commands if c.type != "locate"
    ]
    ordinary(db, keys, settings, phone, SECURE, results)
    ordinary(db, keys, settings, phone, SECURE)
    device = stored(db, phone.id)
    assert device.state == "lost"
    assert declines(fast, phone.header, raw(SECURE))


@pytest.mark.parametrize("kind", [CommandType.RETIRE, CommandType.WIPE])
def test_a_wiped_or_retired_phone_is_refused_on_the_fast_path_too(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
    kind: CommandType,
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    assert fast.answer(phone.header, raw(SECURE)) is not None  # the connection is open
    device = stored(db, phone.id)
    queued = (
        CommandService(db, admin, settings).queue(phone.id, kind, confirm_name=device.name).command
    )
    db.commit()
    ordinary(db, keys, settings, phone, SECURE)
    ordinary(
        db, keys, settings, phone, SECURE, [{"command_id": queued.id, "status": "acknowledged"}]
    )
    assert stored(db, phone.id).credential_revoked_at is not None
    assert fast.answer(phone.header, raw(SECURE)) is None


def test_a_stale_verdict_is_re_judged_the_ordinary_way(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    PolicyService(db, admin).replace(
        phone.policy_id,
        CompliancePolicy.model_validate({**ENCRYPTION_ONLY, "max_checkin_age_seconds": 3600}),
    )
    db.commit()
    ordinary(db, keys, settings, phone, SECURE)
    run_maintenance(db, settings, now=datetime.now(UTC) + timedelta(hours=2))
    db.commit()
    assert stored(db, phone.id).compliant is False
    assert declines(fast, phone.header, raw(SECURE))
    ordinary(db, keys, settings, phone, SECURE)
    assert stored(db, phone.id).compliant is True
    assert fast.answer(phone.header, raw(SECURE)) is not None


def test_a_policy_edited_behind_the_services_back_goes_the_ordinary_way(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
) -> None:
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    lax = CompliancePolicy.model_validate({"name": "Phones"}).model_dump(mode="json")
    db.execute(
        update(CompliancePolicyRecord)
        .where(CompliancePolicyRecord.id == phone.policy_id)
        .values(rules=lax, updated_at=datetime.now(UTC))
    )
    db.commit()
    assert declines(fast, phone.header, raw(SWIPE_UNENCRYPTED))
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    answer = fast.answer(phone.header, raw(SWIPE_UNENCRYPTED))
    assert answer is not None and json.loads(answer)["compliance"]["compliant"] is True


def test_a_new_group_policy_goes_the_ordinary_way(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    admin: Principal,
) -> None:
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    strict = PolicyService(db, admin).create(
        CompliancePolicy.model_validate({"name": "Strict", "min_passcode_type": "pin"})
    )
    db.commit()
    db.execute(
        update(DeviceGroup).where(DeviceGroup.id == phone.group_id).values(policy_id=strict.id)
    )
    db.commit()
    assert declines(fast, phone.header, raw(SWIPE_UNENCRYPTED))


# --- the write-behind -----------------------------------------------------------------------


def test_a_posture_change_while_a_time_waits_is_never_lost(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    """The fast path holds a time; the phone then reports a weaker posture, which the
    ordinary path commits; the held time is written afterwards."""
    ordinary(db, keys, settings, phone, SECURE)
    assert fast.answer(phone.header, raw(SECURE)) is not None
    ordinary(db, keys, settings, phone, SWIPE_UNENCRYPTED)
    changed = stored(db, phone.id)
    assert changed.compliant is False
    fast.writer.flush()
    after = stored(db, phone.id)
    assert after.compliant is False
    assert after.posture is not None and after.posture["storage_encrypted"] is False
    assert after.posture_digest == changed.posture_digest
    assert after.compliance_basis == changed.compliance_basis
    # The ordinary check-in came later: neither of its times goes back.
    assert after.last_checkin_at == changed.last_checkin_at
    assert after.compliance_evaluated_at == changed.compliance_evaluated_at
    history = db.scalars(
        select(ComplianceChange.compliant)
        .where(ComplianceChange.device_id == phone.id)
        .order_by(ComplianceChange.id)
    )
    assert list(history) == [False, True, False]


def test_an_older_time_never_replaces_a_newer_one(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    device = stored(db, phone.id)
    basis = device.compliance_basis
    assert basis is not None and device.last_checkin_at is not None
    later = device.last_checkin_at + timedelta(seconds=30)
    fast.writer.record(phone.id, later, basis)
    fast.writer.flush()
    fast.writer.record(phone.id, later - timedelta(seconds=10), basis)
    fast.writer.flush()
    assert stored(db, phone.id).last_checkin_at == later
    assert stored(db, phone.id).compliance_evaluated_at == later


def test_a_verdict_re_judged_meanwhile_keeps_its_evaluation_time(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    device = stored(db, phone.id)
    evaluated = device.compliance_evaluated_at
    assert device.last_checkin_at is not None
    later = device.last_checkin_at + timedelta(seconds=30)
    fast.writer.record(phone.id, later, "a basis the device no longer has")
    fast.writer.flush()
    after = stored(db, phone.id)
    assert after.last_checkin_at == later
    assert after.compliance_evaluated_at == evaluated


def test_times_of_many_phones_are_written_in_one_go(
    db: Session, keys: KeyRing, settings: Settings, admin: Principal, fast: FastCheckin
) -> None:
    phones = [enroll_phone(db, admin, keys, name=f"P{i}") for i in range(5)]
    for p in phones:
        ordinary(db, keys, settings, p, SECURE)
    answers = [fast.answer(p.header, raw(SECURE)) for p in phones]
    assert all(answers) and fast.writer.pending == 5
    assert fast.writer.flush() == 5
    for p, answer in zip(phones, answers, strict=True):
        assert answer is not None
        assert stored(db, p.id).last_checkin_at == parse_time(json.loads(answer)["server_time"])


def test_a_failed_write_keeps_the_times_for_the_next(
    db: Session,
    keys: KeyRing,
    settings: Settings,
    phone: Phone,
    fast: FastCheckin,
    tmp_path: Any,
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    basis = stored(db, phone.id).compliance_basis
    assert basis is not None
    good = fast.writer.engine
    broken = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    at = datetime.now(UTC) + timedelta(seconds=5)
    fast.writer.record(phone.id, at, basis)
    fast.writer.engine = broken
    try:
        with pytest.raises(DBAPIError):
            fast.writer.flush()
        assert fast.writer.pending == 1
        newer = at + timedelta(seconds=1)
        fast.writer.record(phone.id, newer, basis)
        with pytest.raises(DBAPIError):
            fast.writer.flush()
    finally:
        fast.writer.engine = good
        broken.dispose()
    assert fast.writer.flush() == 1
    assert stored(db, phone.id).last_checkin_at == newer


def test_the_writers_thread_writes_by_itself(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings, phone: Phone
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    writer = LastSeenWriter(app.state.engine, interval=0.01)
    checkins = FastCheckin(app.state.engine, keys, settings, writer)
    try:
        answer = checkins.answer(phone.header, raw(SECURE))
        assert answer is not None
        seen_at = parse_time(json.loads(answer)["server_time"])
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while stored(db, phone.id).last_checkin_at != seen_at:
            assert datetime.now(UTC) < deadline, "the writer never wrote"
            db.rollback()
    finally:
        checkins.close()


def test_closing_writes_what_is_left_and_ends_the_fast_path(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings, phone: Phone
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    checkins = FastCheckin(
        app.state.engine, keys, settings, LastSeenWriter(app.state.engine, interval=3600)
    )
    answer = checkins.answer(phone.header, raw(SECURE))
    assert answer is not None
    checkins.close()
    assert stored(db, phone.id).last_checkin_at == parse_time(json.loads(answer)["server_time"])
    assert checkins.answer(phone.header, raw(SECURE)) is None
    assert checkins.writer.record(phone.id, datetime.now(UTC), "x") is False


# --- the connection -------------------------------------------------------------------------


def test_a_database_it_cannot_reach_leaves_every_check_in_to_the_ordinary_path(
    keys: KeyRing, settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = dbmod.make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    monkeypatch.setattr(fast_module, "RECONNECT_AFTER_SECONDS", 3600.0)
    checkins = FastCheckin(broken, keys, settings, LastSeenWriter(broken, interval=3600))
    try:
        header = f"Device 1.sgd_{'A' * 43}"
        assert checkins.answer(header, raw(SECURE)) is None
        assert checkins._retry_at > 0  # and it waits before trying again
        assert checkins.answer(header, raw(SECURE)) is None
    finally:
        checkins.close()
        broken.dispose()


def test_a_broken_connection_is_replaced(
    db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    ordinary(db, keys, settings, phone, SECURE)
    assert fast.answer(phone.header, raw(SECURE)) is not None
    fast._cursor.connection.close()  # the connection broke under it
    assert fast.answer(phone.header, raw(SECURE)) is None  # this one goes the ordinary way
    assert fast.answer(phone.header, raw(SECURE)) is not None  # on a new connection


def test_disposing_the_engine_writes_held_times_and_the_fast_path_carries_on(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings, phone: Phone, fast: FastCheckin
) -> None:
    """What the app's lifespan does at its end, and what a server whose lifespan is off
    (tests' live servers) leaves to the engine's disposal."""
    ordinary(db, keys, settings, phone, SECURE)
    answer = fast.answer(phone.header, raw(SECURE))
    assert answer is not None and fast._cursor is not None
    db.close()
    app.state.engine.dispose()
    assert fast._cursor is None and fast.writer.pending == 0
    assert stored(db, phone.id).last_checkin_at == parse_time(json.loads(answer)["server_time"])
    assert fast.answer(phone.header, raw(SECURE)) is not None
