"""Story 1 end to end through the API, on SQLite and PostgreSQL: the marketing manager
loses her phone, which holds the spreadsheet of the top 1,000 customers.

Two companies play it. The careless one's phone is swipe-only and unencrypted: the exposure
is exactly those 1,000 customers, the risk is high, the regulator report is produced (JSON
and PDF), the dpo queues the notices, and the real ``spillguard notices worker --once``
delivers one notice to each customer at a real SMTP server (aiosmtpd on loopback) — each
exactly once. The compliant one's phone has a 6-digit PIN and encrypted storage, and its wipe
is acknowledged: the risk is low, notifying the individuals is likely not required
(Art 34(3)(a)), and queueing notices is refused without a stated reason. Both end with the
incident report as a PDF.

Everything goes through the HTTP API of the real app (FastAPI's TestClient); the phone
speaks the device protocol; the directory is imported from a CSV of 1,200 Faker en_GB
customers; the spreadsheet reaches the phone by mail through the real mail filter (SMTP on
loopback, next hop an aiosmtpd sink), which writes the exposure ledger. The careless
company has no compliance policy on the phone, so the filter lets the spreadsheet through;
the compliant one's phone meets its policy (PIN of 6, encryption), so it does too.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pypdf import PdfReader

from spillguard.core.keys import KeyRing
from spillguard.core.roles import Role
from spillguard.core.settings import Settings
from tests.conftest import TEST_MASTER_KEY
from tests.factories.customers import people, to_csv
from tests.factories.devices import (
    SECURE,
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.live import LOOPBACK, spillguard_env
from tests.functional.test_api_errors import assert_clean_problem
from tests.functional.test_incidents_api import acknowledge_all, incident_of, report_lost
from tests.functional.test_mail_filter import XLSX, Sink, build, send, start_filter
from tests.functional.test_notices_outbox import SmtpSink

DIRECTORY = people(1_200, seed=1)
TOP_CUSTOMERS = DIRECTORY[:1_000]
TOP_IDS = {p.customer_id for p in TOP_CUSTOMERS}
ORGANISATION = "Example Shop Ltd"
DPO_EMAIL = "dpo@shop.example"


MANAGER_EMAIL = "marketing.manager@corp.example"


@dataclass(frozen=True)
class Company:
    name: str
    posture: dict[str, Any]
    policy: dict[str, Any] | None  # the compliance policy on the phone, if any
    risk: str
    notify_individuals: bool


CARELESS = Company("careless", SWIPE_UNENCRYPTED, None, "high", True)
COMPLIANT = Company("compliant", SECURE, STRICT_POLICY, "low", False)


@pytest.fixture
def sink() -> Any:
    """Where the notices go: the customers' mail server."""
    with SmtpSink() as server:
        yield server


@pytest.fixture
def next_hop() -> Any:
    """Where the mail filter hands the company's own mail on (its mail server)."""
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, sink: SmtpSink, next_hop: Sink) -> Settings:
    return settings.model_copy(
        update={
            "mail_filter_next_hop": next_hop.address,
            "mail_filter_next_hop_timeout_seconds": 10,
            "organisation_name": ORGANISATION,
            "smtp_host": LOOPBACK,
            "smtp_port": sink.port,
            "smtp_from": "privacy@shop.example",
            "smtp_timeout_seconds": 5.0,
        }
    )


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF")
    return " ".join(
        " ".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(data)).pages
    )


