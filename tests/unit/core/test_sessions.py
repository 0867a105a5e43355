"""Console login: passwords, throttling, database sessions, CSRF tokens and setup links."""

from __future__ import annotations

from datetime import timedelta

import pytest
from faker import Faker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core import sessions as sessions_module
from spillguard.core.db import Base, utcnow
from spillguard.core.errors import Conflict, InvalidInput, Throttled
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import AuditEvent, LoginFailure, SetupLink, User, WebSession
from spillguard.core.passwords import verify_password
from spillguard.core.roles import Principal, Role
from spillguard.core.sessions import (
    InvalidCredentials,
    LoginService,
    SetupLinkInvalid,
    purge_expired,
)
from spillguard.core.settings import Settings
from tests.factories.users import DEFAULT_PASSWORD, UserFactory

fake = Faker("en_GB")


def _service(db: Session, keys: KeyRing, settings: Settings, ip: str | None = None) -> LoginService:
    return LoginService(db, Principal.anonymous(ip or fake.ipv4(), "req-login"), keys, settings)


def _stored_text(db: Session) -> str:
    """Every value in every table, as text: what someone with a database dump could read."""
    db.flush()
    parts = []
    for table in Base.metadata.sorted_tables:
        for row in db.execute(table.select()).all():
            parts.extend(repr(value) for value in row)
    return "\n".join(parts)


def _count(db: Session, model: type, *where: object) -> int:
    return db.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


