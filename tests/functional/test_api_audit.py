"""The audit trail through the API: every login and every user and token change is
recorded with who, what, on which object, from where; the filters work; only admin and
auditor read it; and a change that is rolled back leaves no event behind."""

from __future__ import annotations

import re

from faker import Faker
from fastapi import FastAPI
from fastapi.testclient import TestClient

from spillguard.core.deps import ApiPrincipal, DbSession
from spillguard.core.errors import Conflict
from spillguard.core.roles import Role
from spillguard.core.users import UserService
from tests.factories.users import DEFAULT_PASSWORD, UserFactory

fake = Faker("en_GB")
EVENTS = "/api/v1/audit-events"
# Starlette's TestClient connects from this "address".
CLIENT_IP = "testclient"


def new_email() -> str:
    name = re.sub(r"[^a-z0-9.]", "", f"{fake.first_name()}.{fake.last_name()}".lower())
    return f"{name}.{fake.random_int(1000, 999999)}@example.com"


def events(client: TestClient, headers: dict[str, str], **params) -> list[dict]:
    response = client.get(EVENTS, params={"limit": 500, **params}, headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["items"])
    return page["items"]


def one(items: list[dict], **match) -> dict:
    found = [e for e in items if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, items)
    return found[0]


def console_login(app: FastAPI, email: str, password: str) -> int:
    browser = TestClient(app, base_url="http://testserver")
    page = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = browser.post(
        "/login",
        data={"csrf_token": token.group(1), "email": email, "password": password},
        follow_redirects=False,
    )
    return response.status_code


def test_logins_are_recorded_with_actor_outcome_and_address(
    client: TestClient, users: UserFactory
) -> None:
    person = users.create("helpdesk")
    headers = users.auth("auditor")
    assert console_login(client.app, person.email, "not the password at all") == 401
    assert console_login(client.app, person.email, DEFAULT_PASSWORD) == 303
    assert console_login(client.app, "nobody@example.com", DEFAULT_PASSWORD) == 401

    logins = events(client, headers, action="core:login")
    assert {e["action"] for e in logins} == {"core:login:failed", "core:login:succeeded"}
    ok = one(logins, action="core:login:succeeded")
    assert ok["actor_label"] == person.email
    assert ok["actor_id"] == person.id
    assert (ok["object_type"], ok["object_id"]) == ("user", str(person.id))
    assert ok["outcome"] == "success"
    assert ok["source_ip"] == CLIENT_IP

    failed = [e for e in logins if e["action"] == "core:login:failed"]
    assert len(failed) == 2
    assert {e["outcome"] for e in failed} == {"failure"}
    assert {e["source_ip"] for e in failed} == {CLIENT_IP}
    assert {e["details"]["email"] for e in failed} == {person.email, "nobody@example.com"}
    assert one(failed, object_id=str(person.id))["details"]["email"] == person.email
    for event in logins:
        assert DEFAULT_PASSWORD not in str(event), "a password reached the audit trail"


def test_user_changes_are_recorded_with_who_what_where(
    client: TestClient, users: UserFactory
) -> None:
    admin = users.create("admin")
    headers = {"Authorization": f"Bearer {users.token(admin)}"}
    email = new_email()
    created = client.post(
        "/api/v1/users",
        json={"email": email, "role": "helpdesk", "password": "a long enough password"},
        headers=headers,
    )
    assert created.status_code == 201
    request_id = created.headers["x-request-id"]
    user_id = created.json()["id"]
    path = f"/api/v1/users/{user_id}"
    assert client.patch(path, json={"role": "dpo"}, headers=headers).status_code == 200
    assert client.patch(path, json={"disabled": True}, headers=headers).status_code == 200
    assert client.patch(path, json={"disabled": False}, headers=headers).status_code == 200
    new_password = "another long password"
    assert (
        client.put(f"{path}/password", json={"password": new_password}, headers=headers)
    ).status_code == 204

    trail = events(client, headers, object_type="user", object_id=str(user_id))
    assert [e["action"] for e in reversed(trail)] == [
        "core:user:created",
        "core:user:role-changed",
        "core:user:disabled",
        "core:user:enabled",
        "core:user:password-changed",
    ]
    for event in trail:
        assert event["actor_label"] == admin.email
        assert event["actor_id"] == admin.id
        assert event["actor_type"] == "token"
        assert event["source_ip"] == CLIENT_IP
        assert event["outcome"] == "success"
        assert event["details"]["email"] == email
        assert new_password not in str(event) and "a long enough password" not in str(event)
    created_event = one(trail, action="core:user:created")
    assert created_event["request_id"] == request_id
    assert created_event["details"]["role"] == "helpdesk"
    role_event = one(trail, action="core:user:role-changed")
    assert (role_event["details"]["from"], role_event["details"]["to"]) == ("helpdesk", "dpo")


