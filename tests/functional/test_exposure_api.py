"""The exposure ledger through the real app, on SQLite and PostgreSQL: content inspected
and registered by hash, deliveries to a phone, a person, an outside address and a third
party; "what is on this phone", "where has this customer gone", domains and filters;
duplicates recorded once; who may do what; bad input refused whole with a problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from spillguard.exposure.models import Delivery
from tests.factories.customers import people, to_csv
from tests.factories.devices import create_enrollment, enroll
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem, fields

DIRECTORY = people(40, seed=77)
SHEET_PEOPLE = DIRECTORY[:12]
MEMO_PEOPLE = DIRECTORY[10:15]  # two customers in both


def sheet(rows: list[Any]) -> bytes:
    return to_csv(rows)


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
    phone = enroll(client, enrollment["token"])
    return {
        "security": users.auth("security"),
        "auditor": users.auth("auditor"),
        "helpdesk": users.auth("helpdesk"),
        "owner": owner,
        "phone": phone,
    }


def register(client: TestClient, headers: dict[str, str], name: str, data: bytes) -> dict[str, Any]:
    response = client.post(
        "/api/v1/exposure/contents", files={"file": (name, data, "text/csv")}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def record(client: TestClient, headers: dict[str, str], *items: dict[str, Any]) -> Any:
    return client.post("/api/v1/exposure/deliveries", json={"items": list(items)}, headers=headers)


def test_what_reached_a_phone_and_where_a_customer_went(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    security, phone = setup["security"], setup["phone"]
    big = register(client, security, "top-customers.csv", sheet(SHEET_PEOPLE))
    assert big["customer_count"] == 12
    assert big["label"] in {"confidential", "restricted"}
    assert big["status"] == "inspected"
    memo = register(client, security, "memo.csv", sheet(MEMO_PEOPLE))
    assert memo["customer_count"] == 5

    when = datetime.now(UTC) - timedelta(hours=2)
    response = record(
        client,
        security,
        {
            "sha256": big["sha256"],
            "destination": {"type": "device", "device_id": phone.id},
            "channel": "mail",
            "occurred_at": when.isoformat(),
            "source_system": "mail-filter",
            "source_id": "<m1@example.org> to phone",
        },
        {
            "sha256": memo["sha256"].upper(),
            "destination": {"type": "device", "device_id": phone.id},
            "source_system": "crm",
        },
        {
            "sha256": memo["sha256"],
            "destination": {"type": "recipient", "recipient": "Partner@Example.CO.UK"},
            "channel": "mail",
            "source_system": "mail-filter",
        },
        {
            "sha256": big["sha256"],
            "destination": {"type": "third-party", "third_party": "Acme  Mailing   Ltd"},
            "source_system": "crm",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 4, "duplicates": 0}

    # The same delivery reported again (same source system and id) is not recorded twice.
    again = record(
        client,
        security,
        {
            "sha256": big["sha256"],
            "destination": {"type": "device", "device_id": phone.id},
            "channel": "mail",
            "source_system": "mail-filter",
            "source_id": "<m1@example.org> to phone",
        },
    )
    assert again.json() == {"recorded": 0, "duplicates": 1}
    assert db.scalar(select(func.count()).select_from(Delivery)) == 4

    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=security).json()
    assert on_phone["distinct_customers"] == 15  # 12 + 5, two of them in both
    assert {c["content"]["sha256"] for c in on_phone["contents"]} == {big["sha256"], memo["sha256"]}
    first = next(c for c in on_phone["contents"] if c["content"]["sha256"] == big["sha256"])
    assert first["channels"] == ["mail"] and first["deliveries"] == 1
    assert sum(on_phone["label_counts"].values()) == 2

    ids = client.get(
        f"/api/v1/exposure/devices/{phone.id}/customers?limit=10", headers=security
    ).json()
    assert ids["total"] == 15 and len(ids["items"]) == 10
    assert ids["items"] == sorted(p.customer_id for p in DIRECTORY[:15])[:10]

    # The device delivery also names the phone's owner.
    owner = client.get(f"/api/v1/exposure/users/{setup['owner'].id}", headers=security).json()
    assert owner["distinct_customers"] == 15

    both = DIRECTORY[10].customer_id  # in the sheet and the memo
    trail = client.get(f"/api/v1/exposure/customers/{both}/deliveries", headers=security).json()
    assert trail["total"] == 4
    kinds = sorted(item["destination"]["type"] for item in trail["items"])
    assert kinds == ["device", "device", "recipient", "third-party"]
    outside = next(i for i in trail["items"] if i["destination"]["type"] == "recipient")
    assert outside["destination"]["recipient"] == "partner@example.co.uk"
    assert outside["destination"]["domain"] == "example.co.uk"
    party = next(i for i in trail["items"] if i["destination"]["type"] == "third-party")
    assert party["destination"]["third_party"] == "Acme Mailing Ltd"
    only_sheet = DIRECTORY[0].customer_id
    assert (
        client.get(f"/api/v1/exposure/customers/{only_sheet}/deliveries", headers=security).json()[
            "total"
        ]
        == 2
    )

    domain = client.get("/api/v1/exposure/domains/EXAMPLE.co.uk", headers=security).json()
    assert domain["distinct_customers"] == 5

    # Filters narrow the ledger; the content's trail lists every destination.
    by_channel = client.get("/api/v1/exposure/deliveries?channel=mail", headers=security).json()
    assert by_channel["total"] == 2
    by_doc = client.get(
        f"/api/v1/exposure/deliveries?sha256={big['sha256']}", headers=security
    ).json()
    assert {i["destination"]["type"] for i in by_doc["items"]} == {"device", "third-party"}
    recent = client.get(
        "/api/v1/exposure/deliveries",
        params={"since": (when + timedelta(minutes=1)).isoformat()},
        headers=security,
    ).json()
    assert recent["total"] == 3

    # Listing customers and tracing one are audited (ids and counts only).
    actions = set(db.scalars(select(AuditEvent.action)))
    assert {
        "exposure:deliveries:recorded",
        "exposure:customer:traced",
        "exposure:device-customers:listed",
    } <= actions


def test_roles(client: TestClient, setup: dict[str, Any]) -> None:
    security, auditor, helpdesk = setup["security"], setup["auditor"], setup["helpdesk"]
    content = register(client, security, "list.csv", sheet(SHEET_PEOPLE[:3]))
    item = {
        "sha256": content["sha256"],
        "destination": {"type": "device", "device_id": setup["phone"].id},
        "source_system": "crm",
    }
    assert record(client, auditor, item).status_code == 403
    assert record(client, helpdesk, item).status_code == 403
    refused = client.post(
        "/api/v1/exposure/contents",
        files={"file": ("x.csv", sheet(SHEET_PEOPLE[:3]), "text/csv")},
        headers=auditor,
    )
    assert refused.status_code == 403
    assert record(client, security, item).status_code == 200
    assert client.get("/api/v1/exposure/deliveries", headers=auditor).json()["total"] == 1
    assert client.get("/api/v1/exposure/deliveries", headers=helpdesk).status_code == 403
    assert client.get("/api/v1/exposure/deliveries").status_code == 401


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"sha256": "0" * 64}, 404, "inspect"),
        ({"destination": {"type": "device", "device_id": 999999}}, 422, "no device"),
        ({"destination": {"type": "user", "user_id": 999999}}, 422, "no user"),
        ({"destination": {"type": "device", "device_id": 1, "recipient": "a@b.cd"}}, 422, ""),
        ({"destination": {"type": "recipient", "recipient": "not an address"}}, 422, "e-mail"),
        ({"destination": {"type": "recipient", "recipient": "a@localhost"}}, 422, "domain"),
        ({"destination": {"type": "third-party"}}, 422, "third party"),
        ({"destination": {"type": "satellite", "device_id": 1}}, 422, ""),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, 422, "future"),
        ({"occurred_at": "2024-01-01T00:00:00"}, 422, ""),  # no time zone
        ({"channel": "carrier-pigeon"}, 422, ""),
        ({"source_system": ""}, 422, ""),
        ({"unexpected": 1}, 422, ""),
    ],
)
def test_bad_deliveries_refuse_the_batch(
    client: TestClient,
    setup: dict[str, Any],
    db: Session,
    change: dict[str, Any],
    status: int,
    words: str,
) -> None:
    security = setup["security"]
    content = register(client, security, "list.csv", sheet(SHEET_PEOPLE[:3]))
    good = {
        "sha256": content["sha256"],
        "destination": {"type": "device", "device_id": setup["phone"].id},
        "source_system": "crm",
    }
    response = record(client, security, good, {**good, **change})
    assert_clean_problem(response, status)
    if words:  # the batch's refusals of our own name the item
        assert words in response.json()["detail"].lower()
        assert response.json()["detail"].startswith("items[1]: ")
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/exposure/deliveries?min_label=secretish",
        "/api/v1/exposure/deliveries?sha256=xyz",
        "/api/v1/exposure/deliveries?since=yesterday",
        "/api/v1/exposure/domains/not_a_domain",
        "/api/v1/exposure/contents/" + "g" * 64,
        "/api/v1/exposure/devices/0",
        "/api/v1/exposure/customers/C-nobody/deliveries",
    ],
)
def test_bad_queries_are_problems(client: TestClient, setup: dict[str, Any], url: str) -> None:
    response = client.get(url, headers=setup["security"])
    assert_clean_problem(response, 404 if "nobody" in url else 422)


def test_empty_batch_and_oversized_batch(client: TestClient, setup: dict[str, Any]) -> None:
    security = setup["security"]
    assert_clean_problem(record(client, security), 422)
    huge = b'{"items": [' + b" " * (9 * 1024 * 1024) + b"]}"
    response = client.post(
        "/api/v1/exposure/deliveries",
        content=huge,
        headers={**security, "Content-Type": "application/json"},
    )
    assert_clean_problem(response, 413)


def test_large_batches_with_source_ids_are_recorded_once(
    client: TestClient, setup: dict[str, Any], db: Session
) -> None:
    """Batches large enough for PostgreSQL's staged path (COPY into a temporary table,
    then INSERT … ON CONFLICT): repeats inside a batch and across batches are each
    recorded once."""
    security, phone = setup["security"], setup["phone"]
    memo = register(client, security, "memo.csv", sheet(MEMO_PEOPLE))

    def item(n: int) -> dict[str, Any]:
        return {
            "sha256": memo["sha256"],
            "destination": {"type": "device", "device_id": phone.id},
            "channel": "mail",
            "source_system": "mail-filter",
            "source_id": f"<m{n}@example.org> to phone",
        }

    first = record(client, security, *[item(n) for n in range(300)], item(7), item(299))
    assert first.status_code == 200, first.text
    assert first.json() == {"recorded": 300, "duplicates": 2}
    second = record(client, security, *[item(n) for n in range(150, 600)])
    assert second.json() == {"recorded": 300, "duplicates": 150}
    assert db.scalar(select(func.count()).select_from(Delivery)) == 600
    refs = db.scalars(select(Delivery.source_ref)).all()
    assert len(set(refs)) == 600
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=security).json()
    first_content = on_phone["contents"][0]
    assert first_content["deliveries"] == 600


def test_source_system_is_required_and_the_schema_says_so(
    client: TestClient, setup: dict[str, Any]
) -> None:
    """docs/exposure.md: each delivery names the system that reports it."""
    security = setup["security"]
    content = register(client, security, "list.csv", sheet(SHEET_PEOPLE[:3]))
    item = {
        "sha256": content["sha256"],
        "destination": {"type": "device", "device_id": setup["phone"].id},
    }
    body = assert_clean_problem(record(client, security, item), 422)
    assert fields(body) == {"body.items.0.source_system"}

    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]
    delivery = schemas["DeliveryIn"]
    assert "source_system" in delivery["required"]
    for model in ("DeliveryIn", "DestinationIn", "GatewayLinkCreated"):
        properties = schemas[model]["properties"].items()
        undescribed = [name for name, spec in properties if not spec.get("description")]
        assert undescribed == [], (model, undescribed)
    params = client.get("/api/openapi.json").json()["paths"]["/api/v1/exposure/links"]["post"]
    described = {p["name"]: p.get("description", "") for p in params["parameters"]}
    assert described.keys() == {"user_id", "days"}
    assert "1 to 365" in described["days"] and "gateway_link_days" in described["days"]
