"""The check-in route's own handler (devices.api.CheckinRoute): authentication before the
body, FastAPI's answers for bodies it does not take itself, nothing kept from a refused
check-in, and the same answer as the ordinary route."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.devices.models import Device
from tests.factories.devices import EnrolledDevice, create_enrollment, enroll, posture
from tests.factories.users import UserFactory

URL = "/api/device/v1/checkin"


@pytest.fixture
def phone(client: TestClient, users: UserFactory) -> EnrolledDevice:
    admin = users.auth("admin")
    token = create_enrollment(client, admin, users.create("helpdesk").id)["token"]
    return enroll(client, token)


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