def _fail(service: LoginService, email: str, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            service.login(email, "definitely the wrong password")


# Logging in ----------------------------------------------------------------------------


def test_login_creates_a_session_that_stores_only_a_digest(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.SECURITY)
    new = _service(db, keys, settings, "203.0.113.5").login(user.email.upper(), DEFAULT_PASSWORD)
    db.commit()
    assert new.user.id == user.id
    assert len(new.secret) >= 43 and len(new.csrf_seed) >= 16
    row = db.scalar(select(WebSession).where(WebSession.user_id == user.id))
    assert row is not None
    assert row.digest == keys.digest(KeyPurpose.SESSION_DIGEST, new.secret)
    assert row.source_ip == "203.0.113.5"
    lifetime = row.expires_at - row.created_at
    assert abs(lifetime - timedelta(hours=settings.session_hours)) < timedelta(seconds=5)
    stored = _stored_text(db)
    assert new.secret not in stored
    assert DEFAULT_PASSWORD not in stored
    refreshed = db.get(User, user.id)
    assert refreshed is not None and refreshed.last_login_at is not None


def test_each_login_gets_its_own_session(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.DPO)
    one = _service(db, keys, settings).login(user.email, DEFAULT_PASSWORD)
    two = _service(db, keys, settings).login(user.email, DEFAULT_PASSWORD)
    assert one.secret != two.secret and one.csrf_seed != two.csrf_seed
    assert _count(db, WebSession, WebSession.user_id == user.id) == 2


def test_login_success_is_audited(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    _service(db, keys, settings, "203.0.113.6").login(user.email, DEFAULT_PASSWORD)
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:login:succeeded"))
    assert event is not None
    assert (event.actor_id, event.actor_label, event.source_ip) == (
        user.id,
        user.email,
        "203.0.113.6",
    )


@pytest.mark.parametrize("case", ["wrong-password", "unknown-account", "disabled"])
def test_failed_logins_are_refused_counted_and_audited(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory, case: str
) -> None:
    user = users.create(Role.HELPDESK)
    users.create(Role.ADMIN)  # so the helpdesk user may be disabled
    email, password = user.email, "definitely the wrong password"
    if case == "unknown-account":
        email = "nobody.here@example.com"
    elif case == "disabled":
        user.disabled = True
        db.commit()
        password = DEFAULT_PASSWORD
    service = _service(db, keys, settings, "198.51.100.20")
    with pytest.raises(InvalidCredentials) as caught:
        service.login(email, password)
    assert caught.value.status == 401
    # The message never tells which part was wrong, nor whether the account exists.
    assert caught.value.detail == "E-mail address or password is wrong."
    account_key = keys.digest(KeyPurpose.THROTTLE_KEY_DIGEST, f"account:{email.lower()}")
    address_key = keys.digest(KeyPurpose.THROTTLE_KEY_DIGEST, "address:198.51.100.20")
    assert _count(db, LoginFailure, LoginFailure.key_digest == account_key) == 1
    assert _count(db, LoginFailure, LoginFailure.key_digest == address_key) == 1
    assert _count(db, WebSession) == 0
    failed = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:login:failed"))
    assert failed is not None
    assert (failed.outcome, failed.source_ip) == ("failure", "198.51.100.20")
    assert failed.details["email"] == email.lower()
    assert password not in _stored_text(db)
    assert "198.51.100.20" not in {r.key_digest for r in db.scalars(select(LoginFailure))}


def test_account_is_throttled_after_n_failures_from_anywhere(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    limit = settings.login_max_failures_account
    for _ in range(limit):
        _fail(_service(db, keys, settings, fake.unique.ipv4()), user.email)
    with pytest.raises(Throttled) as caught:
        # Even the right password from a fresh address is refused while throttled.
        _service(db, keys, settings, fake.unique.ipv4()).login(user.email, DEFAULT_PASSWORD)
    window = settings.login_failure_window_seconds
    assert 0 < caught.value.retry_after <= window + 1
    assert caught.value.keep_changes is True
    assert _count(db, WebSession) == 0
    throttled = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:login:throttled"))
    assert throttled is not None and throttled.details["scope"] == "account"
    # Another account is not affected.
    other = users.create(Role.HELPDESK)
    assert _service(db, keys, settings).login(other.email, DEFAULT_PASSWORD).user.id == other.id


def test_throttling_is_per_account_case_insensitively(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    variants = [user.email.upper(), user.email, f"  {user.email.title()} "]
    for i in range(settings.login_max_failures_account):
        _fail(_service(db, keys, settings, fake.unique.ipv4()), variants[i % len(variants)])
    with pytest.raises(Throttled):
        _service(db, keys, settings).login(user.email, DEFAULT_PASSWORD)


def test_address_is_throttled_after_n_failures_on_any_accounts(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    tight = settings.model_copy(update={"login_max_failures_address": 3})
    user = users.create(Role.HELPDESK)
    for _ in range(3):
        _fail(_service(db, keys, tight, "192.0.2.77"), fake.unique.email())
    with pytest.raises(Throttled) as caught:
        _service(db, keys, tight, "192.0.2.77").login(user.email, DEFAULT_PASSWORD)
    assert caught.value.retry_after > 0
    scope = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:login:throttled"))
    assert scope is not None and scope.details["scope"] == "address"
    # The same person from another address gets in.
    assert _service(db, keys, tight, "192.0.2.78").login(user.email, DEFAULT_PASSWORD)


def test_failures_older_than_the_window_do_not_count(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    _fail(_service(db, keys, settings), user.email, settings.login_max_failures_account)
    window = timedelta(seconds=settings.login_failure_window_seconds)
    for failure in db.scalars(select(LoginFailure)):
        failure.occurred_at = utcnow() - window - timedelta(seconds=1)
    db.flush()
    assert _service(db, keys, settings).login(user.email, DEFAULT_PASSWORD).user.id == user.id


def test_a_success_resets_the_account_counter_but_not_the_address(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    below = settings.login_max_failures_account - 1
    _fail(_service(db, keys, settings, "192.0.2.50"), user.email, below)
    _service(db, keys, settings, "192.0.2.50").login(user.email, DEFAULT_PASSWORD)
    account_key = keys.digest(KeyPurpose.THROTTLE_KEY_DIGEST, f"account:{user.email}")
    address_key = keys.digest(KeyPurpose.THROTTLE_KEY_DIGEST, "address:192.0.2.50")
    assert _count(db, LoginFailure, LoginFailure.key_digest == account_key) == 0
    assert _count(db, LoginFailure, LoginFailure.key_digest == address_key) == below
    # Another run of failures just below the limit is again not throttled.
    _fail(_service(db, keys, settings, "192.0.2.51"), user.email, below)
    assert _service(db, keys, settings, "192.0.2.52").login(user.email, DEFAULT_PASSWORD)


# Resolving sessions ----------------------------------------------------------------------


@pytest.fixture
def logged_in(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> tuple[User, str]:
    users.create(Role.ADMIN)  # keeps an admin when the user under test is disabled
    user = users.create(Role.AUDITOR)
    new = _service(db, keys, settings).login(user.email, DEFAULT_PASSWORD)
    db.commit()
    return user, new.secret


def _row(db: Session, secret: str, keys: KeyRing) -> WebSession | None:
    digest = keys.digest(KeyPurpose.SESSION_DIGEST, secret)
    return db.scalar(select(WebSession).where(WebSession.digest == digest))


def test_resolve_a_live_session(
    db: Session, keys: KeyRing, settings: Settings, logged_in: tuple[User, str]
) -> None:
    user, secret = logged_in
    principal = _service(db, keys, settings, "192.0.2.9").resolve(secret)
    assert principal is not None
    assert (principal.kind, principal.user_id, principal.label) == ("user", user.id, user.email)
    assert principal.role is Role.AUDITOR
    assert principal.source_ip == "192.0.2.9"


@pytest.mark.parametrize("secret", ["", "x", "a" * 201, "not-a-session-secret-at-all-0123456789"])
def test_resolve_of_an_unknown_secret_is_none(
    db: Session, keys: KeyRing, settings: Settings, logged_in: tuple[User, str], secret: str
) -> None:
    assert _service(db, keys, settings).resolve(secret) is None
    assert _count(db, WebSession) == 1


def test_resolve_refreshes_last_seen_at_most_once_a_minute(
    db: Session, keys: KeyRing, settings: Settings, logged_in: tuple[User, str]
) -> None:
    _, secret = logged_in
    row = _row(db, secret, keys)
    assert row is not None
    recent = utcnow() - timedelta(seconds=30)
    row.last_seen_at = recent
    db.flush()
    assert _service(db, keys, settings).resolve(secret) is not None
    assert row.last_seen_at == recent
    row.last_seen_at = utcnow() - timedelta(minutes=5)
    db.flush()
    assert _service(db, keys, settings).resolve(secret) is not None
    assert utcnow() - row.last_seen_at < timedelta(seconds=5)


@pytest.mark.parametrize("why", ["expired", "idle", "user-disabled"])
def test_a_dead_session_resolves_to_none_and_is_deleted(
    db: Session, keys: KeyRing, settings: Settings, logged_in: tuple[User, str], why: str
) -> None:
    user, secret = logged_in
    row = _row(db, secret, keys)
    assert row is not None
    if why == "expired":
        row.expires_at = utcnow() - timedelta(seconds=1)
    elif why == "idle":
        row.last_seen_at = utcnow() - timedelta(minutes=settings.session_idle_minutes, seconds=1)
    else:
        db.get(User, user.id).disabled = True  # type: ignore[union-attr]
    db.commit()
    assert _service(db, keys, settings).resolve(secret) is None
    db.commit()
    assert _count(db, WebSession) == 0


def test_logout_deletes_the_session_and_is_audited(
    db: Session, keys: KeyRing, settings: Settings, logged_in: tuple[User, str]
) -> None:
    user, secret = logged_in
    service = _service(db, keys, settings)
    service.logout(secret)
    db.commit()
    assert _count(db, WebSession) == 0
    assert service.resolve(secret) is None
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "core:login:logout"))
    assert event is not None and event.object_id == str(user.id)
    service.logout(secret)  # a second logout is harmless
    service.logout("never-issued")


# CSRF ----------------------------------------------------------------------------------


def test_csrf_token_is_bound_to_its_seed(db: Session, keys: KeyRing, settings: Settings) -> None:
    service = _service(db, keys, settings)
    seed, other_seed = "seed-" + fake.uuid4(), "seed-" + fake.uuid4()
    token = service.csrf_token(seed)
    assert service.csrf_token(seed) == token
    assert seed not in token
    assert service.csrf_valid(seed, token) is True
    assert service.csrf_valid(other_seed, token) is False
    assert service.csrf_valid(seed, service.csrf_token(other_seed)) is False
    assert service.csrf_valid(seed, token[:-1] + ("0" if token[-1] != "0" else "1")) is False
    for missing_seed, missing_token in [(None, token), ("", token), (seed, None), (seed, "")]:
        assert service.csrf_valid(missing_seed, missing_token) is False


def test_csrf_token_cannot_be_made_without_the_server_key(
    db: Session, keys: KeyRing, settings: Settings
) -> None:
    seed = fake.uuid4()
    forged = LoginService(db, Principal.anonymous(), KeyRing(bytes(32)), settings).csrf_token(seed)
    assert _service(db, keys, settings).csrf_valid(seed, forged) is False


def test_csrf_comparison_is_constant_time(
    db: Session, keys: KeyRing, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[str, str]] = []
    real = sessions_module.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sessions_module.hmac, "compare_digest", spy)
    service = _service(db, keys, settings)
    assert service.csrf_valid("seed", service.csrf_token("seed")) is True
    assert service.csrf_valid("seed", "forged") is False
    assert len(compared) == 2


# Setup link ----------------------------------------------------------------------------


def test_setup_link_only_on_an_empty_database(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    secret = _service(db, keys, settings).create_setup_link()
    assert secret is not None and len(secret) >= 32
    assert secret not in _stored_text(db)
    assert _count(db, SetupLink) == 1
    db.commit()
    users.create(Role.HELPDESK)
    assert _service(db, keys, settings).create_setup_link() is None


def test_setup_link_creates_the_first_admin_once(
    db: Session, keys: KeyRing, settings: Settings
) -> None:
    service = _service(db, keys, settings)
    secret = service.create_setup_link()
    assert secret is not None
    service.check_setup_link(secret)
    admin = service.complete_setup(secret, "First.Admin@Example.com", DEFAULT_PASSWORD)
    db.commit()
    assert (admin.email, admin.role) == ("first.admin@example.com", "admin")
    assert verify_password(admin.password_hash, DEFAULT_PASSWORD)
    actions = set(db.scalars(select(AuditEvent.action)))
    assert {"core:setup:link-created", "core:setup:completed", "core:user:created"} <= actions
    with pytest.raises(SetupLinkInvalid):
        service.complete_setup(secret, "second.admin@example.com", DEFAULT_PASSWORD)
    assert _count(db, User) == 1


def test_setup_link_refuses_bad_input_and_stays_usable(
    db: Session, keys: KeyRing, settings: Settings
) -> None:
    service = _service(db, keys, settings)
    secret = service.create_setup_link()
    assert secret is not None
    db.commit()  # serve printed the link
    with pytest.raises(InvalidInput):
        service.complete_setup(secret, "admin@example.com", "short")
    db.rollback()  # what the request does with a refused form
    assert service.complete_setup(secret, "admin@example.com", DEFAULT_PASSWORD)


def test_an_expired_or_unknown_setup_link_is_invalid(
    db: Session, keys: KeyRing, settings: Settings
) -> None:
    service = _service(db, keys, settings)
    secret = service.create_setup_link()
    assert secret is not None
    with pytest.raises(SetupLinkInvalid):
        service.check_setup_link(secret + "x")
    link = db.scalar(select(SetupLink))
    assert link is not None
    link.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    with pytest.raises(SetupLinkInvalid):
        service.check_setup_link(secret)
    with pytest.raises(SetupLinkInvalid):
        service.complete_setup(secret, "admin@example.com", DEFAULT_PASSWORD)
    assert _count(db, User) == 0


def test_a_setup_link_is_void_once_someone_exists(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    secret = _service(db, keys, settings).create_setup_link()
    assert secret is not None
    db.commit()
    users.create(Role.ADMIN)
    with pytest.raises(Conflict):
        _service(db, keys, settings).complete_setup(secret, "late@example.com", DEFAULT_PASSWORD)


# Housekeeping --------------------------------------------------------------------------


def test_purge_expired_removes_only_dead_rows(
    db: Session, keys: KeyRing, settings: Settings, users: UserFactory
) -> None:
    user = users.create(Role.HELPDESK)
    now = utcnow()
    idle = timedelta(minutes=settings.session_idle_minutes)
    window = timedelta(seconds=settings.login_failure_window_seconds)
    db.add_all(
        [
            WebSession(digest="live", user_id=user.id, expires_at=now + timedelta(hours=1)),
            WebSession(digest="expired", user_id=user.id, expires_at=now - timedelta(seconds=1)),
            WebSession(
                digest="idle",
                user_id=user.id,
                expires_at=now + timedelta(hours=1),
                last_seen_at=now - idle - timedelta(seconds=1),
            ),
            LoginFailure(key_digest="recent", occurred_at=now - timedelta(seconds=5)),
            LoginFailure(key_digest="old", occurred_at=now - window - timedelta(seconds=1)),
            SetupLink(digest="fresh", expires_at=now + timedelta(minutes=5)),
            SetupLink(digest="stale", expires_at=now - timedelta(minutes=5)),
        ]
    )
    db.commit()
    assert purge_expired(db, settings) == {"sessions": 2, "login_failures": 1, "setup_links": 1}
    db.commit()
    assert list(db.scalars(select(WebSession.digest))) == ["live"]
    assert list(db.scalars(select(LoginFailure.key_digest))) == ["recent"]
    assert list(db.scalars(select(SetupLink.digest))) == ["fresh"]
    assert purge_expired(db, settings) == {"sessions": 0, "login_failures": 0, "setup_links": 0}
