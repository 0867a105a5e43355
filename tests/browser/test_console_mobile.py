"""The console on a phone-sized screen: no sideways scrolling of the page, navigation and
logout within reach."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.factories.users import UserFactory

PHONE = {"width": 390, "height": 844}
SCREENSHOT = Path("/tmp/sg-mobile.png")


def assert_no_sideways_scroll(page) -> None:
    # Measure the page as it is shown: after a click-through navigation the stylesheets may
    # still be loading (CI once measured an unstyled table this way), so wait for "load".
    page.wait_for_load_state("load")
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    scroll_width, client_width = widths
    assert scroll_width <= client_width + 1, f"{page.url} scrolls sideways: {widths}"


def assert_within_screen(locator) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, box


@pytest.fixture
def phone(browser, live_server):
    ctx = browser.new_context(
        base_url=live_server.url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(10_000)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


@pytest.mark.browser
def test_login_page_fits_a_phone(phone) -> None:
    phone.goto("/login")
    assert_no_sideways_scroll(phone)
    assert_within_screen(phone.get_by_role("button", name="Log in"))
    assert_within_screen(phone.get_by_label("Password"))


@pytest.mark.browser
def test_console_pages_fit_a_phone_with_navigation_in_reach(phone, users: UserFactory) -> None:
    admin = users.create("admin")
    for _ in range(3):
        users.create("auditor")
    log_in(phone, admin.email)
    expect(phone.get_by_role("heading", name="System status")).to_be_visible()

    for path, heading in [
        ("/", "System status"),
        ("/tokens", "API tokens"),
        ("/users", "Users"),
        ("/audit", "Audit events"),
    ]:
        phone.goto(path)
        expect(phone.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert_no_sideways_scroll(phone)
        for label in ["Home", "Users", "API tokens", "Audit events"]:
            assert_within_screen(phone.locator("header nav").get_by_role("link", name=label))
        assert_within_screen(phone.get_by_test_id("logout"))
        if path == "/":
            phone.screenshot(path=str(SCREENSHOT), full_page=True)

    # A new token's long secret wraps instead of pushing the page sideways.
    phone.goto("/tokens")
    phone.get_by_label("Name").fill("phone check")
    phone.get_by_role("button", name="Create token").click()
    secret = phone.get_by_test_id("token-secret")
    assert_within_screen(secret)
    assert_no_sideways_scroll(phone)
    assert SCREENSHOT.stat().st_size > 0