def test_token_changes_are_recorded_without_the_secret(
    client: TestClient, users: UserFactory
) -> None:
    owner = users.create("security")
    headers = {"Authorization": f"Bearer {users.token(owner)}"}
    issued = client.post("/api/v1/tokens", json={"name": "CI runner"}, headers=headers).json()
    assert client.delete(f"/api/v1/tokens/{issued['id']}", headers=headers).status_code == 200

    reader = users.auth("auditor")
    trail = events(client, reader, object_type="api_token", object_id=str(issued["id"]))
    assert [e["action"] for e in reversed(trail)] == ["core:token:created", "core:token:revoked"]
    for event in trail:
        assert event["actor_label"] == owner.email
        assert event["source_ip"] == CLIENT_IP
        assert event["details"]["owner"] == owner.email
        assert event["details"]["name"] == "CI runner"
    everything = client.get(EVENTS, params={"limit": 500}, headers=reader)
    assert issued["token"] not in everything.text
    assert issued["token"][len(issued["prefix"]) :] not in everything.text


def test_filters_select_the_matching_events(client: TestClient, users: UserFactory) -> None:
    first = users.create("admin")
    second = users.create("admin")
    first_headers = {"Authorization": f"Bearer {users.token(first)}"}
    second_headers = {"Authorization": f"Bearer {users.token(second)}"}
    for headers in (first_headers, second_headers, first_headers):
        payload = {"email": new_email(), "role": "auditor", "password": "a long enough password"}
        assert client.post("/api/v1/users", json=payload, headers=headers).status_code == 201
    assert console_login(client.app, first.email, "wrong wrong wrong") == 401

    everything = events(client, first_headers)
    user_events = events(client, first_headers, action="core:user")
    assert user_events and all(e["action"].startswith("core:user:") for e in user_events)
    assert len(user_events) == sum(e["action"].startswith("core:user:") for e in everything)
    exact = events(client, first_headers, action="core:user:created")
    assert len(exact) == len(user_events)
    # Prefix matching is literal: wildcards in the filter match nothing.
    assert events(client, first_headers, action="core:user%") == []
    assert events(client, first_headers, action="core:_ser") == []

    by_second = events(client, first_headers, actor=second.email)
    assert len(by_second) == 1 and by_second[0]["actor_label"] == second.email
    by_first = events(client, first_headers, actor=first.email, action="core:user:created")
    assert len(by_first) == 2

    failures = events(client, first_headers, outcome="failure")
    assert [e["action"] for e in failures] == ["core:login:failed"]
    assert len(events(client, first_headers, outcome="success")) == len(everything) - 1


