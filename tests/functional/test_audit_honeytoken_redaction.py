"""Which customers are honeytokens stays with honeytokens:manage in the audit-event
export and list, the access-event filter and an escalated alert's incident; a retired
honeytoken can be reactivated (docs/audit.md "Who may know which customers are
honeytokens", "Retiring and reactivating a honeytoken"). On SQLite and PostgreSQL,
through the real app, console and CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from spillguard.audit import browse, merkle
from spillguard.audit.log import run_sequencer
from spillguard.core.db import make_session_factory
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.customers.models import Customer, CustomerFieldHash, HoneytokenCustomer
from tests.factories.customers import to_csv
from tests.factories.users import UserFactory
from tests.functional import test_audit_honeytokens as planting
from tests.functional.live import one_line_error, run_spillguard
from tests.functional.test_api_errors import assert_clean_problem
from tests.functional.test_audit_honeytokens import (
    DIRECTORY,
    DOMAIN,
    MARKER,
    URL,
    create,
    export,
    honeytoken_alerts,
    ingest_headers,
    touch,
)
from tests.functional.test_console import HTML, logged_in

# The honeytoken module's fixtures: a mail sink, its settings, a security user, a directory.
sink = planting.sink
settings = planting.settings
security = planting.security
directory = planting.directory


def planted(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> tuple[list[str], str]:
    """Three honeytokens; one CRM export naming a real customer and two of them, and one
    view of the third alone (its id is then the audit event's object id)."""
    ids = create(client, security, count=3)["customer_ids"]
    real = directory[0].customer_id
    ingest = ingest_headers(users, db, keys)
    touch(client, ingest, "j.bloggs@corp.example", "crm-1", [real, ids[0], ids[1]])
    touch(client, ingest, "j.bloggs@corp.example", "crm-2", [ids[2]])
    touch(client, ingest, "a.nother@corp.example", "crm-3", [real])
    return ids, real


def no_ids(text: str, ids: list[str]) -> bool:
    return not any(i in text for i in ids)


# --- 1. the audit-event export and list --------------------------------------------------


def test_the_audit_event_export_and_list_show_the_marker_to_a_reader_without_manage(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids, real = planted(client, security, directory, users, db, keys)
    monkeypatch.setattr(browse, "EXPORT_BATCH", 2)  # redacted batch by batch, as streamed
    auditor, admin = users.auth("auditor"), users.auth("admin")
    url = "/api/v1/audit-events/export"
    access = {"action": "audit:access"}

    shown = client.get(url, params={**access, "format": "json"}, headers=auditor)
    assert shown.status_code == 200, shown.text
    assert shown.headers["x-spillguard-events"] == "3"
    events = json.loads(shown.text)
    assert [e["details"]["customer_ids"] for e in events] == [[real, MARKER], [MARKER], [real]]
    assert [e["object_id"] for e in events] == [None, MARKER, real]
    assert no_ids(shown.text, ids)
    as_csv = client.get(url, params={**access, "format": "csv"}, headers=auditor)
    assert as_csv.status_code == 200 and no_ids(as_csv.text, ids)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["object_id"] for r in rows] == ["", MARKER, real]
    assert MARKER in rows[0]["details"] and real in rows[0]["details"]
    listed = client.get("/api/v1/audit-events", params=access, headers=auditor)
    assert listed.status_code == 200 and no_ids(listed.text, ids)
    assert [e["object_id"] for e in listed.json()["items"]] == [real, MARKER, None]

    # A filter by a honeytoken's id answers as for an id no event names.
    for object_id, count in ((ids[2], 0), ("C9999999", 0), (real, 1)):
        flt = {**access, "object_type": "customer", "object_id": object_id}
        got = client.get(url, params=flt, headers=auditor)
        assert got.headers["x-spillguard-events"] == str(count) and no_ids(got.text, ids)
        page = client.get("/api/v1/audit-events", params=flt, headers=auditor).json()
        assert page["total"] == count
    bad = {"object_id": ids[2], "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    for object_id in (ids[2], "C9999999"):  # refused the same way, too
        assert_clean_problem(
            client.get(
                "/api/v1/audit-events", params={**bad, "object_id": object_id}, headers=auditor
            ),
            422,
        )

    # Honeytoken managers (the admin holds every permission) export the stored details.
    full = json.loads(client.get(url, params={**access, "format": "json"}, headers=admin).text)
    assert [e["details"]["customer_ids"] for e in full] == [
        [real, ids[0], ids[1]],
        [ids[2]],
        [real],
    ]
    flt = {**access, "object_id": ids[2]}
    assert client.get(url, params=flt, headers=admin).headers["x-spillguard-events"] == "1"

    # The console: the browser's object column and the export link.
    client.headers.update(HTML)
    logged_in(client, users, "auditor")
    page = client.get("/audit", params=access)
    assert page.status_code == 200 and MARKER in page.text and no_ids(page.text, ids)
    download = client.get("/audit/export", params={**access, "format": "csv"})
    assert download.status_code == 200 and MARKER in download.text
    assert no_ids(download.text, ids) and real in download.text
    assert "0 events" in client.get("/audit", params={"object_id": ids[2]}).text


# --- 2. the access-event filter ----------------------------------------------------------


def test_filtering_access_events_by_a_honeytoken_id_answers_as_for_an_unknown_id(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids, real = planted(client, security, directory, users, db, keys)
    url = "/api/v1/access-events"
    auditor = users.auth("auditor")
    unknown = client.get(url, params={"customer": "C9999999"}, headers=auditor)
    assert unknown.status_code == 200 and unknown.json()["total"] == 0
    for honeytoken in ids:
        answer = client.get(url, params={"customer": honeytoken}, headers=auditor)
        assert answer.status_code == 200
        assert answer.json() == {**unknown.json()}
    found = client.get(url, params={"customer": real}, headers=auditor).json()
    assert sorted(e["source_event_id"] for e in found["items"]) == ["crm-1", "crm-3"]
    # Bad input is refused the same way for both.
    bad = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    for customer in (ids[0], "C9999999"):
        problem = assert_clean_problem(
            client.get(url, params={**bad, "customer": customer}, headers=auditor), 422
        )
        assert "before" in problem["detail"]
    # Managers get the events.
    for role in ("security", "dpo"):
        seen = client.get(url, params={"customer": ids[0]}, headers=users.auth(role)).json()
        assert [e["source_event_id"] for e in seen["items"]] == ["crm-1"]


def test_an_inclusion_proof_withholds_an_entry_naming_a_honeytoken_but_still_verifies(
    app: Any,
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
    settings: Any,
) -> None:
    ids, real = planted(client, security, directory, users, db, keys)
    run_sequencer(app.state.session_factory, keys, settings)
    events = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action.startswith("audit:access:"))
        .order_by(AuditEvent.id)
    ).all()
    assert len(events) == 3
    url = "/api/v1/audit/proofs/inclusion"
    auditor, admin = users.auth("auditor"), users.auth("admin")
    for event, names_one in zip(events, (True, True, False), strict=True):
        got = client.get(url, params={"event_id": event.id}, headers=auditor)
        assert got.status_code == 200, got.text
        proof = got.json()
        leaf = base64.b64decode(proof["leaf_hash"])
        merkle.verify_inclusion(
            proof["leaf_index"],
            proof["tree_size"],
            leaf,
            [base64.b64decode(h) for h in proof["inclusion_proof"]],
            base64.b64decode(proof["root_hash"]),
        )
        assert no_ids(got.text, ids)
        if names_one:
            assert proof["entry"] is None and "honeytoken" in proof["withheld"]
        else:
            assert proof["withheld"] is None
            entry = base64.b64decode(proof["entry"])
            assert merkle.leaf_hash(entry) == leaf and real.encode() in entry
        # a reader with honeytokens:manage gets the entry as logged, ids and all
        whole = client.get(url, params={"event_id": event.id}, headers=admin).json()
        assert whole["withheld"] is None and whole["leaf_hash"] == proof["leaf_hash"]
        assert merkle.leaf_hash(base64.b64decode(whole["entry"])) == leaf
    entries = [
        base64.b64decode(client.get(url, params={"event_id": e.id}, headers=admin).json()["entry"])
        for e in events[:2]
    ]
    assert ids[0].encode() in entries[0] and ids[2].encode() in entries[1]


# --- 3. an escalated honeytoken alert's incident -----------------------------------------


def test_an_escalated_honeytoken_alert_counts_people_only_and_notifies_only_them(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids, real = planted(client, security, directory, users, db, keys)
    [alert] = honeytoken_alerts(db)
    dpo, auditor = users.auth("dpo"), users.auth("auditor")
    escalated = client.post(f"/api/v1/alerts/{alert.id}/escalate", json={}, headers=dpo)
    assert escalated.status_code == 201, escalated.text
    incident = escalated.json()["incident_id"]
    url = f"/api/v1/incidents/{incident}"
    db.expire_all()

    # The stored scope keeps the honeytokens (for the managers); counts shown differ.
    seen = client.get(url, headers=auditor).json()
    assert (seen["scope_customers"], seen["scope_honeytokens"]) == (1, None)
    for headers in (security, dpo):
        managed = client.get(url, headers=headers).json()
        assert (managed["scope_customers"], managed["scope_honeytokens"]) == (1, 3)
    timeline = client.get(f"{url}/timeline", headers=auditor)
    assert timeline.status_code == 200 and no_ids(timeline.text, ids)
    words = [e["summary"] for e in timeline.json() if e["kind"] == "action"]
    assert any("1 customer(s) of its events in scope and honeytoken customers" in w for w in words)
    assert any("Scope set by" in w and ": 1 customer(s) and honeytoken" in w for w in words)
    assert not any(str(n) + " customer(s)" in " ".join(words) for n in (2, 3, 4))

    assessed = client.post(f"{url}/assessments", headers=dpo)
    assert assessed.status_code == 201 and assessed.json()["customer_count"] == 1
    listed = client.get(f"{url}/assessments/1/customers", headers=auditor)
    assert listed.status_code == 200 and listed.json()["items"] == [real]
    for path in ("", "/assessments", "/timeline", "/tasks"):
        body = client.get(f"{url}{path}", headers=auditor).text
        assert no_ids(body, ids), path

    # The dpo is asked to notify the one real customer, never a planted one.
    assert client.post(f"{url}/regulator-report/draft", headers=dpo).status_code == 200
    edit = client.patch(
        f"{url}/regulator-report",
        json={
            "fields": {
                "organisation": "Example Telecom Ltd",
                "what_happened": "Contract-renewal records were copied out of the CRM.",
                "contact_point": "dpo@telecom.example",
            }
        },
        headers=dpo,
    )
    assert edit.status_code == 200, edit.text
    queued = client.post(f"{url}/notices", json={}, headers=dpo)
    assert queued.status_code == 200, queued.text
    counts = queued.json()
    assert counts["email"] + counts["letter"] + counts["manual"] == 1
    notices = client.get(f"{url}/notices", headers=dpo)
    assert notices.status_code == 200 and notices.json()["total"] == 1
    assert no_ids(notices.text, ids)

    # The console's incident page for the auditor.
    client.headers.update(HTML)
    logged_in(client, users, "auditor")
    page = client.get(f"/incidents/{incident}")
    assert page.status_code == 200 and no_ids(page.text, ids)
    assert "honeytoken customers" in page.text  # the timeline says some were in scope


# --- 4. reactivating a retired honeytoken ------------------------------------------------


def inspect_names(client: TestClient, headers: dict[str, str], rows: list[dict[str, str]]) -> Any:
    text = "".join(f"{r['First Name']} {r['Last Name']}, mobile {r['Phone']}\n" for r in rows)
    report = client.post(
        "/api/v1/inspections", files={"file": ("r.txt", text.encode())}, headers=headers
    )
    assert report.status_code == 200, report.text
    return report.json()


def test_a_retired_honeytoken_is_reactivated_matched_and_alerting_again(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids = create(client, security, count=3, phone_range="07700900000-07700900099")["customer_ids"]
    values = {r["Customer ID"]: r for r in export(client, security)}
    db.expire_all()
    stored = {(h.customer_id, h.kind): h.digests for h in db.scalars(select(CustomerFieldHash))}
    # A first scan builds and caches the directory's EDM index.
    assert sorted(inspect_names(client, security, list(values.values()))["customer_ids"]) == sorted(
        ids
    )
    # Retire two, reactivate one: the active and total counts equal those after retiring
    # one alone, yet the cached index must not be reused.
    for retired in ([ids[0]], [ids[1]]):
        client.post(f"{URL}/retire", json={"customer_ids": retired}, headers=security)
    back = client.post(f"{URL}/reactivate", json={"customer_ids": [ids[0]]}, headers=security)
    assert back.status_code == 200, back.text
    assert back.json() == {"reactivated": [ids[0]], "already_active": []}
    again = client.post(
        f"{URL}/reactivate", json={"customer_ids": [ids[0], ids[2]]}, headers=security
    )
    assert again.json() == {"reactivated": [], "already_active": [ids[0], ids[2]]}

    # Its keyed hashes are the ones it was created with, rebuilt.
    db.expire_all()
    row = db.scalar(select(Customer).where(Customer.external_id == ids[0]))
    assert row is not None and row.removed_at is None
    rebuilt = {
        h.kind: h.digests
        for h in db.scalars(
            select(CustomerFieldHash).where(CustomerFieldHash.customer_id == row.id)
        )
    }
    assert rebuilt and rebuilt == {k: d for (c, k), d in stored.items() if c == row.id}
    listed = {
        r["customer_id"]: r["status"] for r in client.get(URL, headers=security).json()["items"]
    }
    assert listed == {ids[0]: "active", ids[1]: "retired", ids[2]: "active"}
    assert sorted(r["Customer ID"] for r in export(client, security)) == sorted([ids[0], ids[2]])
    assert export(client, security)[0]["Phone"]  # its phone number is known again

    # Exact data match finds it again, and not the one still retired.
    found = inspect_names(client, security, [values[ids[0]], values[ids[1]]])
    assert found["customer_ids"] == [ids[0]]
    # An access to it alerts again.
    touch(client, ingest_headers(users, db, keys), "later@corp.example", "crm-9", [ids[0]])
    assert any(ids[0] in a.evidence["honeytokens"] for a in honeytoken_alerts(db))

    # Audited with counts only; refusals as for retire.
    db.expire_all()
    details = list(
        db.scalars(
            select(AuditEvent.details).where(
                AuditEvent.action == "customers:honeytokens:reactivated"
            )
        )
    )
    assert details == [
        {"requested": 1, "reactivated": 1, "already_active": 0},
        {"requested": 2, "reactivated": 0, "already_active": 2},
    ]
    refused = client.post(
        f"{URL}/reactivate",
        json={"customer_ids": [ids[1], directory[0].customer_id]},
        headers=security,
    )
    assert "not a honeytoken customer" in assert_clean_problem(refused, 404)["detail"]
    assert_clean_problem(
        client.post(f"{URL}/reactivate", json={"customer_ids": []}, headers=security), 422
    )
    for role in ("auditor", "helpdesk"):
        forbidden = client.post(
            f"{URL}/reactivate", json={"customer_ids": [ids[1]]}, headers=users.auth(role)
        )
        assert_clean_problem(forbidden, 403)
    db.expire_all()
    marker = db.scalar(
        select(HoneytokenCustomer)
        .join(Customer, Customer.id == HoneytokenCustomer.customer_id)
        .where(Customer.external_id == ids[1])
    )
    assert marker is not None and marker.retired_at is not None  # all or nothing

    # The console button.
    client.headers.update(HTML)
    logged_in(client, users, "security")
    page = client.get("/audit/honeytokens")
    assert page.text.count('data-testid="reactivate-button"') == 1
    assert page.text.count('data-testid="retire-button"') == 2
    token = client.cookies.get("spillguard_csrf") or ""
    posted = client.post(
        "/audit/honeytokens/reactivate",
        data={"customer_id": ids[1], "csrf_token": csrf_of(page.text) or token},
        follow_redirects=False,
    )
    assert posted.status_code == 303, posted.text
    assert "reactivate-button" not in client.get("/audit/honeytokens").text


def csrf_of(html: str) -> str | None:
    marker = 'name="csrf_token" value="'
    at = html.find(marker)
    return html[at + len(marker) : html.find('"', at + len(marker))] if at >= 0 else None


def test_the_cli_reactivates_with_one_line_errors(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    env = {**env, "SPILLGUARD_HONEYTOKEN_EMAIL_DOMAIN": DOMAIN}
    customers = tmp_path / "customers.csv"
    customers.write_bytes(to_csv(DIRECTORY[:30]))
    assert run_spillguard(["customers", "import", str(customers)], env).returncode == 0
    planted_csv = tmp_path / "planted.csv"
    made = run_spillguard(
        ["customers", "honeytokens", "create", "2", "--export", str(planted_csv)], env
    )
    assert made.returncode == 0, made.stderr
    with planted_csv.open() as handle:
        ids = [r["Customer ID"] for r in csv.DictReader(handle)]
    retired = run_spillguard(["customers", "honeytokens", "retire", *ids], env)
    assert retired.returncode == 0, retired.stderr

    back = run_spillguard(["customers", "honeytokens", "reactivate", ids[0]], env)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == "reactivated 1 honeytoken customers"
    again = run_spillguard(["customers", "honeytokens", "reactivate", ids[0], ids[1]], env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "reactivated 1 honeytoken customers; 1 already active"
    listed = run_spillguard(["customers", "honeytokens", "list"], env)
    assert listed.stdout.count("active") == 2 and "retired" not in listed.stdout

    message = one_line_error(
        run_spillguard(["customers", "honeytokens", "reactivate", DIRECTORY[0].customer_id], env)
    )
    assert "1 of the ids is not a honeytoken customer" in message
    missing = run_spillguard(["customers", "honeytokens", "reactivate"], env)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    with make_session_factory(engine)() as session:
        states = list(session.scalars(select(HoneytokenCustomer.retired_at)))
        hashes = session.scalar(select(CustomerFieldHash.customer_id).limit(1))
    assert states == [None, None] and hashes is not None
