"""The console in a real browser: the issue's required flow (log in, see the status, create
an API token, use it, log out), first-run setup, a wrong password, and the audit filter."""

from __future__ import annotations

import re

import httpx2
import pytest
from faker import Faker
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from spillguard import __version__
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.sessions import LoginService
from spillguard.core.settings import Settings
from tests.browser.conftest import LiveServer, expect_path, log_in, wait_for_htmx
from tests.factories.users import UserFactory

fake = Faker("en_GB")


@pytest.mark.browser
def test_admin_logs_in_creates_a_token_uses_it_and_logs_out(
    page, live_server: LiveServer, users: UserFactory, settings: Settings
) -> None:
    admin = users.create("admin")
    page.goto("/")
    expect_path(page, "/login?next=/")

    log_in(page, admin.email)
    expect_path(page, "/")
    expect(page.get_by_role("heading", name="System status")).to_be_visible()
    expect(page.get_by_test_id("version")).to_have_text(__version__)
    expect(page.get_by_test_id("database-kind")).to_have_text(settings.database_kind)
    expect(page.get_by_text(f"Signed in as {admin.email}")).to_be_visible()

    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()
    name = f"Laptop of {fake.first_name()}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Expires after (days)").fill("7")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_contain_text(name)
    secret = page.get_by_test_id("token-secret").inner_text().strip()
    assert re.fullmatch(r"sgt_[A-Za-z0-9_-]{40,}", secret)
    expect(page.get_by_test_id("token-row").filter(has_text=name)).to_contain_text("active")

    me = httpx2.get(
        f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["email"] == admin.email

    # Shown once: the tokens page, opened again, no longer carries the secret.
    page.goto("/tokens")
    expect(page.get_by_test_id("token-row").filter(has_text=name)).to_be_visible()
    assert secret not in page.content()

    page.get_by_test_id("logout").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect_path(page, "/login?done=logged-out")
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.goto("/tokens")
    expect_path(page, "/login?next=/tokens")


@pytest.mark.browser
def test_first_run_setup_link_creates_the_administrator(
    page, db: Session, keys: KeyRing, settings: Settings
) -> None:
    secret = LoginService(db, Principal.system("tests"), keys, settings).create_setup_link()
    assert secret, "an empty database gets a setup link"
    db.commit()
    email = f"{fake.user_name()}@example.com"
    password = "first administrator passphrase"

    page.goto(f"/setup?key={secret}")
    expect(page.get_by_role("heading", name="Create the first administrator")).to_be_visible()
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_text("Administrator created.")).to_be_visible()
    expect_path(page, "/login?done=setup-done")

    log_in(page, email, password)
    expect_path(page, "/")
    expect(page.get_by_text(f"Signed in as {email} (admin)")).to_be_visible()
    expect(page.get_by_test_id("users-total")).to_contain_text("1")

    # The link is spent.
    page.goto(f"/setup?key={secret}")
    expect(page.get_by_role("heading", name="Setup link invalid")).to_be_visible()


@pytest.mark.browser
def test_wrong_password_shows_an_error_in_the_page(page, users: UserFactory) -> None:
    user = users.create("helpdesk")
    log_in(page, user.email, "definitely not my password")
    expect(page.get_by_test_id("login-error")).to_have_text("E-mail address or password is wrong.")
    expect(page.get_by_label("E-mail address")).to_have_value(user.email)
    expect_path(page, "/login")
    page.goto("/")
    expect_path(page, "/login?next=/")


@pytest.mark.browser
def test_audit_outcome_filter_swaps_rows_without_reloading(page, users: UserFactory) -> None:
    victim = users.create("dpo")
    log_in(page, victim.email, "a wrong password guess")
    expect(page.get_by_test_id("login-error")).to_be_visible()
    auditor = users.create("auditor")
    log_in(page, auditor.email)
    expect_path(page, "/")
    # From here on, anything the browser refuses (a Content-Security-Policy violation, a
    # failed script or request) shows up as a console error.
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.get_by_role("link", name="Audit events").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows.filter(has_text="core:login:succeeded")).to_have_count(1)
    wait_for_htmx(page)
    page.evaluate("window.__sgNoReload = true")  # lost if the whole page reloads

    page.get_by_label("Outcome").select_option("failure")
    expect(rows.filter(has_text="core:login:succeeded")).to_have_count(0)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("core:login:failed")
    expect(rows.first).to_contain_text(victim.email)
    expect(page.get_by_test_id("audit-total")).to_have_text("1 event")
    assert page.evaluate("window.__sgNoReload") is True, "the filter reloaded the whole page"
    assert "outcome=failure" in page.url, "the filtered view has its own address"

    # That address, opened directly, shows the same filtered page.
    page.reload()
    expect(page.get_by_label("Outcome")).to_have_value("failure")
    expect(rows).to_have_count(1)
    assert errors == []
