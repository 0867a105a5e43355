"""Incidents through the real app, on SQLite and PostgreSQL: "report lost" opens one
incident whose timeline follows the phone; the exposure assessment of a careless and of a
protected phone; the workflow, closed incidents and reopening; the breach clock and a
late regulator notification; insider scope; notes and attachments kept encrypted; who may
do what; unknown ids and bad input as problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from spillguard.incidents.models import Incident
from tests.factories.customers import Person, people, to_csv
from tests.factories.devices import (
    SECURE,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem

DIRECTORY = people(30, seed=61)
SHEET_PEOPLE = DIRECTORY[:12]


@pytest.fixture
def setup(client: TestClient, users: UserFactory) -> dict[str, Any]:
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
    enrollment = create_enrollment(client, admin, owner.id)
    return {
        "admin": admin,
        "dpo": dpo,
        "security": users.auth("security"),
        "auditor": users.auth("auditor"),
        "helpdesk": users.auth("helpdesk"),
        "phone": enroll(client, enrollment["token"]),
    }


def put_spreadsheet_on(
    client: TestClient,
    security: dict[str, str],
    phone: EnrolledDevice,
    rows: list[Person] = SHEET_PEOPLE,
) -> None:
    """Register a spreadsheet of ``rows`` and record its delivery to the phone (by mail)."""
    registered = client.post(
        "/api/v1/exposure/contents",
        files={"file": ("top-customers.csv", to_csv(rows), "text/csv")},
        headers=security,
    )
    assert registered.status_code == 201, registered.text
    recorded = client.post(
        "/api/v1/exposure/deliveries",
        json={
            "items": [
                {
                    "sha256": registered.json()["sha256"],
                    "destination": {"type": "device", "device_id": phone.id},
                    "channel": "mail",
                    "source_system": "mail-filter",
                }
            ]
        },
        headers=security,
    )
    assert recorded.status_code == 200, recorded.text


def acknowledge_all(
    client: TestClient, phone: EnrolledDevice, posture: dict[str, Any]
) -> list[str]:
    """One check-in that receives the pending commands, one that acknowledges them."""
    got = phone.checkin(client, posture)
    assert got.status_code == 200, got.text
    commands = got.json()["commands"]
    results = [{"command_id": c["id"], "status": "acknowledged"} for c in commands]
    done = phone.checkin(client, posture, results=results)
    assert done.status_code == 200, done.text
    return [c["type"] for c in commands]


def report_lost(client: TestClient, headers: dict[str, str], phone: EnrolledDevice) -> Any:
    response = client.post(
        f"/api/v1/devices/{phone.id}/report-lost",
        json={"message": "This phone is lost. Please call reception."},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def incident_of(
    client: TestClient, headers: dict[str, str], phone: EnrolledDevice
) -> dict[str, Any]:
    listed = client.get("/api/v1/incidents", params={"open": "true"}, headers=headers).json()
    mine = [i for i in listed["items"] if i["device_id"] == phone.id]
    assert len(mine) == 1, listed
    return mine[0]


def test_report_lost_opens_one_incident_whose_timeline_follows_the_phone(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    security, phone = setup["security"], setup["phone"]
    assert phone.checkin(client, SWIPE_UNENCRYPTED).status_code == 200
    put_spreadsheet_on(client, security, phone)

    report_lost(client, setup["helpdesk"], phone)  # the helpdesk reports it
    report_lost(client, security, phone)  # and security again: still one incident

    incident = incident_of(client, security, phone)
    assert incident["type"] == "lost-device"
    assert incident["status"] == "open"
    assert db.scalar(select(func.count()).select_from(Incident)) == 1
    clock = incident["clock"]
    assert clock["hours"] == 72 and not clock["overdue"]
    aware = datetime.fromisoformat(incident["aware_at"])
    assert abs(datetime.fromisoformat(clock["deadline"]) - aware - timedelta(hours=72)) < timedelta(
        seconds=1
    )
    assert datetime.now(UTC) - aware < timedelta(minutes=1)  # awareness = the report

    acked = acknowledge_all(client, phone, SWIPE_UNENCRYPTED)
    assert set(acked) == {"lost_mode_on", "lock", "locate"}
    # Mail still reaches the lost phone: a ledger fact on the timeline, and in the exposure.
    put_spreadsheet_on(client, security, phone, DIRECTORY[12:15])

    entries = client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=security).json()
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "opened"
    summaries = " | ".join(e["summary"] for e in entries)
    assert kinds.count("command") == 6  # three queued, three acknowledged
    assert "The phone acknowledged the lock command." in summaries
    assert "reported lost again" in summaries
    assert "The exposure ledger recorded 1 new delivery of inspected content" in summaries
    assert kinds.count("ledger") == 1  # the delivery before the loss opened nothing
    times = [e["at"] for e in entries]
    assert times == sorted(times)

    assessed = client.post(f"/api/v1/incidents/{incident['id']}/assessments", headers=security)
    assert assessed.status_code == 201, assessed.text
    result = assessed.json()
    assert result["version"] == 1
    assert result["customer_count"] == 15
    assert result["risk"] == "high"
    assert result["notify_regulator"] and result["notify_individuals"]
    assert "swipe" in result["reasons"][0] and "not encrypted" in result["reasons"][0]
    protections = result["facts"]["protections"]
    assert protections["passcode_type"] == "swipe" and protections["storage_encrypted"] is False
    assert protections["lock_acknowledged_at"] is not None
    assert protections["wipe_acknowledged_at"] is None

    ids = client.get(
        f"/api/v1/incidents/{incident['id']}/assessments/1/customers",
        params={"limit": 500},
        headers=security,
    ).json()
    assert ids["total"] == 15
    assert set(ids["items"]) == {p.customer_id for p in DIRECTORY[:15]}

    again = client.post(f"/api/v1/incidents/{incident['id']}/assessments", headers=security)
    assert again.json()["version"] == 2  # re-computable; versions kept
    versions = client.get(f"/api/v1/incidents/{incident['id']}/assessments", headers=security)
    assert [a["version"] for a in versions.json()] == [2, 1]

    actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "incident")))
    assert {
        "incidents:incident:opened",
        "incidents:assessment:computed",
        "incidents:assessment:customers-listed",
    } <= actions


def test_a_protected_phone_wiped_is_low_risk_and_no_one_needs_telling(
    client: TestClient, setup: dict[str, Any]
) -> None:
    security, phone = setup["security"], setup["phone"]
    assert phone.checkin(client, SECURE).status_code == 200
    put_spreadsheet_on(client, security, phone)
    report_lost(client, security, phone)
    acknowledge_all(client, phone, SECURE)
    incident = incident_of(client, security, phone)

    before_wipe = client.post(f"/api/v1/incidents/{incident['id']}/assessments", headers=security)
    assert before_wipe.json()["risk"] == "medium"
    assert before_wipe.json()["notify_individuals"] is False

    wipe = client.post(
        f"/api/v1/devices/{phone.id}/commands",
        json={"type": "wipe", "confirm_name": phone.name},
        headers=setup["admin"],
    )
    assert wipe.status_code in (200, 201), wipe.text
    assert acknowledge_all(client, phone, SECURE) == ["wipe"]

    result = client.post(f"/api/v1/incidents/{incident['id']}/assessments", headers=security).json()
    assert result["customer_count"] == 12
    assert result["risk"] == "low"
    assert result["notify_regulator"] is False and result["notify_individuals"] is False
    assert "Art 34(3)(a)" in result["reasons"][0]
    assert result["facts"]["protections"]["wipe_acknowledged_at"] is not None
    summaries = [
        e["summary"]
        for e in client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=security).json()
    ]
    assert "The phone acknowledged the wipe command." in summaries


def new_incident(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"type": "other", "title": "Laptop bag left on a train", **fields}
    response = client.post("/api/v1/incidents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_workflow_closed_incidents_and_reopening(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    security = setup["security"]
    incident = new_incident(client, security, severity="low")
    url = f"/api/v1/incidents/{incident['id']}"

    moved = client.post(f"{url}/status", json={"status": "contained"}, headers=security)
    assert moved.status_code == 200 and moved.json()["contained_at"]
    back = client.post(f"{url}/status", json={"status": "open"}, headers=security)
    assert assert_clean_problem(back, 409)["type"].endswith("/invalid-status-transition")

    closed = client.post(
        f"{url}/status", json={"status": "closed", "reason": "false alarm"}, headers=security
    )
    assert closed.status_code == 200 and closed.json()["closed_at"]

    for method, path, body in [
        ("patch", "", {"severity": "high"}),
        ("post", "/tasks", {"title": "Call the station"}),
        ("post", "/notes", {"body": "Found?"}),
        ("post", "/assessments", None),
        ("post", "/status", {"status": "closed"}),
        ("put", "/awareness", {"aware_at": datetime.now(UTC).isoformat(), "reason": "x"}),
    ]:
        refused = client.request(method, url + path, json=body, headers=security)
        problem = assert_clean_problem(refused, 409)
        assert problem["type"].endswith("/incident-closed"), path
        assert "reopen" in problem["detail"]

    no_reason = client.post(f"{url}/reopen", json={"reason": " "}, headers=security)
    assert_clean_problem(no_reason, 422)
    reopened = client.post(
        f"{url}/reopen", json={"reason": "the bag had a phone"}, headers=security
    )
    assert reopened.status_code == 200 and reopened.json()["status"] == "open"
    assert reopened.json()["closed_at"] is None
    assert client.patch(url, json={"severity": "high"}, headers=security).status_code == 200
    not_closed = client.post(f"{url}/reopen", json={"reason": "again"}, headers=security)
    assert_clean_problem(not_closed, 409)

    reopen_events = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "incidents:incident:reopened")
    ).all()
    assert len(reopen_events) == 1
    assert reopen_events[0].details["reason"] == "the bag had a phone"
    entries = client.get(f"{url}/timeline", headers=security).json()
    statuses = [
        (e["data"].get("from"), e["data"].get("to")) for e in entries if e["kind"] == "status"
    ]
    assert statuses == [("open", "contained"), ("contained", "closed"), ("closed", "open")]


def test_awareness_time_moves_the_deadline_and_a_late_notification_needs_its_reason(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    security = setup["security"]
    incident = new_incident(client, security)
    url = f"/api/v1/incidents/{incident['id']}"
    four_days_ago = datetime.now(UTC) - timedelta(days=4)

    future = client.put(
        f"{url}/awareness",
        json={"aware_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "reason": "x"},
        headers=security,
    )
    assert_clean_problem(future, 422)
    changed = client.put(
        f"{url}/awareness",
        json={"aware_at": four_days_ago.isoformat(), "reason": "the customer wrote on Monday"},
        headers=security,
    )
    assert changed.status_code == 200, changed.text
    clock = changed.json()["clock"]
    assert clock["overdue"] is True and clock["remaining_seconds"] < 0
    assert "overdue" in clock["text"]
    event = db.scalar(
        select(AuditEvent).where(AuditEvent.action == "incidents:incident:awareness-changed")
    )
    assert event is not None and event.details["reason"] == "the customer wrote on Monday"

    late = client.post(f"{url}/regulator-notification", json={}, headers=security)
    problem = assert_clean_problem(late, 422)
    assert problem["type"].endswith("/late-reason-required")
    recorded = client.post(
        f"{url}/regulator-notification",
        json={"late_reason": "the report reached the DPO late"},
        headers=security,
    )
    assert recorded.status_code == 200, recorded.text
    body = recorded.json()
    assert body["late_reason"] == "the report reached the DPO late"
    assert body["clock"]["notified_late"] is True and body["clock"]["overdue"] is False


def test_a_communications_provider_has_24_hours(client: TestClient, setup: dict[str, Any]) -> None:
    client.app.state.settings.organisation_is_communications_provider = True  # type: ignore[attr-defined]
    incident = new_incident(client, setup["security"])
    assert incident["clock"]["hours"] == 24
    assert "PECR" in incident["clock"]["basis"]


def test_an_insider_leak_is_scoped_by_customer_ids(
    client: TestClient, setup: dict[str, Any]
) -> None:
    security = setup["security"]
    incident = new_incident(client, security, type="insider-leak", title="Renewals sold")
    url = f"/api/v1/incidents/{incident['id']}"
    stolen = [p.customer_id for p in DIRECTORY[20:23]]

    unknown = client.put(
        f"{url}/scope", json={"customer_ids": [*stolen, "NOT-A-CUSTOMER"]}, headers=security
    )
    assert "1 of the customer ids" in assert_clean_problem(unknown, 422)["detail"]
    scoped = client.put(f"{url}/scope", json={"customer_ids": stolen}, headers=security)
    assert scoped.status_code == 200 and scoped.json()["scope_customers"] == 3

    result = client.post(f"{url}/assessments", headers=security).json()
    assert result["customer_count"] == 3
    assert result["risk"] == "high" and result["notify_individuals"] is True
    assert "on purpose" in result["reasons"][0]


def test_notes_and_attachments_are_kept_encrypted(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    security = setup["security"]
    incident = new_incident(client, security)
    url = f"/api/v1/incidents/{incident['id']}"
    canary = f"Canary {DIRECTORY[0].name} rang the helpdesk"
    note = client.post(f"{url}/notes", json={"body": canary}, headers=security)
    assert note.status_code == 201 and note.json()["body"] == canary
    content = f"statement by {DIRECTORY[1].name}".encode()
    attached = client.post(
        f"{url}/attachments",
        files={"file": ("witness-statement.txt", content, "text/plain")},
        headers=security,
    )
    assert attached.status_code == 201, attached.text
    attachment = attached.json()
    assert attachment["name"] == "witness-statement.txt" and attachment["size"] == len(content)

    assert client.get(f"{url}/notes", headers=security).json()[0]["body"] == canary
    listed = client.get(f"{url}/attachments", headers=security).json()
    assert [a["name"] for a in listed] == ["witness-statement.txt"]
    got = client.get(f"{url}/attachments/{attachment['id']}", headers=security)
    assert got.status_code == 200 and got.content == content
    assert "witness-statement.txt" in got.headers["content-disposition"]

    raw_notes = db.execute(text("SELECT body_sealed FROM incident_notes")).scalars().all()
    raw_blobs = db.execute(text("SELECT data FROM exposure_blobs")).scalars().all()
    names = db.execute(text("SELECT name_sealed FROM incident_attachments")).scalars().all()
    for blob in [*raw_notes, *raw_blobs, *names]:
        assert DIRECTORY[0].name.encode() not in bytes(blob)
        assert DIRECTORY[1].name.encode() not in bytes(blob)
        assert b"witness" not in bytes(blob)
    entries = client.get(f"{url}/timeline", headers=security).json()
    assert not any(DIRECTORY[0].name in e["summary"] for e in entries)
    actions = set(db.scalars(select(AuditEvent.action)))
    assert {"incidents:note:read", "incidents:attachment:read"} <= actions


def test_who_may_do_what(client: TestClient, setup: dict[str, Any]) -> None:
    security, phone = setup["security"], setup["phone"]
    assert phone.checkin(client, SWIPE_UNENCRYPTED).status_code == 200
    put_spreadsheet_on(client, security, phone)
    report_lost(client, setup["helpdesk"], phone)  # helpdesk may report a phone lost ...
    helpdesk_list = client.get("/api/v1/incidents", headers=setup["helpdesk"])
    assert_clean_problem(helpdesk_list, 403)  # ... but not read incidents
    incident = incident_of(client, setup["auditor"], phone)  # the auditor reads
    url = f"/api/v1/incidents/{incident['id']}"
    refused = client.post(f"{url}/assessments", headers=setup["auditor"])
    assert_clean_problem(refused, 403)
    assert_clean_problem(
        client.post(
            "/api/v1/incidents", json={"type": "other", "title": "x"}, headers=setup["auditor"]
        ),
        403,
    )
    assert client.post(f"{url}/assessments", headers=setup["dpo"]).status_code == 201

    purpose = {"purpose": "Art 34 notices for this incident", "limit": 50}
    names = client.post(f"{url}/assessments/1/customers/names", json=purpose, headers=setup["dpo"])
    assert names.status_code == 200, names.text
    by_id = {n["customer_id"]: n["name"] for n in names.json()}
    assert by_id == {p.customer_id: p.name for p in SHEET_PEOPLE}
    for role in ("security", "auditor", "admin"):
        denied = client.post(
            f"{url}/assessments/1/customers/names", json=purpose, headers=setup[role]
        )
        assert_clean_problem(denied, 403)
        assert SHEET_PEOPLE[0].name not in denied.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/incidents/987654"),
        ("patch", "/api/v1/incidents/987654"),
        ("get", "/api/v1/incidents/987654/timeline"),
        ("post", "/api/v1/incidents/987654/assessments"),
        ("post", "/api/v1/incidents/{id}/tasks/987654/done"),
        ("get", "/api/v1/incidents/{id}/attachments/987654"),
        ("get", "/api/v1/incidents/{id}/assessments/3"),
    ],
)
def test_unknown_ids_are_404_problems(
    client: TestClient, setup: dict[str, Any], method: str, path: str
) -> None:
    incident = new_incident(client, setup["security"])
    response = client.request(
        method,
        path.format(id=incident["id"]),
        json={} if method == "patch" else None,
        headers=setup["security"],
    )
    assert_clean_problem(response, 404)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "burglary", "title": "x"},
        {"type": "other", "title": ""},
        {"type": "other", "title": "x", "severity": "apocalyptic"},
        {"type": "other", "title": "x", "aware_at": "2026-01-01T10:00:00"},  # no offset
        {"type": "other", "title": "x", "owner_id": 987654},
        {"type": "other", "title": "x", "device_id": 987654},
        {"type": "other", "title": "x", "surprise": 1},
    ],
)
def test_bad_input_is_a_problem(
    client: TestClient, setup: dict[str, Any], body: dict[str, Any]
) -> None:
    assert_clean_problem(
        client.post("/api/v1/incidents", json=body, headers=setup["security"]), 422
    )
