"""The download gateway on SQLite and PostgreSQL: a held document opens only on the
recipient's enrolled, compliant phone; refusals say in plain words what to change; each
download is a ledger delivery; links expire and can be withdrawn. The last test is the
story with the real agent: `spillguard agent fetch` refused on a swipe-only phone, then
accepted once a PIN is set, the document joining the phone's managed documents."""

from __future__ import annotations

import re
import socket
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.models import AuditEvent
from spillguard.exposure.models import Delivery, GatewayLink
from tests.factories.customers import people, to_csv
from tests.factories.devices import (
    SECURE,
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    create_enrollment,
    enroll,
)
from tests.factories.users import UserFactory
from tests.functional.test_agent import AgentCli, agent, api, enroll_url, live_app_url
from tests.functional.test_api_errors import assert_clean_problem

__all__ = ["agent", "api", "live_app_url"]  # fixtures, imported for pytest

CUSTOMERS = people(30, seed=91)
DOCUMENT = to_csv(CUSTOMERS[:20])


@pytest.fixture
def world(client: TestClient, users: UserFactory) -> dict[str, Any]:
    dpo = users.auth("dpo")
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(CUSTOMERS), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text
    admin = users.auth("admin")
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    owner = users.create("helpdesk")
    phone = enroll(client, create_enrollment(client, admin, owner.id)["token"])
    other_owner = users.create("helpdesk")
    other = enroll(client, create_enrollment(client, admin, other_owner.id)["token"])
    for device in (phone, other):
        assigned = client.patch(
            f"/api/v1/devices/{device.id}", json={"policy_id": policy["id"]}, headers=admin
        )
        assert assigned.is_success, assigned.text
        assert device.checkin(client, SECURE).status_code == 200
    security = users.auth("security")
    made = client.post(
        "/api/v1/exposure/links",
        params={"user_id": owner.id},
        files={"file": ("top customers.csv", DOCUMENT, "text/csv")},
        headers=security,
    )
    assert made.status_code == 201, made.text
    return {
        "security": security,
        "owner": owner,
        "phone": phone,
        "other": other,
        "link": made.json(),
    }


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_only_the_recipients_compliant_phone_gets_the_document(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    link, phone = world["link"], world["phone"]
    assert link["customer_count"] == 20 and link["label"] in {"confidential", "restricted"}
    assert re.fullmatch(r"http://[^/]+/gateway/[A-Za-z0-9_-]{40,}", link["url"])
    path = path_of(link["url"])

    # A swipe-only phone is refused with the reason in plain words, and nothing is recorded.
    assert phone.checkin(client, SWIPE_UNENCRYPTED).json()["compliance"]["compliant"] is False
    refused = client.get(path, headers=phone.headers)
    assert_clean_problem(refused, 403)
    detail = refused.json()["detail"]
    assert "swipe" in detail.lower() and "then try again" in detail
    assert db.scalar(select(Delivery).where(Delivery.channel == "gateway")) is None

    # Someone else's phone, even a compliant one, is refused.
    wrong = client.get(path, headers=world["other"].headers)
    assert_clean_problem(wrong, 403)
    assert "someone else" in wrong.json()["detail"]

    # The PIN is set: the phone checks in compliant and gets the document.
    assert phone.checkin(client, SECURE).json()["compliance"]["compliant"] is True
    got = client.get(path, headers=phone.headers)
    assert got.status_code == 200, got.text
    assert got.content == DOCUMENT
    assert got.headers["cache-control"] == "no-store"
    assert "filename*=UTF-8''top%20customers.csv" in got.headers["content-disposition"]
    assert got.headers["content-type"].startswith("text/csv")

    db.expire_all()
    delivery = db.scalar(select(Delivery).where(Delivery.channel == "gateway"))
    assert delivery is not None
    assert (delivery.device_id, delivery.user_id) == (phone.id, world["owner"].id)
    assert delivery.customer_count == 20
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=world["security"]).json()
    assert on_phone["distinct_customers"] == 20
    listed = client.get("/api/v1/exposure/links", headers=world["security"]).json()
    assert listed["items"][0]["downloads"] == 1
    assert "url" not in listed["items"][0]
    outcomes = [
        (e.action, e.outcome)
        for e in db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.like("exposure:gateway%"))
            .order_by(AuditEvent.id)
        )
    ]
    assert outcomes == [
        ("exposure:gateway-link:created", "success"),
        ("exposure:gateway:refused", "failure"),
        ("exposure:gateway:refused", "failure"),
        ("exposure:gateway:downloaded", "success"),
    ]


