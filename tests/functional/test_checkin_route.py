"""The check-in route's own handler (devices.api.CheckinRoute): authentication before the
body, FastAPI's answers for bodies it does not take itself, nothing kept from a refused
check-in, and the same answer as the ordinary route."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from spillguard.devices.models import Device
from tests.factories.devices import EnrolledDevice, create_enrollment, enroll, future, posture
from tests.factories.users import UserFactory

URL = "/api/device/v1/checkin"


@pytest.fixture
def phone(client: TestClient, users: UserFactory) -> EnrolledDevice:
    admin = users.auth("admin")
    token = create_enrollment(client, admin, users.create("helpdesk").id)["token"]
    return enroll(client, token)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def last_checkin(db: Session, device_id: int) -> datetime | None:
    db.expire_all()
    return db.scalar(select(Device.last_checkin_at).where(Device.id == device_id))


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"posture": {"platform": "ios"}}', "application/json"),
        (b'{"posture": 1}', "text/plain"),
        (b"", "application/json"),
    ],
)
def test_a_bad_credential_is_401_whatever_the_body(
    client: TestClient, phone: EnrolledDevice, content: bytes, content_type: str
) -> None:
    response = client.post(
        URL,
        content=content,
        headers={"Authorization": f"Device {phone.id}.sgd_wrong", "content-type": content_type},
    )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Device"
    assert response.headers["content-type"] == "application/problem+json"


def test_malformed_json_with_a_good_credential_is_fastapis_422(
    client: TestClient, db: Session, phone: EnrolledDevice
) -> None:
    response = client.post(
        URL, content=b'{"posture": ', headers={**phone.headers, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"], response.json()
    assert last_checkin(db, phone.id) is None


def test_a_body_that_is_not_json_is_422_and_changes_nothing(
    client: TestClient, db: Session, phone: EnrolledDevice
) -> None:
    body = json.dumps({"posture": posture()})
    response = client.post(
        URL, content=body, headers={**phone.headers, "content-type": "text/plain"}
    )
    assert response.status_code == 422, response.text
    assert last_checkin(db, phone.id) is None


def test_an_invalid_posture_names_the_field_and_changes_nothing(
    client: TestClient, db: Session, phone: EnrolledDevice
) -> None:
    response = phone.checkin(client, posture(storage_encrypted="true"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.posture.storage_encrypted"]
    assert last_checkin(db, phone.id) is None


def test_a_check_in_is_kept_and_answered_with_the_request_headers(
    client: TestClient, db: Session, phone: EnrolledDevice
) -> None:
    response = client.post(
        URL,
        content=json.dumps({"posture": posture()}),
        headers={**phone.headers, "content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["device_id"] == phone.id and answer["commands"] == []
    assert set(answer) == {
        "device_id",
        "state",
        "server_time",
        "next_checkin_seconds",
        "compliance",
        "commands",
    }
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] and response.headers["cache-control"] == "no-store"
    stored = last_checkin(db, phone.id)
    assert stored is not None
    assert stored.isoformat().replace("+00:00", "Z") == answer["server_time"]


# --- the fast path of unchanged check-ins (devices.fast_checkin) through HTTP ---------------


def held_times(app: FastAPI) -> int:
    """Check-in times the fast path holds for the write-behind (0 before its first use)."""
    fast = getattr(app.state, "fast_checkin", None)
    return 0 if fast is None else fast.writer.pending


def test_an_unchanged_check_in_takes_the_fast_path_and_answers_the_same(
    client: TestClient, app: FastAPI, db: Session, phone: EnrolledDevice
) -> None:
    body = posture()
    first = phone.checkin(client, body)  # a first posture: the ordinary path
    assert first.status_code == 200, first.text
    assert held_times(app) == 0
    second = phone.checkin(client, {**body, "reported_at": datetime.now(UTC).isoformat()})
    assert second.status_code == 200, second.text
    assert held_times(app) == 1  # answered by the fast path, its time held
    one, two = first.json(), second.json()
    assert one.pop("server_time") < two.pop("server_time")
    assert one == two
    for name in ("content-type", "cache-control", "x-content-type-options", "x-frame-options"):
        assert first.headers[name] == second.headers[name], name
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    # Stored when the writer writes (every 50 ms; here at once).
    app.state.fast_checkin.writer.flush()
    assert last_checkin(db, phone.id) == parse_time(second.json()["server_time"])


def test_held_times_are_written_when_the_server_stops(
    app: FastAPI, db: Session, users: UserFactory
) -> None:
    with TestClient(app, base_url="http://testserver") as own:
        admin = users.auth("admin")
        token = create_enrollment(own, admin, users.create("helpdesk").id)["token"]
        device = enroll(own, token)
        assert device.checkin(own).status_code == 200
        app.state.fast_checkin.writer.interval = 3600  # no write of its own before the stop
        answer = device.checkin(own)
        assert answer.status_code == 200 and held_times(app) == 1
    assert last_checkin(db, device.id) == parse_time(answer.json()["server_time"])


def test_the_retire_and_the_refusal_afterwards_are_the_ordinary_ones(
    client: TestClient,
    app: FastAPI,
    db: Session,
    phone: EnrolledDevice,
    users: UserFactory,
) -> None:
    admin = users.auth("admin")
    assert phone.checkin(client).status_code == 200
    assert phone.checkin(client).status_code == 200 and held_times(app) == 1
    queued = client.post(
        f"/api/v1/devices/{phone.id}/commands", json={"type": "retire"}, headers=admin
    )
    assert queued.status_code == 201, queued.text
    [command] = phone.checkin(client).json()["commands"]  # the queue: the ordinary path
    ack = {"command_id": command["id"], "status": "acknowledged"}
    assert phone.checkin(client, results=[ack]).status_code == 200
    refused = phone.checkin(client)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Device"
    assert refused.json() == {
        "type": "https://spillguard.dev/problems/device-credential-revoked",
        "title": "Device credential revoked",
        "status": 401,
        "detail": "The device was retired; its credential no longer works.",
        "state": "retired",
    }
    db.expire_all()
    rejected = list(
        db.scalars(select(AuditEvent).where(AuditEvent.action == "devices:checkin:rejected"))
    )
    assert [e.details["state"] for e in rejected] == ["retired"]


@pytest.mark.parametrize(
    ("content", "status", "slug"),
    [
        (json.dumps({"posture": posture(storage_encrypted="true")}), 422, "invalid-input"),
        (json.dumps({"posture": posture(), "colour": "red"}), 422, "invalid-input"),
        (b'{"posture": ', 422, "invalid-input"),
        (
            json.dumps({"posture": posture(reported_at=future(3600))}),
            422,
            "posture-reported-in-future",
        ),
    ],
)
def test_bad_input_gets_the_same_problem_once_the_fast_path_runs(
    client: TestClient,
    app: FastAPI,
    phone: EnrolledDevice,
    content: str | bytes,
    status: int,
    slug: str,
) -> None:
    headers = {**phone.headers, "content-type": "application/json"}
    before = client.post(URL, content=content, headers=headers)
    assert phone.checkin(client).status_code == 200
    assert phone.checkin(client).status_code == 200 and held_times(app) == 1
    after = client.post(URL, content=content, headers=headers)
    assert before.status_code == after.status_code == status, after.text
    assert after.headers["content-type"] == "application/problem+json"
    # The detail of a posture from the future names how far ahead it is, which moves on
    # between the two requests; everything else must be the same.
    same = ("type", "title", "status") if slug == "posture-reported-in-future" else None
    if same is None:
        assert before.json() == after.json()
    else:
        assert {k: before.json()[k] for k in same} == {k: after.json()[k] for k in same}
    assert after.json()["type"].endswith(f"/{slug}")
    wrong = client.post(
        URL,
        content=content,
        headers={**headers, "Authorization": f"Device {phone.id}.sgd_wrong"},
    )
    assert wrong.status_code == 401, wrong.text
    assert wrong.json()["detail"] == "The device credential is unknown."


def test_the_check_in_is_still_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/api/openapi.json").json()["paths"][URL]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/CheckinRequest")
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CheckinResponse"
    )


def test_metrics_count_check_ins_by_the_path_that_answered(
    client: TestClient, phone: EnrolledDevice, users: UserFactory
) -> None:
    assert phone.checkin(client).status_code == 200  # first posture: ordinary
    assert phone.checkin(client).status_code == 200  # unchanged: fast
    assert phone.checkin(client).status_code == 200  # unchanged: fast
    assert phone.checkin(client, posture(storage_encrypted=False)).status_code == 200  # changed
    text = client.get("/metrics", headers=users.auth("admin")).text
    assert 'spillguard_device_checkins_total{path="fast"} 2.0' in text, text
    assert 'spillguard_device_checkins_total{path="ordinary"} 2.0' in text, text
