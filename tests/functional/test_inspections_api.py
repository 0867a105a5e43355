"""POST /api/v1/inspections and /inspections/reveal through the real app, on SQLite and
PostgreSQL: the report (same shape as `spillguard scan --format json`), matching against
the imported directory (and seeing a re-import at once), who may inspect and reveal, the
reveal's audit event, bad input as problems, and no customer value in any response, log
line or audit event unless a dpo asked for it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.app import create_app
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings
from spillguard.inspection.scan import scan
from tests.factories.customers import people, to_csv
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.test_api_errors import assert_clean_problem

CUSTOMERS = people(40, seed=23)
CARD = "4539 1488 0343 6467"  # Luhn-valid, in a Visa range, as a person writes it


def note_about(person) -> str:
    return (
        f"Call notes: {person.name} rang from {person.phone} about the bill, "
        f"e-mail {person.email}, postcode {person.postcode}, paid by card {CARD}.\n"
    )


def canaries(person) -> list[str]:
    """The plain values a masked response must never contain, in every written form."""
    return [
        person.email,
        person.phone,
        person.phone.replace(" ", ""),
        "+44" + person.phone.replace(" ", "")[1:],
        CARD,
        CARD.replace(" ", ""),
    ]


def import_customers(client: TestClient, headers: dict[str, str], rows=CUSTOMERS) -> dict:
    response = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(rows), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def inspect_file(client: TestClient, headers: dict[str, str], name: str, data: bytes, **kw):
    return client.post("/api/v1/inspections", files={"file": (name, data)}, headers=headers, **kw)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # INFO, so the access log and the index-load lines are written (and searched).
    return settings.model_copy(update={"log_level": "INFO"})


@pytest.fixture
def security(users: UserFactory) -> dict[str, str]:
    return users.auth("security")


@pytest.fixture
def dpo(users: UserFactory) -> dict[str, str]:
    return users.auth("dpo")


def test_a_file_and_json_text_give_the_scan_report(
    client: TestClient, security: dict[str, str]
) -> None:
    text = note_about(CUSTOMERS[0]).encode()
    response = inspect_file(client, security, "notes.txt", text)
    assert response.status_code == 200, response.text
    body = response.json()
    # Exactly the object `spillguard scan --format json` prints for this item.
    assert body == scan(text, name="notes.txt").to_dict()
    assert body["label"] == "confidential" and body["status"] == "findings"
    assert body["categories"]["payment_card"] == 1
    assert "•••• •••• •••• 6467" in [f["masked"] for f in body["findings"]]

    as_json = client.post(
        "/api/v1/inspections",
        json={"text": text.decode(), "name": "notes.txt"},
        headers=security,
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == body
    unnamed = client.post("/api/v1/inspections", json={"text": "nothing here"}, headers=security)
    assert unnamed.json()["path"] == "<text>" and unnamed.json()["status"] == "clean"


def test_customers_of_the_directory_are_matched_and_a_re_import_is_seen_at_once(
    client: TestClient, dpo: dict[str, str], security: dict[str, str]
) -> None:
    sheet = customers_xlsx(CUSTOMERS[:12])
    before = inspect_file(client, security, "export.xlsx", sheet).json()
    assert before["customer_count"] == 0  # no directory yet: patterns only

    import_customers(client, dpo)
    report = inspect_file(client, security, "export.xlsx", sheet).json()
    assert report["customer_count"] == 12
    assert sorted(report["customer_ids"]) == sorted(p.customer_id for p in CUSTOMERS[:12])
    assert report["label"] == "restricted"  # ≥ 10 matched customers
    assert report["customers"][0]["primary"] == ["email"]

    # A re-import without five of them: the next inspection uses the new directory.
    import_customers(client, dpo, CUSTOMERS[5:])
    again = inspect_file(client, security, "export.xlsx", sheet).json()
    assert again["customer_count"] == 7
    assert again["label"] == "confidential"


@pytest.mark.parametrize(
    ("role", "inspect", "reveal"),
    [
        ("admin", 200, 403),
        ("security", 200, 403),
        ("dpo", 200, 200),
        ("helpdesk", 403, 403),
        ("auditor", 403, 403),
    ],
)
def test_who_may_inspect_and_reveal(
    client: TestClient, users: UserFactory, role: str, inspect: int, reveal: int
) -> None:
    headers = users.auth(role)
    body = {"text": note_about(CUSTOMERS[1]), "name": "n.txt"}
    assert client.post("/api/v1/inspections", json=body, headers=headers).status_code == inspect
    revealed = client.post(
        "/api/v1/inspections/reveal",
        json={**body, "purpose": "breach assessment INC-7"},
        headers=headers,
    )
    assert revealed.status_code == reveal, revealed.text
    if reveal != 200:
        assert_clean_problem(revealed, 403)


def test_a_dpo_reveal_shows_full_values_and_is_audited(
    client: TestClient, dpo: dict[str, str], db: Session
) -> None:
    import_customers(client, dpo)
    person = CUSTOMERS[3]
    text = note_about(person).encode()
    response = client.post(
        "/api/v1/inspections/reveal",
        files={"file": ("call.txt", text)},
        data={"purpose": "Breach assessment INC-42"},
        headers=dpo,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    values = {f["entity"]: f["value"] for f in body["findings"]}
    assert values["email_address"] == person.email
    assert values["payment_card"] == CARD.replace(" ", "")
    assert values["phone_number"] == "+44" + person.phone.replace(" ", "")[1:]
    assert all(f["masked"] != f["value"] for f in body["findings"])
    assert body["purpose"] == "Breach assessment INC-42"
    assert body["customer_ids"] == [person.customer_id]

    events = db.scalars(select(AuditEvent).where(AuditEvent.action.startswith("inspection:"))).all()
    assert [e.action for e in events] == ["inspection:values:revealed"]
    event = events[0]
    assert event.details["purpose"] == "Breach assessment INC-42"
    assert event.details["extension"] == ".txt" and "name" not in event.details
    assert event.details["values_revealed"] == len(body["findings"])
    assert event.object_id == body["sha256"]
    stored = json.dumps(event.details)
    for value in canaries(person):
        assert value not in stored

    # No purpose: refused, and nothing revealed or recorded.
    for bad in ({}, {"purpose": "   "}):
        refused = client.post(
            "/api/v1/inspections/reveal", files={"file": ("c.txt", text)}, data=bad, headers=dpo
        )
        assert_clean_problem(refused, 422)
    no_purpose = client.post("/api/v1/inspections/reveal", json={"text": "x"}, headers=dpo)
    assert "body.purpose" in {e["field"] for e in assert_clean_problem(no_purpose, 422)["errors"]}
    db.expire_all()
    reveals = db.scalars(
        select(AuditEvent.id).where(AuditEvent.action == "inspection:values:revealed")
    ).all()
    assert len(reveals) == 1


def test_masked_values_never_reach_responses_logs_or_audit(
    capfd: pytest.CaptureFixture[str],
    client: TestClient,
    dpo: dict[str, str],
    security: dict[str, str],
    db: Session,
) -> None:
    import_customers(client, dpo)
    person = CUSTOMERS[7]
    text = note_about(person)
    answers = [
        inspect_file(client, security, "call.txt", text.encode()),
        client.post("/api/v1/inspections", json={"text": text}, headers=security),
        inspect_file(client, security, "export.xlsx", customers_xlsx([person])),
        client.post("/api/v1/inspections", json={"text": text}, headers=dpo),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["customer_ids"] == [person.customer_id]
        for value in canaries(person):
            assert value not in answer.text, value
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "inspection:content:inspected")
    ).all()
    assert len(events) == 4
    assert {e.details["customer_count"] for e in events} == {1}
    captured = capfd.readouterr()
    recorded = captured.out + captured.err + json.dumps([e.details for e in events])
    for value in canaries(person):
        assert value not in recorded, value


def test_bad_input_is_a_problem_and_garbage_is_unscannable(
    client: TestClient, security: dict[str, str]
) -> None:
    url = "/api/v1/inspections"
    wrong_type = client.post(
        url, content=b"hello", headers={**security, "content-type": "text/plain"}
    )
    assert assert_clean_problem(wrong_type, 415)["type"].endswith("/unsupported-media-type")
    no_type = client.post(url, content=b"hello", headers=security)
    assert_clean_problem(no_type, 415)
    assert_clean_problem(inspect_file(client, security, "empty.txt", b""), 422)
    assert_clean_problem(client.post(url, json={"text": ""}, headers=security), 422)
    for raw in (b"{bad", b"[]", b'{"text": "x", "extra": 1}', b'{"text": 5}'):
        response = client.post(url, content=raw, headers={**security, **JSON})
        body = assert_clean_problem(response, 422)
        assert all(e["field"].startswith("body") for e in body["errors"]), body
    missing_file = client.post(url, files={"other": ("a.txt", b"x")}, headers=security)
    assert assert_clean_problem(missing_file, 422)["field"] == "file"
    as_field = client.post(
        url, data={"file": "not a file part"}, files={"other": ("o.txt", b"x")}, headers=security
    )
    assert_clean_problem(as_field, 422)
    two_files = client.post(
        url, files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))], headers=security
    )
    assert_clean_problem(two_files, 400)["type"].endswith("/malformed-body")
    broken = client.post(
        url,
        content=b"--xyz\r\nContent-Disposition: form-data; name=",
        headers={**security, "content-type": "multipart/form-data; boundary=xyz"},
    )
    assert_clean_problem(broken, {400, 422})

    garbage = inspect_file(client, security, "blob.bin", os.urandom(4096))
    assert garbage.status_code == 200, garbage.text
    assert garbage.json()["status"] == "unscannable"
    assert garbage.json()["label"] == "confidential"  # unknown content: fail closed
    fake_xlsx = inspect_file(client, security, "sheet.xlsx", b"PK\x03\x04" + os.urandom(500))
    assert fake_xlsx.json()["status"] == "unscannable"
    assert fake_xlsx.json()["reasons"]


def test_a_multipart_body_the_parser_refuses_is_a_malformed_body_problem(
    client: TestClient, security: dict[str, str], db: Session
) -> None:
    """The multipart parser's refusals carry the project's problem type and a fixed
    title, like every other refusal of the API, and say what to do."""
    canary = "jo.canary@example.org"
    body = '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
    body += f"{canary}\r\n--xyz--\r\n"
    no_boundary = client.post(
        "/api/v1/inspections",
        content=body.encode(),
        headers={**security, "content-type": "multipart/form-data"},
    )
    problem = assert_clean_problem(no_boundary, 400)
    assert problem == {
        "type": "https://spillguard.dev/problems/malformed-body",
        "title": "Malformed request body",
        "status": 400,
        "detail": "The multipart/form-data body cannot be read: missing boundary in multipart. "
        "Let the HTTP client build the body and its Content-Type header, which names the "
        "boundary (curl -F file=@PATH); do not set Content-Type by hand.",
    }
    nameless = client.post(
        "/api/v1/inspections",
        content=body.replace(' name="file";', "").encode(),
        headers={**security, "content-type": "multipart/form-data; boundary=xyz"},
    )
    problem = assert_clean_problem(nameless, 400)
    assert problem["type"] == "https://spillguard.dev/problems/malformed-body"
    assert problem["title"] == "Malformed request body"
    assert problem["detail"].startswith("The multipart/form-data body cannot be read: ")
    for answer in (no_boundary, nameless):
        assert canary not in answer.text
    # A route whose form FastAPI parses answers the same way.
    imported = client.post(
        "/api/v1/customers/imports",
        content=body.encode(),
        headers={**security, "content-type": "multipart/form-data"},
    )
    assert assert_clean_problem(imported, 400)["type"].endswith("/malformed-body")
    inspected = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "inspection:content:inspected")
    ).all()
    assert inspected == []


JSON = {"content-type": "application/json"}


@pytest.fixture
def small_cap(app: FastAPI, settings: Settings, keys: KeyRing) -> Iterator[TestClient]:
    """The app with a 4 KiB inspection cap (``app`` empties the tables afterwards)."""
    capped = create_app(settings.model_copy(update={"inspection_max_upload_bytes": 4096}), keys)
    with TestClient(capped) as test_client:
        yield test_client
    capped.state.engine.dispose()


def test_uploads_over_the_cap_are_413_problems(small_cap: TestClient, users: UserFactory) -> None:
    headers = users.auth("security")
    # Over the cap but inside the multipart allowance: the service measures the file.
    over = small_cap.post(
        "/api/v1/inspections", files={"file": ("big.txt", b"a" * 5000)}, headers=headers
    )
    body = assert_clean_problem(over, 413)
    assert "inspection_max_upload_bytes" in body["detail"]
    text = small_cap.post("/api/v1/inspections", json={"text": "b" * 5000}, headers=headers)
    assert_clean_problem(text, 413)
    # Far over: refused by its Content-Length before the body is read.
    huge = small_cap.post(
        "/api/v1/inspections",
        files={"file": ("huge.txt", b"c" * (4096 + 1024 * 1024 + 10))},
        headers=headers,
    )
    assert_clean_problem(huge, 413)
    fits = small_cap.post(
        "/api/v1/inspections", files={"file": ("ok.txt", b"d" * 4000)}, headers=headers
    )
    assert fits.status_code == 200, fits.text


def test_anonymous_callers_learn_nothing(client: TestClient) -> None:
    for path in ("/api/v1/inspections", "/api/v1/inspections/reveal"):
        response = client.post(path, json={"text": note_about(CUSTOMERS[0])})
        assert_clean_problem(response, 401)


def test_a_second_server_process_sees_an_import_made_through_the_first(
    client: TestClient, settings: Settings, keys: KeyRing, users: UserFactory
) -> None:
    """Each process caches the index; the latest import id is checked per request."""
    dpo, security = users.auth("dpo"), users.auth("security")
    other_app = create_app(settings, keys)
    try:
        with TestClient(other_app) as other:
            sheet = customers_xlsx(CUSTOMERS[:3])
            assert inspect_file(other, security, "a.xlsx", sheet).json()["customer_count"] == 0
            import_customers(client, dpo, CUSTOMERS[:2])
            assert inspect_file(other, security, "a.xlsx", sheet).json()["customer_count"] == 2
            import_customers(client, dpo, CUSTOMERS[:5])
            assert inspect_file(other, security, "a.xlsx", sheet).json()["customer_count"] == 3
            import_customers(client, dpo, CUSTOMERS[2:])
            assert inspect_file(client, security, "a.xlsx", sheet).json()["customer_count"] == 1
            assert inspect_file(other, security, "a.xlsx", sheet).json()["customer_count"] == 1
    finally:
        other_app.state.engine.dispose()
