"""The agent's protocol client and check-in cycle against a scripted server
(httpx2.MockTransport): retries, Retry-After, precise errors, location only when lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from spillguard.devices.agent.backends.simulated import SimulatedBackend
from spillguard.devices.agent.client import (
    CredentialRevoked,
    DeviceClient,
    EnrollmentRefused,
    InvalidEnrollmentUrl,
    RequestRefused,
    ServerFault,
    ServerUnreachable,
    parse_enrollment_url,
)
from spillguard.devices.agent.loop import Agent, backoff
from spillguard.devices.agent.state import AgentState

ROOT = "http://mdm.test/api/device/v1"


def problem(status: int, slug: str, **extra: Any) -> httpx2.Response:
    body = {"type": f"https://spillguard.dev/problems/{slug}", "title": "t", "status": status,
            "detail": f"detail of {slug}", **extra}  # fmt: skip
    return httpx2.Response(status, json=body, headers={"content-type": "application/problem+json"})


def client(
    handler: Callable[[httpx2.Request], httpx2.Response], waits: list[float]
) -> DeviceClient:
    return DeviceClient(
        ROOT,
        device_id=42,
        credential="sgd_" + "x" * 43,
        transport=httpx2.MockTransport(handler),
        sleep=waits.append,
    )


def test_enrollment_url_is_split_at_the_fragment() -> None:
    url = parse_enrollment_url("https://mdm.example.com/api/device/v1/enroll#token=sge_abc")
    assert url.api_root == "https://mdm.example.com/api/device/v1"
    assert url.endpoint.endswith("/enroll") and url.token == "sge_abc"
    for bad in ("https://mdm.example.com/api/device/v1/enroll", "ftp://x/api/device/v1/enroll#token=a",
                "https://mdm.example.com/elsewhere#token=sge_a"):  # fmt: skip
        with pytest.raises(InvalidEnrollmentUrl):
            parse_enrollment_url(bad)


def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    answers = [httpx2.Response(503), httpx2.Response(502), httpx2.Response(200, json={"ok": 1})]
    waits: list[float] = []
    with client(lambda r: answers.pop(0), waits) as c:
        assert c.checkin({"p": 1}) == {"ok": 1}
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0


def test_retry_after_is_honoured() -> None:
    answers = [httpx2.Response(503, headers={"Retry-After": "7"}), httpx2.Response(200, json={})]
    waits: list[float] = []
    with client(lambda r: answers.pop(0), waits) as c:
        c.checkin({})
    assert waits == [7.0]


def test_persistent_5xx_becomes_a_server_fault() -> None:
    waits: list[float] = []
    with client(lambda r: problem(500, "internal"), waits) as c, pytest.raises(ServerFault):
        c.checkin({})
    assert len(waits) == 3  # four attempts in all


def test_network_errors_are_retried_then_reported() -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    waits: list[float] = []
    with client(down, waits) as c, pytest.raises(ServerUnreachable, match="cannot reach"):
        c.checkin({})
    assert len(waits) == 3


def test_enrollment_is_not_repeated_after_a_read_timeout() -> None:
    calls: list[int] = []

    def slow(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        raise httpx2.ReadTimeout("slow", request=request)

    with client(slow, []) as c, pytest.raises(ServerUnreachable):
        c.enroll("sge_x", {"name": "n", "platform": "android"})
    assert calls == [1]  # the token may already be spent: never sent twice


def test_4xx_is_final_and_precise() -> None:
    waits: list[float] = []
    used = problem(403, "enrollment-token-used")
    with client(lambda r: used, waits) as c, pytest.raises(EnrollmentRefused, match="already"):
        c.enroll("sge_x", {})
    revoked = problem(401, "device-credential-revoked", state="wiped")
    with client(lambda r: revoked, waits) as c, pytest.raises(CredentialRevoked) as err:
        c.checkin({})
    assert "wiped" in str(err.value)
    invalid = problem(422, "invalid-input")
    with client(lambda r: invalid, waits) as c, pytest.raises(RequestRefused) as refused:
        c.checkin({})
    assert refused.value.slug == "invalid-input" and refused.value.status == 422
    assert waits == []


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff(1, 900) == 60 and backoff(2, 900) == 120
    assert backoff(20, 900) == 3600
    assert backoff(1, 900, retry_after=600) == 600


class FakeServer:
    def __init__(self, state: str, commands: list[dict[str, Any]]) -> None:
        self.state, self.commands = state, commands
        self.results: dict[int, dict[str, Any]] = {}
        self.locations: list[dict[str, Any]] = []
        self.fail_results = False

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        path = request.url.path
        if path.endswith("/checkin"):
            for r in body.get("results", []):
                self.results[r["command_id"]] = r
            commands, self.commands = self.commands, []
            answer = {
                "device_id": 42,
                "state": self.state,
                "next_checkin_seconds": 60,
                "compliance": {"compliant": True, "reasons": []},
                "commands": commands,
            }
            return httpx2.Response(200, json=answer)
        if path.endswith("/location"):
            self.locations.append(body)
            return httpx2.Response(201, json={"id": 1})
        if self.fail_results:
            return httpx2.Response(503)
        self.results[int(path.split("/")[-2])] = body
        return httpx2.Response(200, json={})


def agent_for(tmp_path: Path, server: FakeServer) -> tuple[Agent, SimulatedBackend]:
    state = AgentState(tmp_path / "agent")
    state.save_credential(42, "sgd_" + "x" * 43)
    backend = SimulatedBackend.create(state.root)
    dc = DeviceClient(ROOT, device_id=42, credential="sgd_" + "x" * 43,
                      transport=httpx2.MockTransport(server), sleep=lambda s: None)  # fmt: skip
    return Agent(state, backend, dc), backend


def test_location_is_never_sent_unless_the_server_says_lost(tmp_path: Path) -> None:
    # The simulated phone is (wrongly) already in lost mode; the server says active.
    server = FakeServer("active", [{"id": 5, "type": "locate", "params": {}}])
    agent, backend = agent_for(tmp_path, server)
    state = backend.load()
    state.update(lost_mode=True, location_reporting=True)
    backend.save(state)
    agent.run_once()
    assert "location" not in server.results[5] and server.locations == []


def test_in_lost_mode_each_checkin_reports_a_location(tmp_path: Path) -> None:
    server = FakeServer("lost", [{"id": 8, "type": "lost_mode_on", "params": {"message": "m"}}])
    agent, _ = agent_for(tmp_path, server)
    agent.run_once()
    assert server.results[8]["location"]["latitude"] == pytest.approx(51.5072)
    assert server.locations == []  # the result carried it
    report = agent.run_once()
    assert report.location_sent and len(server.locations) == 1


def test_undelivered_results_ride_on_the_next_checkin(tmp_path: Path) -> None:
    server = FakeServer("active", [{"id": 3, "type": "lock", "params": {}}])
    server.fail_results = True
    agent, _ = agent_for(tmp_path, server)
    report = agent.run_once()
    assert report.executed[0].delivered is False
    assert agent.state.pending_results() == [{"command_id": 3, "status": "acknowledged"}]
    agent.run_once()
    assert server.results[3]["status"] == "acknowledged"
    assert agent.state.pending_results() == []
