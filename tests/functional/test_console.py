"""The web console through the real HTTP app: login, sessions, CSRF, throttling, and the
status, users, API tokens and audit pages, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from faker import Faker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard import __version__
from spillguard.core import db as dbmod
from spillguard.core.models import AuditEvent, User
from spillguard.core.settings import Settings
from tests.factories.users import DEFAULT_PASSWORD, UserFactory

fake = Faker("en_GB")
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


# Helpers ---------------------------------------------------------------------------------
def csrf_from(page: str) -> str:
    """The CSRF token of the first form on a page (every form on a page carries the same)."""
    match = CSRF_FIELD.search(page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def set_cookie_headers(response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


def login(
    client: TestClient, email: str, password: str = DEFAULT_PASSWORD, next: str | None = None
):
    """Submit the login form the way a browser does: GET the page, POST it back."""
    page = client.get("/login")
    data = {"email": email, "password": password, "csrf_token": csrf_from(page.text)}
    if next is not None:
        data["next"] = next
    return client.post("/login", data=data, follow_redirects=False)


def logged_in(client: TestClient, users: UserFactory, role: str = "admin") -> User:
    user = users.create(role)
    response = login(client, user.email)
    assert response.status_code == 303, response.text
    return user


def post_form(client: TestClient, page_path: str, action: str, data: dict[str, str]):
    """Post a form found on ``page_path`` with that page's CSRF token."""
    token = csrf_from(client.get(page_path).text)
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def nav_labels(page: str) -> list[str]:
    header = page.split("<header", 1)[1].split("</header>", 1)[0]
    return [
        html.unescape(label)
        for label in re.findall(
            r'<li><a href="/[^"]*"(?: aria-current="page")?>([^<]+)</a>', header
        )
    ]


def unique_email() -> str:
    return f"{fake.user_name()}.{fake.random_int(1000, 99999)}@example.com"


@pytest.fixture
def console(client: TestClient) -> TestClient:
    """The test client speaking like a browser (asks for HTML)."""
    client.headers.update(HTML)
    return client


def other_browser(app: FastAPI, base_url: str = "http://testserver") -> TestClient:
    """A second browser on the same app.  Not entered as a context manager: the app's
    lifespan (which disposes the engine on exit) belongs to the ``client`` fixture."""
    return TestClient(app, base_url=base_url, headers=HTML)


@pytest.fixture
def https_console(app: FastAPI) -> Iterator[TestClient]:
    browser = other_browser(app, "https://testserver")
    yield browser
    browser.close()


def audit_events(db: Session, action: str) -> list[AuditEvent]:
    db.rollback()  # see what the requests committed
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# Login, cookies, CSRF --------------------------------------------------------------------
def test_home_without_session_redirects_to_login(console: TestClient) -> None:
    response = console.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/"


