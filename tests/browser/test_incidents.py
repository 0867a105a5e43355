"""Report lost → incident → exposure assessment, in a real browser.

A careless phone (swipe only, unencrypted) holds a spreadsheet of customers; security
reports it lost on the device page, finds the incident the report opened (with its
breach clock) on the home page, opens it, assesses the exposure and reads the risk and
its reasons; the phone acknowledges the lock and the timeline shows it by itself.
The phone is simulated over the device protocol on real HTTP (httpx2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, log_in, wait_for_htmx
from tests.factories.customers import people, to_csv
from tests.factories.devices import SWIPE_UNENCRYPTED
from tests.factories.users import UserFactory

DIRECTORY = people(25, seed=5)
SPREADSHEET = DIRECTORY[:9]


def call(server: str, token: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx2.post(
        f"{server}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=20, **kwargs
    )
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def checkin(server: str, headers: dict[str, str], results: list[dict[str, Any]]) -> Any:
    posture = {**SWIPE_UNENCRYPTED, "reported_at": datetime.now(UTC).isoformat()}
    response = httpx2.post(
        f"{server}/api/device/v1/checkin",
        json={"posture": posture, "results": results},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def stage_careless_phone(
    server: str, users: UserFactory, directory: list[Any], spreadsheet: list[Any]
) -> dict[str, Any]:
    """The customer directory, an enrolled careless phone (swipe only, unencrypted) that has
    checked in, and the spreadsheet delivered to it; the security user who will act."""
    admin = users.token(users.create("admin"))
    dpo = users.token(users.create("dpo"))
    security_user = users.create("security")
    security = users.token(security_user)
    owner = users.create("helpdesk")
    call(
        server,
        dpo,
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(directory), "text/csv")},
        data={"id_column": "Customer ID"},
    )
    enrollment = call(server, admin, "/api/v1/enrollments", json={"user_id": owner.id})
    enrolled = httpx2.post(
        f"{server}/api/device/v1/enroll",
        json={
            "token": enrollment["token"],
            "device": {"name": "Marketing phone", "platform": "android"},
        },
        timeout=10,
    ).json()
    phone = {"Authorization": f"Device {enrolled['device_id']}.{enrolled['credential']}"}
    checkin(server, phone, [])
    content = call(
        server,
        security,
        "/api/v1/exposure/contents",
        files={"file": ("top-customers.csv", to_csv(spreadsheet), "text/csv")},
    )
    call(
        server,
        security,
        "/api/v1/exposure/deliveries",
        json={
            "items": [
                {
                    "sha256": content["sha256"],
                    "destination": {"type": "device", "device_id": enrolled["device_id"]},
                    "channel": "mail",
                    "source_system": "mail-filter",
                }
            ]
        },
    )
    return {"device_id": enrolled["device_id"], "phone": phone, "security": security_user}


@pytest.mark.browser
def test_report_lost_opens_an_incident_and_the_assessment_explains_the_risk(
    page, live_server: LiveServer, users: UserFactory
) -> None:
    server = live_server.url
    staged = stage_careless_phone(server, users, DIRECTORY, SPREADSHEET)
    phone = staged["phone"]

    log_in(page, staged["security"].email)
    page.goto(f"/devices/{staged['device_id']}")
    page.get_by_test_id("report-lost-form").get_by_role("button", name="Report lost").click()
    expect(page.get_by_role("status")).to_contain_text("Reported lost")

    # The home page lists the incident the report opened, with its clock.
    page.locator("header nav").get_by_role("link", name="Home").click()
    row = page.get_by_test_id("home-incident-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Lost phone: Marketing phone")
    expect(row).to_contain_text(re.compile(r"7[01] h \d\d min left"))
    row.get_by_role("link").click()

    expect(page.get_by_test_id("incident-status")).to_have_text("open")
    expect(page.get_by_test_id("clock-remaining")).to_contain_text("left")
    expect(page.get_by_test_id("no-assessment")).to_be_visible()
    timeline = page.get_by_test_id("timeline")
    expect(timeline).to_contain_text("reported the phone 'Marketing phone' lost")
    expect(timeline).to_contain_text("Command queued for the phone: lock")

    page.get_by_role("button", name="Assess the exposure").click()
    expect(page.get_by_test_id("risk")).to_have_text("high")
    expect(page.get_by_test_id("customer-count")).to_have_text("9")
    expect(page.get_by_test_id("notify-individuals")).to_have_text("must be told")
    expect(page.get_by_test_id("reasons")).to_contain_text("'swipe'")
    expect(page.get_by_test_id("reasons")).to_contain_text("not encrypted")
    expect(page.get_by_test_id("protections")).to_contain_text("swipe")

    # The phone acknowledges lock, lost mode and locate; the timeline shows it by itself.
    commands = checkin(server, phone, [])["commands"]
    checkin(server, phone, [{"command_id": c["id"], "status": "acknowledged"} for c in commands])
    page.reload()
    expect(page.get_by_test_id("timeline")).to_contain_text(
        "The phone acknowledged the lock command."
    )

    # Moving the incident on from the page.
    wait_for_htmx(page)
    status_form = page.get_by_test_id("status-form")
    status_form.get_by_label("Move to").select_option("contained")
    status_form.get_by_role("button", name="Change status").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("contained")

    page.get_by_test_id("customers-link").click()
    expect(page.get_by_test_id("customer-row")).to_have_count(9)
    expect(page.get_by_test_id("affected-customers")).not_to_contain_text(SPREADSHEET[0].name)
