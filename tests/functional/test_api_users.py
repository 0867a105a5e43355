"""The users API end to end: listing, creating, reading, changing role, disabling and
setting passwords, with the role rules an administrator and an auditor rely on."""

from __future__ import annotations

import re

import pytest
from faker import Faker
from fastapi.testclient import TestClient

from tests.factories.users import DEFAULT_PASSWORD, UserFactory

fake = Faker("en_GB")
USERS = "/api/v1/users"


def new_email() -> str:
    name = re.sub(r"[^a-z0-9.]", "", f"{fake.first_name()}.{fake.last_name()}".lower())
    return f"{name}.{fake.random_int(1000, 999999)}@example.com"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


def error_fields(body: dict) -> set[str]:
    return {e["field"] for e in body.get("errors", [])} | (
        {body["field"]} if "field" in body else set()
    )


def console_login(client: TestClient, email: str, password: str) -> int:
    """Log in through the console form with a fresh browser; return the status."""
    # Not entered as a context manager: the app's lifespan already runs under `client`.
    browser = TestClient(client.app, base_url="http://testserver")
    page = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "login form carries no CSRF token"
    response = browser.post(
        "/login",
        data={"csrf_token": token.group(1), "email": email, "password": password},
        follow_redirects=False,
    )
    return response.status_code


# Listing -------------------------------------------------------------------------------
def test_list_is_paginated_with_total(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    for role in ("helpdesk", "security", "dpo", "auditor"):
        users.create(role)

    first = client.get(USERS, params={"limit": 2}, headers=headers)
    assert first.status_code == 200
    page = first.json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 0)
    assert len(page["items"]) == 2

    seen = [u["id"] for u in page["items"]]
    for offset in (2, 4):
        more = client.get(USERS, params={"limit": 2, "offset": offset}, headers=headers).json()
        assert more["total"] == 5
        assert more["offset"] == offset
        seen += [u["id"] for u in more["items"]]
    assert len(seen) == len(set(seen)) == 5, "pages overlap or miss users"
    assert seen == sorted(seen)

    past_end = client.get(USERS, params={"offset": 10}, headers=headers).json()
    assert past_end["items"] == []
    assert past_end["total"] == 5


def test_list_rejects_bad_paging_naming_the_field(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    for params, field in (
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"limit": "ten"}, "query.limit"),
    ):
        body = assert_problem(client.get(USERS, params=params, headers=headers), 422)
        assert field in error_fields(body), (params, body)


