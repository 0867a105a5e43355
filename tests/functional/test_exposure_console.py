"""The exposure console pages on SQLite and PostgreSQL: the ledger with filters, what is
on a phone, its customers' ids (names only for the dpo, for a stated purpose, audited),
and where a customer's data has gone — and who may see them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from tests.factories.customers import people, to_csv
from tests.factories.devices import create_enrollment, enroll
from tests.factories.users import UserFactory
from tests.functional.test_console import HTML, csrf_from, logged_in

CUSTOMERS = people(30, seed=55)


@pytest.fixture
def ledger(client: TestClient, users: UserFactory) -> dict[str, Any]:
    dpo, security, admin = users.auth("dpo"), users.auth("security"), users.auth("admin")
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("c.csv", to_csv(CUSTOMERS), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text
    owner = users.create("helpdesk")
    phone = enroll(client, create_enrollment(client, admin, owner.id)["token"], name="Ann's phone")
    sheet = client.post(
        "/api/v1/exposure/contents",
        files={"file": ("list.csv", to_csv(CUSTOMERS[:12]))},
        headers=security,
    ).json()
    recorded = client.post(
        "/api/v1/exposure/deliveries",
        json={
            "items": [
                {
                    "sha256": sheet["sha256"],
                    "destination": {"type": "device", "device_id": phone.id},
                    "channel": "mail",
                    "source_system": "mail-filter",
                },
                {
                    "sha256": sheet["sha256"],
                    "destination": {"type": "recipient", "recipient": "bob@partner.example"},
                    "channel": "mail",
                    "source_system": "mail-filter",
                },
            ]
        },
        headers=security,
    )
    assert recorded.json()["recorded"] == 2
    client.headers.update(HTML)
    return {"phone": phone, "sheet": sheet, "owner": owner}


def test_ledger_device_and_customer_pages(
    client: TestClient, users: UserFactory, ledger: dict[str, Any]
) -> None:
    logged_in(client, users, "security")
    phone = ledger["phone"]
    page = client.get("/exposure")
    assert page.status_code == 200
    assert page.text.count('data-testid="delivery-row"') == 2
    assert "Ann&#39;s phone" in page.text and "bob@partner.example" in page.text
    narrowed = client.get("/exposure", params={"channel": "mail", "domain": "partner.example"})
    assert narrowed.text.count('data-testid="delivery-row"') == 1
    bad = client.get("/exposure", params={"since": "last week"})
    assert bad.status_code == 200 and "since must be a date" in bad.text
    # The filter form sends every field, the empty ones too; an id that is not a number is
    # a message on the page, as a bad date is (both were a bare "Invalid input" page).
    blank = dict.fromkeys(("device_id", "user_id", "domain", "min_label", "since", "until"), "")
    by_form = client.get("/exposure", params={**blank, "channel": "mail"})
    assert by_form.status_code == 200
    assert by_form.text.count('data-testid="delivery-row"') == 2
    not_an_id = client.get("/exposure", params={**blank, "device_id": "abc"})
    assert not_an_id.status_code == 200
    assert "Device id must be a whole number (an id)." in not_an_id.text
    for wrong in ("0", "-3", "١٢", "9" * 20):
        assert "must be a whole number" in client.get("/exposure", params={"user_id": wrong}).text

    device = client.get(f"/devices/{phone.id}")
    assert f'href="/exposure/devices/{phone.id}"' in device.text
    on_phone = client.get(f"/exposure/devices/{phone.id}")
    assert on_phone.status_code == 200
    assert 'data-testid="distinct-customers">12<' in on_phone.text
    assert on_phone.text.count('data-testid="document-row"') == 1
    ids = client.get(f"/exposure/devices/{phone.id}/customers")
    assert ids.text.count('data-testid="customer-row"') == 12
    assert CUSTOMERS[0].customer_id in ids.text
    # Ids only: no names, no values, and no form to reveal them for this role.
    for person in CUSTOMERS[:12]:
        assert person.last_name not in ids.text and person.email not in ids.text
    assert "names-purpose" not in ids.text

    trail = client.get("/exposure/customers", params={"customer_id": CUSTOMERS[3].customer_id})
    assert trail.text.count('data-testid="delivery-row"') == 2
    missing = client.get("/exposure/customers", params={"customer_id": "C-nobody"})
    assert "No customer in the directory" in missing.text


def test_the_dpo_sees_names_for_a_stated_purpose(
    client: TestClient, users: UserFactory, ledger: dict[str, Any], db: Session
) -> None:
    logged_in(client, users, "dpo")
    phone = ledger["phone"]
    page = client.get(f"/exposure/devices/{phone.id}/customers")
    assert "names-purpose" in page.text
    shown = client.post(
        f"/exposure/devices/{phone.id}/customers",
        data={
            "purpose": "Breach assessment INC-7",
            "offset": "0",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert shown.status_code == 200
    assert shown.text.count('data-testid="customer-name"') == 12
    assert f"{CUSTOMERS[0].first_name} {CUSTOMERS[0].last_name}" in shown.text
    assert CUSTOMERS[0].email not in shown.text  # names only
    actions = set(db.scalars(select(AuditEvent.action)))
    assert {"customers:contact:revealed", "exposure:device-customers:listed"} <= actions
    no_csrf = client.post(
        f"/exposure/devices/{phone.id}/customers", data={"purpose": "x", "offset": "0"}
    )
    assert no_csrf.status_code == 403


def test_who_may_see_the_pages(
    client: TestClient, users: UserFactory, ledger: dict[str, Any]
) -> None:
    logged_in(client, users, "helpdesk")
    phone = ledger["phone"]
    for path in ("/exposure", f"/exposure/devices/{phone.id}", "/exposure/customers"):
        assert client.get(path).status_code == 403, path
    assert 'href="/exposure"' not in client.get("/").text
    assert f'href="/exposure/devices/{phone.id}"' not in client.get(f"/devices/{phone.id}").text
    client.cookies.clear()
    logged_in(client, users, "auditor")
    assert client.get("/exposure").status_code == 200
    assert 'href="/exposure"' in client.get("/").text


def test_find_a_customer_by_a_value_that_is_not_kept(
    client: TestClient, users: UserFactory, ledger: dict[str, Any], db: Session
) -> None:
    logged_in(client, users, "security")
    page = client.get("/exposure/customers")
    token = csrf_from(page.text)
    person = CUSTOMERS[4]
    found = client.post(
        "/exposure/customers",
        data={"kind": "email", "value": person.email.upper(), "csrf_token": token},
    )
    assert found.status_code == 200
    assert found.text.count('data-testid="delivery-row"') == 2
    assert person.customer_id in found.text
    by_phone = client.post(
        "/exposure/customers", data={"kind": "phone", "value": person.phone, "csrf_token": token}
    )
    assert by_phone.text.count('data-testid="delivery-row"') == 2
    nobody = client.post(
        "/exposure/customers",
        data={"kind": "email", "value": "nobody@example.org", "csrf_token": token},
    )
    assert "No customer in the directory has that value" in nobody.text
    odd = client.post(
        "/exposure/customers", data={"kind": "postcode", "value": "SW1A 1AA", "csrf_token": token}
    )
    assert odd.status_code == 200 and "Search by e-mail" in odd.text
    # The value is in no URL and no audit record; the lookup itself is audited.
    looked_up = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "exposure:customer:looked-up")
    ).all()
    assert [e.details["found"] for e in looked_up] == [1, 1, 0]
    assert all(person.email.lower() not in str(e.details).lower() for e in looked_up)
