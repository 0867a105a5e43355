"""The device protocol end to end, as a device and an administrator see it, and every
kind of bad input a device (or an attacker holding a device's secrets) can send."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from spillguard.devices.models import DeviceLocation
from tests.factories.devices import (
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
    future,
    posture,
)
from tests.factories.users import UserFactory


def audit(db: Session, action: str) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def admin(users: UserFactory) -> dict[str, str]:
    return users.auth("admin")


@pytest.fixture
def phone(client: TestClient, users: UserFactory, admin: dict[str, str]) -> EnrolledDevice:
    owner = users.create("helpdesk")
    token = create_enrollment(client, admin, owner.id)["token"]
    return enroll(client, token, name="Anna's Pixel")


def test_lost_phone_story(
    client: TestClient, users: UserFactory, db: Session, admin: dict[str, str]
) -> None:
    """Enroll, flag a swipe-only unencrypted phone, report it lost, lock and locate it,
    wipe it, and see its credential refused afterwards."""
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    group = client.post(
        "/api/v1/device-groups", json={"name": "Sales", "policy_id": policy["id"]}, headers=admin
    ).json()
    owner = users.create("dpo")
    issued = create_enrollment(client, admin, owner.id, group_id=group["id"])
    assert issued["enrollment_url"].endswith("#token=" + issued["token"])
    device = enroll(client, issued["token"], name="Anna's Pixel")

    first = device.checkin(client, SWIPE_UNENCRYPTED)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["compliance"] == {
        "compliant": False,
        "reasons": [
            "Passcode is a swipe; policy requires a PIN of at least 6 digits",
            "Storage is not encrypted; policy requires encryption",
        ],
    }
    assert answer["commands"] == []
    shown = client.get(f"/api/v1/devices/{device.id}", headers=admin).json()
    assert shown["compliant"] is False and shown["effective_policy_id"] == policy["id"]
    assert shown["owner_email"] == owner.email

    # Report lost: security may do it; the lock and locate come at the next check-in.
    security = users.create("security")
    lost = client.post(
        f"/api/v1/devices/{device.id}/report-lost",
        json={"message": "Please call IT", "phone": "+44 20 7946 0000"},
        headers={"Authorization": f"Bearer {users.token(security)}"},
    )
    assert lost.status_code == 200, lost.text
    assert lost.json()["device"]["state"] == "lost"
    assert [c["type"] for c in lost.json()["commands"]] == ["lost_mode_on", "lock", "locate"]
    [event] = audit(db, "devices:device:reported-lost")
    assert event.actor_label == security.email and event.object_id == str(device.id)

    delivered = device.checkin(client, SWIPE_UNENCRYPTED).json()
    assert delivered["state"] == "lost"
    by_type = {c["type"]: c for c in delivered["commands"]}
    assert set(by_type) == {"lost_mode_on", "lock", "locate"}
    assert by_type["lock"]["params"] == {"message": "Please call IT", "phone": "+44 20 7946 0000"}

    location = {"latitude": 51.5072, "longitude": -0.1276, "accuracy_m": 20.0}
    results = [
        {"command_id": by_type["lost_mode_on"]["id"], "status": "acknowledged"},
        {"command_id": by_type["lock"]["id"], "status": "acknowledged"},
    ]
    after = device.checkin(client, SWIPE_UNENCRYPTED, results=results).json()
    assert [c["type"] for c in after["commands"]] == ["locate"], "acknowledged ones not resent"
    located = client.post(
        f"/api/device/v1/commands/{by_type['locate']['id']}/result",
        json={"status": "acknowledged", "location": {**location, "captured_at": future(0)}},
        headers=device.headers,
    )
    assert located.status_code == 200, located.text
    places = client.get(f"/api/v1/devices/{device.id}/locations", headers=admin).json()
    assert places["total"] == 1 and places["items"][0]["latitude"] == 51.5072

    # Found again: lost mode off; from then on a location is refused and not stored.
    off = client.post(
        f"/api/v1/devices/{device.id}/commands", json={"type": "lost_mode_off"}, headers=admin
    )
    assert off.status_code == 201
    refused = client.post(
        "/api/device/v1/location",
        json={**location, "captured_at": future(0)},
        headers=device.headers,
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/device-not-lost")
    assert db.scalar(select(func.count()).select_from(DeviceLocation)) == 1
    assert audit(db, "devices:location:rejected")

    # Wipe: the name must be typed again; then acknowledged; then the credential is dead.
    wrong = client.post(
        f"/api/v1/devices/{device.id}/commands",
        json={"type": "wipe", "confirm_name": "anna's pixel"},
        headers=admin,
    )
    assert wrong.status_code == 422
    assert wrong.json()["type"].endswith("/wipe-confirmation-mismatch")
    assert audit(db, "devices:command:refused")
    wipe = client.post(
        f"/api/v1/devices/{device.id}/commands",
        json={"type": "wipe", "confirm_name": "Anna's Pixel"},
        headers=admin,
    )
    assert wipe.status_code == 201, wipe.text
    commands = device.checkin(client, SWIPE_UNENCRYPTED).json()["commands"]
    wipe_id = next(c["id"] for c in commands if c["type"] == "wipe")
    done = client.post(
        f"/api/device/v1/commands/{wipe_id}/result",
        json={"status": "acknowledged"},
        headers=device.headers,
    )
    assert done.status_code == 200
    gone = device.checkin(client, SWIPE_UNENCRYPTED)
    assert gone.status_code == 401
    assert gone.json()["type"].endswith("/device-credential-revoked")
    assert gone.headers["www-authenticate"] == "Device"
    [rejected] = audit(db, "devices:checkin:rejected")
    assert rejected.outcome == "failure" and rejected.details["state"] == "wiped"
    assert client.get(f"/api/v1/devices/{device.id}", headers=admin).json()["state"] == "wiped"
    history = client.get(
        f"/api/v1/devices/{device.id}/commands", params={"status": "acknowledged"}, headers=admin
    ).json()
    assert {c["type"] for c in history["items"]} == {"lost_mode_on", "lock", "locate", "wipe"}


def test_enrollment_token_single_use_and_replay_is_refused_and_audited(
    client: TestClient, users: UserFactory, db: Session, admin: dict[str, str]
) -> None:
    issued = create_enrollment(client, admin, users.create("helpdesk").id)
    enroll(client, issued["token"])
    replay = client.post(
        "/api/device/v1/enroll",
        json={"token": issued["token"], "device": {"name": "Clone", "platform": "ios"}},
    )
    assert replay.status_code == 403
    assert replay.json()["type"].endswith("/enrollment-token-used")
    [event] = audit(db, "devices:enrollment:refused")
    assert event.details["reason"] == "used" and event.outcome == "failure"


def test_enrollment_n_uses_then_refused(
    client: TestClient, users: UserFactory, admin: dict[str, str]
) -> None:
    issued = create_enrollment(client, admin, users.create("helpdesk").id, uses_allowed=2)
    first, second = enroll(client, issued["token"]), enroll(client, issued["token"])
    assert first.id != second.id and first.credential != second.credential
    third = client.post(
        "/api/device/v1/enroll",
        json={"token": issued["token"], "device": {"name": "Third", "platform": "linux"}},
    )
    assert third.status_code == 403
    listed = client.get(f"/api/v1/enrollments/{issued['id']}", headers=admin).json()
    assert listed["uses_count"] == 2 and listed["status"] == "used"


def test_revoked_and_unknown_enrollment_tokens(
    client: TestClient, users: UserFactory, admin: dict[str, str]
) -> None:
    issued = create_enrollment(client, admin, users.create("helpdesk").id)
    assert client.delete(f"/api/v1/enrollments/{issued['id']}", headers=admin).status_code == 200
    body = {"token": issued["token"], "device": {"name": "X", "platform": "ios"}}
    revoked = client.post("/api/device/v1/enroll", json=body)
    assert revoked.status_code == 403
    assert revoked.json()["type"].endswith("/enrollment-token-revoked")
    unknown = client.post("/api/device/v1/enroll", json={**body, "token": "sge_" + "A" * 43})
    assert unknown.status_code == 401
    assert unknown.json()["type"].endswith("/enrollment-token-invalid")


def test_credential_of_another_device_is_refused_and_audited(
    client: TestClient, users: UserFactory, db: Session, admin: dict[str, str]
) -> None:
    issued = create_enrollment(client, admin, users.create("helpdesk").id, uses_allowed=2)
    mine, other = enroll(client, issued["token"]), enroll(client, issued["token"])
    response = client.post(
        "/api/device/v1/checkin",
        json={"posture": posture()},
        headers={"Authorization": f"Device {other.id}.{mine.credential}"},
    )
    assert response.status_code == 401
    assert response.json()["type"].endswith("/device-credential-mismatch")
    [event] = audit(db, "devices:checkin:rejected")
    assert event.object_id == str(other.id) and event.details["credential_of"] == mine.id


@pytest.mark.parametrize(
    "header",
    [None, "Bearer sgt_x", "Device 1", "Device abc.sgd_x", "Device 1.nope", "Device 1.sgd_x"],
)
def test_missing_or_bad_device_credentials_get_401(
    client: TestClient, phone: EnrolledDevice, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/device/v1/checkin", json={"posture": posture()}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Device"


def test_retired_device_credential_stops_working(
    client: TestClient, phone: EnrolledDevice, admin: dict[str, str]
) -> None:
    client.post(f"/api/v1/devices/{phone.id}/commands", json={"type": "retire"}, headers=admin)
    [command] = phone.checkin(client).json()["commands"]
    ack = {"command_id": command["id"], "status": "acknowledged"}
    assert phone.checkin(client, results=[ack]).status_code == 200
    again = phone.checkin(client)
    assert again.status_code == 401 and again.json()["state"] == "retired"
    queued = client.post(
        f"/api/v1/devices/{phone.id}/commands", json={"type": "lock"}, headers=admin
    )
    assert queued.status_code == 409


def test_oversized_body_is_413_with_or_without_content_length(
    client: TestClient, phone: EnrolledDevice
) -> None:
    huge = json.dumps({"posture": posture(), "pad": "x" * 300_000}).encode()
    declared = client.post(
        "/api/device/v1/checkin",
        content=huge,
        headers={**phone.headers, "content-type": "application/json"},
    )
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    def chunks() -> Any:
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = client.post(
        "/api/device/v1/checkin",
        content=chunks(),
        headers={**phone.headers, "content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.json()["title"] == "Content too large"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"passcode": {"type": "pin", "length": -4}}, "length"),
        ({"storage_encrypted": "true"}, "storage_encrypted"),
        ({"reported_at": 1714815000}, "reported_at"),
        ({"platform": "windows-phone"}, "platform"),
    ],
)
def test_invalid_posture_is_422_naming_the_field(
    client: TestClient, phone: EnrolledDevice, change: dict[str, Any], field: str
) -> None:
    response = phone.checkin(client, posture(**change))
    assert response.status_code == 422
    assert any(field in e["field"] for e in response.json()["errors"]), response.json()


def test_future_timestamp_beyond_skew_is_refused(client: TestClient, phone: EnrolledDevice) -> None:
    response = phone.checkin(client, posture(reported_at=future(3600)))
    assert response.status_code == 422
    assert response.json()["type"].endswith("/posture-reported-in-future")
    assert phone.checkin(client, posture(reported_at=future(60))).status_code == 200


def test_results_for_unknown_or_finished_commands(
    client: TestClient, phone: EnrolledDevice, admin: dict[str, str]
) -> None:
    client.post(f"/api/v1/devices/{phone.id}/commands", json={"type": "lock"}, headers=admin)
    [command] = phone.checkin(client).json()["commands"]
    url = f"/api/device/v1/commands/{command['id']}/result"
    assert client.post(url, json={"status": "error"}, headers=phone.headers).status_code == 422
    ack = client.post(url, json={"status": "acknowledged"}, headers=phone.headers)
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    again = client.post(url, json={"status": "acknowledged"}, headers=phone.headers)
    assert again.status_code == 200, "the same result twice is harmless"
    late = client.post(url, json={"status": "error", "reason": "x"}, headers=phone.headers)
    assert late.status_code == 409 and late.json()["type"].endswith("/command-finished")
    missing = client.post(
        "/api/device/v1/commands/999999/result",
        json={"status": "acknowledged"},
        headers=phone.headers,
    )
    assert missing.status_code == 404


def test_not_now_sends_the_command_again(
    client: TestClient, phone: EnrolledDevice, admin: dict[str, str]
) -> None:
    client.post(f"/api/v1/devices/{phone.id}/commands", json={"type": "play_sound"}, headers=admin)
    [command] = phone.checkin(client).json()["commands"]
    later = phone.checkin(client, results=[{"command_id": command["id"], "status": "not_now"}])
    assert [c["id"] for c in later.json()["commands"]] == [command["id"]]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
POSTURE_KEYS = st.sampled_from([*posture(), "results", "posture"])


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        JSON,
        st.dictionaries(POSTURE_KEYS, JSON, max_size=4).map(lambda d: {"posture": d}),
        st.dictionaries(POSTURE_KEYS, JSON, max_size=3).map(
            lambda d: {"posture": {**posture(), **d}}
        ),
    )
)
def test_random_json_never_gets_a_server_error(
    client: TestClient, phone: EnrolledDevice, body: Any
) -> None:
    response = client.post("/api/device/v1/checkin", json=body, headers=phone.headers)
    assert response.status_code < 500, response.text
    assert response.status_code in {200, 409, 404, 422}, response.text
