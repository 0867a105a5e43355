"""Story 5 end to end (issue 7 "Done when"): a generated month of a mobile operator's
access logs, with a slow theft, a burst before departure, an after-hours export and an
access to a planted honeytoken, is replayed through the real HTTP API; each scenario
raises an alert with its evidence on the right actor, the honeytoken access a critical
alert naming the actor; the after-hours alert is escalated to an incident whose exposure
scope is exactly the stolen customer ids; `spillguard audit sequence` then `verify` pass,
and a row edited in the database makes `verify` name the first bad position.

Scale: the issue's 500-user operator for a month (~151,000 events, views of ~3 ids each),
replayed over HTTP a day at a time in batches of up to 5,000, on SQLite and PostgreSQL. The
generator's events stay in this process for the whole test, so they are frozen out of the
garbage collector's reach (a server process would not hold them) after generation.
"""

from __future__ import annotations

import gc
import io
import re
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from spillguard.audit.models import AccessEvent, LogLeaf
from spillguard.audit.synthetic import HONEYTOKEN, Organisation, SimulationConfig, generate
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, TokenScope
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from spillguard.customers.honeytokens import HoneytokenService
from spillguard.customers.services import CustomerImportService
from spillguard.incidents.models import Incident
from tests.factories.users import UserFactory
from tests.functional.live import one_line_error, run_spillguard

USERS = 500
DAYS = 30
SEED = 7
START = date(2026, 10, 5)  # a fixed past month (the clocks go back on 25 October)
CUSTOMERS = 100_000  # 200 per user
BATCH = 5_000
# What each scenario must at least raise (other detectors may fire too).
EXPECTED = {
    "slow_theft": "volume",
    "departure_burst": "departing",
    "after_hours_export": "after-hours",
    HONEYTOKEN: "honeytoken",
}


