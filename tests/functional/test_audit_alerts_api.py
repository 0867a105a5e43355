"""Insider-risk alerts and HR data over the real HTTP app, on SQLite and PostgreSQL: events
posted to the ingestion API raise alerts; the queue, an alert with its evidence,
dismissal, escalation to an incident scoped to the stolen customers, the per-actor
activity view, the staff upsert; RFC 9457 problems for bad input and refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from spillguard.audit.models import ActorDay
from spillguard.customers.models import Customer
from spillguard.incidents.models import Incident
from tests.factories.access import access, actor_name
from tests.factories.users import UserFactory

TODAY = datetime.now(UTC).date()


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()  # type: ignore[no-any-return]


def night(day: date, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, 2, minute, tzinfo=UTC).isoformat()


def post_events(client: TestClient, users: UserFactory, events: list[dict[str, Any]]) -> None:
    headers = users.auth("security")
    answer = client.post(
        "/api/v1/access-events", json={"source": "crm", "events": events}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(events), answer.text


def test_an_after_hours_export_is_alerted_triaged_and_escalated(
    client: TestClient, db: Session, users: UserFactory
) -> None:
    thief = actor_name()
    stolen = [f"T{n:05d}" for n in range(1200)]
    for cid in stolen:
        db.add(Customer(external_id=cid))
    db.commit()
    day = TODAY - timedelta(days=1)
    export = access(thief, datetime.fromisoformat(night(day)), action="export", customer_ids=stolen)
    post_events(client, users, [export])

    dpo = users.auth("dpo")
    queue = client.get("/api/v1/alerts", params={"actor": thief}, headers=dpo).json()
    assert queue["total"] == 2
    detectors = {a["detector"]: a for a in queue["items"]}
    assert set(detectors) == {"after-hours", "mass-export"}
    after = detectors["after-hours"]
    assert after["status"] == "open" and after["evidence"]["observed"] == 1200
    assert "working hours" in after["evidence"]["explanation"]

    detail = client.get(f"/api/v1/alerts/{after['id']}", headers=dpo).json()
    assert detail["events"]["total"] == 1
    event = detail["events"]["items"][0]
    assert event["action"] == "export" and event["customers"] == 1200
    assert len(event["customer_ids"]) == 50

    assert problem(
        client.post(f"/api/v1/alerts/{after['id']}/dismiss", json={"reason": ""}, headers=dpo),
        422,
    )
    dismissed = client.post(
        f"/api/v1/alerts/{detectors['mass-export']['id']}/dismiss",
        json={"reason": "Same export as the after-hours alert."},
        headers=dpo,
    )
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    again = client.post(
        f"/api/v1/alerts/{detectors['mass-export']['id']}/dismiss",
        json={"reason": "twice"},
        headers=dpo,
    )
    assert problem(again, 409)["type"].endswith("/alert-already-triaged")

    escalated = client.post(f"/api/v1/alerts/{after['id']}/escalate", headers=dpo)
    assert escalated.status_code == 201, escalated.text
    incident_id = escalated.json()["incident_id"]
    assert escalated.json()["alert"]["status"] == "escalated"
    incident = db.get(Incident, incident_id)
    assert incident is not None and incident.type == "insider-leak"
    assert incident.scope == {"customer_ids": sorted(stolen)}
    joined = client.post(
        f"/api/v1/alerts/{detectors['mass-export']['id']}/escalate",
        json={"incident_id": incident_id},
        headers=dpo,
    )
    assert joined.status_code == 201 and joined.json()["incident_id"] == incident_id
    missing = client.post(f"/api/v1/alerts/{after['id'] + 1000}/escalate", json={}, headers=dpo)
    assert problem(missing, 404)["type"].endswith("/alert-not-found")

    activity = client.get(
        f"/api/v1/actors/{thief}/activity", params={"days": 3}, headers=dpo
    ).json()
    assert [d["day"] for d in activity["days"]][-1] == TODAY.isoformat()
    assert activity["days"][-2]["records"] == 1200 and activity["days"][-2]["exported"] == 1200
    assert activity["days"][-2]["baseline"] is None  # no history yet
    assert {a["detector"] for a in activity["alerts"]} == {"after-hours", "mass-export"}
    assert db.get(ActorDay, (thief, day)) is not None


def test_refusals_and_bad_input(client: TestClient, users: UserFactory) -> None:
    assert problem(client.get("/api/v1/alerts"), 401)
    helpdesk = users.auth("helpdesk")
    assert problem(client.get("/api/v1/alerts", headers=helpdesk), 403)
    auditor = users.auth("auditor")
    assert client.get("/api/v1/alerts", headers=auditor).status_code == 200
    assert problem(
        client.post("/api/v1/alerts/1/dismiss", json={"reason": "x"}, headers=auditor), 403
    )
    security = users.auth("security")
    assert problem(client.get("/api/v1/alerts?severity=urgent", headers=security), 422)
    assert problem(client.get("/api/v1/alerts?status=gone", headers=security), 422)
    assert problem(client.get("/api/v1/alerts/0", headers=security), 422)
    assert problem(client.get("/api/v1/alerts/12345", headers=security), 404)
    assert problem(
        client.post("/api/v1/alerts/1/dismiss", json={"why": "x"}, headers=security), 422
    )
    assert problem(client.get("/api/v1/actors/someone/activity?days=0", headers=security), 422)
    assert problem(
        client.post("/api/v1/alerts/1/escalate", json={"incident_id": -3}, headers=security),
        422,
    )


def test_staff_upsert_and_listing(client: TestClient, users: UserFactory) -> None:
    security = users.auth("security")
    agent, leaver = actor_name(), actor_name()
    batch = {
        "staff": [
            {
                "actor": agent,
                "name": "Agent One",
                "team": "renewals",
                "role": "Renewals agent",
                "duties": "contract-renewal; billing",
                "work_start": "08:00",
                "work_end": "16:30",
                "work_days": "12345",
                "timezone": "Europe/London",
            },
            {"actor": leaver, "team": "renewals", "leaving_on": "2026-12-31", "duties": []},
        ]
    }
    answer = client.put("/api/v1/staff", json=batch, headers=security)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"added": 2, "updated": 0, "unchanged": 0}
    again = client.put(
        "/api/v1/staff",
        json={"staff": [{"actor": agent, "team": "renewals"}, {"actor": leaver, "role": "x"}]},
        headers=security,
    )
    assert again.json() == {"added": 0, "updated": 1, "unchanged": 1}
    listed = client.get("/api/v1/staff", params={"team": "renewals"}, headers=security).json()
    assert listed["total"] == 2
    row = next(r for r in listed["items"] if r["actor"] == agent)
    assert row["duties"] == ["contract-renewal", "billing"] and row["work_end"] == "16:30"
    assert row["name"] == "Agent One" and row["role"] == "Renewals agent"
    other = next(r for r in listed["items"] if r["actor"] == leaver)
    assert other["leaving_on"] == "2026-12-31" and other["work_start"] == "07:00"

    bad = client.put(
        "/api/v1/staff",
        json={
            "staff": [
                {"actor": actor_name(), "timezone": "Mars/Olympus"},
                {"actor": actor_name(), "work_days": "12389"},
                {"actor": agent, "leaving_on": "31-12-2026"},
            ]
        },
        headers=security,
    )
    body = problem(bad, 422)
    assert body["detail"].startswith("3 bad row(s), nothing loaded: item 0: unknown timezone")
    assert "item 2: leaving_on must be a date" in body["detail"]
    assert client.get("/api/v1/staff", headers=security).json()["total"] == 2
    dpo = users.auth("dpo")
    assert problem(client.put("/api/v1/staff", json={"staff": []}, headers=dpo), 403)
    assert client.get("/api/v1/staff", headers=dpo).status_code == 200
    assert problem(client.put("/api/v1/staff", json={"staff": [{}]}, headers=security), 422)
