"""Access-log ingestion over REST: batches of JSON committed before the answer, per-item
rejects that are counted and visible, duplicates ingested once, out-of-order times,
limits (413, 429 with Retry-After), permissions, and each event in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from faker import Faker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.ingest import ACCESS_QUERY_KEY_PURPOSE, AccessIngestService, normalise_query
from spillguard.audit.models import AccessEvent, AccessEventCustomer, AccessReject
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, TokenScope
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from tests.factories.users import UserFactory

fake = Faker("en_GB")
URL = "/api/v1/access-events"


def access(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": fake.uuid4(),
        "time": (datetime.now(UTC) - timedelta(minutes=fake.random_int(1, 600))).isoformat(),
        "actor": f"{fake.user_name()}@example.co.uk",
        "action": fake.random_element(["view", "search", "export", "print", "update"]),
        "system": "crm",
        "record_type": "contract-renewal",
        "customer_ids": [str(fake.random_int(100_000, 999_999)) for _ in range(3)],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def ingest_token(users: UserFactory, db: Session, keys: KeyRing) -> dict[str, str]:
    owner = users.create("security")
    issued = TokenService(db, Principal.system("tests"), keys).create(
        owner.id, name="crm", scope=TokenScope.ACCESS_INGEST
    )
    db.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()  # type: ignore[no-any-return]


def test_a_batch_is_stored_once_with_its_audit_events(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    headers = ingest_token(users, db, keys)
    query = "  Postcode   SW1A MARCH "
    events = [
        access(action="view", customer_ids=["C-1001"], source_address="192.0.2.7"),
        access(action="export", customer_ids=["C-1", "C-2", "C-2"]),
        access(action="search", customer_ids=None, query=query, result_count=412),
    ]
    # Out of order: the newest first.
    events[0]["time"] = "2026-01-05T10:00:00+00:00"
    events[1]["time"] = "2025-12-01T08:30:00+01:00"
    answer = client.post(URL, json={"source": "crm", "events": events}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "duplicates": 0, "rejected": []}

    stored = {e.source_event_id: e for e in db.scalars(select(AccessEvent))}
    assert set(stored) == {e["id"] for e in events}
    viewed, exported, searched = (stored[e["id"]] for e in events)
    assert viewed.records == 1 and viewed.source_address == "192.0.2.7"
    assert exported.records == 3 and exported.occurred_at == datetime(
        2025, 12, 1, 7, 30, tzinfo=UTC
    )
    assert searched.records == 412 and searched.query_digest is not None
    import hashlib
    import hmac

    expected = hmac.new(
        keys.derive(ACCESS_QUERY_KEY_PURPOSE), normalise_query(query).encode(), hashlib.sha256
    ).digest()
    assert searched.query_digest == expected
    refs = db.scalars(
        select(AccessEventCustomer.customer_ref).where(AccessEventCustomer.event_id == exported.id)
    ).all()
    assert sorted(refs) == ["C-1", "C-2"]

    audit = db.get(AuditEvent, viewed.audit_event_id)
    assert audit is not None
    assert audit.action == "audit:access:view" and audit.actor_type == "external"
    assert audit.actor_label == events[0]["actor"] and audit.object_type == "customer"
    assert audit.object_id == "C-1001" and audit.source_ip == "192.0.2.7"
    assert audit.details["time"] == "2026-01-05T10:00:00+00:00"
    assert audit.details["source"] == "crm" and audit.details["customer_ids"] == ["C-1001"]
    search_audit = db.get(AuditEvent, searched.audit_event_id)
    assert search_audit is not None and search_audit.object_id is None
    assert search_audit.details["query_digest"] == expected.hex()
    # The query's text is nowhere in the database rows written.
    assert "sw1a" not in str(search_audit.details).lower()

    again = client.post(
        URL,
        json={"source": "crm", "events": [*events, access(id=events[0]["id"])]},
        headers=headers,
    )
    assert again.json() == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert db.scalar(select(func.count()).select_from(AccessEvent)) == 3


def test_duplicates_within_one_batch_count_once(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    headers = ingest_token(users, db, keys)
    one = access()
    answer = client.post(
        URL, json={"source": "billing", "events": [one, one, one]}, headers=headers
    )
    assert answer.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    # Another source may use the same event id.
    other = client.post(URL, json={"source": "callcentre", "events": [one]}, headers=headers)
    assert other.json()["accepted"] == 1


def test_bad_items_are_refused_one_by_one_counted_and_visible(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    headers = ingest_token(users, db, keys)
    customer = str(fake.random_int(100_000, 999_999))
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    batch = [
        access(),
        access(actor=None),
        access(time=future, customer_ids=[customer]),
        "not an object",
        access(time="2026-01-05T10:00:00"),
        access(customer_id=customer),
        access(action="delete"),
    ]
    answer = client.post(URL, json={"source": "crm", "events": batch}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 1 and body["duplicates"] == 0
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        1: "item 1: actor: missing",
        2: "item 2: time: more than 5 minutes in the future",
        3: "item 3: not a JSON object",
        4: "item 4: time: has no UTC offset (give Z or +hh:mm)",
        5: "item 5: unknown field 'customer_id'",
        6: reasons[6],
    }
    assert reasons[6].startswith("item 6: action: Input should be 'view'")
    assert customer not in answer.text

    viewer = users.auth("dpo")
    sources = client.get("/api/v1/access-sources", headers=viewer).json()
    assert [(s["name"], s["accepted"], s["rejected"]) for s in sources] == [("crm", 1, 6)]
    page = client.get("/api/v1/access-rejects", params={"source": "crm"}, headers=viewer).json()
    assert page["total"] == 6
    assert {r["reason"] for r in page["items"]} == set(reasons.values())
    assert all(r["channel"] == "rest" and len(r["item_digest"]) == 64 for r in page["items"])
    stored = " ".join(r for r in db.scalars(select(AccessReject.reason)))
    assert customer not in stored


def test_a_nul_character_is_refused_item_by_item_on_both_databases(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    """PostgreSQL text cannot hold U+0000: such an event is a reject of its own, the rest
    of the batch goes in (it was a 500 that lost the whole batch on PostgreSQL)."""
    headers = ingest_token(users, db, keys)
    batch = [
        access(),
        access(actor="a\u0000b@example.co.uk"),
        access(customer_ids=["123456", "12\u00003456"]),
        access(record_type="contract\u0000renewal"),
        {**access(), "cust\u0000omer": "x"},
        access(),
    ]
    answer = client.post(URL, json={"source": "crm", "events": batch}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 2
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        1: "item 1: actor: contains a NUL character, which cannot be stored",
        2: "item 2: customer_ids: contains a NUL character, which cannot be stored",
        3: "item 3: record_type: contains a NUL character, which cannot be stored",
        4: "item 4: unknown field 'cust\\x00omer'",  # repr: no NUL stored
    }
    stored = db.scalars(select(AccessReject.reason).order_by(AccessReject.id)).all()
    assert stored == [reasons[i] for i in (1, 2, 3, 4)]
    assert db.scalar(select(func.count()).select_from(AccessEvent)) == 2


def test_batch_limits_source_name_and_body_shape(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    headers = ingest_token(users, db, keys)
    huge = client.post(URL, json={"source": "crm", "events": [{}] * 5_001}, headers=headers)
    assert problem(huge, 413)["title"] == "Batch too large"
    bad_source = client.post(URL, json={"source": "c r m", "events": []}, headers=headers)
    assert problem(bad_source, 422)["field"] == "source"
    problem(client.post(URL, json={"source": "crm"}, headers=headers), 422)
    problem(
        client.post(
            URL, content=b"{not json", headers={**headers, "content-type": "application/json"}
        ),
        422,
    )
    empty = client.post(URL, json={"source": "crm", "events": []}, headers=headers)
    assert empty.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


def test_permissions(client: TestClient, db: Session, users: UserFactory, keys: KeyRing) -> None:
    batch = {"source": "crm", "events": [access()]}
    problem(client.post(URL, json=batch), 401)
    problem(client.post(URL, json=batch, headers=users.auth("auditor")), 403)
    problem(client.post(URL, json=batch, headers=users.auth("dpo")), 403)
    scoped = ingest_token(users, db, keys)
    # The ingestion-scoped token may send, not read.
    problem(client.get("/api/v1/access-events", headers=scoped), 403)
    problem(client.get("/api/v1/access-sources", headers=scoped), 403)
    assert client.post(URL, json=batch, headers=users.auth("security")).status_code == 200
    problem(client.get("/api/v1/access-rejects", headers=users.auth("helpdesk")), 403)


def test_a_flooding_source_gets_429_and_nothing_of_that_batch(
    app: FastAPI, client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(
        update={"access_ingest_rate": 1.0, "access_ingest_burst": 5}
    )
    headers = ingest_token(users, db, keys)
    source = f"flood-{fake.uuid4()[:8]}"
    first = client.post(
        URL, json={"source": source, "events": [access() for _ in range(5)]}, headers=headers
    )
    assert first.json()["accepted"] == 5
    flood = [access() for _ in range(3)]
    refused = client.post(URL, json={"source": source, "events": flood}, headers=headers)
    body = problem(refused, 429)
    assert body["type"].endswith("/access-rate-limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    ids = set(db.scalars(select(AccessEvent.source_event_id)))
    assert not ids & {e["id"] for e in flood} and len(ids) == 5
    # Another source has its own bucket.
    other = client.post(URL, json={"source": f"{source}-b", "events": flood}, headers=headers)
    assert other.json()["accepted"] == 3


def test_listing_events_with_filters(
    client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    headers = ingest_token(users, db, keys)
    actor = f"{fake.user_name()}@example.co.uk"
    events = [
        access(actor=actor, action="export", time="2026-01-10T09:00:00Z", customer_ids=["K-9"]),
        access(actor=actor, action="view", time="2026-01-11T09:00:00Z"),
        access(time="2026-01-12T09:00:00Z", customer_ids=["K-9", "K-10"]),
    ]
    assert (
        client.post(URL, json={"source": "crm", "events": events}, headers=headers).json()[
            "accepted"
        ]
        == 3
    )
    viewer = users.auth("auditor")

    def ids(**params: Any) -> list[str]:
        page = client.get("/api/v1/access-events", params=params, headers=viewer)
        assert page.status_code == 200, page.text
        return [e["source_event_id"] for e in page.json()["items"]]

    assert ids(actor=actor) == [events[1]["id"], events[0]["id"]]
    assert ids(action="export", actor=actor) == [events[0]["id"]]
    assert ids(customer="K-9") == [events[2]["id"], events[0]["id"]]
    assert ids(since="2026-01-11T00:00:00Z", until="2026-01-12T00:00:00Z") == [events[1]["id"]]
    assert ids(system="billing") == []
    problem(
        client.get(
            "/api/v1/access-events",
            params={"since": "2026-01-12T00:00:00Z", "until": "2026-01-11T00:00:00Z"},
            headers=viewer,
        ),
        422,
    )
    problem(client.get("/api/v1/access-events", params={"action": "delete"}, headers=viewer), 422)


def test_access_endpoints_conform_to_the_openapi_document(
    app: FastAPI, users: UserFactory, db: Session
) -> None:
    """Schemathesis (as in test_schemathesis.py) over the access-log operations only."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st
    from schemathesis import Case, GenerationMode

    from tests.functional.test_schemathesis import CHECKS, keep_an_admin

    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    admin_headers = keep_an_admin(users, db)
    failures: list[str] = []
    labels: list[str] = []
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path not in {
            "/api/v1/access-events",
            "/api/v1/access-rejects",
            "/api/v1/access-sources",
        }:
            continue
        labels.append(operation.label)
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @hypothesis_settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=cases)
        def exercise(case: Case) -> None:
            response = case.call_and_validate(headers=admin_headers(), checks=CHECKS)
            statuses.add(response.status_code)

        try:
            exercise()
        except Exception as exc:  # report every operation's failures together
            failures.append(f"{operation.label}:\n{exc}")
    assert sorted(labels) == [
        "GET /api/v1/access-events",
        "GET /api/v1/access-rejects",
        "GET /api/v1/access-sources",
        "POST /api/v1/access-events",
    ]
    assert failures == [], "\n\n".join(failures)
    assert {200, 422} <= statuses, statuses