def test_since_and_until_split_the_trail(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    for _ in range(3):
        payload = {"email": new_email(), "role": "dpo", "password": "a long enough password"}
        assert client.post("/api/v1/users", json=payload, headers=headers).status_code == 201
    everything = events(client, headers)
    assert len(everything) >= 5
    boundary_event = everything[len(everything) // 2]
    boundary = boundary_event["occurred_at"]

    after = events(client, headers, since=boundary)
    before = events(client, headers, until=boundary)
    assert boundary_event["id"] in {e["id"] for e in after}
    assert boundary_event["id"] not in {e["id"] for e in before}
    assert {e["id"] for e in after} | {e["id"] for e in before} == {e["id"] for e in everything}
    assert not {e["id"] for e in after} & {e["id"] for e in before}
    assert after and before, "the boundary must split the trail"

    # The same instant written in another time zone selects the same events.
    offset = events(client, headers, since=boundary.replace("Z", "+00:00"))
    assert [e["id"] for e in offset] == [e["id"] for e in after]
    window = events(client, headers, since=everything[-1]["occurred_at"], until=boundary)
    assert {e["id"] for e in window} == {e["id"] for e in before}


def test_bad_filters_are_422(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("auditor")
    for params, field in (
        ({"since": "2025-01-01T10:00:00"}, "query.since"),
        ({"until": "2025-01-01"}, "query.until"),
        ({"since": "yesterday"}, "query.since"),
        ({"outcome": "maybe"}, "query.outcome"),
        ({"action": "x" * 101}, "query.action"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-05:00"}, "until"),
    ):
        response = client.get(EVENTS, params=params, headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        fields = {e["field"] for e in body.get("errors", [])} | {body.get("field")}
        assert field in fields, (params, body)
    for since, until in (
        ("2025-01-02T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2025-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2025-01-01T01:00:00+01:00", "2025-01-01T00:00:00+00:00"),  # same instant
    ):
        response = client.get(EVENTS, params={"since": since, "until": until}, headers=headers)
        assert response.status_code == 422, (since, until)
        assert "before" in response.json()["detail"]


def test_who_may_read_the_trail(client: TestClient, users: UserFactory) -> None:
    for role in ("admin", "auditor"):
        assert client.get(EVENTS, headers=users.auth(role)).status_code == 200
    for role in ("helpdesk", "security", "dpo"):
        response = client.get(EVENTS, headers=users.auth(role))
        assert response.status_code == 403, role
        assert response.headers["content-type"].startswith("application/problem+json")
    anonymous = client.get(EVENTS)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"


def test_refused_changes_leave_no_event(client: TestClient, users: UserFactory) -> None:
    admin = users.create("admin")
    headers = {"Authorization": f"Bearer {users.token(admin)}"}
    existing = users.create("helpdesk")
    before = events(client, headers)

    duplicate = {"email": existing.email, "role": "admin", "password": "a long enough password"}
    assert client.post("/api/v1/users", json=duplicate, headers=headers).status_code == 409
    last_admin = client.patch(f"/api/v1/users/{admin.id}", json={"disabled": True}, headers=headers)
    assert last_admin.status_code == 409
    helpdesk = {"Authorization": f"Bearer {users.token(existing)}"}
    escalate = client.post("/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=helpdesk)
    assert escalate.status_code == 403

    after = events(client, headers)
    new = [e for e in after if e["id"] not in {b["id"] for b in before}]
    # Only the token the factory issued for the helpdesk user appears.
    assert [(e["action"], e["actor_label"]) for e in new] == [("core:token:created", "tests")]


def test_an_event_rolls_back_with_its_change(client: TestClient, users: UserFactory) -> None:
    """A route whose service records the change and then fails: neither survives."""
    app: FastAPI = client.app  # type: ignore[assignment]
    email = new_email()

    @app.post("/api/v1/_test/create-then-fail", include_in_schema=False)
    def create_then_fail(db: DbSession, principal: ApiPrincipal) -> None:
        UserService(db, principal).create(email, Role.AUDITOR, "a long enough password")
        raise Conflict("Something later in the same request failed.")

    headers = users.auth("admin")
    response = client.post("/api/v1/_test/create-then-fail", headers=headers)
    assert response.status_code == 409
    assert email not in client.get("/api/v1/users", headers=headers).text
    created = events(client, headers, action="core:user:created")
    assert created, "the factory's own user creation is in the trail"
    assert all(e["details"]["email"] != email for e in created)
    assert email not in client.get(EVENTS, params={"limit": 500}, headers=headers).text
