"""User administration: e-mail and role parsing, creation, roles, passwords, disabling."""

from __future__ import annotations

import string

import pytest
from faker import Faker
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent, User, WebSession
from spillguard.core.passwords import verify_password
from spillguard.core.roles import Principal, Role
from spillguard.core.sessions import LoginService
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserExists, UserService, normalise_email, parse_role
from tests.factories.users import DEFAULT_PASSWORD, UserFactory

fake = Faker("en_GB")
NEW_PASSWORD = "a different passphrase, also long"


# E-mail addresses ----------------------------------------------------------------------

_LOCAL = string.ascii_letters + string.digits + "._%+-'"
_LABEL = string.ascii_letters + string.digits + "-"
_SPACE = st.sampled_from(["", " ", "  ", "\t", "\n", " \r\n"])


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """Ordinary-looking addresses in any mix of upper and lower case."""
    local = draw(st.text(_LOCAL, min_size=1, max_size=64))
    labels = draw(st.lists(st.text(_LABEL, min_size=1, max_size=20), min_size=1, max_size=4))
    tld = draw(st.text(string.ascii_letters, min_size=2, max_size=12))
    return f"{local}@{'.'.join(labels)}.{tld}"


@hypothesis_settings(max_examples=200)
@given(address=addresses(), before=_SPACE, after=_SPACE)
@example(address="Ann.Smith@Example.CO.UK", before=" ", after="\n")
def test_valid_addresses_normalise_to_lower_case(address: str, before: str, after: str) -> None:
    normal = normalise_email(before + address + after)
    assert normal == address.lower()
    assert normalise_email(normal) == normal  # idempotent
    assert normalise_email(address.upper()) == normal


@hypothesis_settings(max_examples=100)
@given(address=st.emails())
def test_hypothesis_emails_are_accepted(address: str) -> None:
    assert normalise_email(address) == address.lower()


_NASTY = st.sampled_from(["@", ".", " ", "\x00", "\x7f", "\udcff", "İ", "\u200b", "\n", "a"])


@hypothesis_settings(max_examples=400)
@given(text=st.text(st.one_of(st.characters(), _NASTY), max_size=400))
@example(text="a" * 64 + "@" + "İ" * 127 + "." + "c" * 63)  # lower() makes it 383 long
@example(text="a\udcffb@example.com")  # undecodable byte from a command line
@example(text="a\x00b@example.com")
@example(text="a@b.c\n")
def test_any_text_is_an_address_or_invalid_input(text: str) -> None:
    try:
        normal = normalise_email(text)
    except InvalidInput as exc:
        assert exc.extra == {"field": "email"}
        assert exc.status == 422
        return
    assert normal == text.strip().lower()
    assert normal.count("@") == 1
    local, domain = normal.split("@")
    assert local and "." in domain and not domain.endswith(".")
    assert len(normal) <= 320  # fits the users.email column on every backend
    assert not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in normal)
    normal.encode("utf-8")  # storable: no lone surrogates


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "ann@",
        "ann@example",
        "ann@example.",
        "ann@@example.com",
        "ann smith@example.com",
        "ann@exa mple.com",
        "a" * 65 + "@example.com",
        "ann@" + "b" * 256 + ".com",
        "ann@example." + "c" * 64,
        "ann\x00@example.com",
    ],
)
def test_garbage_addresses_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid e-mail address"):
        normalise_email(text)


# Roles ---------------------------------------------------------------------------------


@st.composite
def role_spellings(draw: st.DrawFn) -> tuple[Role, str]:
    role = draw(st.sampled_from(list(Role)))
    flips = draw(st.lists(st.booleans(), min_size=len(role.value), max_size=len(role.value)))
    spelled = "".join(c.upper() if f else c for c, f in zip(role.value, flips, strict=True))
    return role, draw(_SPACE) + spelled + draw(_SPACE)


@given(case=role_spellings())
def test_parse_role_accepts_any_case_and_spacing(case: tuple[Role, str]) -> None:
    role, spelled = case
    assert parse_role(spelled) is role


@hypothesis_settings(max_examples=200)
@given(text=st.text(max_size=30))
@example(text="administrator")
@example(text="")
@example(text="ADMİN")
def test_parse_role_of_any_text_is_a_role_or_invalid_input(text: str) -> None:
    try:
        role = parse_role(text)
    except InvalidInput as exc:
        assert exc.extra == {"field": "role"}
        assert "choose one of admin, helpdesk, security, dpo, auditor" in exc.detail
        return
    assert role.value == text.strip().lower()