def test_list_items_never_carry_password_hashes(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    response = client.get(USERS, headers=headers)
    assert response.status_code == 200
    assert "argon2" not in response.text
    assert all("password_hash" not in u for u in response.json()["items"])


# Creating ------------------------------------------------------------------------------
def test_create_returns_201_and_the_user_can_log_in(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    email = new_email()
    password = fake.password(length=16)
    response = client.post(
        USERS,
        json={"email": email.upper(), "role": "security", "password": password},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["email"] == email.lower(), "e-mail addresses are stored in lower case"
    assert created["role"] == "security"
    assert created["disabled"] is False
    assert created["last_login_at"] is None
    assert password not in response.text

    fetched = client.get(f"{USERS}/{created['id']}", headers=headers)
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert console_login(client, email, password) == 303
    assert client.get(f"{USERS}/{created['id']}", headers=headers).json()["last_login_at"]


def test_create_duplicate_email_is_409_and_keeps_the_original(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    existing = users.create("helpdesk")
    total = client.get(USERS, headers=headers).json()["total"]
    response = client.post(
        USERS,
        json={"email": existing.email.upper(), "role": "admin", "password": "another long one!"},
        headers=headers,
    )
    body = assert_problem(response, 409)
    assert "already exists" in body["detail"]
    assert client.get(USERS, headers=headers).json()["total"] == total
    original = client.get(f"{USERS}/{existing.id}", headers=headers).json()
    assert original["role"] == "helpdesk", "a refused duplicate must not change the original"


def test_create_rejects_bad_input_naming_the_field(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    for change, field in (
        ({"role": "superuser"}, "body.role"),
        ({"password": "short"}, "body.password"),
        ({"password": "x" * 1025}, "body.password"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a\x00b@example.com"}, "email"),
        ({"email": None}, "body.email"),
        ({"is_admin": True}, "body.is_admin"),
    ):
        payload = {"email": new_email(), "role": "helpdesk", "password": "a long enough password"}
        payload.update(change)
        body = assert_problem(client.post(USERS, json=payload, headers=headers), 422)
        assert field in error_fields(body), (change, body)
    assert client.get(USERS, headers=headers).json()["total"] == 1, "nothing was created"


def test_create_rejects_a_blank_password(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    payload = {"email": new_email(), "role": "dpo", "password": " " * 20}
    body = assert_problem(client.post(USERS, json=payload, headers=headers), 422)
    assert "blank" in body["detail"]


# Reading -------------------------------------------------------------------------------
def test_get_unknown_user_is_404_problem(client: TestClient, users: UserFactory) -> None:
    body = assert_problem(client.get(f"{USERS}/424242", headers=users.auth("admin")), 404)
    assert "424242" in body["detail"]


# Changing role and disabled ------------------------------------------------------------
def test_patch_role_and_disabled(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    person = users.create("helpdesk")
    token = users.token(person)
    response = client.patch(f"{USERS}/{person.id}", json={"role": "security"}, headers=headers)
    assert response.status_code == 200
    assert response.json()["role"] == "security"
    assert client.get(f"{USERS}/{person.id}", headers=headers).json()["role"] == "security"

    response = client.patch(f"{USERS}/{person.id}", json={"disabled": True}, headers=headers)
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert console_login(client, person.email, DEFAULT_PASSWORD) == 401

    response = client.patch(f"{USERS}/{person.id}", json={"disabled": False}, headers=headers)
    assert response.json()["disabled"] is False
    assert console_login(client, person.email, DEFAULT_PASSWORD) == 303


def test_patch_rejects_wrong_types_and_unknown_fields(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    person = users.create("dpo")
    for payload, field in (
        ({"disabled": "perhaps"}, "body.disabled"),
        ({"role": "owner"}, "body.role"),
        ({"email": "new@example.com"}, "body.email"),
    ):
        body = assert_problem(
            client.patch(f"{USERS}/{person.id}", json=payload, headers=headers), 422
        )
        assert field in error_fields(body)
    assert client.get(f"{USERS}/{person.id}", headers=headers).json()["role"] == "dpo"


def test_patch_unknown_user_is_404(client: TestClient, users: UserFactory) -> None:
    assert_problem(
        client.patch(f"{USERS}/999999", json={"disabled": True}, headers=users.auth("admin")), 404
    )


def test_last_enabled_admin_cannot_be_disabled_or_demoted(
    client: TestClient, users: UserFactory
) -> None:
    admin = users.create("admin")
    headers = {"Authorization": f"Bearer {users.token(admin)}"}
    # A disabled second administrator does not count.
    other = users.create("admin")
    assert (
        client.patch(f"{USERS}/{other.id}", json={"disabled": True}, headers=headers).status_code
        == 200
    )

    for change in ({"disabled": True}, {"role": "auditor"}):
        body = assert_problem(
            client.patch(f"{USERS}/{admin.id}", json=change, headers=headers), 409
        )
        assert "last enabled administrator" in body["detail"]
    me = client.get(f"{USERS}/{admin.id}", headers=headers).json()
    assert (me["role"], me["disabled"]) == ("admin", False)

    # With a second enabled administrator the change is allowed.
    client.patch(f"{USERS}/{other.id}", json={"disabled": False}, headers=headers)
    response = client.patch(f"{USERS}/{other.id}", json={"role": "auditor"}, headers=headers)
    assert response.status_code == 200
    assert_problem(client.patch(f"{USERS}/{admin.id}", json={"role": "dpo"}, headers=headers), 409)


def test_two_admins_may_demote_one_of_them(client: TestClient, users: UserFactory) -> None:
    first = users.create("admin")
    second = users.create("admin")
    headers = {"Authorization": f"Bearer {users.token(first)}"}
    response = client.patch(f"{USERS}/{second.id}", json={"role": "helpdesk"}, headers=headers)
    assert response.status_code == 200
    assert response.json()["role"] == "helpdesk"


# Passwords -----------------------------------------------------------------------------
def test_admin_sets_a_password_and_only_the_new_one_works(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    person = users.create("helpdesk")
    new_password = fake.password(length=20)
    response = client.put(
        f"{USERS}/{person.id}/password", json={"password": new_password}, headers=headers
    )
    assert response.status_code == 204
    assert response.content == b""
    assert console_login(client, person.email, DEFAULT_PASSWORD) == 401
    assert console_login(client, person.email, new_password) == 303


def test_password_rules_apply_when_setting_a_password(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    person = users.create("dpo")
    body = assert_problem(
        client.put(f"{USERS}/{person.id}/password", json={"password": "2short"}, headers=headers),
        422,
    )
    assert "body.password" in error_fields(body)
    assert_problem(
        client.put(f"{USERS}/{person.id}/password", json={"pass": "x" * 20}, headers=headers), 422
    )
    assert console_login(client, person.email, DEFAULT_PASSWORD) == 303


def test_a_user_may_change_only_their_own_password(client: TestClient, users: UserFactory) -> None:
    helpdesk = users.create("helpdesk")
    other = users.create("dpo")
    headers = {"Authorization": f"Bearer {users.token(helpdesk)}"}
    new_password = fake.password(length=18)
    without_current = client.put(
        f"{USERS}/{helpdesk.id}/password", json={"password": new_password}, headers=headers
    )
    assert_problem(without_current, 403)
    wrong_current = client.put(
        f"{USERS}/{helpdesk.id}/password",
        json={"password": new_password, "current_password": "not my password at all"},
        headers=headers,
    )
    assert_problem(wrong_current, 403)
    assert console_login(client, helpdesk.email, DEFAULT_PASSWORD) == 303
    own = client.put(
        f"{USERS}/{helpdesk.id}/password",
        json={"password": new_password, "current_password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert own.status_code == 204
    assert console_login(client, helpdesk.email, new_password) == 303

    assert_problem(
        client.put(
            f"{USERS}/{other.id}/password", json={"password": new_password}, headers=headers
        ),
        403,
    )
    assert console_login(client, other.email, DEFAULT_PASSWORD) == 303


# Role rules ----------------------------------------------------------------------------
def test_auditor_reads_users_but_changes_nothing(client: TestClient, users: UserFactory) -> None:
    person = users.create("helpdesk")
    headers = users.auth("auditor")
    listing = client.get(USERS, headers=headers)
    assert listing.status_code == 200
    assert person.id in {u["id"] for u in listing.json()["items"]}
    assert client.get(f"{USERS}/{person.id}", headers=headers).status_code == 200

    payload = {"email": new_email(), "role": "admin", "password": "a long enough password"}
    body = assert_problem(client.post(USERS, json=payload, headers=headers), 403)
    assert "auditor" in body["detail"]
    assert_problem(
        client.patch(f"{USERS}/{person.id}", json={"role": "admin"}, headers=headers), 403
    )
    assert_problem(
        client.put(
            f"{USERS}/{person.id}/password",
            json={"password": "a long enough password"},
            headers=headers,
        ),
        403,
    )
    unchanged = client.get(f"{USERS}/{person.id}", headers=headers).json()
    assert unchanged["role"] == "helpdesk"
    assert client.get(USERS, headers=headers).json()["total"] == 2


@pytest.mark.parametrize("role", ["helpdesk", "security", "dpo"])
def test_roles_without_users_view_cannot_list_or_read(
    client: TestClient, users: UserFactory, role: str
) -> None:
    headers = users.auth(role)
    body = assert_problem(client.get(USERS, headers=headers), 403)
    assert role in body["detail"]
    assert_problem(client.get(f"{USERS}/1", headers=headers), 403)
    payload = {"email": new_email(), "role": "admin", "password": "a long enough password"}
    assert_problem(client.post(USERS, json=payload, headers=headers), 403)


def test_anonymous_gets_401_everywhere(client: TestClient, users: UserFactory) -> None:
    person = users.create("helpdesk")
    for response in (
        client.get(USERS),
        client.get(f"{USERS}/{person.id}"),
        client.post(USERS, json={"email": new_email(), "role": "admin", "password": "x" * 20}),
        client.patch(f"{USERS}/{person.id}", json={"disabled": True}),
        client.put(f"{USERS}/{person.id}/password", json={"password": "x" * 20}),
    ):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert console_login(client, person.email, DEFAULT_PASSWORD) == 303
