"""Documents of the breach response through the real app: the regulator report (drafted,
edited, submitted, followed up, exported as JSON and PDF), the incident report (PDF and
HTML), customer letters (PDF, the dpo only), notice templates (an unknown placeholder is
refused when saved) and the escalation roster with its acknowledgement link."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.incidents.escalation import send_escalations
from spillguard.incidents.mailer import MemoryMailSender
from spillguard.incidents.models import Incident, IncidentNotice, TimelineEntry
from spillguard.incidents.outbox import NoticeService, Outbox
from tests.factories.customers import people
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem
from tests.functional.test_notices_outbox import make_incident, seed_customers

PERSONS = people(8, seed=71)
LETTER_ONLY = {p.customer_id for p in PERSONS[5:7]}
UNREACHABLE = {PERSONS[7].customer_id}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"organisation_name": "Example Shop Ltd", "smtp_from": "privacy@shop.example"}
    )


@pytest.fixture
def world(app: FastAPI, db: Session, keys: KeyRing, users: UserFactory) -> dict[str, Any]:
    dpo_user = users.create(Role.DPO, email="dpo@shop.example")
    seed_customers(db, keys, PERSONS, letter_only=LETTER_ONLY, unreachable=UNREACHABLE)
    incident = make_incident(db, [p.customer_id for p in PERSONS])
    db.commit()
    return {
        "incident": incident.id,
        "dpo_user": dpo_user,
        "dpo": {"Authorization": f"Bearer {users.token(dpo_user)}"},
        "security": users.auth(Role.SECURITY),
        "auditor": users.auth(Role.AUDITOR),
    }


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def squash(text: str) -> str:
    return " ".join(text.split())


def send_all(app: FastAPI, settings: Settings, keys: KeyRing) -> MemoryMailSender:
    sender = MemoryMailSender()
    Outbox(app.state.session_factory, settings, keys, sender).drain()
    return sender


def test_the_regulator_report_is_drafted_edited_submitted_and_followed_up(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    base = f"/api/v1/incidents/{world['incident']}/regulator-report"
    assert client.get(base, headers=world["dpo"]).status_code == 404  # nothing yet
    drafted = client.post(f"{base}/draft", headers=world["dpo"])
    assert drafted.status_code == 200, drafted.text
    report = drafted.json()
    fields = report["fields"]
    assert (report["version"], report["status"]) == (1, "draft")
    assert fields["organisation"] == "Example Shop Ltd"
    assert fields["approx_people"] == len(PERSONS)
    assert fields["data_categories"] == ["e-mail addresses", "phone numbers"]
    assert fields["contact_point"] == "The Data Protection Officer, dpo@shop.example"
    assert fields["people_told"] == "planned"
    assert "likely" not in fields["likely_consequences"].lower() or fields["likely_consequences"]

    # Only the dpo edits; bad answers are a problem naming the field.
    refused = client.patch(
        base, json={"fields": {"measures_taken": "x"}}, headers=world["security"]
    )
    assert refused.status_code == 403
    bad = client.patch(base, json={"fields": {"approx_people": -1}}, headers=world["dpo"])
    assert_clean_problem(bad, 422)
    assert bad.json()["field"] == "approx_people"
    unknown = client.patch(base, json={"fields": {"favourite_colour": "red"}}, headers=world["dpo"])
    assert_clean_problem(unknown, 422)
    edited = client.patch(
        base,
        json={"fields": {"measures_proposed": "Encryption on every phone by Friday."}},
        headers=world["dpo"],
    )
    assert edited.json()["fields"]["measures_proposed"] == "Encryption on every phone by Friday."

    submitted = client.post(f"{base}/submit", headers=world["dpo"])
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    db.expire_all()
    assert db.get(Incident, world["incident"]).regulator_notified_at is not None  # type: ignore[union-attr]
    # A submitted version is a record: it is not edited; a follow-up carries its answers.
    assert client.post(f"{base}/submit", headers=world["dpo"]).status_code == 409
    follow = client.post(f"{base}/draft", headers=world["dpo"]).json()
    assert (follow["version"], follow["status"]) == (2, "draft")
    assert follow["fields"]["measures_proposed"] == "Encryption on every phone by Friday."
    client.patch(base, json={"fields": {"people_told": "yes"}}, headers=world["dpo"])
    assert client.post(f"{base}/submit", headers=world["dpo"]).json()["status"] == "follow-up"
    versions = client.get(f"{base}/versions", headers=world["auditor"]).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "submitted"), (2, "follow-up")]
    assert versions[0]["fields"]["people_told"] == "planned"  # version 1 unchanged

    exported = client.get(f"{base}/export.json", params={"version": 1}, headers=world["auditor"])
    assert exported.status_code == 200
    assert exported.json()["fields"]["approx_people"] == len(PERSONS)
    assert exported.json()["questions"]["approx_people"].startswith("Approximate number")
    pdf = client.get(f"{base}/export.pdf", headers=world["auditor"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = squash(pdf_text(pdf.content))
    assert "Personal data breach report" in text and "version 2" in text
    assert "Encryption on every phone by Friday." in text
    assert "Have the people affected been told yes" in text
    actions = {e.action for e in db.scalars(select(AuditEvent))}
    assert {
        "incidents:regulator-report:drafted",
        "incidents:regulator-report:edited",
        "incidents:regulator-report:submitted",
        "incidents:regulator-report:exported",
    } <= actions


def test_the_incident_report_pdf_and_html_count_customers_and_never_name_them(
    app: FastAPI,
    client: TestClient,
    world: dict[str, Any],
    db: Session,
    settings: Settings,
    keys: KeyRing,
) -> None:
    dpo = Principal("user", world["dpo_user"].id, "dpo@shop.example", Role.DPO)
    NoticeService(db, dpo, settings, keys).enqueue(world["incident"])
    db.commit()
    sender = send_all(app, settings, keys)
    assert len(sender.sent) == 5
    client.post(
        "/api/v1/escalation-contacts",
        json={
            "name": "Chief Operating Officer",
            "email": "coo@shop.example",
            "role_title": "COO",
            "min_severity": "high",
        },
        headers=world["security"],
    )
    send_escalations(db, settings, keys, MemoryMailSender())
    db.commit()

    response = client.get(
        f"/api/v1/incidents/{world['incident']}/report.pdf", headers=world["auditor"]
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment;")
    text = squash(pdf_text(response.content))
    for heading in (
        "Summary",
        "Exposure",
        "Protections in place and policies that applied",
        "Decisions",
        "Notifications",
        "Timeline",
    ):
        assert heading in text, heading
    assert f"Customers affected {len(PERSONS)}" in text
    assert "sent 5" in text and "manual 1" in text and "queued 2" in text
    assert "Chief Operating Officer (COO): told" in text
    assert "No device is involved" in text or "No posture" in text
    assert "Customer notices queued by dpo@shop.example" in text  # a decision, who and when
    html = client.get(
        f"/api/v1/incidents/{world['incident']}/report.html", headers=world["auditor"]
    )
    assert html.status_code == 200 and "<h2>Decisions</h2>" in html.text
    for person in PERSONS:
        for value in (person.email, person.name, person.address, person.customer_id):
            assert value not in text and value not in html.text
    exports = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "incidents:report:exported")
    ).all()
    assert sorted(e.details["format"] for e in exports) == ["html", "pdf"]
    # Nobody without incident rights gets it.
    helpdesk = UserFactory(db, keys).auth(Role.HELPDESK)
    assert (
        client.get(
            f"/api/v1/incidents/{world['incident']}/report.pdf", headers=helpdesk
        ).status_code
        == 403
    )


def test_letters_are_a_pdf_for_the_dpo_only_and_are_recorded_as_posted(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    base = f"/api/v1/incidents/{world['incident']}/notices"
    queued = client.post(base, headers=world["dpo"])
    assert queued.json() == {"email": 5, "letter": 2, "manual": 1, "already": 0}
    assert client.get(f"{base}/letters.pdf", headers=world["security"]).status_code == 403
    letters = client.get(f"{base}/letters.pdf", headers=world["dpo"])
    assert letters.status_code == 200
    reader = PdfReader(io.BytesIO(letters.content))
    pages = [squash(page.extract_text() or "") for page in reader.pages]
    text = squash(pdf_text(letters.content))
    for person in PERSONS[5:7]:
        # Each letter starts a page, with the name and address at the top.
        (first,) = [p for p in pages if f"Dear {person.name}," in p]
        assert first.index(person.name) < first.index("Dear ")
        assert squash(person.address.split(",")[0]) in first
    assert "Example Shop Ltd" in text and "ico.org.uk" in text
    for person in PERSONS[:5]:
        assert person.name not in text
    assert db.scalars(
        select(AuditEvent).where(AuditEvent.action == "incidents:notices:letters-printed")
    ).one().details == {"letters": 2}
    summary = client.get(f"{base}/summary", headers=world["auditor"]).json()
    assert summary["by_channel"] == {"email": 5, "letter": 2, "manual": 1}
    follow = client.get(f"{base}/follow-ups", headers=world["auditor"]).json()
    assert sorted(n["channel"] for n in follow) == ["letter", "letter", "manual"]
    posted = client.post(f"{base}/letters/posted", headers=world["dpo"])
    assert posted.json() == {"posted": 2}
    letter_rows = db.scalars(select(IncidentNotice).where(IncidentNotice.channel == "letter"))
    assert {n.status for n in letter_rows} == {"sent"}


def test_queueing_again_and_a_low_risk_incident_through_the_api(
    client: TestClient, world: dict[str, Any], db: Session
) -> None:
    base = f"/api/v1/incidents/{world['incident']}/notices"
    assert client.post(base, headers=world["security"]).status_code == 403
    assert client.post(base, headers=world["dpo"]).status_code == 200
    assert client.post(base, headers=world["dpo"]).json()["already"] == len(PERSONS)
    listed = client.get(base, params={"status": "manual"}, headers=world["auditor"]).json()
    assert [n["customer_id"] for n in listed["items"]] == sorted(UNREACHABLE)
    bad = client.get(base, params={"status": "lost"}, headers=world["auditor"])
    assert_clean_problem(bad, 422)
    low = make_incident(db, [PERSONS[0].customer_id], notify_individuals=False)
    db.commit()
    refused = client.post(f"/api/v1/incidents/{low.id}/notices", headers=world["dpo"])
    assert_clean_problem(refused, 409)
    assert "need not be told" in refused.json()["detail"]


def test_a_template_with_an_unknown_placeholder_is_refused_when_saved(
    app: FastAPI,
    client: TestClient,
    world: dict[str, Any],
    db: Session,
    settings: Settings,
    keys: KeyRing,
) -> None:
    body = "Dear {{ customer_name }},\n{{ what_happened }}\nCall {{ contact_point }}.\n"
    refused = client.post(
        "/api/v1/notice-templates",
        json={
            "name": "Short",
            "channel": "email",
            "subject": "About {{ incident_reference }}",
            "body": body + "Your card {{ card_number }} is safe.",
        },
        headers=world["dpo"],
    )
    assert_clean_problem(refused, 422)
    assert refused.json()["unknown"] == ["card_number"] and refused.json()["field"] == "body"
    syntax = client.post(
        "/api/v1/notice-templates",
        json={"name": "Broken", "channel": "email", "subject": "Hi", "body": "{% if %}"},
        headers=world["dpo"],
    )
    assert_clean_problem(syntax, 422)
    sandbox = client.post(
        "/api/v1/notice-templates/preview",
        json={"subject": "x", "body": "{{ customer_name.__class__.__mro__ }}"},
        headers=world["dpo"],
    )
    assert_clean_problem(sandbox, 422)
    assert client.get("/api/v1/notice-templates", headers=world["dpo"]).json() == []

    saved = client.post(
        "/api/v1/notice-templates",
        json={
            "name": "Short",
            "channel": "email",
            "subject": "About {{ incident_reference }}",
            "body": body,
        },
        headers=world["dpo"],
    )
    assert saved.status_code == 201, saved.text
    preview = client.post(
        "/api/v1/notice-templates/preview",
        json={"subject": "About {{ incident_reference }}", "body": body},
        headers=world["auditor"],
    ).json()
    assert preview["body"].startswith("Dear Alex Example,")
    client.post(
        f"/api/v1/incidents/{world['incident']}/notices",
        json={"email_template_id": saved.json()["id"]},
        headers=world["dpo"],
    )
    sender = send_all(app, settings, keys)
    assert {m["Subject"] for m in sender.sent} == {f"About INC-{world['incident']}"}
    first = sender.sent[0].get_payload(decode=True).decode()
    assert first.startswith("Dear ") and "Call The Data Protection Officer" in first


def test_escalation_roster_mail_and_acknowledgement_link(
    client: TestClient, world: dict[str, Any], db: Session, settings: Settings, keys: KeyRing
) -> None:
    bad = client.post(
        "/api/v1/escalation-contacts",
        json={"name": "X", "email": "not an address", "role_title": "PR", "min_severity": "high"},
        headers=world["security"],
    )
    assert_clean_problem(bad, 422)
    for name, severity in (("Counsel", "high"), ("Press office", "critical")):
        added = client.post(
            "/api/v1/escalation-contacts",
            json={
                "name": name,
                "email": f"{name.split()[0].lower()}@shop.example",
                "role_title": name,
                "min_severity": severity,
            },
            headers=world["security"],
        )
        assert added.status_code == 201, added.text
    sender = MemoryMailSender()
    assert send_escalations(db, settings, keys, sender) == 1  # the incident is high
    db.commit()
    assert send_escalations(db, settings, keys, sender) == 0  # once
    (message,) = sender.sent
    assert message["To"] == "counsel@shop.example"
    link = re.search(r"http://\S+/escalation/ack/(\S+)", message.get_content())
    assert link
    path = f"/escalation/ack/{link.group(1)}"
    assert client.get("/escalation/ack/not-a-real-token").status_code == 404
    page = client.get(path)
    assert page.status_code == 200 and "I have seen this" in page.text
    db.expire_all()
    acked = client.get(
        f"/api/v1/incidents/{world['incident']}/escalations", headers=world["auditor"]
    )
    assert acked.json()[0]["acknowledged_at"] is None  # opening the link is not acknowledging
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    done = client.post(path, data={"csrf_token": token.group(1)})
    assert done.status_code == 200 and "Acknowledged" in done.text
    client.post(path, data={"csrf_token": token.group(1)})  # twice: recorded once
    rows = client.get(
        f"/api/v1/incidents/{world['incident']}/escalations", headers=world["auditor"]
    )
    assert rows.json()[0]["acknowledged_at"] is not None
    entries = [
        e.summary
        for e in db.scalars(
            select(TimelineEntry).where(TimelineEntry.incident_id == world["incident"])
        )
    ]
    assert entries.count("Escalation acknowledged by Counsel (Counsel).") == 1
    assert any(s.startswith("Escalated to Counsel") for s in entries)


def test_the_console_pages_walk_report_notices_templates_and_roster(
    client: TestClient, world: dict[str, Any], db: Session, users: UserFactory
) -> None:
    from tests.functional.test_console import csrf_from, login

    assert login(client, "dpo@shop.example").status_code == 303
    incident = world["incident"]

    def post(path: str, data: dict[str, str], page: str) -> Any:
        token = csrf_from(client.get(page).text)
        return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)

    page = f"/incidents/{incident}/regulator-report"
    assert "Draft the report" in client.get(page).text
    assert post(page, {"action": "draft"}, page).status_code == 303
    form = client.get(page).text
    assert "Example Shop Ltd" in form and 'data-testid="report-form"' in form
    saved = post(
        page,
        {
            "action": "submit",
            "organisation": "Example Shop Ltd",
            "what_happened": "A phone was lost.",
            "contact_point": "dpo@shop.example",
            "approx_people": "8",
            "data_categories": "names, e-mail addresses",
            "people_told": "planned",
        },
        page,
    )
    assert saved.status_code == 303, saved.text
    assert 'data-testid="version-status">submitted' in client.get(page).text
    assert client.get(f"{page}.pdf").headers["content-type"] == "application/pdf"
    assert client.get(f"{page}.json").json()["fields"]["data_categories"] == [
        "names",
        "e-mail addresses",
    ]

    notices = f"/incidents/{incident}/notices"
    assert "Notify customers" in client.get(notices).text
    assert post(notices, {}, notices).status_code == 303
    listing = client.get(notices).text
    assert 'data-testid="count-queued"' in listing and 'data-testid="count-manual"' in listing
    assert 'data-testid="letters-pdf"' in listing

    templates = "/notices/templates"
    refused = post(
        templates,
        {"name": "T", "channel": "email", "subject": "Hi", "body": "Dear {{ customer_nmae }}"},
        templates,
    )
    assert refused.status_code == 422 and "customer_nmae" in refused.text
    assert "Dear {{ customer_nmae }}" in refused.text  # what was typed is kept
    ok = post(
        templates,
        {"name": "T", "channel": "letter", "subject": "Hi", "body": "Dear {{ customer_name }}"},
        templates,
    )
    assert ok.status_code == 303

    report = client.get(f"/incidents/{incident}/report")
    assert report.status_code == 200 and 'data-testid="report-decisions"' in report.text
    assert "Customer notices queued by dpo@shop.example" in report.text
    assert client.get(f"/incidents/{incident}/report.pdf").content.startswith(b"%PDF-")

    roster = "/notices/escalation"
    assert client.get(roster).status_code == 200
    added = post(
        roster,
        {
            "name": "IT Director",
            "email": "itd@shop.example",
            "role_title": "IT",
            "min_severity": "medium",
        },
        roster,
    )
    assert added.status_code == 303
    assert "IT Director" in client.get(roster).text
