"""The devices admin API: who may do what, the command queue, policies and exports,
enrollment QR codes."""

from __future__ import annotations

import plistlib

import pytest
from fastapi.testclient import TestClient

from tests.factories.devices import (
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.users import UserFactory


@pytest.fixture
def admin(users: UserFactory) -> dict[str, str]:
    return users.auth("admin")


@pytest.fixture
def phone(client: TestClient, users: UserFactory, admin: dict[str, str]) -> EnrolledDevice:
    token = create_enrollment(client, admin, users.create("helpdesk").id)["token"]
    return enroll(client, token, name="Field phone 7")


@pytest.mark.parametrize(
    ("role", "view", "enrol", "command", "report_lost", "wipe"),
    [
        ("admin", 200, 201, 201, 200, 201),
        ("helpdesk", 200, 201, 201, 200, 201),
        ("security", 200, 403, 403, 200, 403),
        ("dpo", 200, 403, 403, 403, 403),
        ("auditor", 200, 403, 403, 403, 403),
    ],
)
def test_role_permissions(
    client: TestClient,
    users: UserFactory,
    admin: dict[str, str],
    phone: EnrolledDevice,
    role: str,
    view: int,
    enrol: int,
    command: int,
    report_lost: int,
    wipe: int,
) -> None:
    headers = users.auth(role)
    url = f"/api/v1/devices/{phone.id}"
    assert client.get(url, headers=headers).status_code == view
    owner = users.create("dpo")
    made = client.post("/api/v1/enrollments", json={"user_id": owner.id}, headers=headers)
    assert made.status_code == enrol
    lock = client.post(f"{url}/commands", json={"type": "lock"}, headers=headers)
    assert lock.status_code in {command, 200}
    lost = client.post(f"{url}/report-lost", json={"message": "Call IT"}, headers=headers)
    assert lost.status_code == report_lost
    wiping = client.post(
        f"{url}/commands", json={"type": "wipe", "confirm_name": phone.name}, headers=headers
    )
    assert wiping.status_code == wipe


def test_an_api_token_with_a_narrower_role_may_not_wipe(
    client: TestClient, users: UserFactory, phone: EnrolledDevice
) -> None:
    boss = users.create("admin")
    narrow = {"Authorization": f"Bearer {users.token(boss, role='security')}"}
    response = client.post(
        f"/api/v1/devices/{phone.id}/commands",
        json={"type": "wipe", "confirm_name": phone.name},
        headers=narrow,
    )
    assert response.status_code == 403
    assert "devices:wipe" in response.json()["detail"]


def test_duplicate_commands_collapse_and_queue_can_be_cleared(
    client: TestClient, admin: dict[str, str], phone: EnrolledDevice
) -> None:
    url = f"/api/v1/devices/{phone.id}/commands"
    first = client.post(url, json={"type": "lock", "params": {"message": "a"}}, headers=admin)
    second = client.post(url, json={"type": "lock", "params": {"message": "b"}}, headers=admin)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["collapsed"] is True and second.json()["id"] == first.json()["id"]
    assert second.json()["params"] == {"message": "b"}, "not yet sent: newer parameters win"
    client.post(url, json={"type": "play_sound"}, headers=admin)
    pending = client.get(url, params={"status": "pending"}, headers=admin).json()
    assert pending["total"] == 2
    cleared = client.delete(url, headers=admin)
    assert cleared.json() == {"cancelled": 2}
    assert client.get(url, params={"status": "pending"}, headers=admin).json()["total"] == 0
    assert phone.checkin(client).json()["commands"] == []


def test_bad_command_input(
    client: TestClient, admin: dict[str, str], phone: EnrolledDevice
) -> None:
    url = f"/api/v1/devices/{phone.id}/commands"
    assert client.post(url, json={"type": "explode"}, headers=admin).status_code == 422
    bad = client.post(url, json={"type": "lock", "params": {"colour": 1}}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "params.colour"
    locate = client.post(url, json={"type": "locate"}, headers=admin)
    assert locate.status_code == 409, "a device is located only in lost mode"
    missing = client.post("/api/v1/devices/424242/commands", json={"type": "lock"}, headers=admin)
    assert missing.status_code == 404


def test_policy_change_reevaluates_and_history_records_changes(
    client: TestClient, admin: dict[str, str], phone: EnrolledDevice
) -> None:
    phone.checkin(client, SWIPE_UNENCRYPTED)
    device = client.get(f"/api/v1/devices/{phone.id}", headers=admin).json()
    assert device["compliant"] is True
    assert device["compliance_note"] == "No compliance policy applies to this device."
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    assigned = client.patch(
        f"/api/v1/devices/{phone.id}", json={"policy_id": policy["id"]}, headers=admin
    ).json()
    assert assigned["compliant"] is False and len(assigned["compliance_reasons"]) == 2
    relaxed = {**STRICT_POLICY, "min_passcode_type": "none", "min_passcode_length": 0}
    client.put(f"/api/v1/compliance-policies/{policy['id']}", json=relaxed, headers=admin)
    after = client.get(f"/api/v1/devices/{phone.id}", headers=admin).json()
    assert after["compliance_reasons"] == ["Storage is not encrypted; policy requires encryption"]
    history = client.get(f"/api/v1/devices/{phone.id}/compliance-history", headers=admin).json()
    assert [h["compliant"] for h in history["items"]] == [False, True]
    assert [h["cause"] for h in history["items"]] == ["assignment", "enrollment"]


def test_device_policy_beats_group_policy(
    client: TestClient, users: UserFactory, admin: dict[str, str]
) -> None:
    strict = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    lax = client.post(
        "/api/v1/compliance-policies", json={"name": "Anything goes"}, headers=admin
    ).json()
    group = client.post(
        "/api/v1/device-groups", json={"name": "Field", "policy_id": strict["id"]}, headers=admin
    ).json()
    token = create_enrollment(client, admin, users.create("dpo").id, group_id=group["id"])
    device = enroll(client, token["token"])
    assert device.checkin(client, SWIPE_UNENCRYPTED).json()["compliance"]["compliant"] is False
    shown = client.patch(
        f"/api/v1/devices/{device.id}", json={"policy_id": lax["id"]}, headers=admin
    ).json()
    assert shown["effective_policy_id"] == lax["id"] and shown["compliant"] is True
    listed = client.get("/api/v1/devices", params={"compliant": "true"}, headers=admin).json()
    assert [d["id"] for d in listed["items"]] == [device.id]


def test_policy_exports(client: TestClient, admin: dict[str, str]) -> None:
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    base = f"/api/v1/compliance-policies/{policy['id']}"
    apple = client.get(f"{base}/export.mobileconfig", headers=admin)
    assert apple.headers["content-type"] == "application/x-apple-aspen-config"
    payload = plistlib.loads(apple.content)["PayloadContent"][0]
    assert payload["PayloadType"] == "com.apple.mobiledevice.passwordpolicy"
    assert payload["minLength"] == 6
    android = client.get(f"{base}/export.android.json", headers=admin).json()
    assert android["encryptionPolicy"] == "ENABLED_WITHOUT_PASSWORD"
    invalid = client.post(
        "/api/v1/compliance-policies",
        json={"name": "Bad", "min_passcode_type": "swipe", "min_passcode_length": 4},
        headers=admin,
    )
    assert invalid.status_code == 422


def test_enrollment_qr_code(client: TestClient, users: UserFactory, admin: dict[str, str]) -> None:
    issued = create_enrollment(client, admin, users.create("dpo").id)
    url = f"/api/v1/enrollments/{issued['id']}/qr"
    svg = client.post(url, json={"token": issued["token"]}, headers=admin)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.startswith("<svg")
    other = client.post(url, json={"token": "sge_somethingelse"}, headers=admin)
    assert other.status_code == 422, "no QR codes of arbitrary text"
    listed = client.get("/api/v1/enrollments", headers=admin).json()
    assert listed["items"][0]["status"] == "usable" and "token" not in listed["items"][0]
