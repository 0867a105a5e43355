"""The incidents console on SQLite and PostgreSQL: the home page's open incidents with
their clocks, the incident page (countdown, workflow, tasks, notes, attachments,
assessment with reasons), a closed incident's refusals, the affected customers' ids and
the dpo's names for a stated purpose."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from tests.factories.customers import people, to_csv
from tests.factories.devices import SWIPE_UNENCRYPTED, create_enrollment, enroll
from tests.factories.users import UserFactory
from tests.functional.test_console import logged_in, post_form
from tests.functional.test_incidents_api import put_spreadsheet_on, report_lost

DIRECTORY = people(20, seed=93)
HTML = {"Accept": "text/html"}


@pytest.fixture
def console(client: TestClient) -> TestClient:
    client.headers.update(HTML)
    return client


@pytest.fixture
def lost_phone_incident(client: TestClient, users: UserFactory) -> dict[str, Any]:
    """A careless phone holding a spreadsheet of customers, reported lost (over the API)."""
    dpo = users.auth("dpo")
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(DIRECTORY), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text
    admin = users.auth("admin")
    owner = users.create("helpdesk")
    phone = enroll(client, create_enrollment(client, admin, owner.id)["token"])
    assert phone.checkin(client, SWIPE_UNENCRYPTED).status_code == 200
    security = users.auth("security")
    put_spreadsheet_on(client, security, phone, DIRECTORY[:7])
    report_lost(client, admin, phone)
    listed = client.get("/api/v1/incidents", headers={**security, "Accept": "application/json"})
    (incident,) = listed.json()["items"]
    return {"id": incident["id"], "phone": phone}


def test_home_page_shows_open_incidents_with_their_clocks(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any]
) -> None:
    logged_in(console, users, "security")
    home = console.get("/")
    assert home.status_code == 200
    assert 'data-testid="home-incidents"' in home.text
    assert f'href="/incidents/{lost_phone_incident["id"]}"' in home.text
    assert re.search(r"7[01] h \d\d min left", home.text), home.text


def test_helpdesk_sees_no_incidents(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any]
) -> None:
    logged_in(console, users, "helpdesk")
    assert "home-incidents" not in console.get("/").text
    assert console.get("/incidents").status_code == 403
    assert console.get(f"/incidents/{lost_phone_incident['id']}").status_code == 403


def test_the_incident_page_runs_the_response(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any], db: Session
) -> None:
    user = logged_in(console, users, "security")
    page_path = f"/incidents/{lost_phone_incident['id']}"
    page = console.get(page_path)
    assert page.status_code == 200
    assert 'data-testid="breach-clock"' in page.text and "hx-get" in page.text
    assert 'data-testid="no-assessment"' in page.text
    assert "Command queued for the phone: lock" in page.text

    assessed = post_form(console, page_path, f"{page_path}/assess", {})
    assert assessed.status_code == 303
    page = console.get(assessed.headers["location"])
    assert 'data-testid="risk">high<' in page.text
    assert 'data-testid="customer-count">7<' in page.text
    assert "swipe" in page.text

    for action, data in [
        ("tasks", {"title": "Call the restaurant", "assignee_id": str(user.id)}),
        ("notes", {"body": "The manager thinks he left it at lunch."}),
        ("status", {"status": "contained", "reason": "locked and in lost mode"}),
        ("edit", {"severity": "critical", "owner_id": str(user.id)}),
    ]:
        done = post_form(console, page_path, f"{page_path}/{action}", data)
        assert done.status_code == 303, (action, done.text)
    page = console.get(page_path)
    assert "Call the restaurant" in page.text
    assert "The manager thinks he left it at lunch." in page.text
    assert 'data-testid="incident-status">contained<' in page.text
    assert 'data-testid="incident-severity">critical<' in page.text

    uploaded = console.post(
        f"{page_path}/attachments",
        data={"csrf_token": csrf(console, page_path)},
        files={"file": ("photo-of-table.jpg", b"\xff\xd8jpeg bytes", "image/jpeg")},
        follow_redirects=False,
    )
    assert uploaded.status_code == 303
    assert "photo-of-table.jpg" in console.get(page_path).text

    clock = console.get(f"{page_path}/clock")
    assert clock.status_code == 200 and "left" in clock.text

    customers = console.get(f"{page_path}/customers")
    assert customers.status_code == 200
    assert customers.text.count('data-testid="customer-row"') == 7
    assert DIRECTORY[0].customer_id in customers.text
    assert DIRECTORY[0].name not in customers.text
    assert "reveal-form" not in customers.text  # names are for the dpo


def csrf(console: TestClient, path: str) -> str:
    from tests.functional.test_console import csrf_from

    return csrf_from(console.get(path).text)


def test_a_closed_incident_refuses_changes_until_reopened(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any], db: Session
) -> None:
    logged_in(console, users, "dpo")
    page_path = f"/incidents/{lost_phone_incident['id']}"
    closed = post_form(console, page_path, f"{page_path}/status", {"status": "closed"})
    assert closed.status_code == 303
    page = console.get(page_path)
    assert 'data-testid="reopen-form"' in page.text
    assert 'data-testid="task-form"' not in page.text

    token = csrf(console, page_path)
    refused = console.post(f"{page_path}/notes", data={"csrf_token": token, "body": "late note"})
    assert refused.status_code == 409
    assert "reopen it" in refused.text

    reopened = post_form(console, page_path, f"{page_path}/reopen", {"reason": "phone found"})
    assert reopened.status_code == 303
    assert 'data-testid="incident-status">open<' in console.get(page_path).text
    db.rollback()
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "incidents:incident:reopened"))
    assert event is not None and event.details["reason"] == "phone found"


def test_the_dpo_sees_names_for_a_stated_purpose(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any], db: Session
) -> None:
    logged_in(console, users, "dpo")
    page_path = f"/incidents/{lost_phone_incident['id']}"
    assert post_form(console, page_path, f"{page_path}/assess", {}).status_code == 303
    customers_path = f"{page_path}/customers"
    page = console.get(customers_path)
    assert 'data-testid="reveal-form"' in page.text
    assert DIRECTORY[0].name not in page.text
    shown = post_form(
        console, customers_path, customers_path, {"purpose": "notices under Art 34", "offset": "0"}
    )
    assert shown.status_code == 200, shown.text
    for person in DIRECTORY[:7]:
        assert person.name in shown.text
    assert DIRECTORY[10].name not in shown.text
    db.rollback()
    event = db.scalar(
        select(AuditEvent).where(AuditEvent.action == "incidents:assessment:names-revealed")
    )
    assert event is not None and event.details["purpose"] == "notices under Art 34"


def test_opening_an_incident_from_the_console(console: TestClient, users: UserFactory) -> None:
    logged_in(console, users, "security")
    created = post_form(
        console,
        "/incidents",
        "/incidents",
        {"type": "vulnerability-report", "title": "Researcher reports an open bucket"},
    )
    assert created.status_code == 303
    page = console.get(created.headers["location"])
    assert "Researcher reports an open bucket" in page.text
    listing = console.get("/incidents")
    assert listing.text.count('data-testid="incident-row"') == 1
    bad = post_form(console, "/incidents", "/incidents", {"type": "nonsense", "title": "x"})
    assert bad.status_code == 422
    assert "Traceback" not in bad.text


def test_the_incident_page_links_to_its_reports_and_notices(
    console: TestClient, users: UserFactory, lost_phone_incident: dict[str, Any]
) -> None:
    logged_in(console, users, "dpo")
    incident_id = lost_phone_incident["id"]
    page = console.get(f"/incidents/{incident_id}")
    assert page.status_code == 200
    links = re.search(r'data-testid="incident-links">(.*?)</p>', page.text, re.S)
    assert links is not None
    targets = re.findall(r'href="([^"]+)"', links.group(1))
    assert targets == [
        f"/incidents/{incident_id}/report",
        f"/incidents/{incident_id}/regulator-report",
        f"/incidents/{incident_id}/notices",
    ]
    for target in targets:
        assert console.get(target).status_code == 200, target
