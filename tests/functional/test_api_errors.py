"""Bad input gets a clear RFC 9457 problem and never a 500 or a traceback (issue #2,
"Bad input")."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories.users import UserFactory

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def assert_clean_problem(response, status: int | set[int]) -> dict:
    """A problem document with that status, and nothing a user should never see."""
    expected = {status} if isinstance(status, int) else status
    assert response.status_code in expected, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["type"]
    assert_no_leak(response)
    return body


def assert_no_leak(response) -> None:
    assert response.status_code < 500, response.text
    for marker in ("Traceback", 'File "/', "sqlalchemy", "psycopg", "pydantic_core"):
        assert marker not in response.text, marker


def fields(body: dict) -> set[str]:
    return {e["field"] for e in body.get("errors", [])} | {body.get("field")} - {None}


@pytest.fixture
def admin(users: UserFactory) -> dict[str, str]:
    return users.auth("admin")


def test_malformed_json_is_422_problem(client: TestClient, admin: dict[str, str]) -> None:
    for raw in (b"{bad", b'{"email": "a@example.com",}', b"", b"null", b"[]", b'"text"'):
        response = client.post("/api/v1/users", content=raw, headers={**admin, **JSON})
        body = assert_clean_problem(response, 422)
        assert body["type"].endswith("/invalid-input")
        assert body["errors"], raw
        assert all(e["field"].startswith("body") for e in body["errors"])
    assert client.get("/api/v1/users", headers=admin).json()["total"] == 1


def test_unparseable_bodies_are_client_errors(client: TestClient, admin: dict[str, str]) -> None:
    for raw, content_type in (
        (b"\xff\xfe{\x00", "application/json"),  # not UTF-8
        (b"[" * 50_000, "application/json"),  # nested deeper than any parser allows
        (b'{"name": "x"}', "text/plain"),
        (b"name=x", "application/x-www-form-urlencoded"),
    ):
        response = client.post(
            "/api/v1/tokens", content=raw, headers={**admin, "content-type": content_type}
        )
        assert_clean_problem(response, {400, 422})
    assert client.get("/api/v1/tokens", headers=admin).json()["total"] == 1


def test_wrong_types_are_422_naming_each_field(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/users",
        json={"email": 12345, "role": ["admin"], "password": {"value": "x" * 20}},
        headers=admin,
    )
    body = assert_clean_problem(response, 422)
    assert {"body.email", "body.role", "body.password"} <= fields(body)
    for name in ("body.email", "body.role", "body.password"):
        assert name in body["detail"]

    # No silent coercion of the wrong JSON type: true is not a number of days, "yes" not a bool.
    for days in (1.5, True, "30"):
        response = client.post(
            "/api/v1/tokens", json={"name": "x", "expires_days": days}, headers=admin
        )
        assert "body.expires_days" in fields(assert_clean_problem(response, 422)), days
    response = client.post("/api/v1/tokens", json={"name": "x", "user_id": "1"}, headers=admin)
    assert "body.user_id" in fields(assert_clean_problem(response, 422))
    for disabled in ("sometimes", "true", 1, 0):
        response = client.patch("/api/v1/users/1", json={"disabled": disabled}, headers=admin)
        assert "body.disabled" in fields(assert_clean_problem(response, 422)), disabled
    me = client.get("/api/v1/me", headers=admin).json()
    assert client.get(f"/api/v1/users/{me['user_id']}", headers=admin).json()["disabled"] is False
    response = client.get("/api/v1/audit-events", params={"offset": "many"}, headers=admin)
    assert "query.offset" in fields(assert_clean_problem(response, 422))


def test_nul_characters_are_refused_on_every_backend(
    client: TestClient, admin: dict[str, str]
) -> None:
    """PostgreSQL cannot store NUL; SQLite can. Both must answer 4xx, never 500."""
    for response in (
        client.post(
            "/api/v1/users",
            json={"email": "nul\x00@example.com", "role": "dpo", "password": "x" * 20},
            headers=admin,
        ),
        client.post("/api/v1/tokens", json={"name": "nul\x00name"}, headers=admin),
        client.get("/api/v1/audit-events", params={"actor": "a\x00b"}, headers=admin),
        client.get("/api/v1/audit-events", params={"action": "core:\x00"}, headers=admin),
    ):
        assert_no_leak(response)
        assert response.status_code in {200, 422}, response.text
    assert client.get("/api/v1/users", headers=admin).json()["total"] == 1


def test_unknown_route_is_404_problem(client: TestClient, admin: dict[str, str]) -> None:
    for path in ("/api/v1/nothing-here", "/api/v2/users", "/no/such/page"):
        for headers in ({}, admin):
            response = client.get(path, headers=headers)
            body = assert_clean_problem(response, 404)
            assert body["title"] == "Not found"
            assert response.headers["content-type"] == PROBLEM


def test_unknown_console_page_is_an_html_404_for_browsers(client: TestClient) -> None:
    response = client.get("/no/such/page", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text
    assert_no_leak(response)


def test_wrong_method_is_405_problem(client: TestClient, admin: dict[str, str]) -> None:
    for method, path in (
        ("DELETE", "/api/v1/users"),
        ("PUT", "/api/v1/tokens"),
        ("POST", "/api/v1/audit-events"),
        ("DELETE", "/api/v1/users/1"),
    ):
        response = client.request(method, path, headers=admin)
        body = assert_clean_problem(response, 405)
        assert body["title"] == "Method not allowed"
        assert response.headers["allow"], "a 405 names the allowed methods"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users/{}"),
        ("PATCH", "/api/v1/users/{}"),
        ("PUT", "/api/v1/users/{}/password"),
        ("DELETE", "/api/v1/tokens/{}"),
    ],
)
def test_out_of_range_ids_are_422_not_500(
    client: TestClient, admin: dict[str, str], method: str, path: str
) -> None:
    bodies = {"PATCH": {"disabled": False}, "PUT": {"password": "x" * 20}}
    for value in ("99999999999999999999", str(2**63), "0", "-1", "1e3", "0x10", "\uff11"):
        response = client.request(
            method, path.format(value), json=bodies.get(method), headers=admin
        )
        body = assert_clean_problem(response, 422)
        assert any(f.startswith("path.") for f in fields(body)), (value, body)
    # The largest accepted id is simply not there.
    response = client.request(method, path.format(2**62), json=bodies.get(method), headers=admin)
    assert_clean_problem(response, 404)


def test_out_of_range_body_ids_are_422(client: TestClient, admin: dict[str, str]) -> None:
    for user_id in (2**63, 10**30, -5):
        response = client.post(
            "/api/v1/tokens", json={"name": "x", "user_id": user_id}, headers=admin
        )
        assert "body.user_id" in fields(assert_clean_problem(response, 422))


def test_huge_paging_values_are_422(client: TestClient, admin: dict[str, str]) -> None:
    for params in ({"offset": 10**30}, {"limit": 10**30}, {"offset": 10_000_001}):
        response = client.get("/api/v1/users", params=params, headers=admin)
        assert_clean_problem(response, 422)


def test_problem_for_a_server_side_failure_hides_the_cause(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Even a genuine bug answers with a bare problem naming the request id, no traceback."""
    app = client.app

    @app.get("/api/v1/_test/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    browser = TestClient(app, raise_server_exceptions=False)
    response = browser.get("/api/v1/_test/boom", headers=admin)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
