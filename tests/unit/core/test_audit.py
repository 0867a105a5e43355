"""The audit-event helper and the query service behind the audit pages and API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from faker import Faker
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import (
    AuditAction,
    AuditFilter,
    AuditService,
    canonical_bytes,
    record_event,
)
from spillguard.core.errors import AuthenticationRequired, InvalidInput, PermissionDenied
from spillguard.core.models import AuditEvent, User
from spillguard.core.roles import Principal, Role
from spillguard.core.users import UserService
from tests.factories.users import UserFactory

fake = Faker("en_GB")


def _person(role: Role = Role.ADMIN, user_id: int = 1, ip: str | None = None) -> Principal:
    return Principal(
        "user", user_id, fake.email(), role, source_ip=ip or fake.ipv4(), request_id="req-1"
    )


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# Recording -----------------------------------------------------------------------------


def test_record_event_writes_who_what_when_where(db: Session) -> None:
    actor = Principal("user", 42, "ann.smith@example.com", Role.ADMIN, None, "203.0.113.9", "r-9")
    before = datetime.now(UTC)
    event = record_event(
        db,
        actor,
        AuditAction.USER_ROLE_CHANGED,
        object_type="user",
        object_id=7,
        details={"from": "helpdesk", "to": "dpo"},
    )
    db.commit()
    db.expire_all()
    stored = db.get(AuditEvent, event.id)
    assert stored is not None
    assert stored.action == "core:user:role-changed"
    assert stored.outcome == "success"
    assert (stored.actor_type, stored.actor_id, stored.actor_label) == (
        "user",
        42,
        "ann.smith@example.com",
    )
    assert (stored.object_type, stored.object_id) == ("user", "7")
    assert (stored.source_ip, stored.request_id) == ("203.0.113.9", "r-9")
    assert stored.details == {"from": "helpdesk", "to": "dpo"}
    assert before - timedelta(seconds=1) <= stored.occurred_at <= datetime.now(UTC)
    assert stored.occurred_at.tzinfo is not None


def test_record_event_for_an_anonymous_failure(db: Session) -> None:
    event = record_event(
        db,
        Principal.anonymous("198.51.100.7"),
        AuditAction.LOGIN_FAILED,
        outcome="failure",
        details={"email": "nobody@example.com"},
    )
    assert (event.actor_type, event.actor_id, event.actor_label) == ("anonymous", None, None)
    assert event.outcome == "failure"
    assert event.source_ip == "198.51.100.7"


@pytest.mark.parametrize(
    "key", ["password", "token", "secret", "cookie", "authorization", "Password", "TOKEN"]
)
def test_secrets_never_enter_event_details(db: Session, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        record_event(db, _person(), AuditAction.USER_CREATED, details={"email": "x", key: "s3"})
    assert _count(db, AuditEvent) == 0


def test_event_names_are_domain_subject_action() -> None:
    for action in AuditAction:
        domain, subject, verb = action.value.split(":")
        assert domain == "core" and subject and verb


def test_an_event_rolls_back_with_the_change_it_describes(app: FastAPI, db: Session) -> None:
    UserService(db, Principal.system("tests")).create(
        "rolled.back@example.com", Role.HELPDESK, "correct horse battery staple"
    )
    assert _count(db, AuditEvent) == 1  # visible inside the transaction
    db.rollback()
    with app.state.session_factory() as fresh:
        assert _count(fresh, User) == 0
        assert _count(fresh, AuditEvent) == 0


def test_an_event_commits_with_the_change_it_describes(app: FastAPI, db: Session) -> None:
    user = UserService(db, Principal.system("tests")).create(
        "kept@example.com", Role.HELPDESK, "correct horse battery staple"
    )
    db.commit()
    with app.state.session_factory() as fresh:
        events = fresh.scalars(select(AuditEvent)).all()
        assert [(e.action, e.object_id) for e in events] == [("core:user:created", str(user.id))]


# Canonical form ------------------------------------------------------------------------


def _event(**changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "id": 12,
        "occurred_at": datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        "action": "core:token:created",
        "outcome": "success",
        "actor_type": "user",
        "actor_id": 3,
        "actor_label": "zoë.bennett@example.com",
        "object_type": "api_token",
        "object_id": "9",
        "source_ip": "192.0.2.10",
        "request_id": "abc123",
        "details": {"role": "auditor", "name": "ci", "expires_days": 30},
    }
    values.update(changes)
    return AuditEvent(**values)


def test_canonical_bytes_are_sorted_compact_json() -> None:
    raw = canonical_bytes(_event())
    parsed = json.loads(raw)
    assert list(parsed) == sorted(parsed)
    assert raw == json.dumps(
        parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert b": " not in raw and b", " not in raw
    assert "zoë".encode() in raw  # UTF-8, not \\u escapes
    assert parsed["occurred_at"] == "2025-03-04T05:06:07.890123+00:00"
    assert parsed["details"] == {"expires_days": 30, "name": "ci", "role": "auditor"}


def test_canonical_bytes_are_deterministic() -> None:
    assert canonical_bytes(_event()) == canonical_bytes(_event())
    reordered = _event(details={"expires_days": 30, "name": "ci", "role": "auditor"})
    assert canonical_bytes(reordered) == canonical_bytes(_event())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 13),
        ("occurred_at", datetime(2025, 3, 4, 5, 6, 7, 890124, tzinfo=UTC)),
        ("action", "core:token:revoked"),
        ("outcome", "failure"),
        ("actor_type", "token"),
        ("actor_id", 4),
        ("actor_label", "someone.else@example.com"),
        ("object_type", "user"),
        ("object_id", "10"),
        ("source_ip", "192.0.2.11"),
        ("request_id", "abc124"),
        ("details", {"role": "admin", "name": "ci", "expires_days": 30}),
    ],
)
def test_canonical_bytes_change_when_any_field_changes(field: str, value: object) -> None:
    assert canonical_bytes(_event(**{field: value})) != canonical_bytes(_event())


def test_canonical_bytes_survive_a_database_round_trip(app: FastAPI, db: Session) -> None:
    event = record_event(
        db,
        _person(),
        AuditAction.TOKEN_CREATED,
        object_type="api_token",
        object_id=5,
        details={"name": "ci déploiement ★", "expires_days": None},
    )
    db.commit()
    written = canonical_bytes(event)
    with app.state.session_factory() as fresh:
        stored = fresh.get(AuditEvent, event.id)
        assert stored is not None
        assert canonical_bytes(stored) == written


# Querying ------------------------------------------------------------------------------


@pytest.fixture
def history(db: Session) -> dict[str, datetime]:
    """A small, known audit trail spread over three days."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    alice = Principal("user", 1, "alice@example.com", Role.ADMIN, source_ip="192.0.2.1")
    bob = Principal("user", 2, "bob@example.com", Role.HELPDESK, source_ip="192.0.2.2")
    rows = [
        (alice, AuditAction.LOGIN_SUCCEEDED, "success", 0),
        (bob, AuditAction.LOGIN_FAILED, "failure", 0),
        (bob, AuditAction.LOGIN_FAILED, "failure", 1),
        (bob, AuditAction.LOGIN_SUCCEEDED, "success", 1),
        (alice, AuditAction.USER_CREATED, "success", 1),
        (alice, AuditAction.TOKEN_CREATED, "success", 2),
        (alice, AuditAction.LOGOUT, "success", 2),
    ]
    for actor, action, outcome, day in rows:
        event = record_event(db, actor, action, outcome=outcome, object_type="user", object_id=1)
        event.occurred_at = start + timedelta(days=day, hours=1)
    db.commit()
    return {"start": start}


