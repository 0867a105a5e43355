"""The mail quarantine through the API and the console, on SQLite and PostgreSQL: messages
the filter held are listed, released to their recipients (recorded in the ledger) or
deleted (erased), by ``security`` and ``dpo`` only, each decision audited; a next hop
that is down leaves the message held."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings
from spillguard.exposure.mailfilter import MailFilterServer
from spillguard.exposure.models import Delivery, HeldDocument, StoredBlob
from spillguard.exposure.store import DocumentUnavailable, HeldDocuments, blob_store
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem
from tests.functional.test_console import csrf_from, logged_in
from tests.functional.test_mail_filter import (
    FEW,
    SENDER,
    XLSX,
    Sink,
    World,
    build,
    count,
    mail_filter,
    send,
    settings,
    sink,
    world,
)

__all__ = ["mail_filter", "settings", "sink", "world"]  # fixtures, imported for pytest

OUTSIDER = "buyer@partner.example"
API = "/api/v1/exposure/quarantine"


@pytest.fixture
def held(
    client: TestClient, world: World, mail_filter: MailFilterServer, sink: Sink
) -> list[dict[str, Any]]:
    """Two outbound messages with a restricted spreadsheet, held."""
    for subject in ("First", "Second"):
        message = build(
            to=[OUTSIDER],
            subject=subject,
            attachments=[("customers.xlsx", customers_xlsx(FEW), XLSX)],
        )
        send(mail_filter, message, [OUTSIDER])
    sink.received.clear()  # the two notices to the sender
    listed = client.get(API, headers=world.security)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 2
    return body["items"]  # type: ignore[no-any-return]


def test_release_hands_the_message_on_and_records_it(
    client: TestClient, world: World, held: list[dict[str, Any]], sink: Sink, db: Session
) -> None:
    item = held[0]
    assert (item["sender"], item["recipients"], item["status"]) == (SENDER, [OUTSIDER], "held")
    assert item["label"] == "restricted" and item["customer_count"] == len(FEW)
    assert client.get(f"{API}/{item['id']}", headers=world.security).json() == item

    released = client.post(
        f"{API}/{item['id']}/release", json={"note": "Approved by the DPO"}, headers=world.security
    )
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert released.json()["decision_note"] == "Approved by the DPO"
    assert [(r.mail_from, r.recipients) for r in sink.received] == [(SENDER, [OUTSIDER])]
    message = sink.received[0].message
    assert message["X-Spillguard-Action"] == "released"
    assert message["Subject"] in {"First", "Second"}  # the message as it was sent
    assert [p.get_filename() for p in message.iter_attachments()] == ["customers.xlsx"]

    rows = list(db.scalars(select(Delivery)))
    assert {(r.destination_type, r.recipient, r.domain) for r in rows} == {
        ("recipient", OUTSIDER, "partner.example")
    }
    assert max(r.customer_count for r in rows) == len(FEW)
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "exposure:quarantine:released"))
    assert event is not None and event.object_id == str(item["id"])
    assert OUTSIDER not in str(event.details)

    again = client.post(f"{API}/{item['id']}/release", headers=world.security)
    assert_clean_problem(again, 409)
    assert len(sink.received) == 1
    still = client.get(API, params={"status": "held"}, headers=world.security).json()
    assert [i["id"] for i in still["items"]] == [held[1]["id"]]
    # status=all lists every message whatever its state, as leaving status out does.
    for params in ({"status": "all"}, {}):
        every = client.get(API, params=params, headers=world.security).json()
        assert [(i["id"], i["status"]) for i in every["items"]] == [
            (held[0]["id"], "released"),
            (held[1]["id"], "held"),
        ]
    done = client.get(API, params={"status": "released"}, headers=world.security).json()
    assert [i["id"] for i in done["items"]] == [held[0]["id"]] and done["total"] == 1


def test_delete_erases_the_stored_message(
    client: TestClient,
    users: UserFactory,
    world: World,
    held: list[dict[str, Any]],
    db: Session,
    keys: KeyRing,
    settings: Settings,
) -> None:
    dpo = users.auth("dpo")
    item = held[1]
    deleted = client.delete(f"{API}/{item['id']}", headers=dpo)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted"
    db.expire_all()
    documents = list(db.scalars(select(HeldDocument).where(HeldDocument.erased_at.is_not(None))))
    assert len(documents) == 1 and documents[0].wrapped_key is None
    assert db.get(StoredBlob, documents[0].id) is None
    with pytest.raises(DocumentUnavailable):
        HeldDocuments(db, keys, blob_store(settings.exposure_store_dir)).read(documents[0])
    assert_clean_problem(client.post(f"{API}/{item['id']}/release", headers=dpo), 409)
    assert_clean_problem(client.delete(f"{API}/{item['id']}", headers=dpo), 409)
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "exposure:quarantine:deleted"))
    assert event is not None and event.actor_label is not None


def test_a_next_hop_that_is_down_leaves_the_message_held(
    client: TestClient, world: World, held: list[dict[str, Any]], sink: Sink, db: Session
) -> None:
    sink.stop()
    refused = client.post(f"{API}/{held[0]['id']}/release", headers=world.security)
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["title"] == "Mail server unavailable" and "try again later" in body["detail"]
    assert client.get(f"{API}/{held[0]['id']}", headers=world.security).json()["status"] == "held"
    assert count(db, Delivery) == 0
    sink.start()
    assert client.post(f"{API}/{held[0]['id']}/release", headers=world.security).status_code == 200


def test_only_security_and_dpo_manage_the_quarantine(
    client: TestClient, users: UserFactory, held: list[dict[str, Any]]
) -> None:
    for role in ("admin", "auditor", "helpdesk"):
        headers = users.auth(role)
        assert_clean_problem(client.get(API, headers=headers), 403)
        assert_clean_problem(client.post(f"{API}/{held[0]['id']}/release", headers=headers), 403)
        assert_clean_problem(client.delete(f"{API}/{held[0]['id']}", headers=headers), 403)
    assert_clean_problem(client.get(API), 401)
    dpo = users.auth("dpo")
    assert client.get(API, headers=dpo).json()["total"] == 2
    assert_clean_problem(client.get(f"{API}/424242", headers=dpo), 404)
    assert_clean_problem(client.get(f"{API}/0", headers=dpo), 422)
    assert_clean_problem(client.get(API, params={"status": "lost"}, headers=dpo), 422)
    too_long = client.post(f"{API}/{held[0]['id']}/release", json={"note": "x" * 501}, headers=dpo)
    assert_clean_problem(too_long, 422)


def test_the_console_page_releases_and_deletes(
    client: TestClient, users: UserFactory, held: list[dict[str, Any]], sink: Sink
) -> None:
    client.headers.update({"Accept": "text/html"})
    logged_in(client, users, "security")
    page = client.get("/exposure/quarantine")
    assert page.status_code == 200
    assert page.text.count('data-testid="quarantine-row"') == 2
    assert OUTSIDER in page.text and "restricted" in page.text
    token = csrf_from(page.text)
    first, second = held[0]["id"], held[1]["id"]
    # The number the sender's notice quotes ("Quarantine reference: N") is shown.
    references = re.findall(r'data-testid="reference">(\d+)<', page.text)
    assert references == [str(first), str(second)]
    no_csrf = client.post(f"/exposure/quarantine/{first}/release", follow_redirects=False)
    assert no_csrf.status_code == 403 and sink.received == []
    released = client.post(
        f"/exposure/quarantine/{first}/release",
        data={"csrf_token": token, "note": "checked"},
        follow_redirects=False,
    )
    assert released.status_code == 303
    assert released.headers["location"] == "/exposure/quarantine?done=released"
    assert len(sink.received) == 1
    sink.stop()  # a release that cannot go says so on the page and changes nothing
    down = client.post(f"/exposure/quarantine/{second}/release", data={"csrf_token": token})
    assert down.status_code == 503 and "try again later" in down.text
    deleted = client.post(
        f"/exposure/quarantine/{second}/delete",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    statuses = re.findall(
        r'data-testid="status">(\w+)', client.get("/exposure/quarantine?status=all").text
    )
    assert sorted(statuses) == ["deleted", "released"]
    assert client.get("/exposure/quarantine?status=nonsense").status_code == 422


def test_admin_has_no_quarantine_page(client: TestClient, users: UserFactory) -> None:
    client.headers.update({"Accept": "text/html"})
    logged_in(client, users, "admin")
    assert "/exposure/quarantine" not in client.get("/").text
    assert client.get("/exposure/quarantine").status_code == 403
