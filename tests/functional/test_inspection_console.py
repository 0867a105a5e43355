"""The Inspect and Customers console pages through the real HTTP app, speaking HTML like a
browser (and like htmx): uploads, reports with masked values, the dpo's audited "show full
values", the customer import with its column mapping, refusals in plain words, on SQLite
and PostgreSQL."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.customers.models import Customer, ImportRun
from tests.factories.customers import HEADER, people, to_csv
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.test_console import HTML, audit_events, csrf_from, logged_in, nav_labels
from tests.functional.test_inspections_api import CARD, canaries, note_about

CUSTOMERS = people(30, seed=41)
HTMX = {"HX-Request": "true"}


@pytest.fixture
def console(client: TestClient) -> TestClient:
    client.headers.update(HTML)
    return client


def post_upload(
    console: TestClient,
    page: str,
    action: str,
    files: dict,
    data: dict | None = None,
    headers: dict | None = None,
):
    token = csrf_from(console.get(page).text)
    return console.post(
        action,
        files=files,
        data={**(data or {}), "csrf_token": token},
        headers=headers,
        follow_redirects=False,
    )


def import_via_console(console: TestClient, rows=CUSTOMERS):
    return post_upload(
        console,
        "/customers",
        "/customers/imports",
        {"file": ("customers.csv", to_csv(rows), "text/csv")},
        {"id_column": "Customer ID"},
    )


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_navigation_shows_the_pages_to_the_roles_that_may_use_them(
    console: TestClient, users: UserFactory
) -> None:
    expected = {
        "security": (True, True),
        "dpo": (True, True),
        "auditor": (False, True),
        "helpdesk": (False, False),
    }
    for role, (inspect, customers) in expected.items():
        console.cookies.clear()
        logged_in(console, users, role)
        labels = nav_labels(console.get("/").text)
        assert ("Inspect" in labels) is inspect, (role, labels)
        assert ("Customers" in labels) is customers, (role, labels)
        assert console.get("/inspections").status_code == (200 if inspect else 403)
        assert console.get("/customers").status_code == (200 if customers else 403)


def test_import_on_the_customers_page_shows_the_mapping_and_counts(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "dpo")
    page = console.get("/customers")
    assert 'data-testid="import-file"' in page.text and "No import yet." in page.text
    response = import_via_console(console)
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/customers?run=")
    result = console.get(response.headers["location"])
    shown = text_of(result.text)
    assert re.search(r"30\s+added", shown), shown
    assert "Mobile" in shown and "phone" in shown and "customer id" in shown
    assert re.search(r"30\s+customers", shown)
    assert "customers.csv" in shown
    for person in CUSTOMERS[:10]:
        assert person.email not in result.text and person.last_name not in result.text


def test_a_bad_customer_file_is_explained_and_nothing_is_stored(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    logged_in(console, users, "dpo")
    bad_header = to_csv(CUSTOMERS[:3], header=["Ref", *HEADER[1:]])
    response = post_upload(
        console,
        "/customers",
        "/customers/imports",
        {"file": ("list.csv", bad_header, "text/csv")},
        {"mapping": "Mobile=telephone"},
    )
    assert response.status_code == 422
    assert "unknown field kind 'telephone'" in html.unescape(response.text)
    assert "Mobile=telephone" in response.text  # the form keeps what was typed
    none = post_upload(console, "/customers", "/customers/imports", {}, {"id_column": "x"})
    assert none.status_code == 422
    assert "Choose the customer list" in none.text
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Customer)) == 0
    assert db.scalar(select(func.count()).select_from(ImportRun)) == 0


def test_auditors_see_the_directory_but_cannot_import(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "auditor")
    page = console.get("/customers")
    assert page.status_code == 200 and 'data-testid="import-file"' not in page.text
    refused = post_upload(
        console,
        "/customers",
        "/customers/imports",
        {"file": ("c.csv", to_csv(CUSTOMERS[:2]), "text/csv")},
    )
    assert refused.status_code == 403


def test_inspect_a_spreadsheet_and_text_with_masked_values(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "dpo")
    import_via_console(console)
    console.cookies.clear()
    logged_in(console, users, "security")
    page = console.get("/inspections")
    assert "30" in text_of(page.text) and 'data-testid="reveal-controls"' not in page.text

    sheet = customers_xlsx(CUSTOMERS[:11])
    response = post_upload(
        console, "/inspections", "/inspections", {"file": ("export.xlsx", sheet)}
    )
    assert response.status_code == 200, response.text
    shown = text_of(response.text)
    assert re.search(r"Label\s+restricted", shown), shown
    assert 'data-testid="customer-count">11<' in response.text
    assert CUSTOMERS[0].customer_id in shown
    for person in CUSTOMERS[:11]:
        assert person.email not in response.text

    person = CUSTOMERS[20]
    pasted = post_upload(
        console, "/inspections", "/inspections", {}, {"text": note_about(person), "name": "call"}
    )
    assert pasted.status_code == 200
    assert "•••• •••• •••• " + CARD[-4:] in pasted.text
    for value in canaries(person):
        assert value not in pasted.text


def test_htmx_gets_the_report_alone_and_errors_as_a_swappable_part(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "security")
    part = post_upload(
        console,
        "/inspections",
        "/inspections",
        {"file": ("n.txt", note_about(CUSTOMERS[2]).encode())},
        headers=HTMX,
    )
    assert part.status_code == 200
    assert "<html" not in part.text and 'data-testid="report"' in part.text
    empty = post_upload(console, "/inspections", "/inspections", {}, {"text": "  "}, HTMX)
    assert empty.status_code == 200 and "Choose a file or paste" in empty.text
    plain = post_upload(console, "/inspections", "/inspections", {}, {"text": ""})
    assert plain.status_code == 422 and "<html" in plain.text
    blank = post_upload(
        console, "/inspections", "/inspections", {"file": ("e.txt", b"")}, headers=HTMX
    )
    assert "is empty" in blank.text


def test_the_dpo_shows_full_values_with_a_reason_and_it_is_audited(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    logged_in(console, users, "dpo")
    page = console.get("/inspections")
    assert 'data-testid="reveal-controls"' in page.text
    person = CUSTOMERS[5]
    text = note_about(person).encode()
    refused = post_upload(
        console, "/inspections", "/inspections/reveal", {"file": ("c.txt", text)}, {}, HTMX
    )
    assert "State why you need the full values" in refused.text
    assert person.email not in refused.text
    shown = post_upload(
        console,
        "/inspections",
        "/inspections/reveal",
        {"file": ("c.txt", text)},
        {"purpose": "Breach assessment INC-9"},
        HTMX,
    )
    assert shown.status_code == 200
    assert person.email in shown.text and CARD.replace(" ", "") in shown.text
    assert "Breach assessment INC-9" in shown.text
    events = audit_events(db, "inspection:values:revealed")
    assert len(events) == 1 and events[0].details["purpose"] == "Breach assessment INC-9"


@pytest.mark.parametrize("role", ["security", "admin"])
def test_only_the_dpo_may_show_full_values(
    console: TestClient, users: UserFactory, role: str
) -> None:
    logged_in(console, users, role)
    page = console.get("/inspections")
    assert 'data-testid="reveal-controls"' not in page.text
    response = post_upload(
        console,
        "/inspections",
        "/inspections/reveal",
        {"file": ("c.txt", note_about(CUSTOMERS[6]).encode())},
        {"purpose": "curious"},
    )
    assert response.status_code == 403
    assert CUSTOMERS[6].email not in response.text


def test_forms_without_the_csrf_token_are_refused(console: TestClient, users: UserFactory) -> None:
    logged_in(console, users, "dpo")
    for action in ("/inspections", "/inspections/reveal", "/customers/imports"):
        response = console.post(
            action, files={"file": ("c.csv", to_csv(CUSTOMERS[:2]))}, follow_redirects=False
        )
        assert response.status_code == 403, action
        assert "Form expired" in response.text