def _list(
    db: Session, flt: AuditFilter, role: Role = Role.AUDITOR, **page: int
) -> tuple[list[AuditEvent], int]:
    limit = page.get("limit", 100)
    offset = page.get("offset", 0)
    return AuditService(db, _person(role)).list_events(flt, limit=limit, offset=offset)


def test_action_filter_is_a_prefix(db: Session, history: dict[str, datetime]) -> None:
    rows, total = _list(db, AuditFilter(action="core:login"))
    assert total == 5
    assert {r.action for r in rows} == {
        "core:login:succeeded",
        "core:login:failed",
        "core:login:logout",
    }
    rows, total = _list(db, AuditFilter(action="core:login:failed"))
    assert total == 2


def test_action_filter_treats_wildcards_literally(
    db: Session, history: dict[str, datetime]
) -> None:
    assert _list(db, AuditFilter(action="core:%"))[1] == 0
    assert _list(db, AuditFilter(action="core:_ser"))[1] == 0


def test_actor_and_outcome_filters(db: Session, history: dict[str, datetime]) -> None:
    rows, total = _list(db, AuditFilter(actor="bob@example.com"))
    assert total == 3
    assert {r.actor_label for r in rows} == {"bob@example.com"}
    rows, total = _list(db, AuditFilter(outcome="failure"))
    assert total == 2
    rows, total = _list(db, AuditFilter(actor="bob@example.com", outcome="success"))
    assert [r.action for r in rows] == ["core:login:succeeded"]


