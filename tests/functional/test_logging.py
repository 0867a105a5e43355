"""Logs are structured JSON with request ids, and never carry secrets or bodies."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from spillguard.core.settings import Settings
from tests.factories.users import DEFAULT_PASSWORD, UserFactory


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # INFO so that the access log lines under test are written.
    return settings.model_copy(update={"log_level": "INFO"})


def _log_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_logs_are_json_with_request_ids_and_no_secrets(
    capfd: pytest.CaptureFixture[str], client: TestClient, users: UserFactory
) -> None:
    # capfd comes first so the app's logger is bound to the captured stream.
    admin = users.create("admin")
    token = users.token(admin)
    canary_password = "canary-Pa55word-" + "x" * 8
    login_page = client.get("/login")
    csrf = login_page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post(
        "/login",
        data={"email": admin.email, "password": canary_password, "csrf_token": csrf},
    )
    ok = client.post(
        "/login",
        data={"email": admin.email, "password": DEFAULT_PASSWORD, "csrf_token": csrf},
        follow_redirects=False,
    )
    session_cookie = ok.cookies.get("sg_session") or client.cookies.get("sg_session")
    assert session_cookie
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    client.get(
        "/api/v1/audit-events?actor=" + admin.email,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-42"},
    )
    client.post(
        "/api/v1/users",
        json={
            "email": "body-canary@example.com",
            "role": "admin",
            "password": "body-canary-password",
        },
        headers={"Authorization": f"Bearer {token}"},
    )

    captured = capfd.readouterr()
    everything = captured.out + captured.err
    for secret in (
        canary_password,
        DEFAULT_PASSWORD,
        token,
        session_cookie,
        csrf,
        "body-canary-password",
        admin.email,
    ):
        assert secret not in everything, "a secret or query value reached the logs"

    lines = _log_lines(captured.err)
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) >= 5
    for line in requests:
        assert set(line) >= {"method", "route", "status", "duration_ms", "request_id", "timestamp"}
    traced = [line for line in requests if line["request_id"] == "trace-me-42"]
    assert traced and traced[0]["route"] == "/api/v1/audit-events"
