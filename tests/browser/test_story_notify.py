"""Story 1 in a real browser, from "Report lost" to the customers' notices.

A careless phone (swipe only, unencrypted) holds a spreadsheet of customers. Security
reports it lost on the device page, opens the incident the report opened, assesses the
exposure, reads the risk and its reasons, and assesses again once the phone acknowledged
the lock. The dpo then drafts the regulator report (which supplies the notices' words),
queues the notices from the notices page, and, once the outbox has sent them to a real
SMTP server (aiosmtpd on loopback), sees every customer's notice as sent. The phone is
simulated over the device protocol on real HTTP (httpx2); everything a person does goes
through the console.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import expect

from spillguard.core.keys import KeyRing
from spillguard.core.roles import Role
from spillguard.core.settings import Settings
from spillguard.incidents.mailer import SmtpMailSender
from spillguard.incidents.outbox import Outbox
from tests.browser.conftest import LiveServer, log_in, wait_for_htmx
from tests.browser.test_incidents import checkin, stage_careless_phone
from tests.factories.customers import people
from tests.factories.users import UserFactory
from tests.functional.live import LOOPBACK
from tests.functional.test_notices_outbox import SmtpSink

DIRECTORY = people(25, seed=7)
SPREADSHEET = DIRECTORY[:9]
ORGANISATION = "Example Shop Ltd"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "organisation_name": ORGANISATION,
            "smtp_host": LOOPBACK,
            "smtp_port": sink.port,
            "smtp_from": "privacy@shop.example",
            "smtp_timeout_seconds": 5.0,
            "notice_rate_per_second": 1000.0,
        }
    )


def stage_the_phone(server: str, users: UserFactory) -> dict[str, Any]:
    """The directory, an enrolled careless phone and the spreadsheet delivered to it."""
    return stage_careless_phone(server, users, DIRECTORY, SPREADSHEET)


@pytest.mark.browser
def test_report_lost_assess_and_notify_the_customers(
    page,
    live_server: LiveServer,
    users: UserFactory,
    settings: Settings,
    keys: KeyRing,
    sink: SmtpSink,
) -> None:
    server = live_server.url
    staged = stage_the_phone(server, users)
    security_user = users.create(Role.SECURITY)
    dpo_user = users.create(Role.DPO, email="dpo@shop.example")

    # Security reports the phone lost on its device page ...
    log_in(page, security_user.email)
    page.goto(f"/devices/{staged['device_id']}")
    page.get_by_test_id("report-lost-form").get_by_role("button", name="Report lost").click()
    expect(page.get_by_role("status")).to_contain_text("Reported lost")

    # ... finds the incident it opened on the home page and assesses the exposure.
    page.locator("header nav").get_by_role("link", name="Home").click()
    row = page.get_by_test_id("home-incident-row")
    expect(row).to_have_count(1)
    row.get_by_role("link").click()
    expect(page.get_by_test_id("incident-status")).to_have_text("open")
    incident_path = page.url.split(server, 1)[1]
    wait_for_htmx(page)
    page.get_by_role("button", name="Assess the exposure").click()
    assessment = page.get_by_test_id("assessment")
    expect(assessment).to_contain_text("Version 1 of 1")
    expect(page.get_by_test_id("risk")).to_have_text("high")
    expect(page.get_by_test_id("customer-count")).to_have_text("9")
    expect(page.get_by_test_id("notify-individuals")).to_have_text("must be told")
    expect(page.get_by_test_id("reasons")).to_contain_text("'swipe'")
    expect(page.get_by_test_id("reasons")).to_contain_text("not encrypted")

    # The phone acknowledges the lock; security assesses again (re-computable, versioned).
    commands = checkin(server, staged["phone"], [])["commands"]
    checkin(
        server,
        staged["phone"],
        [{"command_id": c["id"], "status": "acknowledged"} for c in commands],
    )
    page.reload()
    wait_for_htmx(page)
    page.get_by_role("button", name="Assess again").click()
    expect(assessment).to_contain_text("Version 2 of 2")
    expect(page.get_by_test_id("risk")).to_have_text("high")
    expect(page.get_by_test_id("protections")).to_contain_text("swipe")
    expect(page.get_by_test_id("timeline")).to_contain_text(
        "The phone acknowledged the lock command."
    )

    # The dpo takes over. The regulator report supplies the notices' words: she drafts it
    # (pre-filled from the incident and its assessment).
    page.get_by_test_id("logout").click()
    log_in(page, dpo_user.email)
    page.goto(incident_path)
    page.get_by_role("link", name="Regulator report").click()
    page.get_by_test_id("start-draft").click()
    expect(page.get_by_test_id("version-status")).to_have_text("draft")
    expect(page.get_by_test_id("field-organisation")).to_have_value(ORGANISATION)

    page.goto(incident_path)
    page.get_by_role("link", name="Customer notices").click()
    expect(page.get_by_test_id("count-total")).to_have_text("0")
    page.get_by_test_id("notify").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Notices queued")
    expect(page.get_by_test_id("count-queued")).to_contain_text("9")
    expect(page.get_by_test_id("count-total")).to_have_text("9")
    rows = page.get_by_test_id("notice-row")
    expect(rows).to_have_count(9)
    expect(page.get_by_test_id("notices")).not_to_contain_text(SPREADSHEET[0].name)
    expect(page.get_by_test_id("notices")).not_to_contain_text(SPREADSHEET[0].email)

    # The outbox sends them (what the server's scheduler or `spillguard notices worker` does).
    app: FastAPI = live_server.app
    report = Outbox(
        app.state.session_factory, settings, keys, SmtpMailSender.from_settings(settings)
    ).drain()
    assert report.sent == 9
    assert sink.handler.per_recipient() == {p.email: 1 for p in SPREADSHEET}

    page.reload()
    expect(page.get_by_test_id("count-sent")).to_contain_text("9")
    expect(page.get_by_test_id("count-queued")).to_have_count(0)
    expect(rows).to_have_count(9)
    for index in range(9):
        expect(rows.nth(index).locator("td").nth(3)).to_have_text("sent")
    expect(page.get_by_test_id("follow-ups")).to_have_count(0)  # nothing to follow up

    # The incident page now says the customers are being notified.
    page.goto(incident_path)
    expect(page.get_by_test_id("incident-status")).to_have_text("notifying")
