"""The audit console through the real HTTP app (issue 7 §6): the audit-event browser with
ingested access events, its CSV/JSON export (console and API), the checkpoint history,
the access sources, the alerts queue and triage, and a person's activity page; each page
for the roles that may and may not open it, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest
from faker import Faker
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spillguard.audit.alerts import raise_alert
from spillguard.audit.browse import LOG_VERIFIED_ACTION
from spillguard.audit.ingest import AccessIngestService
from spillguard.audit.log import sequence
from spillguard.audit.models import AccessEvent, Alert, Checkpoint, StaffMember
from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.customers.services import CustomerImportService
from spillguard.incidents.models import Incident
from tests.factories.customers import people, to_csv
from tests.factories.users import UserFactory
from tests.functional.test_console import HTML, csrf_from, logged_in

fake = Faker("en_GB")
ROW = re.compile(r'<tr data-testid="audit-row">(.*?)</tr>', re.S)


@pytest.fixture
def console(client: TestClient) -> TestClient:
    client.headers.update(HTML)
    return client


def ingest(
    db: Session,
    settings: Settings,
    keys: KeyRing,
    items: list[dict[str, Any]],
    source: str = "crm",
) -> list[AccessEvent]:
    """Ingest through the real service (as the REST API does) and commit."""
    svc = AccessIngestService(db, settings, keys, Principal.system("tests"))
    result = svc.ingest(source, items, "rest", rate_limit="off")
    db.commit()
    return result.events


def access_item(actor: str, when: datetime, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"evt-{fake.uuid4()}",
        "time": when.isoformat(),
        "actor": actor,
        "action": "view",
        "system": "crm",
        "record_type": "contract-renewal",
    }
    item.update(extra)
    return item


def customer_refs(n: int) -> list[str]:
    return [f"C{fake.unique.random_int(100000, 999999)}" for _ in range(n)]


def actor_name() -> str:
    return f"{fake.user_name()}.{fake.random_int(100, 999)}@staff.example.co.uk"


# Audit-event browser ---------------------------------------------------------------------
def test_ingested_access_events_are_browsable_without_query_text(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = actor_name()
    secret_search = f"{fake.last_name()} {fake.postcode()}"
    many = customer_refs(40)
    ingest(
        db,
        settings,
        keys,
        [
            access_item(actor, utcnow() - timedelta(minutes=5), customer_ids=many),
            access_item(
                actor,
                utcnow() - timedelta(minutes=4),
                action="search",
                query=secret_search,
                result_count=12,
            ),
        ],
    )
    logged_in(console, users, "auditor")

    page = console.get("/audit", params={"action": "audit:access"})
    assert page.status_code == 200
    rows = ROW.findall(page.text)
    assert len(rows) == 2
    assert all("audit:access:" in r and actor in r and "(access log)" in r for r in rows)
    viewed = next(r for r in rows if "audit:access:view" in r)
    # 40 ids: the first few and the count, not a wall of ids.
    assert "… (40)" in viewed and many[0] in viewed and many[-1] not in viewed
    searched = next(r for r in rows if "audit:access:search" in r)
    assert "query_digest=" in searched
    assert secret_search not in page.text, "a query's text reached the page"

    by_actor = console.get("/audit", params={"actor": actor, "object_type": "customer"})
    assert len(ROW.findall(by_actor.text)) == 2
    platform = console.get("/audit", params={"action": "core:"})
    assert ROW.findall(platform.text) and actor not in platform.text
    # The filter suggests the actions that occur, access actions included.
    assert '<option value="audit:access:search">' in page.text


def test_time_range_filter_takes_dates_and_times(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    logged_in(console, users, "admin")
    now = utcnow()
    later = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert ROW.findall(console.get("/audit", params={"since": now.date().isoformat()}).text)
    assert "No events match." in console.get("/audit", params={"since": later}).text
    bad = console.get("/audit", params={"since": "2026-01-02", "until": "2026-01-01"})
    assert bad.status_code == 422 and "before" in bad.text
    assert console.get("/audit", params={"until": "soon"}).status_code == 422


@pytest.mark.parametrize("role", ["security", "dpo", "helpdesk"])
def test_roles_without_audit_view_cannot_browse_or_export(
    console: TestClient, users: UserFactory, role: str
) -> None:
    logged_in(console, users, role)
    for path in ["/audit", "/audit/export?format=csv", "/audit/checkpoints"]:
        response = console.get(path)
        assert response.status_code == 403, path
        assert "may not" in response.text


# Export ----------------------------------------------------------------------------------
def test_csv_export_streams_the_filtered_events_and_is_audited(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    formula_actor = '=HYPERLINK("http://evil.example")'
    ingest(db, settings, keys, [access_item(formula_actor, utcnow(), customer_ids=["C1"])])
    auditor = logged_in(console, users, "auditor")
    page = console.get("/audit", params={"action": "audit:access"})
    assert 'data-testid="export-csv"' in page.text
    link = re.search(r'href="(/audit/export\?[^"]*format=csv)"', page.text)
    assert link

    response = console.get(link.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["audit:access:view"]
    assert rows[0]["actor_label"] == "'" + formula_actor, "a formula must not reach a spreadsheet"
    assert json.loads(rows[0]["details"])["customer_ids"] == ["C1"]
    assert response.headers["x-spillguard-events"] == "1"

    db.rollback()
    (exported,) = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit:events:exported")
    ).all()
    assert exported.actor_label == auditor.email
    assert exported.details["format"] == "csv"
    assert exported.details["events"] == 1
    assert exported.details["filter"] == {"action": "audit:access"}


def test_json_export_is_oldest_first_and_excludes_its_own_event(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    logged_in(console, users, "admin")
    users.create("helpdesk")
    response = console.get("/audit/export", params={"format": "json", "action": "core:"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    events = response.json()
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(ids) >= 3
    assert {"core:user:created", "core:login:succeeded"} <= {e["action"] for e in events}
    assert all(e["action"] != "audit:events:exported" for e in events)
    # A second export sees the first one's event.
    again = console.get("/audit/export", params={"format": "json", "action": "audit:events"})
    assert [e["action"] for e in again.json()] == ["audit:events:exported"]


def test_export_with_bad_input_is_a_clear_error(console: TestClient, users: UserFactory) -> None:
    logged_in(console, users, "auditor")
    assert console.get("/audit/export", params={"format": "xml"}).status_code == 422
    response = console.get("/audit/export", params={"since": "tomorrow-ish"})
    assert response.status_code == 422 and "since must be a date" in response.text


def test_api_export_needs_a_token_with_audit_view(
    client: TestClient, users: UserFactory, db: Session
) -> None:
    url = "/api/v1/audit-events/export"
    assert client.get(url).status_code == 401
    refused = client.get(url, headers=users.auth("security"))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"

    headers = users.auth("auditor")
    as_json = client.get(url, params={"action": "core:user:created"}, headers=headers)
    assert as_json.status_code == 200
    created = as_json.json()
    assert created and all(e["action"] == "core:user:created" for e in created)
    as_csv = client.get(url, params={"format": "csv", "outcome": "success"}, headers=headers)
    assert as_csv.text.splitlines()[0].startswith("id,occurred_at,action,outcome")

    bad = client.get(url, params={"format": "pdf"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["type"].endswith("invalid-input")
    naive = client.get(url, params={"since": "2026-01-01T00:00:00"}, headers=headers)
    assert naive.status_code == 422
    db.rollback()
    exports = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit:events:exported")
    ).all()
    assert [e.details["format"] for e in exports] == ["json", "csv"]


# Checkpoints -----------------------------------------------------------------------------
def _sequence(db: Session, keys: KeyRing, settings: Settings, now: datetime) -> None:
    sequence(db, keys, settings, now=now)
    db.commit()


def test_checkpoint_history_shows_each_checkpoint_verified(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    logged_in(console, users, "auditor")
    empty = console.get("/audit/checkpoints")
    assert empty.status_code == 200
    assert "No checkpoint yet" in empty.text
    assert "spillguard audit verify" in empty.text, "without a record, say how to verify"
    assert "Offline verification procedure" in empty.text

    start = utcnow()
    _sequence(db, keys, settings, start)
    users.create("helpdesk")
    _sequence(db, keys, settings, start + timedelta(hours=1))
    page = console.get("/audit/checkpoints").text
    rows = re.findall(
        r'<tr data-testid="checkpoint-row"[^>]*data-ok="(\w+)">(.*?)</tr>', page, re.S
    )
    assert len(rows) == 2
    (newer_ok, newer), (older_ok, older) = rows
    assert newer_ok == older_ok == "yes"
    assert "valid" in newer and "matches" in newer and ">yes<" in newer
    assert "first checkpoint" in older

    # A checkpoint re-signed by someone else (or its root edited) shows as such.
    newest = db.scalar(select(Checkpoint.id).order_by(Checkpoint.tree_size.desc()).limit(1))
    db.execute(update(Checkpoint).where(Checkpoint.id == newest).values(signature=bytes(64)))
    db.commit()
    tampered = console.get("/audit/checkpoints").text
    first_row = re.search(r'data-ok="(\w+)">(.*?)</tr>', tampered, re.S)
    assert first_row and first_row.group(1) == "no" and "invalid" in first_row.group(2)


def test_checkpoint_page_shows_the_last_recorded_full_verification(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    class CliAction(StrEnum):
        VERIFIED = LOG_VERIFIED_ACTION

    record_event(
        db,
        Principal.system("cli"),
        CliAction.VERIFIED,
        details={"entries": 1234, "checkpoints": 5},
    )
    db.commit()
    logged_in(console, users, "admin")
    section = console.get("/audit/checkpoints").text.split('data-testid="last-verify"', 1)[1]
    assert "passed" in section and "entries 1234" in section


# Access sources --------------------------------------------------------------------------
def test_sources_show_counters_and_refused_events_by_digest(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = actor_name()
    good = access_item(actor, utcnow(), customer_ids=["C42"])
    ingest(db, settings, keys, [good, good, {"id": "x", "actor": actor}], source="billing")
    for role in ("security", "dpo", "auditor"):
        console.cookies.clear()
        logged_in(console, users, role)
        page = console.get("/audit/sources")
        assert page.status_code == 200, role
        (row,) = re.findall(r'<tr data-testid="source-row">(.*?)</tr>', page.text, re.S)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        assert "billing" in cells[0]
        assert cells[1:4] == ["1", "1", '<span class="status-bad">1</span>']
        (reject,) = re.findall(r'<tr data-testid="reject-row">(.*?)</tr>', page.text, re.S)
        assert "item 2" in reject and re.search(r"<code>[0-9a-f]{64}</code>", reject)
    filtered = console.get("/audit/sources", params={"source": "crm"})
    assert "Nothing refused." in filtered.text
    console.cookies.clear()
    logged_in(console, users, "helpdesk")
    assert console.get("/audit/sources").status_code == 403


# Alerts ----------------------------------------------------------------------------------
def make_alert(
    db: Session,
    *,
    severity: str,
    score: float,
    actor: str,
    events: Sequence[AccessEvent] = (),
    detector: str = "volume",
) -> Alert:
    alert = raise_alert(
        db,
        detector=detector,
        dedup_key=f"{detector}:{actor}:{fake.uuid4()}",
        severity=severity,
        score=score,
        title=f"{actor} touched far more records than usual",
        evidence={
            "observed": 4000,
            "baseline": 40.0,
            "threshold": 400.0,
            "explanation": f"{actor} touched 4,000 customer records; their baseline is 40.",
        },
        actor=actor,
        event_ids=[e.id for e in events],
    )
    db.commit()
    return alert


def test_alert_queue_puts_the_most_severe_first_and_filters(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    low = make_alert(db, severity="low", score=1.0, actor=actor_name())
    critical = make_alert(
        db, severity="critical", score=2.0, actor=actor_name(), detector="honeytoken"
    )
    high = make_alert(db, severity="high", score=9.0, actor=actor_name())
    logged_in(console, users, "security")
    page = console.get("/audit/alerts")
    assert page.status_code == 200
    order = re.findall(r'<tr data-testid="alert-row" data-severity="(\w+)">', page.text)
    assert order == ["critical", "high", "low"]
    assert f"/audit/alerts/{critical.id}" in page.text

    only_high = console.get("/audit/alerts", params={"severity": "high"}).text
    assert f"#{high.id} " in only_high and f"#{low.id} " not in only_high
    honey = console.get("/audit/alerts", params={"detector": "honeytoken"}).text
    assert re.findall(r'data-testid="alert-row"', honey) == ['data-testid="alert-row"']
    assert console.get("/audit/alerts", params={"severity": "dire"}).status_code == 422
    assert "No dismissed alerts" in console.get("/audit/alerts?status=dismissed").text


@pytest.mark.parametrize("role,status", [("auditor", 200), ("dpo", 200), ("helpdesk", 403)])
def test_who_may_open_the_alerts(
    console: TestClient, users: UserFactory, db: Session, role: str, status: int
) -> None:
    alert = make_alert(db, severity="medium", score=3.0, actor=actor_name())
    logged_in(console, users, role)
    assert console.get("/audit/alerts").status_code == status
    page = console.get(f"/audit/alerts/{alert.id}")
    assert page.status_code == status
    if role == "auditor":
        assert 'data-testid="dismiss-form"' not in page.text, "auditors read, never triage"
        assert 'data-testid="escalate-form"' not in page.text


def test_alert_page_explains_with_evidence_events(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = actor_name()
    refs = customer_refs(60)
    events = ingest(
        db, settings, keys, [access_item(actor, utcnow(), action="export", customer_ids=refs)]
    )
    alert = make_alert(db, severity="high", score=7.5, actor=actor, events=events)
    logged_in(console, users, "dpo")
    page = console.get(f"/audit/alerts/{alert.id}").text
    assert "their baseline is 40" in page
    figures = dict(re.findall(r'data-testid="figure-(\w+)"><strong>([^<]+)<', page))
    assert figures == {"observed": "4,000", "baseline": "40", "threshold": "400"}
    (row,) = re.findall(r'<tr data-testid="evidence-row">(.*?)</tr>', page, re.S)
    assert "export" in row and "60 customers" in row and "the first 50 of 60" in row
    assert f'href="/audit/actors/{actor.replace("@", "%40")}"' in page
    assert console.get("/audit/alerts/999999").status_code == 404


def test_dismiss_needs_a_reason_and_the_csrf_token_and_is_audited(
    console: TestClient, users: UserFactory, db: Session
) -> None:
    alert = make_alert(db, severity="medium", score=3.0, actor=actor_name())
    analyst = logged_in(console, users, "security")
    path = f"/audit/alerts/{alert.id}"
    token = csrf_from(console.get(path).text)

    no_token = console.post(f"{path}/dismiss", data={"reason": "known batch job"})
    assert no_token.status_code == 403
    empty = console.post(f"{path}/dismiss", data={"reason": "  ", "csrf_token": token})
    assert empty.status_code == 422 and "Say why" in empty.text

    done = console.post(
        f"{path}/dismiss",
        data={
            "reason": "quarterly renewal mailing, agreed with the team lead",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"{path}?done=dismissed"
    page = console.get(path).text
    assert "quarterly renewal mailing" in page and 'data-testid="alert-status">dismissed' in page
    assert 'data-testid="dismiss-form"' not in page
    again = console.post(f"{path}/dismiss", data={"reason": "twice", "csrf_token": token})
    assert again.status_code == 409 and "already dismissed" in again.text
    db.rollback()
    (event,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "audit:alert:dismissed"))
    assert event.actor_label == analyst.email and event.object_id == str(alert.id)


def test_escalate_opens_an_insider_leak_incident(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = actor_name()
    events = ingest(db, settings, keys, [access_item(actor, utcnow(), customer_ids=["C7"])])
    alert = make_alert(db, severity="high", score=8.0, actor=actor, events=events)
    logged_in(console, users, "security")
    path = f"/audit/alerts/{alert.id}"
    token = csrf_from(console.get(path).text)
    for typed in ("abc", "²", "٣"):  # letters, a superscript and an Arabic-Indic digit
        bad = console.post(f"{path}/escalate", data={"incident_id": typed, "csrf_token": token})
        assert bad.status_code == 422 and "incident number" in bad.text

    response = console.post(f"{path}/escalate", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    incident_id = int(response.headers["location"].rsplit("/", 1)[1])
    db.rollback()
    incident = db.get(Incident, incident_id)
    assert incident is not None and incident.type == "insider-leak"
    page = console.get(path).text
    assert f'href="/incidents/{incident_id}"' in page
    assert 'data-testid="escalate-form"' not in page


# Per-actor activity ----------------------------------------------------------------------
def test_actor_page_charts_the_days_against_the_baseline(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    actor = actor_name()
    db.add(
        StaffMember(
            actor=actor,
            display_name=fake.name(),
            team="renewals",
            job_role="agent",
            duties=["contract-renewal"],
            leaving_on=(utcnow() + timedelta(days=10)).date(),
        )
    )
    db.commit()
    today = datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    if today > utcnow():
        today -= timedelta(days=1)
    history = [
        access_item(actor, today - timedelta(days=d), customer_ids=customer_refs(30))
        for d in range(12, 0, -1)
    ]
    ingest(db, settings, keys, history)
    ingest(db, settings, keys, [access_item(actor, today, customer_ids=customer_refs(900))])
    logged_in(console, users, "security")

    page = console.get(f"/audit/actors/{actor}")
    assert page.status_code == 200
    text = page.text
    assert 'data-testid="team">renewals' in text and "Leaving on" in text
    assert "contract-renewal" in text
    svg = text.split('data-testid="activity-chart"', 1)[1].split("</svg>", 1)[0]
    days = re.findall(r'data-day="([\d-]+)" data-records="(\d+)"( data-over="yes")?', svg)
    assert len(days) == 30
    # Staged at 11:00 UTC: before 11:00 that is yesterday, and today's bar is empty.
    spike = [d for d, _, _ in days].index(today.date().isoformat())
    assert days[spike] == (today.date().isoformat(), "900", ' data-over="yes"')
    assert [int(r) for _, r, _ in days[spike - 12 : spike]] == [30] * 12
    assert all((r, o) == ("0", "") for _, r, o in days[spike + 1 :])
    assert 'class="band"' in svg and 'class="baseline"' in svg
    assert len(re.findall(r'data-testid="recent-row"', text)) == 13
    # The day far above the baseline raised a volume alert, listed on the page.
    assert 'data-testid="actor-alert-row"' in text

    assert console.get(f"/audit/actors/{actor}", params={"days": 3}).status_code == 422
    console.cookies.clear()
    logged_in(console, users, "helpdesk")
    assert console.get(f"/audit/actors/{actor}").status_code == 403


def test_actor_without_hr_record_or_events_still_renders(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "auditor")
    page = console.get("/audit/actors/nobody@example.com")
    assert page.status_code == 200
    assert "HR has told Spillguard nothing" in page.text
    assert "No access events from this actor." in page.text


def test_audit_subnavigation_follows_the_permissions(
    console: TestClient, users: UserFactory
) -> None:
    expected = {
        "auditor": ["Events", "Checkpoints", "Alerts", "Access sources"],
        "security": ["Alerts", "Access sources", "Honeytokens"],
        "admin": ["Events", "Checkpoints", "Alerts", "Access sources", "Honeytokens"],
    }
    for role, labels in expected.items():
        console.cookies.clear()
        logged_in(console, users, role)
        page = console.get("/audit/alerts").text
        nav = page.split('data-testid="audit-subnav">', 1)[1].split("</p>", 1)[0]
        assert re.findall(r">([A-Z][a-z ]+)<", nav) == labels, role


# Honeytokens -----------------------------------------------------------------------------
def import_customer_list(db: Session, keys: KeyRing, count: int = 20) -> None:
    CustomerImportService(db, Principal.system("tests"), keys).import_csv(
        io.BytesIO(to_csv(people(count))), id_column="Customer ID", file_name="customers.csv"
    )
    db.commit()


def test_honeytokens_are_created_listed_without_values_and_exported(
    console: TestClient, users: UserFactory, db: Session, keys: KeyRing
) -> None:
    logged_in(console, users, "security")
    page = console.get("/audit/honeytokens")
    assert page.status_code == 200 and "No honeytokens yet." in page.text
    assert 'data-testid="export-form"' not in page.text
    token = csrf_from(page.text)
    form = {"count": "3", "batch": "crm q4", "email_domain": "honey.example.co.uk"}

    early = console.post("/audit/honeytokens", data={**form, "csrf_token": token})
    assert early.status_code == 422 and "import the customer list first" in early.text
    assert console.post("/audit/honeytokens", data=form).status_code == 403  # no CSRF token
    import_customer_list(db, keys)
    bad = console.post("/audit/honeytokens", data={**form, "count": "x", "csrf_token": token})
    assert bad.status_code == 422 and "whole number" in bad.text

    created = console.post(
        "/audit/honeytokens", data={**form, "csrf_token": token}, follow_redirects=False
    )
    assert created.status_code == 303
    listing = console.get(created.headers["location"]).text
    ids = re.findall(r'<tr data-testid="honeytoken-row"><td><code>([^<]+)</code>', listing)
    assert len(ids) == 3 and "crm q4" in listing
    assert "honey.example.co.uk" not in listing.split('data-testid="create-form"')[0]

    export = console.post("/audit/honeytokens/export", data={"csrf_token": token})
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert sorted(r["Customer ID"] for r in rows) == sorted(ids)
    assert all(r["Email"].endswith("@honey.example.co.uk") for r in rows)
    db.rollback()
    actions = [
        e.action
        for e in db.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith("customers:honeytokens"))
        )
    ]
    assert "customers:honeytokens:created" in actions
    assert "customers:honeytokens:exported" in actions
    assert "customers:honeytokens:listed" in actions


@pytest.mark.parametrize("role", ["auditor", "helpdesk"])
def test_honeytokens_page_is_for_security_and_dpo_only(
    console: TestClient, users: UserFactory, role: str
) -> None:
    logged_in(console, users, role)
    assert console.get("/audit/honeytokens").status_code == 403
    token = csrf_from(console.get("/account").text)
    refused = console.post("/audit/honeytokens/export", data={"csrf_token": token})
    assert refused.status_code == 403


def forms(page: str, verb: str) -> list[str]:
    """The customer ids of the honeytoken page's Retire or Reactivate row forms."""
    return re.findall(
        rf'action="/audit/honeytokens/{verb}".*?name="customer_id" value="([^"]+)"', page, re.S
    )