def test_ingested_events_join_the_tamper_evident_log(
    app: FastAPI, client: TestClient, db: Session, users: UserFactory, keys: KeyRing
) -> None:
    from spillguard.audit.checkpoints import Signer
    from spillguard.audit.log import run_sequencer
    from spillguard.audit.models import LogLeaf
    from spillguard.audit.verify import verify_log

    headers = ingest_token(users, db, keys)
    events = [access() for _ in range(25)]
    assert (
        client.post(URL, json={"source": "crm", "events": events}, headers=headers).json()[
            "accepted"
        ]
        == 25
    )
    result = run_sequencer(app.state.session_factory, keys, app.state.settings)
    assert result.appended >= 25
    audit_ids = set(db.scalars(select(AccessEvent.audit_event_id)))
    logged = set(db.scalars(select(LogLeaf.event_id).where(LogLeaf.event_id.in_(audit_ids))))
    assert logged == audit_ids
    assert verify_log(db, Signer(keys).key).entries == result.size


def test_concurrent_batches_of_one_source_store_each_event_once(
    app: FastAPI, keys: KeyRing
) -> None:
    import threading

    from spillguard.audit.ingest import AccessIngestService
    from spillguard.core.db import transaction

    events = [access() for _ in range(200)]
    totals: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def send(batch: list[dict[str, Any]]) -> None:
        try:
            barrier.wait(10)
            with transaction(app.state.session_factory) as session:
                result = AccessIngestService(
                    session, app.state.settings, keys, Principal.system("tests")
                ).ingest("crm", batch, "rest")
            totals.append((result.accepted, result.duplicates))
        except BaseException as exc:  # reported below
            errors.append(exc)

    # Overlapping halves, sent at once: every event is accepted exactly once overall.
    batches = [events[:120], events[80:], events[40:160], events]
    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(a for a, _ in totals) == 200
    assert sum(a + d for a, d in totals) == sum(len(b) for b in batches)
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(AccessEvent)) == 200


