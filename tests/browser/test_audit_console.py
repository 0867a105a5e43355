"""The insider-risk console in a real browser (issue 7 §6).

A renewals agent's ordinary days and then one day with thirty times their usual records
are ingested through the real ingestion service, whose detectors raise a volume alert.
A security analyst finds it from the navigation, opens it, reads why, dismisses it with
a reason, follows the actor link and sees the day stand out of the baseline band in the
activity chart; the same pages on a phone-sized screen do not scroll sideways. A
honeytoken alert shows its ids to security but a neutral marker to an auditor, and a
honeytoken is retired from its row on the honeytokens page.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from faker import Faker
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from spillguard.audit.ingest import AccessIngestService
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.customers.honeytokens import HoneytokenService
from spillguard.customers.services import CustomerImportService
from tests.browser.conftest import expect_path, log_in
from tests.browser.test_console_mobile import PHONE, assert_no_sideways_scroll
from tests.factories.customers import people, to_csv
from tests.factories.users import UserFactory

fake = Faker("en_GB")


def stage_bulk_day(db: Session, settings: Settings, keys: KeyRing, actor: str | None = None) -> str:
    """Twelve days of 30 records a day, then 900 today: the volume detector's alert."""
    actor = actor or f"{fake.first_name()}.{fake.last_name()}@staff.example.co.uk".lower()
    today = datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    numbers = iter(range(100000, 999999))

    def item(when: datetime, n: int) -> dict[str, object]:
        return {
            "id": f"evt-{fake.uuid4()}",
            "time": when.isoformat(),
            "actor": actor,
            "action": "view",
            "system": "crm",
            "record_type": "contract-renewal",
            "customer_ids": [f"C{next(numbers)}" for _ in range(n)],
        }

    svc = AccessIngestService(db, settings, keys, Principal.system("tests"))
    svc.ingest("crm", [item(today - timedelta(days=d), 30) for d in range(12, 0, -1)], "rest")
    svc.ingest("crm", [item(today, 900)], "rest")
    db.commit()
    return actor


