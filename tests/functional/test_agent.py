"""The reference agent and the fleet simulator as real processes against a live server.

The server is the test's app (SQLite or PostgreSQL) served over real HTTP
(tests/functional/agent_server.py); the administrator drives it through the REST API and
the device side is ``spillguard agent`` / ``spillguard simulate`` run as subprocesses.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from faker import Faker
from typer.testing import CliRunner

from spillguard.cli.main import app as main_app
from tests.factories.users import UserFactory
from tests.functional.agent_server import live_app_url
from tests.functional.live import one_line_error, run_spillguard, spillguard_env

__all__ = ["live_app_url"]  # the fixture, imported for pytest

fake = Faker("en_GB")
STRICT = {
    "name": "Sales phones",
    "min_passcode_type": "pin",
    "min_passcode_length": 6,
    "encryption_required": True,
    "block_rooted": True,
}


@pytest.fixture
def api(live_app_url: str, users: UserFactory) -> Iterator[httpx2.Client]:
    """An administrator's API client on the live server."""
    with httpx2.Client(base_url=live_app_url, headers=users.auth("admin"), timeout=30) as c:
        yield c


def create_enrollment(api: httpx2.Client, users: UserFactory, **fields: Any) -> dict[str, Any]:
    owner = users.create("helpdesk")
    response = api.post("/api/v1/enrollments", json={"user_id": owner.id, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class AgentCli:
    """``spillguard agent …`` with one state directory.

    A process start costs seconds (the CLI imports every module), so most calls run the
    same Typer app in this process; ``process=True`` runs a real ``python -m spillguard``.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "agent-state"
        self.env = spillguard_env(tmp_path / "home")

    def __call__(self, *args: str, code: int | None = 0, process: bool = False) -> Any:
        argv = ["agent", *args, "--state-dir", str(self.state_dir)]
        if process:
            result = run_spillguard(argv, self.env)
        else:
            done = CliRunner().invoke(main_app, argv, env={"COLUMNS": "200", "NO_COLOR": "1"})
            result = subprocess.CompletedProcess(argv, done.exit_code, done.stdout, done.stderr)
            if done.exception and not isinstance(done.exception, SystemExit):
                raise done.exception
        if code is not None:
            assert result.returncode == code, f"{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stderr
        return result

    @property
    def simulated(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "simulated.json").read_text())  # type: ignore[no-any-return]

    def edit_posture(self, **changes: Any) -> None:
        path = self.state_dir / "simulated.json"
        data = json.loads(path.read_text())
        data["posture"].update(changes)
        path.write_text(json.dumps(data))


@pytest.fixture
def agent(tmp_path: Path) -> AgentCli:
    return AgentCli(tmp_path)


def enroll_url(live_app_url: str, token: str) -> str:
    return f"{live_app_url}/api/device/v1/enroll#token={token}"


def test_lost_phone_with_the_simulated_agent(
    agent: AgentCli, api: httpx2.Client, users: UserFactory, live_app_url: str
) -> None:
    """Enroll, get flagged, report lost, lock + lost mode + locate, wipe, credential dead."""
    name = f"{fake.first_name()}'s test phone"
    issued = create_enrollment(api, users)
    enrolled = agent(
        "enroll", enroll_url(live_app_url, issued["token"]), "--name", name, process=True
    )
    match = re.search(r"Enrolled as device (\d+)", enrolled.stdout)
    assert match, enrolled.stdout
    device_id = int(match.group(1))
    credential = agent.state_dir / "credential"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.state_dir.stat().st_mode) == 0o700
    assert "checked in: state active" in enrolled.stdout

    # A copied-around credential is refused before anything is sent.
    credential.chmod(0o644)
    refused = agent("run", "--once", code=None)
    assert "0644" in one_line_error(refused)
    credential.chmod(0o600)

    # The administrator sees the device and its posture; a strict policy flags a swipe.
    device = api.get(f"/api/v1/devices/{device_id}").json()
    assert device["name"] == name and device["platform"] == "android"
    assert device["posture"]["storage_encrypted"] is True
    assert len(device["posture"]["managed_documents"]) == 2
    policy = api.post("/api/v1/compliance-policies", json=STRICT).json()
    assert api.patch(f"/api/v1/devices/{device_id}", json={"policy_id": policy["id"]}).is_success
    agent.edit_posture(passcode={"type": "swipe", "length": None})
    flagged = agent("run", "--once")
    assert "NOT compliant" in flagged.stdout
    assert "Passcode is a swipe" in flagged.stdout
    assert api.get(f"/api/v1/devices/{device_id}").json()["compliant"] is False
    assert "not compliant" in agent("status").stdout

    # Report lost: the next check-in locks, enters lost mode and reports a location.
    lost = api.post(
        f"/api/v1/devices/{device_id}/report-lost",
        json={"message": "Lost phone: please call IT", "phone": "+44 20 7946 0000"},
    )
    assert lost.status_code == 200, lost.text
    ran = agent("run", "--once")
    assert "state lost" in ran.stdout
    for kind in ("lost_mode_on", "lock", "locate"):
        assert re.search(rf"command \d+ {kind}: acknowledged", ran.stdout), ran.stdout
    phone = agent.simulated
    assert phone["locked"] is True and phone["lost_mode"] is True
    assert phone["lock_message"] == "Lost phone: please call IT"
    commands = api.get(f"/api/v1/devices/{device_id}/commands").json()["items"]
    assert {c["type"]: c["status"] for c in commands} == {
        "lost_mode_on": "acknowledged",
        "lock": "acknowledged",
        "locate": "acknowledged",
    }
    locations = api.get(f"/api/v1/devices/{device_id}/locations").json()["items"]
    assert locations and locations[0]["latitude"] == pytest.approx(51.5072)

    # Still lost: every check-in reports a fresh location.
    again = agent("run", "--once")
    assert "lost mode: location reported" in again.stdout
    after = api.get(f"/api/v1/devices/{device_id}/locations").json()["total"]
    assert after == len(locations) + 1

    # Wipe, confirmed with the device name: acknowledged, then the credential is dead.
    wipe = api.post(
        f"/api/v1/devices/{device_id}/commands", json={"type": "wipe", "confirm_name": name}
    )
    assert wipe.status_code == 201, wipe.text
    wiped = agent("run", "--once")
    assert re.search(r"command \d+ wipe: acknowledged", wiped.stdout), wiped.stdout
    assert agent.simulated["wiped"] is True and agent.simulated["managed_documents"] == []
    assert api.get(f"/api/v1/devices/{device_id}").json()["state"] == "wiped"
    dead = agent("run", "--once", code=None, process=True)
    message = one_line_error(dead, code=3)
    assert "revoked" in message and "wiped" in message


def test_lost_mode_off_stops_location_and_retire_forgets_the_credential(
    agent: AgentCli, api: httpx2.Client, users: UserFactory, live_app_url: str
) -> None:
    issued = create_enrollment(api, users)
    agent("enroll", enroll_url(live_app_url, issued["token"]))
    device_id = json.loads((agent.state_dir / "agent.json").read_text())["device_id"]
    api.post(f"/api/v1/devices/{device_id}/report-lost", json={"message": "Call IT"})
    agent("run", "--once")
    located = api.get(f"/api/v1/devices/{device_id}/locations").json()["total"]
    assert located >= 1

    off = api.post(f"/api/v1/devices/{device_id}/commands", json={"type": "lost_mode_off"})
    assert off.status_code == 201, off.text
    ran = agent("run", "--once")
    assert re.search(r"command \d+ lost_mode_off: acknowledged", ran.stdout), ran.stdout
    assert agent.simulated["lost_mode"] is False
    agent("run", "--once")
    assert api.get(f"/api/v1/devices/{device_id}/locations").json()["total"] == located

    api.post(f"/api/v1/devices/{device_id}/commands", json={"type": "retire"})
    retired = agent("run", "--once")
    assert "credential was deleted" in retired.stdout
    assert not (agent.state_dir / "credential").exists()
    assert api.get(f"/api/v1/devices/{device_id}").json()["state"] == "retired"
    assert "credential:  none" in agent("status").stdout
    assert "not enrolled" in one_line_error(agent("run", "--once", code=None))


def test_a_spent_enrollment_link_is_refused_clearly(
    agent: AgentCli, api: httpx2.Client, users: UserFactory, live_app_url: str, tmp_path: Path
) -> None:
    url = enroll_url(live_app_url, create_enrollment(api, users)["token"])
    agent("enroll", url)
    second = AgentCli(tmp_path / "second")
    message = one_line_error(second("enroll", url, code=None))
    assert "already used" in message
    assert not (second.state_dir / "credential").exists()
    # The same state directory is not silently re-enrolled either.
    assert "--force" in one_line_error(agent("enroll", url, code=None))


def test_simulator_enrolls_and_checks_in_a_fleet(
    api: httpx2.Client, users: UserFactory, live_app_url: str, tmp_path: Path
) -> None:
    policy = api.post("/api/v1/compliance-policies", json=STRICT).json()
    group = api.post("/api/v1/device-groups", json={"name": "Fleet", "policy_id": policy["id"]})
    issued = create_enrollment(api, users, uses_allowed=20, group_id=group.json()["id"])
    result = run_spillguard(
        [
            "simulate",
            "--devices", "20",
            "--duration", "5",
            "--interval", "1",
            "--server", live_app_url,
            "--enrollment-token", issued["token"],
            "--seed", "7",
        ],
        spillguard_env(tmp_path / "home"),
    )  # fmt: skip
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert re.search(r"devices enrolled\s*│\s*20 of 20", output), output
    assert re.search(r"errors\s*│\s*0\s", output), output
    checkins = int(re.search(r"check-ins\s*│\s*(\d+)", output).group(1))  # type: ignore[union-attr]
    # 19 live devices for ~5 intervals, plus the stale one's single check-in.
    assert 19 * 3 <= checkins <= 19 * 7, output
    assert re.search(r"latency p50 / p95 / p99\s*│\s*[\d.]+ ms / [\d.]+ ms / [\d.]+ ms", output)
    rate = float(re.search(r"check-ins per second\s*│\s*([\d.]+)", output).group(1))  # type: ignore[union-attr]
    assert rate > 5

    # The mix is visible on the server: 14 compliant, 2 swipe, 2 unencrypted, 1 rooted,
    # 1 stale (compliant, but it checked in once only).
    devices = api.get("/api/v1/devices", params={"limit": 100}).json()
    assert devices["total"] == 20
    flagged = [d for d in devices["items"] if d["compliant"] is False]
    assert len(flagged) == 5
    reasons = " ".join(r for d in flagged for r in d["compliance_reasons"])
    assert "swipe" in reasons and "not encrypted" in reasons and "rooted" in reasons.lower()
    assert all(d["last_checkin_at"] for d in devices["items"])


def test_simulator_reports_a_bad_token_without_crashing(live_app_url: str) -> None:
    argv = ["simulate", "--devices", "3", "--duration", "0", "--server", live_app_url,
            "--enrollment-token", "sge_" + "A" * 43]  # fmt: skip
    done = CliRunner().invoke(main_app, argv, env={"COLUMNS": "200", "NO_COLOR": "1"})
    result = subprocess.CompletedProcess(argv, done.exit_code, done.stdout, done.stderr)
    assert "enroll: 401 enrollment-token-invalid" in result.stdout
    # In process, the server's own log lines share stderr; the CLI's error is the last.
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: no device could enroll")


def test_simulator_warm_up_checks_every_phone_in_once_before_the_timed_phase(
    api: httpx2.Client, users: UserFactory, live_app_url: str
) -> None:
    from spillguard.devices.simulator import SimulationConfig, run_simulation

    policy = api.post("/api/v1/compliance-policies", json=STRICT).json()
    group = api.post("/api/v1/device-groups", json={"name": "Warm", "policy_id": policy["id"]})
    issued = create_enrollment(api, users, uses_allowed=20, group_id=group.json()["id"])
    stats = run_simulation(
        SimulationConfig(
            server=live_app_url,
            enrollment_token=issued["token"],
            devices=20,
            interval=1.0,
            duration=3.0,
            concurrency=4,
            seed=7,
            warmup=True,
        )
    )
    assert stats.enrolled == 20 and stats.errors == 0
    assert stats.warmup is not None
    assert stats.warmup.checkins == 20 and stats.warmup.errors == 0
    assert len(stats.warmup.latencies) == 20
    # The timed phase: the 19 phones that keep checking in, about 3 times each; the stale
    # one checked in during the warm-up only.
    assert 19 * 2 <= stats.checkins <= 19 * 4, stats.as_dict()
    assert stats.as_dict()["warmup"]["checkins"] == 20
    devices = api.get("/api/v1/devices", params={"limit": 100}).json()["items"]
    assert all(d["last_checkin_at"] for d in devices)
    assert len([d for d in devices if d["compliant"] is False]) == 5
