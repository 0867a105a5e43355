"""The lost-phone story in a real browser: an admin enrols a phone from the console, sees it
flagged non-compliant in plain words, reports it lost, watches the lock, lost mode and
location come back as the phone checks in, then wipes it with a typed confirmation.

The phone is simulated by talking the device protocol over real HTTP (httpx2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from faker import Faker
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, log_in
from tests.factories.devices import STRICT_POLICY, SWIPE_UNENCRYPTED
from tests.factories.users import UserFactory

fake = Faker("en_GB")
DESKTOP_SHOT = Path("/tmp/sg-device-desktop.png")
PHONE_SHOT = Path("/tmp/sg-device-phone.png")
PHONE = {"width": 390, "height": 844}
REASONS = [
    "Passcode is a swipe; policy requires a PIN of at least 6 digits",
    "Storage is not encrypted; policy requires encryption",
    "No management agent reports from this device",
]


class SimulatedPhone:
    """A phone speaking device protocol v1 to the live server."""

    def __init__(self, server: str, token: str, name: str) -> None:
        self.server = server
        enrolled = httpx2.post(
            f"{server}/api/device/v1/enroll",
            json={"token": token, "device": {"name": name, "platform": "android"}},
            timeout=10,
        )
        assert enrolled.status_code == 201, enrolled.text
        body = enrolled.json()
        self.id = body["device_id"]
        self.headers = {"Authorization": f"Device {body['device_id']}.{body['credential']}"}

    def checkin(self, results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        posture = {
            **SWIPE_UNENCRYPTED,
            "agent_version": None,
            "reported_at": datetime.now(UTC).isoformat(),
        }
        response = httpx2.post(
            f"{self.server}/api/device/v1/checkin",
            json={"posture": posture, "results": results or []},
            headers=self.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def api(server: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx2.post(
        f"{server}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_no_sideways_scroll(page) -> None:
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client + 1, f"{page.url} scrolls sideways: {scroll} > {client}"


@pytest.mark.browser
def test_enrol_flag_report_lost_locate_and_wipe(
    page, browser, live_server: LiveServer, users: UserFactory
) -> None:
    server = live_server.url
    admin = users.create("admin")
    owner = users.create("helpdesk")
    secret = users.token(admin)
    policy = api(
        server, secret, "/api/v1/compliance-policies", {**STRICT_POLICY, "agent_required": True}
    )
    group_name = f"Field team {fake.city()}"
    api(server, secret, "/api/v1/device-groups", {"name": group_name, "policy_id": policy["id"]})

    # The admin creates an enrollment in the console and reads its address.
    log_in(page, admin.email)
    page.locator("header nav").get_by_role("link", name="Devices").click()
    page.get_by_test_id("devices-subnav").get_by_role("link", name="Enrollments").click()
    page.get_by_label("User's e-mail address").fill(owner.email)
    page.get_by_label("Group").select_option(label=group_name)
    page.get_by_role("button", name="Create enrollment").click()
    expect(page.get_by_test_id("new-enrollment")).to_contain_text(owner.email)
    expect(page.get_by_test_id("enrollment-qr")).to_be_visible()
    qr_width = page.get_by_test_id("enrollment-qr").evaluate("img => img.naturalWidth")
    assert qr_width > 50, "the QR code image must decode and render"
    url = page.get_by_test_id("enrollment-url").inner_text().strip()
    assert "/api/device/v1/enroll#token=sge_" in url

    # The phone enrols and reports a swipe-only, unencrypted posture with no agent.
    name = f"{fake.first_name()}'s Pixel"
    phone = SimulatedPhone(server, url.split("#token=", 1)[1], name)
    first = phone.checkin()
    assert first["compliance"]["compliant"] is False

    page.locator("header nav").get_by_role("link", name="Devices").click()
    page.get_by_role("link", name=name).click()
    expect(page.get_by_test_id("device-name")).to_have_text(name)
    expect(page.get_by_test_id("verdict")).to_have_text("Non-compliant")
    reasons = page.get_by_test_id("compliance-reasons").get_by_role("listitem")
    expect(reasons).to_have_text(REASONS)

    # Report lost: one click queues lost mode, lock and locate.
    form = page.get_by_test_id("report-lost-form")
    form.get_by_label("Phone number").fill("+44 20 7946 0000")
    form.get_by_role("button", name="Report lost").click()
    expect(page.get_by_role("status")).to_contain_text("Reported lost")
    queued = page.locator('[data-testid="command-row"][data-status="queued"]')
    expect(queued).to_have_count(3)

    # The phone checks in, acknowledges everything and sends where it is.
    commands = phone.checkin()["commands"]
    assert sorted(c["type"] for c in commands) == ["locate", "lock", "lost_mode_on"]
    results: list[dict[str, Any]] = []
    for command in commands:
        result: dict[str, Any] = {"command_id": command["id"], "status": "acknowledged"}
        if command["type"] == "locate":
            result["location"] = {
                "latitude": 51.50722,
                "longitude": -0.12750,
                "accuracy_m": 12.0,
                "captured_at": datetime.now(UTC).isoformat(),
            }
        results.append(result)
    phone.checkin(results)

    # htmx refreshes the command queue by itself (every 5 s): no reload.
    acknowledged = page.locator('[data-testid="command-row"][data-status="acknowledged"]')
    expect(acknowledged).to_have_count(3, timeout=12_000)
    expect(page.get_by_test_id("location")).to_contain_text("51.50722, -0.12750")
    expect(page.get_by_test_id("device-state")).to_have_text("lost")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(DESKTOP_SHOT), full_page=True)
    phone_view = browser.new_context(
        base_url=server,
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        storage_state=page.context.storage_state(),
    )
    try:
        small = phone_view.new_page()
        small.goto(f"/devices/{phone.id}")
        expect(small.get_by_test_id("verdict")).to_be_visible()
        assert_no_sideways_scroll(small)
        small.screenshot(path=str(PHONE_SHOT), full_page=True)
        # Screen-sized pieces as well, readable by a person checking the layout.
        height = small.evaluate("document.documentElement.scrollHeight")
        for i, top in enumerate(range(0, min(height, 4 * PHONE["height"]), PHONE["height"])):
            small.screenshot(
                path=f"/tmp/sg-device-phone-{i}.png",
                full_page=True,
                clip={"x": 0, "y": top, "width": PHONE["width"], "height": PHONE["height"]},
            )
    finally:
        phone_view.close()

    # Full wipe: a wrong name is refused, the typed name wipes.
    wipe = page.get_by_test_id("wipe-form")
    wipe.get_by_label("Device name").fill("not the name")
    wipe.get_by_role("button", name="Wipe the device").click()
    expect(page.get_by_test_id("error")).to_contain_text("type its name exactly")
    page.get_by_test_id("wipe-form").get_by_label("Device name").fill(name)
    page.get_by_test_id("wipe-form").get_by_role("button", name="Wipe the device").click()
    expect(page.get_by_role("status")).to_contain_text("Command queued")
    (command,) = phone.checkin()["commands"]
    assert command["type"] == "wipe"
    phone.checkin([{"command_id": command["id"], "status": "acknowledged"}])
    page.reload()
    expect(page.get_by_test_id("device-state")).to_have_text("wiped")
    expect(page.locator('[data-testid="command-row"][data-type="wipe"]')).to_have_attribute(
        "data-status", "acknowledged"
    )
    expect(page.get_by_text("it takes no more commands")).to_be_visible()
    assert DESKTOP_SHOT.stat().st_size > 0 and PHONE_SHOT.stat().st_size > 0