def ok(args: list[str], env: dict[str, str]) -> str:
    result = run_spillguard(args, env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stage_directory(db: Session, keys: KeyRing, settings: Settings) -> str:
    """The customer directory (ids C0000000…) and one planted honeytoken; its id."""
    system = Principal.system("tests")
    # Every id of the generated customer base, each with an (RFC 2606) e-mail address:
    # the escalation's scope is the touched ids that are in the directory.
    rows = "".join(f"C{n:07d},customer.{n}@example.com\n" for n in range(CUSTOMERS))
    CustomerImportService(db, system, keys).import_csv(
        io.BytesIO(f"Customer ID,Email\n{rows}".encode()), id_column="Customer ID"
    )
    created = HoneytokenService(db, system, keys, settings).create(
        1, batch="story 5", email_domain="honey.operator.example"
    )
    db.commit()
    return created.records[0].identity.customer_id


def replay(client: TestClient, headers: dict[str, str], org: Organisation) -> int:
    """POST the events a day at a time (in time order), each source's day in batches."""
    days: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for event in org.events:
        days[event.at.date().isoformat()][event.source].append(event.wire)
    accepted = 0
    for day in sorted(days):
        for source, items in sorted(days[day].items()):
            for first in range(0, len(items), BATCH):
                chunk = items[first : first + BATCH]
                answer = client.post(
                    "/api/v1/access-events",
                    json={"source": source, "events": chunk},
                    headers=headers,
                )
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["rejected"] == [] and body["duplicates"] == 0, body
                accepted += body["accepted"]
    return accepted


def alerts_of(client: TestClient, headers: dict[str, str], actor: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/alerts", params={"actor": actor, "limit": 100}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


def test_story_five_insider_theft_is_caught_escalated_and_the_log_holds(
    client: TestClient,
    db: Session,
    users: UserFactory,
    keys: KeyRing,
    settings: Settings,
    env: dict[str, str],
    engine: Engine,
    tmp_path: Path,
) -> None:
    honeytoken = stage_directory(db, keys, settings)
    org = generate(
        SimulationConfig(
            users=USERS,
            days=DAYS,
            seed=SEED,
            start=START,
            customers=CUSTOMERS,
            honeytoken_ids=(honeytoken,),
        )
    )
    gc.collect()
    gc.freeze()
    org.write(tmp_path / "org")
    assert "added" in ok(["audit", "staff", "import", str(tmp_path / "org" / "staff.csv")], env)

    owner = users.create("security")
    ingest = TokenService(db, Principal.system("tests"), keys).create(
        owner.id, name="crm and billing", scope=TokenScope.ACCESS_INGEST
    )
    db.commit()
    ingest_headers = {"Authorization": f"Bearer {ingest.secret}"}
    assert replay(client, ingest_headers, org) == len(org.events)

    analyst = users.auth("security")
    labels = {label.scenario: label for label in org.labels}
    assert set(labels) == set(EXPECTED)
    tz = ZoneInfo("Europe/London")
    raised: dict[str, dict[str, Any]] = {}
    for scenario, label in labels.items():
        first_day = label.start.astimezone(tz).date().isoformat()
        found = [
            a
            for a in alerts_of(client, analyst, label.actor)
            if a["detector"] == EXPECTED[scenario]
        ]
        if scenario != HONEYTOKEN:
            # Raised on the scenario's first day: detected within one day. (An alert on an
            # earlier day, a campaign day say, is a false alert: the benchmark counts them.)
            found = [a for a in found if a["evidence"].get("day") == first_day]
        assert found, f"{scenario}: no {EXPECTED[scenario]} alert on {label.actor} on {first_day}"
        (alert,) = found
        assert alert["actor"] == label.actor
        if scenario != HONEYTOKEN:
            assert alert["evidence"]["observed"] >= alert["evidence"]["threshold"] > 0
            assert alert["evidence"]["explanation"]
        detail = client.get(f"/api/v1/alerts/{alert['id']}", headers=analyst)
        assert detail.status_code == 200, detail.text
        evidence_events = detail.json()["events"]
        assert evidence_events["total"] > 0, f"{scenario}: alert without evidence events"
        assert {e["actor"] for e in evidence_events["items"]} == {label.actor}
        raised[scenario] = alert

    trap = raised[HONEYTOKEN]
    assert trap["severity"] == "critical"
    assert labels[HONEYTOKEN].actor in trap["title"]

    # Escalate the after-hours export: the incident's exposure is exactly what was taken.
    night = labels["after_hours_export"]
    escalated = client.post(
        f"/api/v1/alerts/{raised['after_hours_export']['id']}/escalate", headers=analyst
    )
    assert escalated.status_code == 201, escalated.text
    incident_id = escalated.json()["incident_id"]
    incident = db.get(Incident, incident_id)
    assert incident is not None and incident.type == "insider-leak"
    assert sorted((incident.scope or {})["customer_ids"]) == sorted(night.customer_ids)

    # The log: every event sequenced, verified, then one access event's row edited.
    sequenced = ok(["audit", "sequence"], env)
    size = int(re.search(r"log size (\d+)", sequenced).group(1))  # type: ignore[union-attr]
    assert size >= len(org.events)
    assert ok(["audit", "verify"], env).strip().startswith(f"ok: {size} entries")
    db.rollback()  # end the session's transaction: the fixtures empty the tables after
    with engine.begin() as conn:
        audit_id = conn.scalar(
            select(AccessEvent.audit_event_id).where(
                AccessEvent.source_event_id == labels[HONEYTOKEN].event_ids[0]
            )
        )
        conn.execute(
            update(AuditEvent)
            .where(AuditEvent.id == audit_id)
            .values(actor_label="someone-else@staff.operator.example")
        )
        position = conn.scalar(select(LogLeaf.position).where(LogLeaf.event_id == audit_id))
    message = one_line_error(run_spillguard(["audit", "verify"], env, timeout=300))
    assert message == (
        f"position {position} (event {audit_id}): leaf does not match the event row (edited?)"
    )