def test_a_honeytoken_is_retired_from_its_row_and_shown_as_retired(
    console: TestClient, users: UserFactory, db: Session, keys: KeyRing
) -> None:
    import_customer_list(db, keys)
    logged_in(console, users, "dpo")
    token = csrf_from(console.get("/audit/honeytokens").text)
    form = {"count": "2", "email_domain": "honey.example.co.uk", "csrf_token": token}
    assert console.post("/audit/honeytokens", data=form).status_code == 200
    listing = console.get("/audit/honeytokens").text
    ids = re.findall(r'name="customer_id" value="([^"]+)"', listing)
    assert len(ids) == 2  # a Retire button on each active row

    assert (
        console.post("/audit/honeytokens/retire", data={"customer_id": ids[0]}).status_code == 403
    )
    done = console.post(
        "/audit/honeytokens/retire",
        data={"customer_id": ids[0], "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("done=retired")
    page = console.get(done.headers["location"]).text
    assert "Honeytoken retired" in page
    statuses = dict(
        re.findall(r"<code>([^<]+)</code>.*?data-testid=\"honeytoken-status\">(\w+)<", page, re.S)
    )
    assert statuses == {ids[0]: "retired", ids[1]: "active"}
    assert forms(page, "retire") == [ids[1]] and forms(page, "reactivate") == [ids[0]]

    unknown = console.post(
        "/audit/honeytokens/retire", data={"customer_id": "C0000001", "csrf_token": token}
    )
    assert unknown.status_code == 404 and "not a honeytoken customer" in unknown.text
    db.rollback()
    retired = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "customers:honeytokens:retired")
    ).all()
    assert len(retired) == 1 and retired[0].details["retired"] == 1

    console.cookies.clear()
    logged_in(console, users, "auditor")
    token = csrf_from(console.get("/account").text)
    refused = console.post(
        "/audit/honeytokens/retire", data={"customer_id": ids[1], "csrf_token": token}
    )
    assert refused.status_code == 403