@pytest.mark.browser
def test_alert_queue_to_dismissal_and_the_activity_chart(
    page, live_server, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = stage_bulk_day(db, settings, keys)
    analyst = users.create("security")
    log_in(page, analyst.email)

    page.locator("header nav").get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", name="Insider-risk alerts")).to_be_visible()
    row = page.get_by_test_id("alert-row").filter(has_text=actor)
    expect(row).to_have_count(1)
    row.get_by_role("link").click()

    expect(page.get_by_test_id("alert-title")).to_contain_text(actor)
    expect(page.get_by_test_id("explanation")).to_contain_text("baseline")
    expect(page.get_by_test_id("figure-observed")).to_contain_text("900")
    expect(page.get_by_test_id("evidence-row").first).to_contain_text("contract-renewal")
    page.get_by_label("Why dismiss it?").fill("Renewals campaign week, agreed with the team lead")
    page.get_by_role("button", name="Dismiss").click()
    expect(page.get_by_role("status")).to_contain_text("Alert dismissed")
    expect(page.get_by_test_id("alert-status")).to_have_text("dismissed")
    expect(page.get_by_test_id("dismissed")).to_contain_text("Renewals campaign week")
    expect(page.get_by_role("button", name="Dismiss")).to_have_count(0)

    page.get_by_test_id("actor-link").click()
    expect(page.get_by_role("heading", name=f"Activity of {actor}")).to_be_visible()
    chart = page.get_by_test_id("activity-chart")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    expect(chart.locator("[data-testid=chart-day]")).to_have_count(30)
    spike = chart.locator("[data-over=yes]")
    expect(spike).to_have_count(1)
    spike_bar = spike.locator("rect.bar").bounding_box()
    # The day before the spike (staged at 11:00 UTC, so before 11:00 the spike is yesterday).
    day_before = date.fromisoformat(spike.get_attribute("data-day") or "") - timedelta(days=1)
    usual_bar = chart.locator(f'[data-day="{day_before.isoformat()}"] rect.bar').bounding_box()
    assert spike_bar is not None and usual_bar is not None
    assert spike_bar["height"] > 10 * usual_bar["height"], "the spike must stand out"
    assert chart.locator("rect.band").count() >= 7

    page.goto("/audit/alerts?status=dismissed")
    expect(page.get_by_test_id("alert-row").filter(has_text=actor)).to_have_count(1)
    expect_path(page, "/audit/alerts?status=dismissed")


@pytest.mark.browser
def test_audit_pages_fit_a_phone(
    browser, live_server, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    # A long actor address has no place to break; the pages must still fit the phone.
    long_name = f"{fake.first_name()}-{fake.last_name()}.{fake.last_name()}-{fake.last_name()}"
    actor = stage_bulk_day(
        db, settings, keys, actor=f"{long_name}@renewals.staff.example.co.uk".lower()
    )
    admin = users.create("admin")
    ctx = browser.new_context(
        base_url=live_server.url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    ctx.set_default_timeout(10_000)
    try:
        phone = ctx.new_page()
        log_in(phone, admin.email)
        expect(phone.get_by_role("heading", name="System status")).to_be_visible()
        for path, heading in [
            ("/audit", "Audit events"),
            ("/audit/checkpoints", "Audit log checkpoints"),
            ("/audit/alerts", "Insider-risk alerts"),
            ("/audit/sources", "Access sources"),
            ("/audit/honeytokens", "Honeytoken customers"),
            (f"/audit/actors/{actor}", f"Activity of {actor}"),
        ]:
            phone.goto(path)
            expect(phone.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            assert_no_sideways_scroll(phone)
        phone.goto("/audit/alerts")
        phone.get_by_test_id("alert-row").first.get_by_role("link").click()
        expect(phone.get_by_test_id("alert-title")).to_be_visible()
        assert_no_sideways_scroll(phone)
    finally:
        ctx.close()


def stage_honeytokens(db: Session, settings: Settings, keys: KeyRing) -> tuple[list[str], str]:
    """A customer list, two honeytokens, and a CRM export by an agent that touched a real
    customer and the second honeytoken: a critical honeytoken alert."""
    system = Principal.system("tests")
    CustomerImportService(db, system, keys).import_csv(
        io.BytesIO(to_csv(people(20))), id_column="Customer ID", file_name="customers.csv"
    )
    planted = settings.model_copy(update={"honeytoken_email_domain": "honey.example.co.uk"})
    made = HoneytokenService(db, system, keys, planted).create(2)
    ids = [r.identity.customer_id for r in made.records]
    db.commit()
    actor = f"{fake.first_name()}.{fake.last_name()}@staff.example.co.uk".lower()
    item = {
        "id": f"evt-{fake.uuid4()}",
        "time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "actor": actor,
        "action": "export",
        "system": "crm",
        "record_type": "contract-renewal",
        "customer_ids": ["C7654321", ids[1]],
    }
    AccessIngestService(db, settings, keys, system).ingest("crm", [item], "rest")
    db.commit()
    return ids, actor


@pytest.mark.browser
def test_a_honeytoken_is_retired_and_reactivated_from_its_row_and_an_auditor_sees_no_ids(
    browser, live_server, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    ids, actor = stage_honeytokens(db, settings, keys)
    for role in ("security", "auditor"):
        ctx = browser.new_context(base_url=live_server.url)
        ctx.set_default_timeout(10_000)
        try:
            page = ctx.new_page()
            log_in(page, users.create(role).email)
            expect(page.get_by_role("heading", name="System status")).to_be_visible()
            page.goto("/audit/alerts")
            page.get_by_test_id("alert-row").filter(has_text=actor).get_by_role("link").click()
            expect(page.get_by_test_id("alert-severity")).to_have_text("critical")
            page.get_by_text("All evidence").click()
            evidence = page.get_by_test_id("evidence")
            rows = page.get_by_test_id("evidence-row")
            rows.first.locator("summary").click()
            if role == "auditor":
                expect(evidence).to_contain_text("honeytoken customer")
                expect(rows.first).to_contain_text("C7654321, honeytoken customer")
                for token in ids:
                    expect(page.locator("body")).not_to_contain_text(token)
                continue
            expect(evidence).to_contain_text(ids[1])
            expect(rows.first).to_contain_text(ids[1])

            page.goto("/audit/honeytokens")
            row = page.get_by_test_id("honeytoken-row").filter(has_text=ids[0])
            expect(row.get_by_test_id("honeytoken-status")).to_have_text("active")
            row.get_by_role("button", name="Retire").click()
            expect(page.get_by_role("status")).to_contain_text("Honeytoken retired")
            row = page.get_by_test_id("honeytoken-row").filter(has_text=ids[0])
            expect(row.get_by_test_id("honeytoken-status")).to_have_text("retired")
            expect(row.get_by_role("button", name="Retire")).to_have_count(0)
            other = page.get_by_test_id("honeytoken-row").filter(has_text=ids[1])
            expect(other.get_by_role("button", name="Retire")).to_have_count(1)
            expect(other.get_by_role("button", name="Reactivate")).to_have_count(0)
            # ... and made active again from the same row.
            row.get_by_role("button", name="Reactivate").click()
            expect(page.get_by_role("status")).to_contain_text("Honeytoken reactivated")
            row = page.get_by_test_id("honeytoken-row").filter(has_text=ids[0])
            expect(row.get_by_test_id("honeytoken-status")).to_have_text("active")
            expect(row.get_by_role("button", name="Retire")).to_have_count(1)
        finally:
            ctx.close()
