"""The reference agent's `linux` backend end to end: a real `spillguard agent` process
reads this machine's posture, enrolls against a live server (SQLite and PostgreSQL),
gets flagged by a policy, and carries out lost mode, locate, selective wipe and retire,
each result reported back over the protocol.

The expected posture and lock outcome are read here independently of the backend
(os-release, the agent's documents folder, running `loginctl lock-sessions` ourselves),
so the test holds on a desktop with logind as well as in a container without it.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.factories.users import UserFactory
from tests.functional.agent_server import live_app_url
from tests.functional.test_agent import AgentCli, create_enrollment, enroll_url

__all__ = ["live_app_url"]  # the fixture, imported for pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the linux backend reads a Linux host"
)


def os_release_version() -> str:
    """VERSION_ID (or BUILD_ID) of /etc/os-release, read without the agent's code."""
    values = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return values.get("VERSION_ID") or values.get("BUILD_ID") or "unknown"


def lock_outcome() -> tuple[str, str | None]:
    """What `loginctl lock-sessions` does on this machine: the agent must report the same."""
    try:
        done = subprocess.run(
            ["loginctl", "lock-sessions"], capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        return "error", "loginctl is not installed"
    if done.returncode == 0:
        return "acknowledged", None
    first = (done.stderr or done.stdout).strip().splitlines()
    return "error", first[0] if first else f"exit {done.returncode}"


def commands_by_type(api: httpx2.Client, device_id: int) -> dict[str, dict[str, Any]]:
    items = api.get(f"/api/v1/devices/{device_id}/commands").json()["items"]
    return {c["type"]: c for c in items}


@pytest.fixture
def api(live_app_url: str, users: UserFactory):
    with httpx2.Client(base_url=live_app_url, headers=users.auth("admin"), timeout=30) as c:
        yield c


def test_linux_agent_reports_this_host_and_carries_out_commands(
    tmp_path: Path, api: httpx2.Client, users: UserFactory, live_app_url: str
) -> None:
    agent = AgentCli(tmp_path)
    documents = agent.state_dir / "documents"
    documents.mkdir(parents=True)
    agent.state_dir.chmod(0o700)
    contract = b"Renewal list, synthetic: 3 customers\n"
    (documents / "renewals.csv").write_bytes(contract)

    issued = create_enrollment(api, users)
    enrolled = agent(
        "enroll", enroll_url(live_app_url, issued["token"]), "--backend", "linux", process=True
    )
    match = re.search(r"Enrolled as device (\d+)", enrolled.stdout)
    assert match, enrolled.stdout
    device_id = int(match.group(1))

    device = api.get(f"/api/v1/devices/{device_id}").json()
    posture = device["posture"]
    assert device["platform"] == "linux"
    assert posture["os_version"] == os_release_version()
    assert posture["passcode"]["type"] == "none"
    assert isinstance(posture["storage_encrypted"], bool)
    assert posture["managed_documents"] == [
        {
            "sha256": hashlib.sha256(contract).hexdigest(),
            "file_name": "renewals.csv",
            "size": len(contract),
        }
    ]

    # A policy that wants a PIN flags the host, with the reason in words.
    policy = api.post(
        "/api/v1/compliance-policies",
        json={"name": "Laptops", "min_passcode_type": "pin", "min_passcode_length": 6},
    ).json()
    assert api.patch(f"/api/v1/devices/{device_id}", json={"policy_id": policy["id"]}).is_success
    flagged = agent("run", "--once", process=True)
    assert "NOT compliant" in flagged.stdout
    device = api.get(f"/api/v1/devices/{device_id}").json()
    assert device["compliant"] is False
    assert any("PIN of at least 6" in reason for reason in device["compliance_reasons"])

    # Report lost: lost mode and lock go through loginctl, locate is honestly refused.
    lost = api.post(f"/api/v1/devices/{device_id}/report-lost", json={"message": "Call IT"})
    assert lost.status_code == 200, lost.text
    agent("run", "--once", process=True)
    status, reason = lock_outcome()
    results = commands_by_type(api, device_id)
    assert results["lock"]["status"] == status
    assert results["lost_mode_on"]["status"] == status
    if reason is not None:
        assert reason in (results["lock"]["error_reason"] or "")
        assert (results["lost_mode_on"]["error_reason"] or "").startswith("lost mode on, but")
    assert results["locate"]["status"] == "error"
    assert "no location source" in results["locate"]["error_reason"]
    assert api.get(f"/api/v1/devices/{device_id}/locations").json()["total"] == 0

    # Selective wipe removes the managed documents, and the next inventory is empty.
    queued = api.post(f"/api/v1/devices/{device_id}/commands", json={"type": "selective_wipe"})
    assert queued.status_code == 201, queued.text
    agent("run", "--once", process=True)
    assert commands_by_type(api, device_id)["selective_wipe"]["status"] == "acknowledged"
    assert not documents.exists()
    agent("run", "--once", process=True)
    assert api.get(f"/api/v1/devices/{device_id}").json()["posture"]["managed_documents"] == []

    # Retire: the credential is deleted on the host and refused by the server.
    api.post(f"/api/v1/devices/{device_id}/commands", json={"type": "retire"})
    retired = agent("run", "--once", process=True)
    assert "credential was deleted" in retired.stdout
    assert not (agent.state_dir / "credential").exists()
    assert api.get(f"/api/v1/devices/{device_id}").json()["state"] == "retired"