def test_the_chart_line_is_the_volume_detectors_threshold_not_the_band(
    console: TestClient, users: UserFactory, db: Session, settings: Settings, keys: KeyRing
) -> None:
    # Twelve days of 30: the band's top is 110, but the detector alerts at 200 (its floor).
    today = datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)
    if today > utcnow():
        today -= timedelta(days=1)
    quiet, loud = actor_name(), actor_name()
    records_of = {quiet: 150, loud: 200}
    for actor, records in records_of.items():
        history = [
            access_item(actor, today - timedelta(days=d), customer_ids=customer_refs(30))
            for d in range(12, 0, -1)
        ]
        ingest(db, settings, keys, history)
        ingest(db, settings, keys, [access_item(actor, today, customer_ids=customer_refs(records))])
    alerted = {a.actor for a in db.scalars(select(Alert).where(Alert.detector == "volume"))}
    assert alerted == {loud}
    logged_in(console, users, "auditor")
    for actor, over in ((quiet, False), (loud, True)):
        text = console.get(f"/audit/actors/{actor}").text
        svg = text.split('data-testid="activity-chart"', 1)[1].split("</svg>", 1)[0]
        staged = svg.split(f'data-day="{today.date().isoformat()}"', 1)[1]
        staged = staged.split("</g>", 1)[0]
        bar = re.match(rf' data-records="{records_of[actor]}"( data-over="yes")?>', staged)
        assert bar is not None and (bar.group(1) is not None) is over, actor
        assert "threshold 200" in staged.split("<title>", 1)[1]
    activity = console.get(f"/api/v1/actors/{quiet}/activity", headers=users.auth("auditor")).json()
    (day,) = (d for d in activity["days"] if d["day"] == today.date().isoformat())
    assert day["threshold"] == 200 and day["records"] == 150
