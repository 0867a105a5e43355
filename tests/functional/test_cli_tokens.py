"""`spillguard tokens …` as a real process, with the tokens used against a live server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from faker import Faker
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.db import transaction, utcnow
from spillguard.core.models import ApiToken
from spillguard.core.roles import Principal, Role
from spillguard.core.users import UserService
from tests.conftest import TEST_MASTER_KEY
from tests.functional.live import LiveServer, one_line_error, run_spillguard, spillguard_env

fake = Faker("en_GB")
TOKEN_LINE = re.compile(r"sgt_[A-Za-z0-9_-]{43}\n")


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per backend for this module, on the same database as the CLI."""
    home = tmp_path_factory.mktemp("server-home")
    env = spillguard_env(home, database_url, master_key=TEST_MASTER_KEY, scheduler_enabled="false")
    server = LiveServer(env)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def env(tmp_path: Path, database_url: str, engine: Engine) -> dict[str, str]:
    return spillguard_env(tmp_path / "home", database_url, master_key=TEST_MASTER_KEY)


def make_user(factory: sessionmaker[Session], role: Role) -> str:
    email = f"{fake.user_name()}.{fake.random_int(100, 99999)}@example.org.uk"
    with transaction(factory) as session:
        UserService(session, Principal.system("tests")).create(email, role, fake.password(20))
    return email


def tokens_in_db(factory: sessionmaker[Session]) -> list[ApiToken]:
    with transaction(factory) as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def me(server: LiveServer, secret: str) -> httpx2.Response:
    return httpx2.get(
        f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )


def test_create_prints_only_the_secret_which_works_until_revoked(
    server: LiveServer, env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    email = make_user(factory, Role.SECURITY)

    created = run_spillguard(["tokens", "create", "--user", email, "--name", "ci deploy"], env)

    assert created.returncode == 0, created.stderr
    # stdout is exactly the secret, so `TOKEN=$(spillguard tokens create …)` just works.
    assert TOKEN_LINE.fullmatch(created.stdout), created.stdout
    secret = created.stdout.strip()
    assert secret not in created.stderr
    token_id = int(re.search(r"token id (\d+), role security", created.stderr).group(1))  # type: ignore[union-attr]
    assert "shown once" in created.stderr

    answer = me(server, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == email
    assert answer.json()["role"] == "security"
    assert answer.json()["via"] == "token"

    revoked = run_spillguard(["tokens", "revoke", str(token_id)], env)

    assert revoked.returncode == 0, revoked.stderr
    assert f"Token {token_id} (ci deploy) of {email} is revoked" in revoked.stdout
    refused = me(server, secret)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")

    listing = run_spillguard(["tokens", "list"], env)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if email in line)
    assert "revoked" in row and secret[:10] in row
    assert secret not in listing.stdout  # the prefix only, never the secret


def test_a_token_may_carry_a_narrower_role_than_its_owner(
    server: LiveServer, env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    admin = make_user(factory, Role.ADMIN)

    created = run_spillguard(["tokens", "create", "--user", admin, "--role", "auditor"], env)

    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert me(server, secret).json()["role"] == "auditor"
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx2.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.get("/api/v1/users").status_code == 200
        new_user = {"email": "x@example.com", "role": "admin", "password": fake.password(20)}
        assert client.post("/api/v1/users", json=new_user).status_code == 403


def test_a_token_may_not_carry_more_than_its_owner_holds(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    helpdesk = make_user(factory, Role.HELPDESK)

    result = run_spillguard(["tokens", "create", "--user", helpdesk, "--role", "admin"], env)

    assert "helpdesk may not hold a token with the admin role" in one_line_error(result)
    assert result.stdout == ""
    assert tokens_in_db(factory) == []


def test_expires_sets_the_expiry_and_out_of_range_is_one_line(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    email = make_user(factory, Role.DPO)

    created = run_spillguard(["tokens", "create", "--user", email, "--expires", "30"], env)
    zero_days = run_spillguard(["tokens", "create", "--user", email, "--expires", "0"], env)

    assert created.returncode == 0, created.stderr
    assert "between 1 and 3650 days" in one_line_error(zero_days)
    [token] = tokens_in_db(factory)
    assert token.expires_at is not None
    assert abs(token.expires_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=5)


def test_unknown_token_or_user_is_one_line(
    env: dict[str, str], factory: sessionmaker[Session]
) -> None:
    make_user(factory, Role.ADMIN)

    unknown_token = run_spillguard(["tokens", "revoke", "987654"], env)
    unknown_user = run_spillguard(["tokens", "create", "--user", "nobody@example.com"], env)

    assert "No API token with id 987654" in one_line_error(unknown_token)
    assert "No user with that e-mail address" in one_line_error(unknown_user)
    assert unknown_user.stdout == ""


def test_a_malformed_argument_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    env = spillguard_env(tmp_path / "home", master_key=TEST_MASTER_KEY)

    result = run_spillguard(["tokens", "revoke", "seven"], env)

    message = one_line_error(result, code=2)
    assert "Invalid value for 'token_id'" in message
    assert "(see `spillguard tokens revoke --help`)" in message
    assert "╭" not in result.stderr + result.stdout  # no Rich box around a usage error

    assert "No such command 'nope'" in one_line_error(run_spillguard(["nope"], env), code=2)
    assert "No such option: --colour" in one_line_error(
        run_spillguard(["users", "list", "--colour"], env), code=2
    )