def test_login_round_trip_sets_http_only_lax_session_cookie(
    console: TestClient, users: UserFactory
) -> None:
    user = users.create("admin")
    page = console.get("/login")
    assert page.status_code == 200
    assert set_cookie_headers(page, "sg_csrf"), "the login page must set the CSRF cookie"
    token = csrf_from(page.text)
    assert 'type="password"' in page.text

    response = console.post(
        "/login",
        data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    (session_cookie,) = set_cookie_headers(response, "sg_session")
    attributes = session_cookie.lower()
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes, "plain http must not mark the cookie Secure"

    home = console.get("/")
    assert home.status_code == 200
    assert user.email in home.text


def test_session_cookie_is_secure_over_https(https_console: TestClient, users: UserFactory) -> None:
    user = users.create("admin")
    response = login(https_console, user.email)
    assert response.status_code == 303
    (session_cookie,) = set_cookie_headers(response, "sg_session")
    assert "; secure" in session_cookie.lower()
    assert "httponly" in session_cookie.lower()
    assert all("; secure" in c.lower() for c in set_cookie_headers(response, "sg_csrf"))
    assert https_console.get("/").status_code == 200


def test_form_post_without_csrf_token_is_refused(console: TestClient, users: UserFactory) -> None:
    user = users.create("admin")
    console.get("/login")  # the browser holds a CSRF cookie, the form lacks the token
    response = console.post(
        "/login", data={"email": user.email, "password": DEFAULT_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "security token" in response.text
    assert not set_cookie_headers(response, "sg_session")


def test_csrf_token_of_another_browser_is_refused(
    app: FastAPI, console: TestClient, users: UserFactory
) -> None:
    user = users.create("admin")
    foreign_token = csrf_from(other_browser(app).get("/login").text)
    console.get("/login")
    response = console.post(
        "/login",
        data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": foreign_token},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert not set_cookie_headers(response, "sg_session")


def test_state_change_after_login_needs_the_csrf_token(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    logged_in(console, users, "admin")
    email = unique_email()
    response = console.post(
        "/users",
        data={"email": email, "role": "auditor", "password": DEFAULT_PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    db.rollback()
    assert db.scalar(select(User).where(User.email == email)) is None


def test_wrong_password_shows_message_and_is_audited(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    user = users.create("auditor")
    response = login(console, user.email, "not the password at all")
    assert response.status_code == 401
    assert "E-mail address or password is wrong." in response.text
    assert user.email in response.text, "the form keeps the e-mail address typed"
    assert not set_cookie_headers(response, "sg_session")
    failures = audit_events(db, "core:login:failed")
    assert [(e.outcome, e.object_id) for e in failures] == [("failure", str(user.id))]


def test_failed_logins_are_throttled_per_account(
    console: TestClient, users: UserFactory, settings: Settings
) -> None:
    user = users.create("admin")
    limit = settings.login_max_failures_account
    assert limit == 5
    for _ in range(limit):
        assert login(console, user.email, "wrong password guess").status_code == 401
    throttled = login(console, user.email, "wrong password guess")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert "Too many failed logins" in throttled.text
    # The right password does not get through while the account is throttled.
    correct = login(console, user.email, DEFAULT_PASSWORD)
    assert correct.status_code == 429
    assert not set_cookie_headers(correct, "sg_session")
    assert console.get("/", follow_redirects=False).status_code == 303


def test_successful_login_is_audited(console: TestClient, users: UserFactory, db: Session) -> None:
    user = logged_in(console, users, "dpo")
    events = audit_events(db, "core:login:succeeded")
    assert len(events) == 1
    assert events[0].actor_label == user.email
    assert events[0].outcome == "success"
    assert events[0].source_ip


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "http:/evil.example"]
)
def test_login_never_redirects_off_site(
    console: TestClient, users: UserFactory, target: str
) -> None:
    user = users.create("admin")
    page = console.get("/login", params={"next": target})
    assert "evil.example" not in page.text
    response = login(console, user.email, next=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    # Already logged in: the login page forwards, but never off site either.
    again = console.get("/login", params={"next": target}, follow_redirects=False)
    assert again.headers["location"] == "/"


def test_login_follows_a_local_next(console: TestClient, users: UserFactory) -> None:
    user = users.create("admin")
    first = console.get("/audit", follow_redirects=False)
    assert first.headers["location"] == "/login?next=/audit"
    response = login(console, user.email, next="/audit")
    assert response.headers["location"] == "/audit"


def test_logout_ends_the_session(console: TestClient, users: UserFactory, db: Session) -> None:
    logged_in(console, users, "admin")
    old_session = console.cookies["sg_session"]
    token = csrf_from(console.get("/").text)
    response = console.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?done=logged-out"
    assert "You are logged out." in console.get(response.headers["location"]).text
    # The old cookie, replayed, no longer opens anything.
    console.cookies.set("sg_session", old_session)
    replay = console.get("/", follow_redirects=False)
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/login")
    assert len(audit_events(db, "core:login:logout")) == 1


def test_logout_without_csrf_token_keeps_the_session(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "admin")
    assert console.post("/logout", follow_redirects=False).status_code == 403
    assert console.get("/", follow_redirects=False).status_code == 200


# Home and navigation ---------------------------------------------------------------------
def test_home_shows_version_database_migration_and_user_counts(
    console: TestClient, users: UserFactory, settings: Settings
) -> None:
    logged_in(console, users, "admin")
    users.create("auditor")
    users.create("auditor")
    users.create("helpdesk")
    page = console.get("/")
    assert page.status_code == 200
    text = page.text
    assert f'data-testid="version">{__version__}<' in text
    assert f'data-testid="database-kind">{settings.database_kind}<' in text
    assert settings.database_kind in {"sqlite", "postgresql"}
    head = dbmod.migration_head()
    assert head and head in text
    assert "at head" in text
    assert re.search(r'data-testid="users-total">4\b', text)
    assert "auditor 2" in text and "helpdesk 1" in text and "admin 1" in text


# What each role finds in the navigation (README, "Roles").
NAV_BY_ROLE = {
    "admin": [
        "Home",
        "Devices",
        "Inspect",
        "Customers",
        "Exposure",
        "Incidents",
        "Alerts",
        "Users",
        "API tokens",
        "Audit events",
    ],
    "auditor": [
        "Home",
        "Devices",
        "Customers",
        "Exposure",
        "Incidents",
        "Alerts",
        "Users",
        "API tokens",
        "Audit events",
    ],
    "helpdesk": ["Home", "Devices", "API tokens"],
    "security": [
        "Home",
        "Devices",
        "Inspect",
        "Customers",
        "Exposure",
        "Incidents",
        "Quarantine",
        "Alerts",
        "API tokens",
    ],
    "dpo": [
        "Home",
        "Devices",
        "Inspect",
        "Customers",
        "Exposure",
        "Incidents",
        "Quarantine",
        "Alerts",
        "API tokens",
    ],
}


@pytest.mark.parametrize("role", sorted(NAV_BY_ROLE))
def test_navigation_shows_only_pages_the_role_may_use(
    console: TestClient, users: UserFactory, role: str
) -> None:
    logged_in(console, users, role)
    page = console.get("/")
    assert nav_labels(page.text) == NAV_BY_ROLE[role]
    for label, path in [("Users", "/users"), ("Audit events", "/audit")]:
        expected = 200 if label in NAV_BY_ROLE[role] else 403
        assert console.get(path).status_code == expected, path


def test_anonymous_pages_have_no_navigation(console: TestClient) -> None:
    page = console.get("/login")
    assert nav_labels(page.text) == []
    assert "Log out" not in page.text


# Users -----------------------------------------------------------------------------------
def test_admin_creates_changes_role_and_disables_a_user(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    logged_in(console, users, "admin")
    email = unique_email()
    created = post_form(
        console,
        "/users",
        "/users",
        {"email": email, "role": "helpdesk", "password": "a long enough passphrase"},
    )
    assert created.status_code == 303
    page = console.get(created.headers["location"])
    assert "User created." in page.text
    assert email in page.text
    db.rollback()
    new_user = db.scalar(select(User).where(User.email == email))
    assert new_user is not None and new_user.role == "helpdesk"

    changed = post_form(console, "/users", f"/users/{new_user.id}/role", {"role": "security"})
    assert changed.status_code == 303
    page = console.get("/users").text
    row = page.split(email, 1)[1].split("</tr>", 1)[0]
    assert '<option value="security" selected>' in row

    disabled = post_form(console, "/users", f"/users/{new_user.id}/disabled", {"disabled": "true"})
    assert disabled.status_code == 303
    row = console.get("/users").text.split(email, 1)[1].split("</tr>", 1)[0]
    assert "disabled" in row and ">Enable<" in row

    # A disabled user cannot log in (a separate browser).
    assert login(other_browser(console.app), email, "a long enough passphrase").status_code == 401
    role_changes = audit_events(db, "core:user:role-changed")
    assert [e.object_id for e in role_changes] == [str(new_user.id)]
    disables = audit_events(db, "core:user:disabled")
    assert [e.object_id for e in disables] == [str(new_user.id)]


def test_user_form_errors_are_shown_not_crashes(console: TestClient, users: UserFactory) -> None:
    logged_in(console, users, "admin")
    response = post_form(
        console, "/users", "/users", {"email": unique_email(), "role": "admin", "password": "short"}
    )
    assert response.status_code == 422
    assert "at least 12 characters" in response.text
    assert "<html" in response.text


def test_auditor_sees_users_but_cannot_manage_them(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    someone = users.create("helpdesk")
    logged_in(console, users, "auditor")
    page = console.get("/users")
    assert page.status_code == 200
    assert someone.email in page.text
    assert 'action="/users' not in page.text
    assert "Add a user" not in page.text
    email = unique_email()
    response = post_form(
        console,
        "/tokens",
        "/users",
        {"email": email, "role": "admin", "password": "a long enough passphrase"},
    )
    assert response.status_code == 403
    disabling = post_form(console, "/tokens", f"/users/{someone.id}/disabled", {"disabled": "true"})
    assert disabling.status_code == 403
    db.rollback()
    assert db.scalar(select(User).where(User.email == email)) is None
    assert db.get(User, someone.id).disabled is False


# API tokens ------------------------------------------------------------------------------
def test_token_secret_is_shown_once_and_revoke_stops_it(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "security")
    name = f"SIEM export {fake.word()}"
    created = post_form(console, "/tokens", "/tokens", {"name": name, "expires_days": "30"})
    assert created.status_code == 201
    match = re.search(r'data-testid="token-secret">(sgt_[A-Za-z0-9_-]+)<', created.text)
    assert match, "the new token's secret is shown"
    secret = match.group(1)
    assert name in created.text

    me = console.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    assert me.json()["role"] == "security"

    reloaded = console.get("/tokens")
    assert secret not in reloaded.text
    assert secret[:10] in reloaded.text, "the list shows the token's prefix"
    assert name in reloaded.text

    token_id = re.search(r'action="/tokens/(\d+)/revoke"', reloaded.text).group(1)
    revoked = post_form(console, "/tokens", f"/tokens/{token_id}/revoke", {})
    assert revoked.status_code == 303
    page = console.get(revoked.headers["location"]).text
    assert "Token revoked." in page
    assert "revoked</span>" in page
    after = console.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert after.status_code == 401


def test_token_form_rejects_bad_expiry_with_a_message(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "admin")
    response = post_form(console, "/tokens", "/tokens", {"name": "x", "expires_days": "soon"})
    assert response.status_code == 422
    assert "expires_days must be a whole number" in response.text


# Audit -----------------------------------------------------------------------------------
def test_audit_page_filters_by_action_and_outcome(console: TestClient, users: UserFactory) -> None:
    victim = users.create("helpdesk")
    assert login(console, victim.email, "wrong password guess").status_code == 401
    logged_in(console, users, "auditor")

    everything = console.get("/audit").text
    assert "core:login:failed" in everything and "core:login:succeeded" in everything

    failures = console.get("/audit", params={"outcome": "failure"}).text
    rows = re.findall(r'<tr data-testid="audit-row">(.*?)</tr>', failures, re.S)
    assert rows and all("core:login:failed" in r for r in rows)
    assert victim.email in failures
    assert '<option value="failure" selected>' in failures

    created = console.get("/audit", params={"action": "core:user:created"}).text
    rows = re.findall(r'<tr data-testid="audit-row">(.*?)</tr>', created, re.S)
    assert len(rows) == 2  # the helpdesk user and the auditor, created by the test factory
    assert all("core:user:created" in r for r in rows)

    nothing = console.get("/audit", params={"action": "core:token", "outcome": "success"}).text
    assert "No events match." in nothing


def test_audit_htmx_request_returns_only_the_rows(console: TestClient, users: UserFactory) -> None:
    victim = users.create("dpo")
    login(console, victim.email, "wrong password guess")
    logged_in(console, users, "admin")
    fragment = console.get("/audit", params={"outcome": "failure"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "<nav>" not in fragment.text
    assert 'data-testid="audit-total">1 event<' in fragment.text
    assert "core:login:failed" in fragment.text
    # htmx restoring history after a cache miss needs the whole page, not the fragment.
    restore = console.get(
        "/audit",
        params={"outcome": "failure"},
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.text


def test_audit_bad_date_filter_is_a_clear_error(console: TestClient, users: UserFactory) -> None:
    logged_in(console, users, "admin")
    response = console.get("/audit", params={"since": "yesterday"})
    assert response.status_code == 422
    assert "since must be a date" in response.text


# Own account -----------------------------------------------------------------------------
def _csrf_from(page_text: str) -> str:
    return page_text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_people_change_their_own_password_with_the_current_one(
    console: TestClient, users: UserFactory
) -> None:
    from tests.factories.users import DEFAULT_PASSWORD

    client = console
    person = users.create("dpo")
    login = client.get("/login")
    client.post(
        "/login",
        data={
            "email": person.email,
            "password": DEFAULT_PASSWORD,
            "csrf_token": _csrf_from(login.text),
        },
    )
    page = client.get("/account")
    assert page.status_code == 200
    assert person.email in page.text
    csrf = _csrf_from(page.text)
    new = "a brand new passphrase 42"

    wrong = client.post(
        "/account/password",
        data={
            "current_password": "not it at all!",
            "password": new,
            "confirm": new,
            "csrf_token": csrf,
        },
    )
    assert wrong.status_code == 403
    assert "current password is wrong" in wrong.text
    differ = client.post(
        "/account/password",
        data={
            "current_password": DEFAULT_PASSWORD,
            "password": new,
            "confirm": new + "x",
            "csrf_token": csrf,
        },
    )
    assert differ.status_code == 422
    assert client.get("/account").status_code == 200  # still signed in after refusals

    done = client.post(
        "/account/password",
        data={
            "current_password": DEFAULT_PASSWORD,
            "password": new,
            "confirm": new,
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/login?done=password-changed"
    assert client.get("/account", follow_redirects=False).status_code == 303  # session ended
    again = client.get("/login")
    relog = client.post(
        "/login",
        data={"email": person.email, "password": new, "csrf_token": _csrf_from(again.text)},
        follow_redirects=False,
    )
    assert relog.status_code == 303


def test_account_page_needs_a_session(console: TestClient) -> None:
    response = console.get("/account", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