# The service ---------------------------------------------------------------------------


def _as(user: User) -> Principal:
    return Principal("user", user.id, user.email, Role(user.role), source_ip="192.0.2.60")


def _admins(db: Session) -> int:
    query = select(func.count()).select_from(User).where(User.role == "admin")
    return db.scalar(query.where(User.disabled.is_(False))) or 0


def _events(db: Session, action: str) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_create_normalises_audits_and_refuses_duplicates(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    address = fake.email()
    created = UserService(db, _as(admin)).create(f" {address.upper()} ", Role.DPO, NEW_PASSWORD)
    assert (created.email, created.role, created.disabled) == (address.lower(), "dpo", False)
    assert verify_password(created.password_hash, NEW_PASSWORD)
    assert created.password_changed_at is not None
    event = _events(db, "core:user:created")[-1]
    assert (event.actor_label, event.object_id) == (admin.email, str(created.id))
    assert event.details == {"email": address.lower(), "role": "dpo"}
    with pytest.raises(UserExists) as caught:
        UserService(db, _as(admin)).create(address.title(), Role.HELPDESK, NEW_PASSWORD)
    assert caught.value.status == 409


@pytest.mark.parametrize("role", [Role.HELPDESK, Role.SECURITY, Role.DPO, Role.AUDITOR])
def test_only_admins_create_users(db: Session, users: UserFactory, role: Role) -> None:
    actor = users.create(role)
    with pytest.raises(PermissionDenied):
        UserService(db, _as(actor)).create(fake.email(), Role.ADMIN, NEW_PASSWORD)
    with pytest.raises(AuthenticationRequired):
        UserService(db, Principal.anonymous()).create(fake.email(), Role.ADMIN, NEW_PASSWORD)


def test_auditor_lists_but_helpdesk_does_not(db: Session, users: UserFactory) -> None:
    auditor = users.create(Role.AUDITOR)
    helpdesk = users.create(Role.HELPDESK)
    rows, total = UserService(db, _as(auditor)).list()
    assert total == 2 and {u.id for u in rows} == {auditor.id, helpdesk.id}
    assert UserService(db, _as(auditor)).by_email(helpdesk.email.upper()).id == helpdesk.id
    with pytest.raises(PermissionDenied):
        UserService(db, _as(helpdesk)).list()
    with pytest.raises(NotFound):
        UserService(db, _as(auditor)).get(999_999)
    with pytest.raises(NotFound):
        UserService(db, _as(auditor)).by_email("nobody@example.com")


def test_the_last_admin_cannot_be_disabled_or_demoted(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    service = UserService(db, _as(admin))
    with pytest.raises(Conflict, match="last enabled administrator"):
        service.set_disabled(admin.id, True)
    with pytest.raises(Conflict, match="last enabled administrator"):
        service.set_role(admin.id, Role.AUDITOR)
    with pytest.raises(Conflict):
        service.update(admin.id, role=Role.HELPDESK)
    db.rollback()
    refreshed = db.get(User, admin.id)
    assert refreshed is not None
    assert (refreshed.role, refreshed.disabled) == ("admin", False)
    assert _events(db, "core:user:disabled") == []
    assert _events(db, "core:user:role-changed") == []


def test_with_two_admins_one_may_go_but_not_both(db: Session, users: UserFactory) -> None:
    first = users.create(Role.ADMIN)
    second = users.create(Role.ADMIN)
    third = users.create(Role.ADMIN)
    service = UserService(db, _as(first))
    service.set_role(second.id, Role.SECURITY)
    service.set_disabled(third.id, True)
    assert _admins(db) == 1
    with pytest.raises(Conflict):
        service.set_disabled(first.id, True)
    # A disabled admin does not count: re-enabling it makes two again.
    service.set_disabled(third.id, False)
    service.set_disabled(first.id, True)
    assert _admins(db) == 1
    change = _events(db, "core:user:role-changed")[0]
    assert change.details == {"email": second.email, "from": "admin", "to": "security"}


def test_setting_the_same_role_is_a_no_op(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    UserService(db, _as(admin)).set_role(admin.id, Role.ADMIN)
    assert _events(db, "core:user:role-changed") == []


def _login(db: Session, keys: KeyRing, settings: Settings, user: User) -> str:
    service = LoginService(db, Principal.anonymous(fake.ipv4()), keys, settings)
    return service.login(user.email, DEFAULT_PASSWORD).secret


def _sessions_of(db: Session, user: User) -> int:
    query = select(func.count()).select_from(WebSession).where(WebSession.user_id == user.id)
    return db.scalar(query) or 0


def test_a_new_password_ends_that_users_sessions(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    user = users.create(Role.SECURITY)
    secret = _login(db, keys, settings, user)
    _login(db, keys, settings, user)
    _login(db, keys, settings, admin)
    db.commit()
    UserService(db, _as(admin)).set_password(user.id, NEW_PASSWORD)
    db.commit()
    assert _sessions_of(db, user) == 0
    assert _sessions_of(db, admin) == 1
    assert LoginService(db, Principal.anonymous(), keys, settings).resolve(secret) is None
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert not verify_password(user.password_hash, DEFAULT_PASSWORD)
    event = _events(db, "core:user:password-changed")[0]
    assert NEW_PASSWORD not in repr(event.details)


def test_a_refused_password_keeps_the_old_one_and_the_sessions(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    _login(db, keys, settings, admin)
    db.commit()
    with pytest.raises(InvalidInput):
        UserService(db, _as(admin)).set_password(admin.id, "too short")
    db.rollback()
    assert _sessions_of(db, admin) == 1
    assert verify_password(db.get(User, admin.id).password_hash, DEFAULT_PASSWORD)  # type: ignore[union-attr]


def test_people_change_their_own_password_but_not_others(db: Session, users: UserFactory) -> None:
    alice = users.create(Role.HELPDESK)
    bob = users.create(Role.HELPDESK)
    with pytest.raises(PermissionDenied, match="current password"):
        UserService(db, _as(alice)).set_password(alice.id, NEW_PASSWORD)
    with pytest.raises(PermissionDenied, match="current password"):
        UserService(db, _as(alice)).set_password(
            alice.id, NEW_PASSWORD, current_password="a wrong guess of it"
        )
    assert verify_password(alice.password_hash, DEFAULT_PASSWORD)
    UserService(db, _as(alice)).set_password(
        alice.id, NEW_PASSWORD, current_password=DEFAULT_PASSWORD
    )
    assert verify_password(alice.password_hash, NEW_PASSWORD)
    with pytest.raises(PermissionDenied):
        UserService(db, _as(alice)).set_password(bob.id, NEW_PASSWORD)
    assert verify_password(bob.password_hash, DEFAULT_PASSWORD)


def test_a_narrower_token_cannot_change_its_owners_password(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    secret = users.token(admin, role=Role.HELPDESK)
    via_token = TokenService(db, Principal.anonymous(), keys).authenticate(secret)
    with pytest.raises(PermissionDenied):
        UserService(db, via_token).set_password(admin.id, NEW_PASSWORD)


def test_disabling_revokes_tokens_and_ends_sessions(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    admin = users.create(Role.ADMIN)
    user = users.create(Role.AUDITOR)
    secrets = [users.token(user, name="a"), users.token(user, name="b")]
    _login(db, keys, settings, user)
    db.commit()
    UserService(db, _as(admin)).set_disabled(user.id, True)
    db.commit()
    assert _sessions_of(db, user) == 0
    assert all(t.revoked_at is not None for t in user.tokens)
    for secret in secrets:
        with pytest.raises(AuthenticationRequired, match="revoked"):
            TokenService(db, Principal.anonymous(), keys).authenticate(secret)
    assert len(_events(db, "core:user:disabled")) == 1
    # Enabling lets the person log in again, but old tokens stay revoked.
    UserService(db, _as(admin)).set_disabled(user.id, False)
    db.commit()
    assert _login(db, keys, settings, user)
    with pytest.raises(AuthenticationRequired):
        TokenService(db, Principal.anonymous(), keys).authenticate(secrets[0])
    assert len(_events(db, "core:user:enabled")) == 1


def test_disabling_twice_is_recorded_once(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    user = users.create(Role.DPO)
    UserService(db, _as(admin)).set_disabled(user.id, True)
    UserService(db, _as(admin)).set_disabled(user.id, True)
    assert len(_events(db, "core:user:disabled")) == 1


def test_changes_to_missing_users_are_not_found(db: Session, users: UserFactory) -> None:
    admin = users.create(Role.ADMIN)
    service = UserService(db, _as(admin))
    for change in (
        lambda: service.set_disabled(999_999, True),
        lambda: service.set_role(999_999, Role.DPO),
        lambda: service.set_password(999_999, NEW_PASSWORD),
    ):
        with pytest.raises(NotFound):
            change()
