"""The exposure ledger's filter form in a real browser: the form sends every field, the
empty ones too, and the page filters by what was filled in; a device id that is not a
number is a message on the page. A device page addressed by something that is not an id
is the console's error page, as everywhere in the console."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, log_in
from tests.browser.test_incidents import DIRECTORY, SPREADSHEET, stage_careless_phone
from tests.factories.users import UserFactory


@pytest.mark.browser
def test_the_ledger_filter_form_filters_and_explains_a_bad_id(
    page, live_server: LiveServer, users: UserFactory
) -> None:
    staged = stage_careless_phone(live_server.url, users, DIRECTORY, SPREADSHEET)
    log_in(page, staged["security"].email)
    page.goto("/exposure")
    total = page.get_by_test_id("ledger-total")
    expect(total).to_have_text("1 delivery")

    # Only a channel chosen: device id and user id go along empty.
    page.get_by_label("Channel").select_option("gateway")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_title("Exposure ledger · Spillguard")
    expect(total).to_have_text("0 deliveries")
    page.get_by_label("Channel").select_option("mail")
    page.get_by_role("button", name="Filter").click()
    expect(total).to_have_text("1 delivery")

    page.get_by_label("Device id").fill("abc")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("error")).to_have_text("Device id must be a whole number (an id).")
    expect(page.get_by_label("Device id")).to_have_value("abc")
    page.get_by_label("Device id").fill(str(staged["device_id"]))
    page.get_by_role("button", name="Filter").click()
    expect(total).to_have_text("1 delivery")

    for path in ("/exposure/devices/abc", "/exposure/devices/abc/customers"):
        response = page.goto(path)
        assert response is not None and response.status == 422
        assert response.headers["content-type"].startswith("text/html")
        expect(page).to_have_title("Invalid input · Spillguard")