def test_rows_written_in_bulk_read_back_as_the_events_handed_to_the_detectors(
    db: Session, settings: Settings, keys: KeyRing
) -> None:
    """The service writes its rows in the database's own form, bypassing SQLAlchemy's
    types: what it stored must read back exactly as the objects it gave the detectors."""
    events = [
        access(
            id=7,
            time="2026-03-29T01:59:59.123456+05:30",
            actor="zoë.ünsal@example.co.uk",
            action="export",
            customer_ids=[12, "C-ß", 12],
            source_address="2001:DB8::1",
        ),
        access(
            time="2026-03-28T23:00:00Z",
            action="search",
            customer_ids=None,
            query="surname: O'Brien",
            result_count=0,
        ),
    ]
    now = datetime(2026, 3, 29, 0, 0, 0, 1, tzinfo=UTC)
    result = AccessIngestService(db, settings, keys, Principal.system("tests")).ingest(
        "billing", events, "rest", rate_limit="off", now=now
    )
    assert result.accepted == 2 and not result.rejects
    given = {e.id: dict(vars(e)) for e in result.events}
    db.expire_all()
    columns = [c.key for c in AccessEvent.__mapper__.column_attrs]
    for event_id, values in given.items():
        row = db.get(AccessEvent, event_id)
        assert row is not None
        assert {c: getattr(row, c) for c in columns} == {c: values[c] for c in columns}
    exported = db.get(AccessEvent, result.events[0].id)
    assert exported is not None
    assert exported.occurred_at == datetime(2026, 3, 28, 20, 29, 59, 123456, tzinfo=UTC)
    assert exported.source_event_id == "7" and exported.source_address == "2001:db8::1"
    assert result.customer_refs[exported.id] == ["12", "C-ß"]
    audit = db.get(AuditEvent, exported.audit_event_id)
    assert audit is not None and audit.occurred_at == now
    assert audit.actor_label == "zoë.ünsal@example.co.uk"
    assert audit.details["customer_ids"] == ["12", "C-ß", "12"]
    assert audit.details["time"] == "2026-03-29T01:59:59.123456+05:30"
