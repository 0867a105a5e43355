"""`spillguard users …` run as a real process against SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from faker import Faker
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.db import make_engine, transaction
from spillguard.core.errors import AuthenticationRequired
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent, User
from spillguard.core.roles import Principal, Role
from spillguard.core.sessions import InvalidCredentials, LoginService
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService
from tests.conftest import TEST_MASTER_KEY
from tests.functional.live import one_line_error, run_spillguard, spillguard_env

fake = Faker("en_GB")


def an_email() -> str:
    return f"{fake.first_name()}.{fake.last_name()}.{fake.random_int(100, 99999)}@example.co.uk"


def a_password() -> str:
    return fake.password(length=20)


def make_user(factory: sessionmaker[Session], role: Role, password: str) -> str:
    email = an_email().lower()
    with transaction(factory) as session:
        UserService(session, Principal.system("tests")).create(email, role, password)
    return email


def can_log_in(
    factory: sessionmaker[Session], keys: KeyRing, settings: Settings, email: str, password: str
) -> bool:
    with transaction(factory) as session:
        svc = LoginService(session, Principal.anonymous("192.0.2.10"), keys, settings)
        try:
            svc.login(email, password)
        except InvalidCredentials:
            return False
    return True


def user_row(factory: sessionmaker[Session], email: str) -> User | None:
    with transaction(factory) as session:
        return session.scalar(select(User).where(User.email == email.lower()))


def token_refusal(factory: sessionmaker[Session], keys: KeyRing, secret: str) -> str | None:
    """Why the API would refuse this token now, or None if it would accept it."""
    with transaction(factory) as session:
        try:
            TokenService(session, Principal.anonymous(), keys).authenticate(secret)
        except AuthenticationRequired as exc:
            return exc.detail
    return None


def test_create_reads_the_password_from_stdin_and_the_user_can_log_in(
    env: dict[str, str], factory: sessionmaker[Session], keys: KeyRing, settings: Settings
) -> None:
    email, password = an_email(), a_password()

    result = run_spillguard(
        ["users", "create", email, "--role", "auditor", "--password-stdin"],
        env,
        input=password + "\n",
    )

    assert result.returncode == 0, result.stderr
    assert f"Created {email.lower()} with role auditor" in result.stdout
    assert password not in result.stdout + result.stderr
    # The newline that ends the line on stdin is not part of the password.
    assert can_log_in(factory, keys, settings, email, password)
    assert not can_log_in(factory, keys, settings, email, password + "\n")
    with transaction(factory) as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "core:user:created"))
        assert event is not None
        assert event.actor_label is not None and event.actor_label.startswith("cli:")

    listing = run_spillguard(["users", "list"], env)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if email.lower() in line)
    assert "auditor" in row and "active" in row
    assert "never" not in row  # the last login shows: it logged in just above


@pytest.mark.parametrize(
    ("config", "environment", "link"),
    [
        ("port = 9123\n", {}, "http://127.0.0.1:9123/login"),
        ('[spillguard]\nhost = "0.0.0.0"\nport = 9124\n', {}, "http://127.0.0.1:9124/login"),
        ("port = 9123\n", {"host": "192.0.2.7", "port": 8443}, "http://192.0.2.7:8443/login"),
        (
            "port = 9123\n",
            {"public_url": "https://dlp.example.org/"},
            "https://dlp.example.org/login",
        ),
    ],
    ids=["config-file-port", "config-file-any-address", "environment", "public-url"],
)
def test_create_prints_the_login_link_of_the_configured_server(
    env: dict[str, str], tmp_path: Path, config: str, environment: dict[str, object], link: str
) -> None:
    """The link comes from the server's settings (config file, then the environment, and
    SPILLGUARD_PUBLIC_URL above both), never the default port."""
    config_file = tmp_path / "spillguard.toml"
    config_file.write_text(config)
    configured = dict(env, SPILLGUARD_CONFIG=str(config_file))
    configured.update({f"SPILLGUARD_{k.upper()}": str(v) for k, v in environment.items()})
    result = run_spillguard(
        ["users", "create", an_email(), "--role", "auditor", "--password-stdin"],
        configured,
        input=a_password() + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"Log in at {link}"
    assert ":8000" not in result.stdout


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        pytest.param(["--role", "admin"], "x" * 20, "use --password-stdin", id="no-terminal"),
        pytest.param(
            ["--role", "superuser", "--password-stdin"],
            "x" * 20,
            "Unknown role 'superuser'",
            id="bad-role",
        ),
        pytest.param(
            ["--role", "dpo", "--password-stdin"],
            "",
            "no password on standard input",
            id="empty-stdin",
        ),
    ],
)
def test_create_refuses_bad_input_without_creating_anyone(
    tmp_path: Path, args: list[str], stdin: str, expected: str
) -> None:
    home = tmp_path / "home"
    env = spillguard_env(home, master_key=TEST_MASTER_KEY)

    result = run_spillguard(["users", "create", an_email(), *args], env, input=stdin)

    assert expected in one_line_error(result)
    database = home / "spillguard.db"
    if database.exists():  # nothing was written if it was opened at all
        engine = make_engine(f"sqlite:///{database}")
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(User)) == 0
        engine.dispose()


def test_create_refuses_a_duplicate_and_a_short_password(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    existing = make_user(factory, Role.HELPDESK, a_password())

    duplicate = run_spillguard(
        ["users", "create", existing.upper(), "--role", "dpo", "--password-stdin"],
        env,
        input=a_password(),
    )
    short = run_spillguard(
        ["users", "create", an_email(), "--role", "dpo", "--password-stdin"],
        env,
        input="short1!\n",
    )

    assert "already exists" in one_line_error(duplicate)  # e-mail compares without case
    assert "at least 12 characters" in one_line_error(short)
    with transaction(factory) as session:
        assert [u.email for u in session.scalars(select(User))] == [existing]


def test_set_password_replaces_the_old_one_and_ends_sessions(
    env: dict[str, str], factory: sessionmaker[Session], keys: KeyRing, settings: Settings
) -> None:
    old, new = a_password(), a_password()
    email = make_user(factory, Role.SECURITY, old)
    with transaction(factory) as session:
        login = LoginService(session, Principal.anonymous("192.0.2.10"), keys, settings)
        cookie = login.login(email, old).secret

    result = run_spillguard(["users", "set-password", email, "--password-stdin"], env, input=new)

    assert result.returncode == 0, result.stderr
    assert f"Password of {email} changed" in result.stdout
    assert not can_log_in(factory, keys, settings, email, old)
    assert can_log_in(factory, keys, settings, email, new)
    with transaction(factory) as session:
        login = LoginService(session, Principal.anonymous("192.0.2.10"), keys, settings)
        assert login.resolve(cookie) is None


def test_set_password_of_an_unknown_user_is_one_line(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    make_user(factory, Role.DPO, a_password())

    result = run_spillguard(
        ["users", "set-password", an_email(), "--password-stdin"], env, input=a_password()
    )

    assert "No user with that e-mail address" in one_line_error(result)


def test_disable_blocks_login_and_revokes_tokens_enable_lets_the_user_back(
    env: dict[str, str], factory: sessionmaker[Session], keys: KeyRing, settings: Settings
) -> None:
    make_user(factory, Role.ADMIN, a_password())  # someone stays in charge
    password = a_password()
    email = make_user(factory, Role.HELPDESK, password)
    with transaction(factory) as session:
        owner = UserService(session, Principal.system("tests")).by_email(email)
        secret = (
            TokenService(session, Principal.system("tests"), keys)
            .create(owner.id, name="laptop")
            .secret
        )

    disabled = run_spillguard(["users", "disable", email], env)

    assert disabled.returncode == 0, disabled.stderr
    assert f"{email} is disabled" in disabled.stdout
    assert not can_log_in(factory, keys, settings, email, password)
    assert token_refusal(factory, keys, secret) == "The API token is revoked."
    listing = run_spillguard(["users", "list"], env)
    assert "disabled" in next(line for line in listing.stdout.splitlines() if email in line)

    enabled = run_spillguard(["users", "enable", email.upper()], env)

    assert enabled.returncode == 0, enabled.stderr
    assert f"{email} is enabled" in enabled.stdout
    assert can_log_in(factory, keys, settings, email, password)
    assert token_refusal(factory, keys, secret) == "The API token is revoked."


def test_disabling_the_last_administrator_is_refused(
    env: dict[str, str], factory: sessionmaker[Session], keys: KeyRing, settings: Settings
) -> None:
    password = a_password()
    email = make_user(factory, Role.ADMIN, password)

    result = run_spillguard(["users", "disable", email], env)

    assert "last enabled administrator" in one_line_error(result)
    assert can_log_in(factory, keys, settings, email, password)
