"""The authorisation backstop: no route of the app answers an anonymous caller with
anything but a refusal, except the few declared public ones; and in strict mode a route
that never decided authorisation turns into a 500 instead of serving data.

The route list comes from the app itself, so a route added later is checked without
anyone remembering to add it here.
"""

from __future__ import annotations

import re
from base64 import b64decode

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from spillguard.core.app import create_app
from spillguard.core.deps import ApiPrincipal
from spillguard.core.keys import KeyRing
from spillguard.core.middleware import PUBLIC_PATHS, PUBLIC_PREFIXES
from spillguard.core.roles import Permission, mark_authz_checked
from spillguard.core.settings import Settings
from tests.conftest import TEST_MASTER_KEY
from tests.factories.users import UserFactory

# Open to anyone, by decision (issue #2: login, health, docs, static files).
DECLARED_PUBLIC = {
    "/healthz",
    "/readyz",
    "/login",
    "/setup",
    "/api/openapi.json",
    "/api/docs",
    "/favicon.ico",
}
DECLARED_PUBLIC_MOUNTS = {"/static"}
# The device protocol authenticates devices, not people (docs/device-protocol.md): its
# routes answer 401 with the "Device" challenge; enrolling is authorised by the token in
# the body, so an empty request is refused as invalid input.
DEVICE_PROTOCOL = "/api/device/v1/"
DEVICE_TOKEN_IN_BODY = {"/api/device/v1/enroll"}
# The download gateway is for phones too (docs/exposure.md): 401 with the "Device"
# challenge, a problem document for API clients and a help page for browsers.
DEVICE_AUTHENTICATED = {"/gateway/{token}"}
# An escalation e-mail's acknowledgement link (docs/incidents-notices.md): the secret in the
# path is the authorisation; an unknown secret is a 404 page, and a post needs the CSRF token.
LINK_AUTHENTICATED = {"/escalation/ack/{token}"}
API_LIKE = ("/api/", "/metrics")
PARAM = re.compile(r"\{[^}/]+\}")


def concrete(path: str) -> str:
    """The route's path with every parameter filled with 1."""
    return PARAM.sub("1", path)


