"""The mail quarantine in a real browser: the security officer finds two held outbound
messages through the navigation, releases one with a note (the next hop receives it) and
deletes the other, and sees both decisions in the list."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest
from playwright.sync_api import expect

from spillguard.core.keys import KeyRing
from spillguard.core.settings import Settings
from spillguard.exposure.mailfilter import IncomingMail, MailFilter, SmtpRelay
from tests.browser.conftest import LiveServer, expect_path, log_in
from tests.factories.users import UserFactory
from tests.functional.test_mail_filter import Sink, sink

__all__ = ["sink"]  # a fixture, imported for pytest

OUTSIDER = "buyer@partner.example"
SENDER = "sales.lead@corp.example"


@pytest.fixture
def settings(settings: Settings, sink: Sink) -> Settings:
    """The sink as the next hop; outbound mail with card numbers (confidential) is held."""
    return settings.model_copy(
        update={"mail_filter_next_hop": sink.address, "mail_filter_external_label": "confidential"}
    )


def hold(live_server: LiveServer, settings: Settings, keys: KeyRing, subject: str) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = OUTSIDER
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.lower()}@corp.example>"
    message.set_content("Card for the refund: 4111 1111 1111 1111, expiry 01/29.\n")
    mail_filter = MailFilter(
        settings,
        keys,
        live_server.app.state.session_factory,
        SmtpRelay.from_settings(settings),
    )
    reply = mail_filter.process(
        IncomingMail(SENDER, [OUTSIDER], message.as_bytes(policy=policy.SMTP))
    )
    assert reply.startswith("250"), reply


@pytest.mark.browser
def test_security_releases_one_message_and_deletes_the_other(
    page, live_server: LiveServer, users: UserFactory, settings: Settings, keys: KeyRing, sink: Sink
) -> None:
    hold(live_server, settings, keys, "Refund")
    hold(live_server, settings, keys, "Statement")
    sink.received.clear()  # the notices the sender got
    officer = users.create("security")
    log_in(page, officer.email)
    page.get_by_role("link", name="Quarantine").click()
    expect_path(page, "/exposure/quarantine")
    rows = page.get_by_test_id("quarantine-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(OUTSIDER)
    expect(rows.first).to_contain_text("confidential")

    statement = rows.filter(has_text="outside the organisation").first
    statement.get_by_test_id("note").fill("Customer asked for it; approved")
    statement.get_by_test_id("release").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Released")
    expect(rows).to_have_count(1)
    assert [r.recipients for r in sink.received] == [[OUTSIDER]]
    assert sink.received[0].message["X-Spillguard-Action"] == "released"

    rows.first.get_by_test_id("delete").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Deleted")
    expect(rows).to_have_count(0)

    page.get_by_test_id("filter-all").click()
    statuses = page.get_by_test_id("status")
    expect(statuses).to_have_count(2)
    expect(page.get_by_test_id("quarantine")).to_contain_text("Customer asked for it; approved")
    assert sorted(s.split()[0] for s in statuses.all_inner_texts()) == ["deleted", "released"]
    assert len(sink.received) == 1
