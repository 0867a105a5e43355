"""Honeytoken customers end to end, on SQLite and PostgreSQL, through the real app, the
real mail filter and the CLI: created among the real customers without colliding with
them, listed without values, exported (audited) for the CRM; found by exact data match
in an inspected document, touched in an ingested access log, mailed through the filter —
each a critical alert naming the actor or channel and holding no value; never counted or
notified as a customer; kept by a re-import of the customer list; manage-only."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from spillguard.audit.models import Alert
from spillguard.core.db import make_session_factory
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal, TokenScope
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from spillguard.customers.honeytokens import HoneytokenService
from spillguard.customers.models import Customer, HoneytokenCustomer
from spillguard.customers.services import CustomerImportService
from spillguard.exposure.mailfilter import MailFilterServer
from tests.factories.customers import people, to_csv
from tests.factories.users import UserFactory
from tests.functional.live import one_line_error, run_spillguard
from tests.functional.test_api_errors import assert_clean_problem
from tests.functional.test_console import HTML, logged_in
from tests.functional.test_mail_filter import Sink, build, send, start_filter

DOMAIN = "customers.corp.example"
DIRECTORY = people(300, seed=77)
URL = "/api/v1/honeytokens"


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, sink: Sink) -> Settings:
    return settings.model_copy(
        update={
            "honeytoken_email_domain": DOMAIN,
            "mail_filter_next_hop": sink.address,
            "mail_filter_next_hop_timeout_seconds": 10,
            "log_level": "INFO",
        }
    )


@pytest.fixture
def security(users: UserFactory) -> dict[str, str]:
    return users.auth("security")


@pytest.fixture
def directory(client: TestClient, users: UserFactory) -> list[Any]:
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(DIRECTORY), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    assert imported.status_code == 201, imported.text
    return DIRECTORY


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    made = client.post(URL, json={"count": 5, **body}, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def export(client: TestClient, headers: dict[str, str]) -> list[dict[str, str]]:
    got = client.get(f"{URL}/export", headers=headers)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(got.text)))


def values_of(row: dict[str, str]) -> list[str]:
    """Every plain value of a honeytoken, in the forms a leak would write them."""
    phone = row["Phone"]
    return [
        row["First Name"] + " " + row["Last Name"],
        row["Email"],
        phone,
        phone.replace(" ", ""),
        "+44" + phone.replace(" ", "")[1:],
        row["Postcode"],
        row["Address Line 1"],
    ]


def honeytoken_alerts(db: Session) -> list[Alert]:
    db.expire_all()
    return list(db.scalars(select(Alert).where(Alert.detector == "honeytoken").order_by(Alert.id)))


def assert_no_values(blob: Any, rows: list[dict[str, str]]) -> None:
    text = json.dumps(blob, default=str).lower()
    for row in rows:
        for value in values_of(row):
            assert value.lower() not in text, "a honeytoken value leaked"


def actions(db: Session) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# --- create, list, export ------------------------------------------------------------------


def test_created_honeytokens_are_new_customers_listed_without_values_and_exported_audited(
    client: TestClient, security: dict[str, str], directory: list[Any], db: Session
) -> None:
    made = create(client, security, count=12, batch="crm-2026-12")
    assert made["created"] == 12 and made["batch"] == "crm-2026-12"
    assert made["drama_phone_range"] is True
    ids = made["customer_ids"]
    known = {p.customer_id for p in directory}
    assert len(set(ids)) == 12 and not set(ids) & known
    # Same format as the directory's ids: C + 7 digits.
    assert all(i.startswith("C") and len(i) == 8 and i[1:].isdigit() for i in ids)
    assert "email" not in made and DOMAIN not in json.dumps(made)

    listed = client.get(URL, headers=security).json()
    assert listed["total"] == 12
    assert {r["customer_id"] for r in listed["items"]} == set(ids)
    assert {r["status"] for r in listed["items"]} == {"active"}
    assert {r["batch"] for r in listed["items"]} == {"crm-2026-12"}

    rows = export(client, security)
    assert list(rows[0]) == [
        "Customer ID",
        "First Name",
        "Last Name",
        "Email",
        "Phone",
        "Date of Birth",
        "Address Line 1",
        "Town/City",
        "Postcode",
    ]
    assert sorted(r["Customer ID"] for r in rows) == sorted(ids)
    for column in ("Email", "Phone"):
        assert len({r[column] for r in rows}) == 12, f"{column} values repeat"
    assert len({(r["First Name"], r["Last Name"]) for r in rows}) == 12
    assert all(r["Email"].endswith("@" + DOMAIN) for r in rows)
    assert all(r["Phone"].startswith("07700 900") for r in rows)
    assert all(r["Date of Birth"] and r["Postcode"] and r["Town/City"] for r in rows)
    # No collision with the real customers' values.
    assert not {r["Email"] for r in rows} & {p.email for p in directory}
    assert not {r["Phone"] for r in rows} & {p.phone for p in directory}
    assert not {(r["First Name"], r["Last Name"]) for r in rows} & {
        (p.first_name, p.last_name) for p in directory
    }
    # The directory holds them as customers; only the markers say which.
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Customer)) == len(directory) + 12
    assert db.scalar(select(func.count()).select_from(HoneytokenCustomer)) == 12

    trail = actions(db)
    for action in (
        "customers:honeytokens:created",
        "customers:honeytokens:listed",
        "customers:honeytokens:exported",
    ):
        assert action in trail
    exported = db.scalar(
        select(AuditEvent).where(AuditEvent.action == "customers:honeytokens:exported")
    )
    assert exported is not None and exported.details["count"] == 12
    # The audit trail holds counts, never values or the canaries' ids. The creation event
    # records the configured phone range, a setting whose bounds a generated number can
    # equal by chance: that key is left out of the check.
    details = [
        {k: v for k, v in e.details.items() if k != "phone_range"}
        for e in db.scalars(select(AuditEvent))
    ]
    assert_no_values(details, rows)
    assert not any(i in json.dumps(details) for i in ids)


def test_a_second_batch_avoids_the_first_and_a_re_import_keeps_them(
    client: TestClient, security: dict[str, str], directory: list[Any], users: UserFactory
) -> None:
    first = create(client, security, count=20)
    second = create(client, security, count=20, phone_range="07700 900500-07700 900999")
    rows = export(client, security)
    assert len(rows) == 40
    assert len({r["Phone"] for r in rows}) == 40 and len({r["Email"] for r in rows}) == 40
    assert not set(first["customer_ids"]) & set(second["customer_ids"])

    # The customer list is re-imported from the billing system, without the honeytokens.
    again = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(directory), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    assert again.status_code == 201 and again.json()["removed"] == 0, again.text
    listed = client.get(URL, params={"limit": 100}, headers=security).json()
    assert {r["status"] for r in listed["items"]} == {"active"} and listed["total"] == 40
    # The phones of the second batch are recomputed from the range given at creation.
    later = [r["Phone"] for r in rows if r["Customer ID"] in second["customer_ids"]]
    assert len(later) == 20 and all("07700 900500" <= p <= "07700 900999" for p in later)


def test_values_already_in_the_directory_are_never_drawn(
    client: TestClient, security: dict[str, str], users: UserFactory
) -> None:
    # Eight of the ten numbers of a small range belong to real customers already.
    taken = [replace(p, phone=f"07700 90000{n}") for n, p in enumerate(people(8, seed=3)) if n]
    taken.append(replace(people(1, seed=9, start=50)[0], phone="07700 900009"))
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(taken), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    assert imported.status_code == 201, imported.text
    create(client, security, count=1, phone_range="07700900000-07700900009")
    create(client, security, count=1, phone_range="07700900000-07700900009")
    phones = sorted(r["Phone"] for r in export(client, security))
    assert phones == ["07700 900000", "07700 900008"]
    full = client.post(
        URL, json={"count": 1, "phone_range": "07700900000-07700900009"}, headers=security
    )
    assert "too full" in assert_clean_problem(full, 422)["detail"]


@pytest.mark.parametrize(
    ("ids", "span"),
    [
        # every other number from 0: inside the span, in its gaps
        ([f"C{2 * n:07d}" for n in range(1500)], (0, 2998)),
        # every number from 0 taken: just above the span, as a new customer's would be
        ([f"C{n:07d}" for n in range(1500)], (1500, 2499)),
    ],
    ids=["gaps", "dense"],
)
def test_honeytoken_ids_look_like_their_neighbours(
    db: Session, keys: KeyRing, settings: Settings, ids: list[str], span: tuple[int, int]
) -> None:
    rows = "".join(f"{i},customer.{n}@example.com\n" for n, i in enumerate(ids))
    system = Principal.system("tests")
    CustomerImportService(db, system, keys).import_csv(
        io.BytesIO(f"Customer ID,Email\n{rows}".encode()), id_column="Customer ID"
    )
    made = HoneytokenService(db, system, keys, settings).create(25, email_domain=DOMAIN)
    db.commit()
    planted = [r.identity.customer_id for r in made.records]
    assert len(set(planted)) == 25 and not set(planted) & set(ids)
    for customer_id in planted:
        assert customer_id.startswith("C") and len(customer_id) == 8, customer_id
        assert span[0] <= int(customer_id[1:]) <= span[1], customer_id


def test_bad_requests_are_problems_and_nothing_is_stored(
    client: TestClient, security: dict[str, str], directory: list[Any], db: Session
) -> None:
    for body, status, words in [
        ({"count": 0}, 422, None),
        ({"count": 1001}, 422, None),
        ({"count": 3, "phone_range": "07700900999-07700900000"}, 422, "must follow"),
        ({"count": 3, "phone_range": "07700900000-07700900003"}, 422, "at least 6"),
        ({"count": 3, "email_domain": "not a domain"}, 422, "not a valid mail domain"),
        ({"count": 3, "batch": "<script>"}, 422, "batch name"),
        ({"count": 3, "unknown": 1}, 422, None),
    ]:
        problem = assert_clean_problem(client.post(URL, json=body, headers=security), status)
        if words:
            assert words in problem["detail"], problem
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(HoneytokenCustomer)) == 0


def test_honeytokens_need_a_directory_and_a_mail_domain(
    client: TestClient, security: dict[str, str], app: FastAPI, users: UserFactory
) -> None:
    empty = assert_clean_problem(client.post(URL, json={"count": 2}, headers=security), 422)
    assert "import the customer list first" in empty["detail"]
    app.state.settings.honeytoken_email_domain = None
    client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(DIRECTORY[:20]), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    nodomain = assert_clean_problem(client.post(URL, json={"count": 2}, headers=security), 422)
    assert "honeytoken_email_domain" in nodomain["detail"]


@pytest.mark.parametrize("role", ["helpdesk", "auditor"])
def test_only_honeytoken_managers_may_create_list_or_export(
    client: TestClient, users: UserFactory, directory: list[Any], role: str, db: Session
) -> None:
    headers = users.auth(role)
    assert_clean_problem(client.post(URL, json={"count": 2}, headers=headers), 403)
    assert_clean_problem(client.get(URL, headers=headers), 403)
    assert_clean_problem(client.get(f"{URL}/export", headers=headers), 403)
    assert_clean_problem(client.get(URL), 401)
    dpo = users.auth("dpo")  # the dpo manages them as well as security
    assert create(client, dpo, count=2)["created"] == 2
    assert "customers:honeytokens:exported" not in actions(db)


# --- triggers ---------------------------------------------------------------------------------


def test_a_document_with_a_honeytokens_phone_and_name_is_matched_and_alerts(
    capfd: pytest.CaptureFixture[str],
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
) -> None:
    made = create(client, security, count=3)
    rows = export(client, security)
    token = rows[0]
    inspector = users.create("security", email="analyst@corp.example")
    headers = {"Authorization": f"Bearer {users.token(inspector)}"}
    text = (
        "Renewals due next month\n"
        f"{token['First Name']} {token['Last Name']}, mobile {token['Phone']}, "
        "contract ends 31/01/2027\n"
    )
    report = client.post(
        "/api/v1/inspections", files={"file": ("renewals.txt", text.encode())}, headers=headers
    )
    assert report.status_code == 200, report.text
    assert report.json()["customer_ids"] == [token["Customer ID"]]  # found by exact data match

    alerts = honeytoken_alerts(db)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.severity, alert.channel, alert.actor) == (
        "critical",
        "inspection",
        "analyst@corp.example",
    )
    assert alert.evidence["honeytokens"] == [token["Customer ID"]]
    assert alert.evidence["matches"] == {token["Customer ID"]: "record"}
    assert alert.evidence["content_sha256"] == report.json()["sha256"]
    assert_no_values([alert.title, alert.evidence], rows)
    assert "audit:alert:raised" in actions(db)

    # Its unique e-mail address alone (a primary-only match) is still a sighting.
    only_email = f"please add {token['Email']} to the mailing".encode()
    alone = client.post(
        "/api/v1/inspections", files={"file": ("list.txt", only_email)}, headers=headers
    )
    assert alone.json()["primary_only_ids"] == [token["Customer ID"]]
    alerts = honeytoken_alerts(db)
    assert len(alerts) == 2
    assert alerts[1].evidence["matches"] == {token["Customer ID"]: "primary-only"}

    # A real customer's values alone raise nothing.
    person = directory[5]
    client.post(
        "/api/v1/inspections",
        files={"file": ("one.txt", f"{person.name} {person.phone}".encode())},
        headers=headers,
    )
    assert len(honeytoken_alerts(db)) == 2
    logged = capfd.readouterr()
    assert_no_values(logged.out + logged.err, rows)
    assert made["customer_ids"]


def ingest_headers(users: UserFactory, db: Session, keys: KeyRing) -> dict[str, str]:
    owner = users.create("security")
    issued = TokenService(db, Principal.system("tests"), keys).create(
        owner.id, name="crm", scope=TokenScope.ACCESS_INGEST
    )
    db.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


def test_an_access_event_touching_a_honeytoken_alerts_naming_the_actor(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids = create(client, security, count=3)["customer_ids"]
    rows = export(client, security)
    headers = ingest_headers(users, db, keys)
    when = datetime.now(UTC) - timedelta(hours=1)
    events = [
        {
            "id": "crm-1",
            "time": when.isoformat(),
            "actor": "j.bloggs@corp.example",
            "action": "export",
            "system": "crm",
            "record_type": "contract-renewal",
            "customer_ids": [directory[0].customer_id, ids[0], ids[1]],
        },
        {
            "id": "crm-2",
            "time": when.isoformat(),
            "actor": "a.nother@corp.example",
            "action": "view",
            "system": "crm",
            "customer_ids": [directory[1].customer_id],
        },
    ]
    answer = client.post(
        "/api/v1/access-events", json={"source": "crm", "events": events}, headers=headers
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 2, answer.text

    alerts = honeytoken_alerts(db)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.actor, alert.channel, alert.severity) == (
        "j.bloggs@corp.example",
        "access-log",
        "critical",
    )
    assert alert.evidence["honeytokens"] == sorted(ids[:2])
    assert alert.evidence["events"][0]["source_event_id"] == "crm-1"
    assert alert.evidence["events"][0]["action"] == "export"
    assert "j.bloggs@corp.example" in alert.title
    assert_no_values([alert.title, alert.evidence], rows)

    # The same actor again that day: the same alert grows.
    events[0] = {**events[0], "id": "crm-3", "customer_ids": [ids[2]]}
    client.post(
        "/api/v1/access-events", json={"source": "crm", "events": events[:1]}, headers=headers
    )
    alerts = honeytoken_alerts(db)
    assert len(alerts) == 1
    assert alerts[0].evidence["honeytokens"] == sorted(ids)
    assert alerts[0].evidence["events_total"] == 2


def test_mail_to_a_honeytoken_address_through_the_mail_filter_alerts_naming_the_sender(
    capfd: pytest.CaptureFixture[str],
    client: TestClient,
    app: FastAPI,
    settings: Settings,
    keys: KeyRing,
    security: dict[str, str],
    directory: list[Any],
    sink: Sink,
    db: Session,
) -> None:
    create(client, security, count=4)
    rows = export(client, security)
    target = rows[1]
    server: MailFilterServer = start_filter(app, settings, keys)
    try:
        offer = build(
            to=[target["Email"]],
            sender="offers@dealer.example",
            subject="Your contract renewal: upgrade now",
            body="Dear customer,\n\nyour renewal is due; call us today.\n",
        )
        assert send(server, offer, [target["Email"]], sender="offers@dealer.example") == {}
        # An ordinary message to a real customer's address raises nothing.
        plain = build(to=[directory[3].email], sender="offers@dealer.example", subject="Hi")
        send(server, plain, [directory[3].email], sender="offers@dealer.example")
    finally:
        server.stop()
    assert len(sink.received) == 2  # mail to a honeytoken is not held up

    alerts = honeytoken_alerts(db)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.channel, alert.actor, alert.severity) == (
        "mail",
        "offers@dealer.example",
        "critical",
    )
    assert alert.evidence["sender_domain"] == "dealer.example"
    assert alert.evidence["honeytokens"] == [target["Customer ID"]]
    assert alert.evidence["messages_total"] == 1
    assert "dealer.example" in alert.title
    assert_no_values([alert.title, alert.evidence], rows)
    logged = capfd.readouterr()
    assert_no_values(logged.out + logged.err, rows)


def test_honeytoken_values_in_a_mailed_attachment_alert_on_the_mail_channel(
    client: TestClient,
    app: FastAPI,
    settings: Settings,
    keys: KeyRing,
    security: dict[str, str],
    directory: list[Any],
    sink: Sink,
    db: Session,
) -> None:
    create(client, security, count=2)
    rows = export(client, security)
    sheet = "\n".join(
        [
            "Customer,Mobile,Email",
            *(f"{r['First Name']} {r['Last Name']},{r['Phone']},{r['Email']}" for r in rows),
        ]
    )
    server = start_filter(app, settings, keys)
    try:
        message = build(
            to=["buyer@broker.example"],
            sender="insider@corp.example",
            attachments=[("renewals.csv", sheet.encode(), "text/csv")],
        )
        send(server, message, ["buyer@broker.example"], sender="insider@corp.example")
    finally:
        server.stop()
    alerts = honeytoken_alerts(db)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.channel, alert.actor) == ("mail", "insider@corp.example")
    assert sorted(alert.evidence["honeytokens"]) == sorted(r["Customer ID"] for r in rows)
    channels = [s["channel"] for s in alert.evidence["sightings"]]
    assert channels[0] == "mail" and "exposure-ledger" in channels
    assert_no_values([alert.title, alert.evidence], rows)


# --- never a customer to notify -----------------------------------------------------------


def test_an_incident_scope_with_a_honeytoken_counts_and_notifies_only_real_customers(
    client: TestClient, security: dict[str, str], directory: list[Any]
) -> None:
    ids = create(client, security, count=2)["customer_ids"]
    incident = client.post(
        "/api/v1/incidents",
        json={"type": "insider-leak", "title": "Renewals sold"},
        headers=security,
    ).json()
    url = f"/api/v1/incidents/{incident['id']}"
    stolen = [p.customer_id for p in directory[10:13]]
    scoped = client.put(f"{url}/scope", json={"customer_ids": [*stolen, *ids]}, headers=security)
    assert scoped.status_code == 200, scoped.text
    result = client.post(f"{url}/assessments", headers=security)
    assert result.status_code == 201, result.text
    assert result.json()["customer_count"] == 3
    listed = client.get(f"{url}/assessments/1/customers", headers=security)
    assert listed.status_code == 200, listed.text
    assert sorted(listed.json()["items"]) == sorted(stolen)


# --- the CLI ------------------------------------------------------------------------------------


def test_the_cli_creates_lists_and_exports_with_one_line_errors(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    env = {**env, "SPILLGUARD_HONEYTOKEN_EMAIL_DOMAIN": DOMAIN}
    customers = tmp_path / "customers.csv"
    customers.write_bytes(to_csv(DIRECTORY[:50]))
    imported = run_spillguard(["customers", "import", str(customers)], env)
    assert imported.returncode == 0, imported.stderr
    planted = tmp_path / "planted.csv"
    made = run_spillguard(
        ["customers", "honeytokens", "create", "3", "--batch", "cli", "--export", str(planted)],
        env,
    )
    assert made.returncode == 0, made.stderr
    assert "created 3 honeytoken customers in batch cli" in made.stdout
    assert "drama range" in made.stderr  # the warning
    with planted.open() as handle:
        first = list(csv.DictReader(handle))
    assert len(first) == 3 and planted.stat().st_mode & 0o077 == 0

    listed = run_spillguard(["customers", "honeytokens", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert all(r["Customer ID"] in listed.stdout for r in first)
    assert all(r["Email"] not in listed.stdout for r in first)

    again = tmp_path / "again.csv"
    exported = run_spillguard(["customers", "honeytokens", "export", str(again)], env)
    assert exported.returncode == 0, exported.stderr
    with again.open() as handle:
        assert sorted(tuple(r.values()) for r in csv.DictReader(handle)) == sorted(
            tuple(r.values()) for r in first
        )

    for args, words in [
        (["export", str(again)], "exists"),
        (["create", "2", "--phone-range", "123-456"], "valid phone number"),
        (["create", "5000"], "between 1 and 1000"),
    ]:
        message = one_line_error(run_spillguard(["customers", "honeytokens", *args], env))
        assert words in message
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(HoneytokenCustomer)) == 3


# --- who may know which customers are honeytokens ----------------------------------------

MARKER = "honeytoken customer"


def touch(
    client: TestClient, headers: dict[str, str], actor: str, event_id: str, refs: list[str]
) -> None:
    """One ingested CRM export by ``actor`` of these customer ids."""
    when = datetime.now(UTC) - timedelta(hours=1)
    item = {
        "id": event_id,
        "time": when.isoformat(),
        "actor": actor,
        "action": "export",
        "system": "crm",
        "record_type": "contract-renewal",
        "customer_ids": refs,
    }
    answer = client.post(
        "/api/v1/access-events", json={"source": "crm", "events": [item]}, headers=headers
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def test_auditors_see_honeytoken_alerts_without_learning_which_customers_are_traps(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids = create(client, security, count=3)["customer_ids"]
    real = directory[0].customer_id
    actor = "j.bloggs@corp.example"
    touch(client, ingest_headers(users, db, keys), actor, "crm-1", [real, ids[0], ids[1]])
    [stored] = honeytoken_alerts(db)
    auditor, dpo = users.auth("auditor"), users.auth("dpo")

    # Managers (security, dpo) see the ids.
    for headers in (security, dpo):
        [seen] = client.get("/api/v1/alerts", headers=headers).json()["items"]
        assert seen["evidence"]["honeytokens"] == sorted(ids[:2])
        assert seen["evidence"]["honeytoken_count"] == 2
        detail = client.get(f"/api/v1/alerts/{stored.id}", headers=headers).json()
        assert detail["events"]["items"][0]["customer_ids"] == sorted([real, *ids[:2]])

    # The auditor sees the alert whole, but a marker where the ids were.
    listed = client.get("/api/v1/alerts", headers=auditor)
    assert listed.status_code == 200, listed.text
    [seen] = listed.json()["items"]
    assert (seen["id"], seen["detector"], seen["actor"], seen["channel"], seen["severity"]) == (
        stored.id,
        "honeytoken",
        actor,
        "access-log",
        "critical",
    )
    assert seen["first_seen_at"] and seen["title"] == stored.title
    evidence = seen["evidence"]
    assert evidence["honeytokens"] == [MARKER] and "honeytoken_count" not in evidence
    assert evidence["events"][0]["honeytokens"] == [MARKER]
    assert evidence["events"][0]["source_event_id"] == "crm-1"
    assert evidence["why"].startswith("honeytoken customers exist only")
    detail = client.get(f"/api/v1/alerts/{stored.id}", headers=auditor).json()
    event = detail["events"]["items"][0]
    assert event["customers"] == 3 and event["customer_ids"] == [real, MARKER]
    activity = client.get(f"/api/v1/actors/{actor}/activity", headers=auditor).json()
    assert activity["alerts"][0]["evidence"]["honeytokens"] == [MARKER]
    for blob in (listed.json(), detail, activity):
        assert not any(i in json.dumps(blob) for i in ids), "a honeytoken id reached an auditor"
    # The stored alert is untouched by what was shown.
    db.expire_all()
    assert db.get(Alert, stored.id).evidence["honeytokens"] == sorted(ids[:2])  # type: ignore[union-attr]

    # The console: the alert page and the audit browser (the access event's details).
    client.headers.update(HTML)
    logged_in(client, users, "auditor")
    page = client.get(f"/audit/alerts/{stored.id}")
    assert page.status_code == 200 and MARKER in page.text and real in page.text
    assert not any(i in page.text for i in ids)
    trail = client.get("/audit", params={"action": "audit:access"})
    assert trail.status_code == 200 and real in trail.text and MARKER in trail.text
    assert not any(i in trail.text for i in ids)
    client.cookies.clear()
    logged_in(client, users, "security")
    page = client.get(f"/audit/alerts/{stored.id}")
    assert all(i in page.text for i in ids[:2])


# --- retirement -----------------------------------------------------------------------------


def test_a_retired_honeytoken_stops_alerting_and_matching_but_its_alerts_stay(
    client: TestClient,
    security: dict[str, str],
    directory: list[Any],
    users: UserFactory,
    db: Session,
    keys: KeyRing,
) -> None:
    ids = create(client, security, count=3)["customer_ids"]
    rows = {r["Customer ID"]: r for r in export(client, security)}
    ingest = ingest_headers(users, db, keys)
    touch(client, ingest, "early@corp.example", "crm-1", [ids[0]])
    [before] = honeytoken_alerts(db)

    retired = client.post(f"{URL}/retire", json={"customer_ids": [ids[0]]}, headers=security)
    assert retired.status_code == 200, retired.text
    assert retired.json() == {"retired": [ids[0]], "already_retired": []}
    again = client.post(f"{URL}/retire", json={"customer_ids": [ids[0]]}, headers=security)
    assert again.json() == {"retired": [], "already_retired": [ids[0]]}  # idempotent

    listed = {
        r["customer_id"]: r["status"] for r in client.get(URL, headers=security).json()["items"]
    }
    assert listed == {ids[0]: "retired", ids[1]: "active", ids[2]: "active"}
    assert sorted(r["Customer ID"] for r in export(client, security)) == sorted(ids[1:])

    # No new alert from it: not from an access log ...
    touch(client, ingest, "later@corp.example", "crm-2", [ids[0]])
    assert [a.id for a in honeytoken_alerts(db)] == [before.id]
    # ... nor from its values in a document: it is out of exact data match.
    token = rows[ids[0]]
    text = f"{token['First Name']} {token['Last Name']}, mobile {token['Phone']}\n"
    report = client.post(
        "/api/v1/inspections", files={"file": ("r.txt", text.encode())}, headers=security
    )
    assert report.status_code == 200, report.text
    assert report.json()["customer_ids"] == [] and report.json()["primary_only_ids"] == []
    assert [a.id for a in honeytoken_alerts(db)] == [before.id]
    # An active one still alerts.
    touch(client, ingest, "later@corp.example", "crm-3", [ids[1]])
    assert len(honeytoken_alerts(db)) == 2

    # Its past alert stays readable, naming it.
    kept = client.get(f"/api/v1/alerts/{before.id}", headers=security)
    assert kept.status_code == 200 and kept.json()["alert"]["evidence"]["honeytokens"] == [ids[0]]

    # Audited, with counts only.
    db.expire_all()
    events = list(
        db.scalars(select(AuditEvent).where(AuditEvent.action == "customers:honeytokens:retired"))
    )
    assert [e.details for e in events] == [
        {"requested": 1, "retired": 1, "already_retired": 0},
        {"requested": 1, "retired": 0, "already_retired": 1},
    ]
    assert not any(i in json.dumps([e.details for e in events]) for i in ids)


def test_retiring_an_unknown_id_refuses_the_whole_request(
    client: TestClient, security: dict[str, str], directory: list[Any], users: UserFactory
) -> None:
    ids = create(client, security, count=2)["customer_ids"]
    real = directory[0].customer_id
    for body, status, words in [
        ({"customer_ids": [ids[0], real]}, 404, "not a honeytoken customer"),
        ({"customer_ids": ["C0000000"]}, 404, "not a honeytoken customer"),
        ({"customer_ids": []}, 422, None),
        ({"customer_ids": [""]}, 422, None),
        ({"ids": [ids[0]]}, 422, None),
    ]:
        problem = assert_clean_problem(
            client.post(f"{URL}/retire", json=body, headers=security), status
        )
        if words:
            assert words in problem["detail"]
    # All or nothing: the honeytoken named with the real customer was not retired.
    listed = client.get(URL, headers=security).json()["items"]
    assert {r["status"] for r in listed} == {"active"}
    for role in ("auditor", "helpdesk"):
        refused = client.post(
            f"{URL}/retire", json={"customer_ids": [ids[0]]}, headers=users.auth(role)
        )
        assert_clean_problem(refused, 403)


def test_the_cli_retires_and_lists_retired_ones_with_one_line_errors(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    env = {**env, "SPILLGUARD_HONEYTOKEN_EMAIL_DOMAIN": DOMAIN}
    customers = tmp_path / "customers.csv"
    customers.write_bytes(to_csv(DIRECTORY[:30]))
    assert run_spillguard(["customers", "import", str(customers)], env).returncode == 0
    planted = tmp_path / "planted.csv"
    made = run_spillguard(
        ["customers", "honeytokens", "create", "2", "--export", str(planted)], env
    )
    assert made.returncode == 0, made.stderr
    with planted.open() as handle:
        ids = [r["Customer ID"] for r in csv.DictReader(handle)]

    retired = run_spillguard(["customers", "honeytokens", "retire", ids[0]], env)
    assert retired.returncode == 0, retired.stderr
    assert "retired 1 honeytoken customers" in retired.stdout
    again = run_spillguard(["customers", "honeytokens", "retire", ids[0], ids[1]], env)
    assert again.returncode == 0, again.stderr
    assert "retired 1 honeytoken customers; 1 already retired" in again.stdout
    listed = run_spillguard(["customers", "honeytokens", "list"], env)
    assert listed.stdout.count("retired") == 2

    message = one_line_error(
        run_spillguard(["customers", "honeytokens", "retire", DIRECTORY[0].customer_id], env)
    )
    assert "1 of the ids is not a honeytoken customer" in message
    missing = run_spillguard(["customers", "honeytokens", "retire"], env)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    with make_session_factory(engine)() as session:
        retired_at = list(session.scalars(select(HoneytokenCustomer.retired_at)))
    assert len(retired_at) == 2 and all(r is not None for r in retired_at)


def test_a_honeytoken_created_after_a_retirement_is_matched_at_once(
    client: TestClient, security: dict[str, str], directory: list[Any], db: Session
) -> None:
    # Retire one and create one: the directory has as many active customers as before,
    # yet the cached EDM index (built by the first inspection) must not be reused.
    first = create(client, security, count=2)["customer_ids"]
    scan = client.post(
        "/api/v1/inspections", files={"file": ("a.txt", b"nothing here")}, headers=security
    )
    assert scan.status_code == 200, scan.text
    client.post(f"{URL}/retire", json={"customer_ids": first[:1]}, headers=security)
    [new] = create(client, security, count=1)["customer_ids"]
    token = {r["Customer ID"]: r for r in export(client, security)}[new]
    text = f"{token['First Name']} {token['Last Name']}, mobile {token['Phone']}\n"
    report = client.post(
        "/api/v1/inspections", files={"file": ("r.txt", text.encode())}, headers=security
    )
    assert report.status_code == 200 and report.json()["customer_ids"] == [new], report.text
    assert any(new in a.evidence["honeytokens"] for a in honeytoken_alerts(db))