def endpoints(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) of every route; unknown kinds of route fail."""
    found = []
    # FastAPI keeps included routers as wrappers; this flattens them the way OpenAPI does.
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, Mount):
            assert ctx.path in DECLARED_PUBLIC_MOUNTS, f"undeclared mount {ctx.path}"
            continue
        assert isinstance(route, APIRoute | Route), f"unknown route type {route!r}"
        assert ctx.path, route
        for method in sorted(ctx.methods or ()):
            found.append((method, ctx.path, concrete(ctx.path)))
    return found


def violation(client: TestClient, method: str, template: str, path: str) -> str | None:
    """Why this anonymous request is answered wrongly, or None if it is refused properly."""
    api = path.startswith(API_LIKE)
    accept = "application/json" if api else "text/html,application/xhtml+xml"
    response = client.request(method, path, headers={"accept": accept}, follow_redirects=False)
    status = response.status_code
    where = f"{method} {template} -> {status}"
    if status >= 500:
        return f"{where}: server error"
    if template in DECLARED_PUBLIC:
        return None
    if template in DEVICE_TOKEN_IN_BODY:
        return None if status == 422 else f"{where}: enrolling without a token must be a 422"
    if template in DEVICE_AUTHENTICATED:
        if status != 401 or response.headers.get("www-authenticate") != "Device":
            return f"{where}: a device-authenticated route must answer 401 with 'Device'"
        return None
    if template in LINK_AUTHENTICATED:
        expected = 404 if method in {"GET", "HEAD"} else 403
        return None if status == expected else f"{where}: an unknown link must be {expected}"
    if api:
        challenge = "Device" if template.startswith(DEVICE_PROTOCOL) else "Bearer"
        if status != 401:
            return f"{where}: an API route must answer 401 without a token"
        if response.headers.get("www-authenticate") != challenge:
            return f"{where}: 401 without 'WWW-Authenticate: {challenge}'"
        if not response.headers["content-type"].startswith("application/problem+json"):
            return f"{where}: 401 is not a problem document"
        return None
    if method in {"GET", "HEAD"}:
        if status != 303 or not response.headers.get("location", "").startswith("/login"):
            return f"{where}: a console page must redirect to /login"
        return None
    if status != 403:
        return f"{where}: a console form post without CSRF token must be refused with 403"
    return None


def test_every_route_refuses_anonymous_callers(client: TestClient) -> None:
    routes = endpoints(client.app)
    checked = {(method, template) for method, template, _ in routes}
    # The enumeration really found the app (not an empty or partial list).
    for expected in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("PATCH", "/api/v1/users/{user_id}"),
        ("DELETE", "/api/v1/tokens/{token_id}"),
        ("GET", "/api/v1/audit-events"),
        ("GET", "/metrics"),
        ("GET", "/users"),
        ("POST", "/users/{user_id}/role"),
        ("GET", "/healthz"),
        ("POST", "/api/device/v1/checkin"),
        ("POST", "/api/v1/devices/{device_id}/report-lost"),
    ]:
        assert expected in checked, expected
    problems = [v for m, t, p in routes if (v := violation(client, m, t, p))]
    assert problems == [], "\n".join(problems)


def test_console_posts_with_a_valid_csrf_token_still_need_a_login(client: TestClient) -> None:
    """Past the CSRF check, an anonymous form post is refused (or rejected as incomplete)."""
    problems = []
    statuses: set[int] = set()
    for method, template, path in endpoints(client.app):
        if path.startswith(API_LIKE) or method in {"GET", "HEAD"} or template in DECLARED_PUBLIC:
            continue
        # A fresh token each time: /logout clears the CSRF cookie it is bound to.
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert token, "the login page carries a CSRF token"
        response = client.request(
            method, path, headers={"x-csrf-token": token.group(1)}, follow_redirects=False
        )
        status = response.status_code
        statuses.add(status)
        redirect_to_login = 300 <= status < 400 and response.headers["location"].startswith(
            "/login"
        )
        if status < 300 or status >= 500 or (status < 400 and not redirect_to_login):
            problems.append(f"{method} {template} -> {status}")
        if status >= 400:
            assert response.headers["content-type"].startswith("text/html"), (template, status)
    assert problems == [], problems
    assert statuses and 403 not in statuses, f"the CSRF token was not accepted: {statuses}"


def test_public_list_matches_the_middleware(client: TestClient) -> None:
    """Declaring a path public in the middleware also needs a decision here."""
    assert set(PUBLIC_PATHS) <= DECLARED_PUBLIC
    assert {p.rstrip("/") for p in PUBLIC_PREFIXES} <= DECLARED_PUBLIC_MOUNTS
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/docs").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/setup", params={"key": "not-a-real-key"}).status_code == 404


def test_the_checker_catches_an_unprotected_route(client: TestClient) -> None:
    """A new route that answers 2xx without authentication makes the sweep above fail."""
    app: FastAPI = client.app  # type: ignore[assignment]

    @app.get("/api/v1/_test/leaky")
    def leaky() -> dict[str, str]:
        mark_authz_checked()  # wrongly "decides" authorisation, so only the sweep notices
        return {"customers": "all of them"}

    @app.get("/_test/leaky-page")
    def leaky_page() -> dict[str, str]:
        mark_authz_checked()
        return {"page": "open"}

    found = {
        v
        for m, t, p in endpoints(app)
        if t.startswith(("/api/v1/_test", "/_test")) and (v := violation(client, m, t, p))
    }
    assert found == {
        "GET /api/v1/_test/leaky -> 200: an API route must answer 401 without a token",
        "GET /_test/leaky-page -> 200: a console page must redirect to /login",
    }


def test_tests_run_the_backstop_in_strict_mode(app: FastAPI, settings: Settings) -> None:
    assert settings.authz_backstop_strict is True
    assert app.state.settings.authz_backstop_strict is True
    assert Settings.model_fields["authz_backstop_strict"].default is False, "off unless asked"


def test_strict_backstop_turns_an_unchecked_route_into_a_500(
    client: TestClient, users: UserFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]

    @app.get("/api/v1/_test/forgot-to-check")
    def forgot(principal: ApiPrincipal) -> dict[str, str]:
        return {"secret": "served without an authorisation decision"}

    @app.get("/api/v1/_test/checked")
    def checked(principal: ApiPrincipal) -> dict[str, str]:
        principal.require(Permission.STATUS_VIEW)
        return {"ok": "yes"}

    @app.get("/_test/no-principal-at-all")
    def no_principal() -> dict[str, str]:
        return {"secret": "served to anyone"}

    admin = users.auth("admin")
    response = client.get("/api/v1/_test/forgot-to-check", headers=admin)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert "served without" not in response.text, "the unchecked route's data went out"
    assert "authz_check_missing" in capsys.readouterr().err
    # Without a token the API's principal dependency refuses first.
    assert client.get("/api/v1/_test/forgot-to-check").status_code == 401
    response = client.get("/_test/no-principal-at-all")
    assert response.status_code == 500
    assert "served to anyone" not in response.text
    assert "authz_check_missing" in capsys.readouterr().err

    assert client.get("/api/v1/_test/checked").status_code == 401
    assert client.get("/api/v1/_test/checked", headers=users.auth("dpo")).status_code == 200
    assert "authz_check_missing" not in capsys.readouterr().err


def test_lenient_backstop_only_logs(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """Production default: the unchecked route answers, and the log says which one."""
    lenient = settings.model_copy(update={"authz_backstop_strict": False})
    app = create_app(lenient, KeyRing(b64decode(TEST_MASTER_KEY)))
    try:

        @app.get("/api/v1/_test/forgot-to-check")
        def forgot() -> dict[str, str]:
            return {"served": "yes"}

        response = TestClient(app).get("/api/v1/_test/forgot-to-check")
        assert response.status_code == 200
        log = capsys.readouterr().err
        assert "authz_check_missing" in log
        assert "/api/v1/_test/forgot-to-check" in log
    finally:
        app.state.engine.dispose()
