"""API tokens: random secrets shown once, stored as keyed digests, checked on every request."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.db import Base, utcnow
from spillguard.core.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import ApiToken, AuditEvent, User
from spillguard.core.roles import Principal, Role
from spillguard.core.tokens import MAX_EXPIRY_DAYS, TokenService
from spillguard.core.users import UserService
from tests.factories.users import UserFactory


def _as(user: User, ip: str = "192.0.2.33") -> Principal:
    return Principal("user", user.id, user.email, Role(user.role), source_ip=ip)


def _svc(db: Session, keys: KeyRing, principal: Principal | None = None) -> TokenService:
    return TokenService(db, principal or Principal.anonymous("192.0.2.44", "req-t"), keys)


def _stored_text(db: Session) -> str:
    """Every value in every table, as text: what someone with a database dump could read."""
    db.flush()
    return "\n".join(
        repr(value)
        for table in Base.metadata.sorted_tables
        for row in db.execute(table.select()).all()
        for value in row
    )


def test_a_token_secret_is_256_random_bits_behind_a_prefix(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.SECURITY)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="laptop")
    secret = issued.secret
    assert re.fullmatch(r"sgt_[A-Za-z0-9_-]{43,}", secret)
    body = secret.removeprefix("sgt_")
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) >= 32
    others = {_svc(db, keys, _as(owner)).create(owner.id, name="x").secret for _ in range(5)}
    assert secret not in others and len(others) == 5


def test_only_a_digest_of_the_secret_is_stored(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.AUDITOR)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="ci", expires_days=30)
    db.commit()
    token = db.get(ApiToken, issued.token.id)
    assert token is not None
    assert token.digest == keys.digest(KeyPurpose.API_TOKEN_DIGEST, issued.secret)
    assert issued.secret.startswith(token.prefix)  # enough to recognise, not to use
    assert len(token.prefix) <= 10
    stored = _stored_text(db)
    assert issued.secret not in stored
    assert issued.secret.removeprefix("sgt_") not in stored
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:token:created"))
    assert event is not None and event.object_id == str(token.id)


def test_authenticate_returns_the_tokens_principal(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.ADMIN)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="ro", role=Role.AUDITOR)
    principal = _svc(db, keys).authenticate(issued.secret)
    assert principal.kind == "token"
    assert (principal.user_id, principal.label, principal.token_id) == (
        owner.id,
        owner.email,
        issued.token.id,
    )
    assert principal.role is Role.AUDITOR  # the token's role, not the owner's
    assert (principal.source_ip, principal.request_id) == ("192.0.2.44", "req-t")


@pytest.mark.parametrize("why", ["unknown", "revoked", "expired", "user disabled", "malformed"])
def test_authenticate_refuses_with_a_reason(
    db: Session, keys: KeyRing, users: UserFactory, why: str
) -> None:
    users.create(Role.ADMIN)
    owner = users.create(Role.HELPDESK)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="t", expires_days=1)
    secret = issued.secret
    if why == "unknown":
        secret = secret[:-2] + ("AA" if not secret.endswith("AA") else "BB")
    elif why == "revoked":
        _svc(db, keys, _as(owner)).revoke(issued.token.id)
    elif why == "expired":
        issued.token.expires_at = utcnow() - timedelta(seconds=1)
    elif why == "user disabled":
        owner.disabled = True
    else:
        secret = "Bearer " + secret
    db.commit()
    with pytest.raises(AuthenticationRequired) as caught:
        _svc(db, keys).authenticate(secret)
    assert why in caught.value.detail


@pytest.mark.parametrize("secret", ["", "sgt_", "sgt_" + "a" * 300, "ghp_abcdef", "sgt_\x00"])
def test_authenticate_refuses_garbage(db: Session, keys: KeyRing, secret: str) -> None:
    with pytest.raises(AuthenticationRequired):
        _svc(db, keys).authenticate(secret)


def test_last_use_is_written_at_most_once_a_minute(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.DPO)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="busy")
    token = issued.token
    assert token.last_used_at is None
    _svc(db, keys).authenticate(issued.secret)
    assert token.last_used_at is not None
    assert utcnow() - token.last_used_at < timedelta(seconds=5)

    recent = utcnow() - timedelta(seconds=30)
    token.last_used_at = recent
    db.flush()
    _svc(db, keys).authenticate(issued.secret)
    assert token.last_used_at == recent  # no write within the minute

    token.last_used_at = utcnow() - timedelta(minutes=2)
    db.flush()
    _svc(db, keys).authenticate(issued.secret)
    assert utcnow() - token.last_used_at < timedelta(seconds=5)


def test_a_non_manager_lists_only_their_own_tokens(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    alice = users.create(Role.HELPDESK)
    bob = users.create(Role.AUDITOR)
    for owner, count in [(admin, 1), (alice, 2), (bob, 3)]:
        for i in range(count):
            _svc(db, keys, _as(owner)).create(owner.id, name=f"t{i}")
    rows, total = _svc(db, keys, _as(alice)).list()
    assert total == 2
    assert {t.user_id for t in rows} == {alice.id}
    rows, total = _svc(db, keys, _as(bob)).list(limit=2)
    assert total == 3 and len(rows) == 2
    assert {t.user_id for t in rows} == {bob.id}
    rows, total = _svc(db, keys, _as(admin)).list()
    assert total == 6
    with pytest.raises(AuthenticationRequired):
        _svc(db, keys).list()


@pytest.mark.parametrize("days", [1, 30, MAX_EXPIRY_DAYS])
def test_expiry_within_bounds(db: Session, keys: KeyRing, users: UserFactory, days: int) -> None:
    owner = users.create(Role.HELPDESK)
    token = _svc(db, keys, _as(owner)).create(owner.id, name="x", expires_days=days).token
    assert token.expires_at is not None
    assert abs(token.expires_at - (utcnow() + timedelta(days=days))) < timedelta(seconds=10)


@pytest.mark.parametrize("days", [0, -1, MAX_EXPIRY_DAYS + 1])
def test_expiry_out_of_bounds_is_refused(
    db: Session, keys: KeyRing, users: UserFactory, days: int
) -> None:
    owner = users.create(Role.HELPDESK)
    with pytest.raises(InvalidInput) as caught:
        _svc(db, keys, _as(owner)).create(owner.id, name="x", expires_days=days)
    assert caught.value.extra == {"field": "expires_days"}


def test_no_expiry_means_the_token_does_not_expire(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.HELPDESK)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="forever")
    assert issued.token.expires_at is None
    assert _svc(db, keys).authenticate(issued.secret).user_id == owner.id


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_token_name_must_be_1_to_100_characters(
    db: Session, keys: KeyRing, users: UserFactory, name: str
) -> None:
    owner = users.create(Role.HELPDESK)
    with pytest.raises(InvalidInput):
        _svc(db, keys, _as(owner)).create(owner.id, name=name)


def test_a_token_never_carries_more_than_its_owner(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    helpdesk = users.create(Role.HELPDESK)
    with pytest.raises(PermissionDenied):
        _svc(db, keys, _as(helpdesk)).create(helpdesk.id, name="up", role=Role.AUDITOR)
    # Not even an admin can hand a helpdesk user an admin token.
    with pytest.raises(PermissionDenied):
        _svc(db, keys, _as(admin)).create(helpdesk.id, name="up", role=Role.ADMIN)
    # A narrower role is fine.
    token = _svc(db, keys, _as(admin)).create(admin.id, name="dn", role=Role.DPO).token
    assert token.role == "dpo"


def test_an_auditor_token_cannot_issue_an_admin_token(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    issued = _svc(db, keys, _as(admin)).create(admin.id, name="ro", role=Role.AUDITOR)
    via_token = _svc(db, keys).authenticate(issued.secret)
    with pytest.raises(PermissionDenied):
        _svc(db, keys, via_token).create(admin.id, name="escalate", role=Role.ADMIN)


def test_only_managers_issue_or_revoke_tokens_for_others(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    alice = users.create(Role.HELPDESK)
    bob = users.create(Role.HELPDESK)
    with pytest.raises(PermissionDenied):
        _svc(db, keys, _as(alice)).create(bob.id, name="for bob")
    bobs = _svc(db, keys, _as(admin)).create(bob.id, name="for bob")
    with pytest.raises(PermissionDenied):
        _svc(db, keys, _as(alice)).revoke(bobs.token.id)
    assert bobs.token.revoked_at is None
    _svc(db, keys, _as(admin)).revoke(bobs.token.id)
    assert bobs.token.revoked_at is not None


def test_revoke_is_audited_once_and_unknown_ids_are_not_found(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.SECURITY)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="old")
    first = _svc(db, keys, _as(owner)).revoke(issued.token.id).revoked_at
    again = _svc(db, keys, _as(owner)).revoke(issued.token.id).revoked_at
    assert first is not None and again == first
    revoked = db.scalars(select(AuditEvent).where(AuditEvent.action == "core:token:revoked"))
    assert len(list(revoked)) == 1
    admin = users.create(Role.ADMIN)
    with pytest.raises(NotFound):
        _svc(db, keys, _as(admin)).revoke(999_999)


def test_no_tokens_for_disabled_or_missing_users(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    gone = users.create(Role.HELPDESK)
    gone.disabled = True
    db.commit()
    with pytest.raises(InvalidInput, match="disabled"):
        _svc(db, keys, _as(admin)).create(gone.id, name="x")
    with pytest.raises(NotFound):
        _svc(db, keys, _as(admin)).create(999_999, name="x")


def test_create_for_defaults_to_the_caller(db: Session, keys: KeyRing, users: UserFactory) -> None:
    owner = users.create(Role.DPO)
    issued = _svc(db, keys, _as(owner)).create_for(None, name="mine")
    assert issued.token.user_id == owner.id
    with pytest.raises(InvalidInput):
        _svc(db, keys, Principal.system("cli")).create_for(None, name="whose?")


def test_a_token_name_with_control_characters_is_refused(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    owner = users.create(Role.HELPDESK)
    for name in ["a\x00b", "line\nbreak", "bell\x07"]:
        with pytest.raises(InvalidInput):
            _svc(db, keys, _as(owner)).create(owner.id, name=name)


def test_a_token_stops_working_when_its_owner_is_demoted(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    users.create(Role.ADMIN)
    owner = users.create(Role.ADMIN)
    issued = _svc(db, keys, _as(owner)).create(owner.id, name="full")
    narrow = _svc(db, keys, _as(owner)).create(owner.id, name="narrow", role=Role.HELPDESK)
    UserService(db, Principal.system("tests")).set_role(owner.id, Role.HELPDESK)
    db.commit()
    with pytest.raises(AuthenticationRequired):
        _svc(db, keys).authenticate(issued.secret)
    assert _svc(db, keys).authenticate(narrow.secret).role is Role.HELPDESK