def affected_ids(
    client: TestClient, headers: dict[str, str], incident_id: int, version: int
) -> set[str]:
    ids: list[str] = []
    while True:
        page = client.get(
            f"/api/v1/incidents/{incident_id}/assessments/{version}/customers",
            params={"limit": 500, "offset": len(ids)},
            headers=headers,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        ids.extend(body["items"])
        if not body["items"] or len(ids) >= body["total"]:
            break
    assert len(ids) == len(set(ids))  # each customer listed once
    return set(ids)


def run_worker(settings: Settings, database_url: str, home: Path, sink: SmtpSink) -> str:
    """The real sender: ``spillguard notices worker --once`` as its own process."""
    env = spillguard_env(
        home,
        database_url,
        master_key=TEST_MASTER_KEY,
        smtp_host=LOOPBACK,
        smtp_port=sink.port,
        smtp_from="privacy@shop.example",
        organisation_name=ORGANISATION,
        log_level="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-m", "spillguard", "notices", "worker", "--once", "--rate", "10000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("company", [CARELESS, COMPLIANT], ids=lambda c: c.name)
def test_story_1_the_lost_phone_from_report_to_notices(
    app: FastAPI,
    client: TestClient,
    users: UserFactory,
    settings: Settings,
    database_url: str,
    keys: KeyRing,
    sink: SmtpSink,
    next_hop: Sink,
    tmp_path: Path,
    company: Company,
) -> None:
    started = time.monotonic()
    dpo_user = users.create(Role.DPO, email=DPO_EMAIL)
    dpo = {"Authorization": f"Bearer {users.token(dpo_user)}"}
    admin, security, helpdesk = (users.auth(r) for r in ("admin", "security", "helpdesk"))

    # The company's customer directory: 1,200 customers with e-mail and postal addresses.
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(DIRECTORY), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text

    # The marketing manager's phone is enrolled (under the company's policy, if it has one)
    # and reports its posture.
    manager = users.create(Role.HELPDESK, email=MANAGER_EMAIL)
    phone: EnrolledDevice = enroll(client, create_enrollment(client, admin, manager.id)["token"])
    if company.policy is not None:
        policy = client.post("/api/v1/compliance-policies", json=company.policy, headers=admin)
        assert policy.status_code == 201, policy.text
        assigned = client.patch(
            f"/api/v1/devices/{phone.id}", json={"policy_id": policy.json()["id"]}, headers=admin
        )
        assert assigned.is_success, assigned.text
    assert phone.checkin(client, company.posture).status_code == 200

    # The top-1,000 spreadsheet reaches her phone by mail, through the real mail filter,
    # which records it in the exposure ledger.
    sheet = customers_xlsx(TOP_CUSTOMERS)
    message = build(to=[MANAGER_EMAIL], attachments=[("top-1000-customers.xlsx", sheet, XLSX)])
    mail_filter = start_filter(app, settings, keys)
    try:
        assert send(mail_filter, message, [MANAGER_EMAIL]) == {}
    finally:
        mail_filter.stop()
    (got,) = next_hop.received
    assert got.message["X-Spillguard-Action"] == "deliver"
    assert got.message["X-Spillguard-Customers"] == "1000"
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=security).json()
    assert on_phone["distinct_customers"] == 1_000

    # "I lost my phone": the helpdesk reports it; the phone checks in and locks ...
    report_lost(client, helpdesk, phone)
    incident = incident_of(client, security, phone)
    assert (incident["type"], incident["status"]) == ("lost-device", "open")
    url = f"/api/v1/incidents/{incident['id']}"
    assert set(acknowledge_all(client, phone, company.posture)) == {
        "lost_mode_on",
        "lock",
        "locate",
    }
    # ... then the admin wipes it, and the phone acknowledges the wipe.
    wipe = client.post(
        f"/api/v1/devices/{phone.id}/commands",
        json={"type": "wipe", "confirm_name": phone.name},
        headers=admin,
    )
    assert wipe.status_code in (200, 201), wipe.text
    assert acknowledge_all(client, phone, company.posture) == ["wipe"]
    summaries = [e["summary"] for e in client.get(f"{url}/timeline", headers=security).json()]
    assert "The phone acknowledged the lock command." in summaries
    assert "The phone acknowledged the wipe command." in summaries

    # The exposure: exactly the 1,000 customers of the spreadsheet.
    assessed = client.post(f"{url}/assessments", headers=security)
    assert assessed.status_code == 201, assessed.text
    assessment = assessed.json()
    assert assessment["customer_count"] == 1_000
    assert affected_ids(client, security, incident["id"], assessment["version"]) == TOP_IDS
    assert assessment["risk"] == company.risk
    assert assessment["notify_individuals"] is company.notify_individuals
    protections = assessment["facts"]["protections"]
    assert protections["lock_acknowledged_at"] and protections["wipe_acknowledged_at"]
    first_reason = assessment["reasons"][0]
    if company is CARELESS:
        assert assessment["notify_regulator"] is True
        assert "swipe" in first_reason and "not encrypted" in first_reason
    else:
        assert assessment["notify_regulator"] is False
        assert "likely not required (Art 34(3)(a))" in first_reason

    # The regulator report: pre-filled, submitted by the dpo, exported as JSON and PDF.
    report_url = f"{url}/regulator-report"
    drafted = client.post(f"{report_url}/draft", headers=dpo)
    assert drafted.status_code == 200, drafted.text
    fields = drafted.json()["fields"]
    assert fields["organisation"] == ORGANISATION
    assert fields["approx_people"] == 1_000
    assert DPO_EMAIL in fields["contact_point"]
    assert fields["people_told"] == ("planned" if company.notify_individuals else "not-required")
    submitted = client.post(f"{report_url}/submit", headers=dpo)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    exported = client.get(f"{report_url}/export.json", headers=security)
    assert exported.status_code == 200, exported.text
    assert exported.json()["fields"]["approx_people"] == 1_000
    report_pdf = client.get(f"{report_url}/export.pdf", headers=security)
    assert report_pdf.status_code == 200 and report_pdf.content.startswith(b"%PDF")
    report_text = pdf_text(report_pdf.content)
    assert ORGANISATION in report_text
    for customer in TOP_CUSTOMERS[:20]:  # the report counts people; it names none
        assert customer.email not in report_text and customer.name not in report_text

    # Customer notices.
    notices_url = f"{url}/notices"
    queued = client.post(notices_url, headers=dpo)
    if company.notify_individuals:
        assert queued.status_code == 200, queued.text
        assert queued.json() == {"email": 1_000, "letter": 0, "manual": 0, "already": 0}
        again = client.post(notices_url, headers=dpo)  # pressing twice queues nobody twice
        assert again.json() == {"email": 0, "letter": 0, "manual": 0, "already": 1_000}
        assert client.get(url, headers=security).json()["status"] == "notifying"

        out = run_worker(settings, database_url, tmp_path / "worker-home", sink)
        assert "sent 1000," in out, out
        received = sink.handler.per_recipient()
        assert received == {p.email: 1 for p in TOP_CUSTOMERS}  # each customer exactly once
        summary = client.get(f"{notices_url}/summary", headers=dpo).json()
        assert summary["total"] == 1_000 and summary["by_status"] == {"sent": 1_000}
        message = sink.handler.received[0].message
        assert ORGANISATION in message.get_content()
        # A second run finds nothing due: still one message each.
        assert "sent 0," in run_worker(settings, database_url, tmp_path / "worker-home", sink)
        assert len(sink.handler.received) == 1_000
    else:
        problem = assert_clean_problem(queued, 409)
        assert problem["type"].endswith("/notification-not-required")
        summary = client.get(f"{notices_url}/summary", headers=dpo).json()
        assert summary["total"] == 0
        assert sink.handler.received == []

    # The incident report for the meetings and the auditors.
    report = client.get(f"{url}/report.pdf", headers=security)
    assert report.status_code == 200, report.text
    text = pdf_text(report.content)
    assert "1,000" in text or "1000" in text
    if company.policy is None:  # the meetings' question: did we have a policy?
        assert "No compliance policy applied to this phone" in text
    else:
        assert f"Policy “{company.policy['name']}”" in text
    for customer in TOP_CUSTOMERS[:20]:
        assert customer.name not in text
    print(f"story 1 ({company.name}): {time.monotonic() - started:.1f} s")