def test_withdrawn_and_expired_links_are_gone(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    link, phone, security = world["link"], world["phone"], world["security"]
    path = path_of(link["url"])
    db.execute(update(GatewayLink).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    expired = client.get(path, headers=phone.headers)
    assert_clean_problem(expired, 410)
    assert "expired" in expired.json()["detail"]
    db.execute(update(GatewayLink).values(expires_at=utcnow() + timedelta(days=1)))
    db.commit()
    assert client.get(path, headers=phone.headers).status_code == 200
    revoked = client.post(f"/api/v1/exposure/links/{link['id']}/revoke", headers=security)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    again = client.post(f"/api/v1/exposure/links/{link['id']}/revoke", headers=security)
    assert_clean_problem(again, 409)
    gone = client.get(path, headers=phone.headers)
    assert_clean_problem(gone, 410)
    assert "withdrawn" in gone.json()["detail"]


def test_bad_requests(client: TestClient, world: dict[str, Any], users: UserFactory) -> None:
    path, phone = path_of(world["link"]["url"]), world["phone"]
    assert_clean_problem(client.get(path), 401)
    browser = client.get(path, headers={"Accept": "text/html"})
    assert browser.status_code == 401 and "spillguard agent fetch" in browser.text
    assert_clean_problem(client.get(path, headers={"Authorization": "Device 1.nope"}), 401)
    unknown = client.get("/gateway/" + "A" * 43, headers=phone.headers)
    assert_clean_problem(unknown, 404)
    assert_clean_problem(client.get("/gateway/short", headers=phone.headers), 404)
    assert_clean_problem(client.get("/gateway/" + "x" * 201, headers=phone.headers), 422)
    # Making links: only exposure:record, only for an existing person.
    files = {"file": ("x.csv", DOCUMENT, "text/csv")}
    helpdesk = users.auth("helpdesk")
    assert_clean_problem(
        client.post("/api/v1/exposure/links", params={"user_id": 1}, files=files, headers=helpdesk),
        403,
    )
    missing = client.post(
        "/api/v1/exposure/links",
        params={"user_id": 987654},
        files=files,
        headers=world["security"],
    )
    assert_clean_problem(missing, 422)
    assert_clean_problem(
        client.post("/api/v1/exposure/links/987654/revoke", headers=world["security"]), 404
    )


def test_a_download_without_a_working_device_credential_is_audited(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    """A 401 is a refusal like the others: exposure:gateway:refused, committed, naming the
    link by id (never its secret), no device, and the same answer whether the link exists."""
    link = world["link"]
    path = path_of(link["url"])
    secret = path.rsplit("/", 1)[1]
    assert_clean_problem(client.get(path), 401)
    browser = client.get(path, headers={"Accept": "text/html"})
    assert browser.status_code == 401 and "spillguard agent fetch" in browser.text
    assert_clean_problem(client.get(path, headers={"Authorization": "Device 1.nope"}), 401)
    unknown_link = client.get("/gateway/" + "A" * 43)
    assert_clean_problem(unknown_link, 401)

    db.expire_all()
    events = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "exposure:gateway:refused")
        .order_by(AuditEvent.id)
    ).all()
    no_credential = {"device_id": None, "reason": "no device credential"}
    refused_credential = {"device_id": None, "reason": "device credential refused"}
    link_id = str(link["id"])
    assert [(e.object_type, e.object_id, e.details) for e in events] == [
        ("gateway-link", link_id, no_credential),
        ("gateway-link", link_id, no_credential),  # the browser's help page
        ("gateway-link", link_id, refused_credential),
        ("gateway-link", None, no_credential),  # no such link
    ]
    assert {(e.outcome, e.actor_type) for e in events} == {("failure", "anonymous")}
    for event in events:
        assert secret not in repr([getattr(event, c.key) for c in AuditEvent.__table__.columns])


def test_days_sets_how_long_a_link_works(client: TestClient, world: dict[str, Any]) -> None:
    """docs/exposure.md: `days` (1 to 365) instead of gateway_link_days (14)."""
    owner, security = world["owner"], world["security"]
    default = world["link"]
    default_days = datetime.fromisoformat(default["expires_at"]) - datetime.fromisoformat(
        default["created_at"]
    )
    assert abs(default_days - timedelta(days=14)) < timedelta(minutes=1)
    made = client.post(
        "/api/v1/exposure/links",
        params={"user_id": owner.id, "days": 3},
        files={"file": ("x.csv", DOCUMENT, "text/csv")},
        headers=security,
    )
    assert made.status_code == 201, made.text
    link = made.json()
    lasts = datetime.fromisoformat(link["expires_at"]) - datetime.fromisoformat(link["created_at"])
    assert abs(lasts - timedelta(days=3)) < timedelta(minutes=1)
    for days in (0, 366):
        refused = client.post(
            "/api/v1/exposure/links",
            params={"user_id": owner.id, "days": days},
            files={"file": ("x.csv", DOCUMENT, "text/csv")},
            headers=security,
        )
        assert_clean_problem(refused, 422)


def test_the_story_with_the_real_agent(
    agent: AgentCli, api: httpx2.Client, users: UserFactory, live_app_url: str
) -> None:
    imported = api.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(CUSTOMERS), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    assert imported.status_code == 201, imported.text
    issued = api.post("/api/v1/enrollments", json={"user_id": users.create("helpdesk").id})
    assert issued.status_code == 201, issued.text
    owner_id = issued.json()["user_id"]
    enrolled = agent("enroll", enroll_url(live_app_url, issued.json()["token"]))
    device_id = int(re.search(r"Enrolled as device (\d+)", enrolled.stdout).group(1))  # type: ignore[union-attr]
    policy = api.post("/api/v1/compliance-policies", json=STRICT_POLICY).json()
    assert api.patch(f"/api/v1/devices/{device_id}", json={"policy_id": policy["id"]}).is_success
    agent.edit_posture(passcode={"type": "swipe", "length": None})
    agent("run", "--once")
    security = users.auth("security")
    made = api.post(
        "/api/v1/exposure/links",
        params={"user_id": owner_id},
        files={"file": ("renewals.csv", DOCUMENT, "text/csv")},
        headers=security,
    )
    assert made.status_code == 201, made.text
    url = made.json()["url"]

    # A look-alike link (another host or port: a phishing mail) or another path of the
    # server: refused before anything is sent; the trap never sees a connection.
    with socket.create_server(("127.0.0.1", 0)) as trap:
        trap.settimeout(0.3)
        parts = urlsplit(url)
        for bad in (
            f"http://127.0.0.1:{trap.getsockname()[1]}{parts.path}",
            f"{parts.scheme}://{parts.netloc}/api/v1/me",
        ):
            line = agent("fetch", bad, code=1, process=True).stderr.strip()
            assert "is not a gateway link of the server this device is enrolled with" in line
            assert line.startswith("error: refused: ") and "\n" not in line
        with pytest.raises(TimeoutError):
            trap.accept()

    refused = agent("fetch", url, code=1, process=True)
    line = refused.stderr.strip()
    assert line.startswith("error: download refused: Passcode is a swipe"), line
    assert line.endswith("then try again.") and "\n" not in line

    agent.edit_posture(passcode={"type": "pin", "length": 6})
    agent("run", "--once")
    fetched = agent("fetch", url)
    assert "fetched renewals.csv" in fetched.stdout
    documents = {d["file_name"]: d for d in agent.simulated["managed_documents"]}
    assert documents["renewals.csv"]["size"] == len(DOCUMENT)
    agent("run", "--once")  # the next check-in reports it
    reported = api.get(f"/api/v1/devices/{device_id}").json()["posture"]["managed_documents"]
    assert "renewals.csv" in {d["file_name"] for d in reported}
    ledger = api.get(f"/api/v1/exposure/devices/{device_id}", headers=security).json()
    assert ledger["distinct_customers"] == 20
