"""Device inventory on SQLite and PostgreSQL: documents the phones report are matched
with inspected content — whether the content was inspected before the phone reported it
or after — and each document on each phone is recorded once in the ledger."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from spillguard.core.db import transaction
from spillguard.exposure.inventory import match_inventory, reported_hashes
from spillguard.exposure.models import Delivery
from tests.factories.customers import people, to_csv
from tests.factories.devices import SECURE, create_enrollment, enroll
from tests.factories.users import UserFactory

CUSTOMERS = people(25, seed=12)
EARLY = to_csv(CUSTOMERS[:10])  # inspected before any phone reports it
LATE = to_csv(CUSTOMERS[5:20])  # on the phone first, inspected afterwards


def doc(name: str, data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "file_name": name, "size": len(data)}


def run(app: FastAPI) -> Any:
    with transaction(app.state.session_factory) as session:
        return match_inventory(session)


def inventory_rows(app: FastAPI) -> list[tuple[int | None, str]]:
    with transaction(app.state.session_factory) as session:
        return [
            (d.device_id, d.channel)
            for d in session.scalars(select(Delivery).order_by(Delivery.id))
        ]


def test_documents_on_phones_join_the_ledger_once(
    app: FastAPI, client: TestClient, users: UserFactory
) -> None:
    dpo, security, admin = users.auth("dpo"), users.auth("security"), users.auth("admin")
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("c.csv", to_csv(CUSTOMERS), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=dpo,
    )
    assert imported.status_code == 201, imported.text
    early = client.post(
        "/api/v1/exposure/contents", files={"file": ("early.csv", EARLY)}, headers=security
    ).json()
    owner = users.create("helpdesk")
    phone = enroll(client, create_enrollment(client, admin, owner.id)["token"])
    documents = [doc("early.csv", EARLY), doc("late.csv", LATE), doc("holiday.jpg", b"jpeg")]
    assert phone.checkin(client, {**SECURE, "managed_documents": documents}).status_code == 200

    first = run(app)
    assert first.recorded == 1 and first.snapshots >= 1
    assert inventory_rows(app) == [(phone.id, "device-inventory")]
    assert run(app).recorded == 0  # nothing new

    # The same posture again writes no snapshot; a changed one is read, but the document
    # already recorded on this phone is not recorded twice.
    assert phone.checkin(client, {**SECURE, "managed_documents": documents[:2]}).status_code == 200
    assert run(app).recorded == 0

    # The late document is inspected now: the phone that already holds it is found.
    late = client.post(
        "/api/v1/exposure/contents", files={"file": ("late.csv", LATE)}, headers=security
    ).json()
    second = run(app)
    assert second.contents == 1 and second.recorded == 1
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=security).json()
    assert {c["content"]["sha256"] for c in on_phone["contents"]} == {
        early["sha256"],
        late["sha256"],
    }
    assert on_phone["distinct_customers"] == 20
    assert all(c["channels"] == ["device-inventory"] for c in on_phone["contents"])


def test_reported_hashes_ignores_junk() -> None:
    good = "a" * 64
    posture = {
        "managed_documents": [
            {"sha256": good.upper()},
            {"sha256": "short"},
            {"file_name": "no hash"},
            "not an object",
            {"sha256": 5},
        ]
    }
    assert reported_hashes(posture) == {good}
    assert reported_hashes(None) == set()
    assert reported_hashes({"managed_documents": None}) == set()
