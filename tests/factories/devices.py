"""Builders for device tests: postures, and enrolled devices through the real API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faker import Faker
from fastapi.testclient import TestClient

fake = Faker("en_GB")

# A phone that fails everything a sensible policy asks: swipe to unlock, not encrypted.
SWIPE_UNENCRYPTED: dict[str, Any] = {
    "platform": "android",
    "os_version": "14",
    "model": "Pixel 8",
    "serial": None,
    "passcode": {"type": "swipe", "length": None},
    "storage_encrypted": False,
    "auto_lock_seconds": 300,
    "rooted": False,
    "agent_version": "1.0.0",
    "managed_documents": [],
}
SECURE: dict[str, Any] = {
    **SWIPE_UNENCRYPTED,
    "passcode": {"type": "pin", "length": 6},
    "storage_encrypted": True,
}
STRICT_POLICY: dict[str, Any] = {
    "name": "Sales phones",
    "min_passcode_type": "pin",
    "min_passcode_length": 6,
    "encryption_required": True,
}


def posture(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    body = dict(base or SECURE)
    body.setdefault("reported_at", datetime.now(UTC).isoformat())
    body.update(changes)
    return body


def device_auth(device_id: int, credential: str) -> dict[str, str]:
    return {"Authorization": f"Device {device_id}.{credential}"}


@dataclass
class EnrolledDevice:
    id: int
    credential: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return device_auth(self.id, self.credential)

    def checkin(self, client: TestClient, body: dict[str, Any] | None = None, **extra: Any) -> Any:
        payload = {"posture": posture(body), **extra}
        return client.post("/api/device/v1/checkin", json=payload, headers=self.headers)


def create_enrollment(
    client: TestClient, admin: dict[str, str], user_id: int, **fields: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/enrollments", json={"user_id": user_id, **fields}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def enroll(
    client: TestClient, token: str, name: str | None = None, platform: str = "android"
) -> EnrolledDevice:
    name = name or f"{fake.first_name()}'s phone"
    response = client.post(
        "/api/device/v1/enroll",
        json={"token": token, "device": {"name": name, "platform": platform}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return EnrolledDevice(body["device_id"], body["credential"], name)


def future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
