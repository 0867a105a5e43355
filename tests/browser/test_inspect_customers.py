"""Customer data in a spreadsheet, found in a real browser: the data-protection officer
imports the customer list on the Customers page, inspects a spreadsheet export holding some
of those customers on the Inspect page, sees how many customers it holds and its label,
then shows the full values with a reason (the file stays in the form, htmx sends it again).
Then the same pages on a phone-sized screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, log_in, wait_for_htmx
from tests.factories.customers import people, to_csv
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory

CUSTOMERS = people(200, seed=53)
IN_SHEET = CUSTOMERS[40:65]  # 25 of them
PHONE = {"width": 390, "height": 844}
SCAN_TIMEOUT_MS = 60_000  # the first inspection in a process compiles the pattern database
SHOT = Path("/tmp/sg-inspect-phone.png")


def assert_no_sideways_scroll(page) -> None:
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client + 1, f"{page.url} scrolls sideways: {scroll} > {client}"


@pytest.mark.browser
def test_import_customers_then_find_them_in_a_spreadsheet(
    page, live_server: LiveServer, users: UserFactory, tmp_path: Path
) -> None:
    dpo = users.create("dpo")
    csv_file = tmp_path / "customers.csv"
    csv_file.write_bytes(to_csv(CUSTOMERS))
    sheet = tmp_path / "crm-export.xlsx"
    sheet.write_bytes(customers_xlsx(IN_SHEET))

    log_in(page, dpo.email)
    page.locator("header nav").get_by_role("link", name="Customers").click()
    expect(page.get_by_role("heading", name="Customer directory")).to_be_visible()
    page.get_by_test_id("import-file").set_input_files(str(csv_file))
    page.get_by_label("Customer id column").fill("Customer ID")
    page.get_by_test_id("import-submit").click()
    result = page.get_by_test_id("import-result")
    expect(result).to_contain_text("Imported customers.csv")
    expect(page.get_by_test_id("result-added")).to_have_text("200")
    expect(page.get_by_test_id("result-mapping")).to_contain_text("Mobile")
    expect(page.get_by_test_id("stat-customers")).to_have_text("200")

    page.locator("header nav").get_by_role("link", name="Inspect").click()
    expect(page.get_by_test_id("directory-customers")).to_have_text("200")
    wait_for_htmx(page)
    page.get_by_test_id("inspect-file").set_input_files(str(sheet))
    page.get_by_test_id("inspect-submit").click()
    report = page.get_by_test_id("report")
    expect(report).to_be_visible(timeout=SCAN_TIMEOUT_MS)
    expect(report).to_contain_text("crm-export.xlsx")
    expect(page.get_by_test_id("customer-count")).to_have_text("25")
    expect(page.get_by_test_id("report-label")).to_have_text("restricted")
    findings = page.get_by_test_id("findings")
    expect(findings).to_contain_text("email address")
    for person in IN_SHEET[:5]:
        expect(report).not_to_contain_text(person.email)
    page.get_by_text("Customer ids").click()
    expect(page.get_by_test_id("customer-ids")).to_contain_text(IN_SHEET[0].customer_id)

    # Full values: the same file, sent again with a reason, and the audit says so.
    page.get_by_test_id("reveal-purpose").fill("Breach assessment INC-311")
    page.get_by_test_id("reveal-submit").click()
    expect(page.get_by_test_id("revealed-note")).to_contain_text("Breach assessment INC-311")
    expect(page.get_by_test_id("full-value").first).to_be_visible()
    expect(page.get_by_test_id("findings")).to_contain_text(IN_SHEET[0].email)
    expect(page.get_by_test_id("customer-count")).to_have_text("25")


@pytest.mark.browser
def test_inspect_and_customers_pages_fit_a_phone(
    browser, live_server: LiveServer, users: UserFactory, tmp_path: Path
) -> None:
    dpo = users.create("dpo")
    context = browser.new_context(
        base_url=live_server.url, viewport=PHONE, is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        log_in(page, dpo.email)
        csv_file = tmp_path / "customers.csv"
        csv_file.write_bytes(to_csv(CUSTOMERS[:30]))
        page.goto("/customers")
        page.get_by_test_id("import-file").set_input_files(str(csv_file))
        page.get_by_test_id("import-submit").click()
        expect(page.get_by_test_id("result-added")).to_have_text("30")
        assert_no_sideways_scroll(page)

        page.goto("/inspections")
        assert_no_sideways_scroll(page)
        sheet = tmp_path / "export.xlsx"
        sheet.write_bytes(customers_xlsx(CUSTOMERS[:12]))
        page.get_by_test_id("inspect-file").set_input_files(str(sheet))
        page.get_by_test_id("inspect-submit").click()
        expect(page.get_by_test_id("report-label")).to_have_text(
            "restricted", timeout=SCAN_TIMEOUT_MS
        )
        expect(page.get_by_test_id("customer-count")).to_have_text("12")
        assert_no_sideways_scroll(page)
        page.screenshot(path=str(SHOT), full_page=True)
    finally:
        context.close()