def test_time_window_filters(db: Session, history: dict[str, datetime]) -> None:
    start = history["start"]
    day = timedelta(days=1)
    assert _list(db, AuditFilter(since=start + day))[1] == 5
    assert _list(db, AuditFilter(until=start + day))[1] == 2
    # 'since' is inclusive, 'until' exclusive: consecutive windows never count twice.
    middle = _list(db, AuditFilter(since=start + day, until=start + 2 * day))[1]
    assert middle == 3
    assert _list(db, AuditFilter(since=start + 3 * day))[1] == 0


def test_since_not_before_until_is_invalid(db: Session, history: dict[str, datetime]) -> None:
    moment = history["start"]
    with pytest.raises(InvalidInput, match="since"):
        _list(db, AuditFilter(since=moment, until=moment))
    with pytest.raises(InvalidInput):
        _list(db, AuditFilter(since=moment + timedelta(hours=1), until=moment))


def test_pagination_keeps_the_total_and_shows_newest_first(
    db: Session, history: dict[str, datetime]
) -> None:
    first, total = _list(db, AuditFilter(), limit=3, offset=0)
    second, total2 = _list(db, AuditFilter(), limit=3, offset=3)
    third, total3 = _list(db, AuditFilter(), limit=3, offset=6)
    assert total == total2 == total3 == 7
    assert [len(first), len(second), len(third)] == [3, 3, 1]
    ids = [r.id for r in first + second + third]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 7
    assert _list(db, AuditFilter(), limit=3, offset=50) == ([], 7)


def test_admin_and_auditor_read_events(db: Session, history: dict[str, datetime]) -> None:
    for role in (Role.ADMIN, Role.AUDITOR):
        assert _list(db, AuditFilter(), role=role)[1] == 7
        assert "core:login:failed" in AuditService(db, _person(role)).actions()


@pytest.mark.parametrize("role", [Role.HELPDESK, Role.SECURITY, Role.DPO])
def test_other_roles_may_not_read_events(db: Session, role: Role) -> None:
    with pytest.raises(PermissionDenied):
        _list(db, AuditFilter(), role=role)
    with pytest.raises(PermissionDenied):
        AuditService(db, _person(role)).actions()


def test_anonymous_may_not_read_events(db: Session) -> None:
    with pytest.raises(AuthenticationRequired):
        AuditService(db, Principal.anonymous()).list_events(AuditFilter(), limit=10, offset=0)


def test_real_changes_appear_in_the_trail(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    users.token(admin, name="deploy")
    actor = Principal("user", admin.id, admin.email, Role.ADMIN)
    rows, total = AuditService(db, actor).list_events(
        AuditFilter(object_type="api_token"), limit=10, offset=0
    )
    assert total == 1
    assert rows[0].action == "core:token:created"
    assert rows[0].details["owner"] == admin.email
