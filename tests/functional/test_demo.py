"""`spillguard demo`: story 1 staged through the real services (on SQLite and
PostgreSQL), the demo mailbox page, and the command as a real process that starts,
answers and stops cleanly, leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.app import create_app
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer
from spillguard.demo.mailbox import LOOPBACK, MailSink, wait_for_messages
from spillguard.demo.stage import DOMAIN, SPREADSHEET, stage_story
from spillguard.devices.agent.state import AgentState
from spillguard.devices.models import Device
from spillguard.exposure.services import DeliveryFilter, ExposureService
from tests.conftest import empty_all_tables
from tests.functional.live import COMMAND, free_port, spillguard_env
from tests.functional.test_console import login


def test_story_one_is_staged(
    db: Session, keys: KeyRing, settings: Settings, tmp_path: Path
) -> None:
    story = stage_story(db, keys, settings, tmp_path / "phones", password="demo password 1")
    db.commit()

    active = db.scalar(
        select(func.count()).select_from(Customer).where(Customer.removed_at.is_(None))
    )
    assert story.customers == active == 5_000

    phone = story.marketing_phone
    device = db.get(Device, phone.device_id)
    assert device is not None and device.compliant is False
    assert device.compliance_reasons == phone.reasons
    assert any("swipe" in r for r in device.compliance_reasons)
    assert any("encrypt" in r for r in device.compliance_reasons)
    others = [db.get(Device, p.device_id) for p in story.phones if p is not phone]
    assert others and all(d is not None and d.compliant for d in others)
    # Its posture names the spreadsheet, as the phone's inventory reports it.
    documents = device.posture["managed_documents"]
    assert [d["file_name"] for d in documents] == [SPREADSHEET]
    assert documents[0]["sha256"] == story.spreadsheet_sha256

    ledger = ExposureService(db, Principal.system("tests"))
    exposure = ledger.destination_exposure(DeliveryFilter(device_id=phone.device_id))
    assert exposure.distinct_customers == 1_000
    assert [c.content.sha256 for c in exposure.contents] == [story.spreadsheet_sha256]
    everything = ledger.destination_exposure(DeliveryFilter())
    assert len(everything.contents) == 2  # the spreadsheet and the renewals list

    # Each phone can check in by itself later: its agent state holds a credential.
    for staged in story.phones:
        assert AgentState(staged.state_dir).load_config().device_id == staged.device_id
    assert set(story.logins.values()) >= {f"dpo@{DOMAIN}", f"marketing.manager@{DOMAIN}"}


def test_demo_mailbox_page_shows_what_the_sink_received(
    settings: Settings, keys: KeyRing, tmp_path: Path
) -> None:
    mailbox = tmp_path / "mail"
    sink = MailSink(mailbox).start()
    try:
        message = EmailMessage()
        message["From"] = "privacy@harbour.example"
        message["To"] = "jane.doe@example.com"
        message["Subject"] = "About your personal data"
        message.set_content("We are writing to tell you about a phone that was lost.")
        with smtplib.SMTP(LOOPBACK, sink.port, timeout=10) as smtp:
            smtp.send_message(message)
        assert wait_for_messages(mailbox, 1) == 1
    finally:
        sink.stop()

    app = create_app(settings.model_copy(update={"demo_mailbox_dir": mailbox}), keys)
    try:
        with TestClient(app, base_url="http://testserver") as client:
            story_db = app.state.session_factory()
            try:
                story = stage_story(story_db, keys, settings, tmp_path / "phones", customers=20)
                story_db.commit()
            finally:
                story_db.close()
            assert login(client, f"dpo@{DOMAIN}", story.password).status_code == 303
            listing = client.get("/demo/mail")
            assert listing.status_code == 200
            assert "About your personal data" in listing.text
            assert "jane.doe@example.com" in listing.text
            name = re.search(r'href="/demo/mail/([^"]+)"', listing.text)
            assert name
            shown = client.get(f"/demo/mail/{name.group(1)}")
            assert shown.status_code == 200
            assert "a phone that was lost" in shown.text
            assert client.get("/demo/mail/..%2Fspillguard.db").status_code == 404
            client.post("/logout", data={})
        with TestClient(app, base_url="http://testserver") as other:
            assert login(other, f"security@{DOMAIN}", story.password).status_code == 303
            assert other.get("/demo/mail").status_code == 403
    finally:
        empty_all_tables(app.state.engine)
        app.state.engine.dispose()


def test_no_demo_mailbox_outside_the_demo(client: TestClient, users) -> None:  # type: ignore[no-untyped-def]
    admin = users.create("admin")
    assert login(client, admin.email).status_code == 303
    assert client.get("/demo/mail").status_code == 404


def test_demo_command_serves_and_stops_cleanly(tmp_path: Path) -> None:
    process, url, stdout = _start_demo(tmp_path)
    try:
        homes = list(tmp_path.glob("spillguard-demo-*"))
        assert len(homes) == 1 and (homes[0] / "spillguard.db").exists()
        text = stdout.read_text()
        assert f"dpo@{DOMAIN}" in text and "password: " in text
        with httpx2.Client(base_url=url, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/login").status_code == 200
            # Mounted in demo mode (elsewhere a 404), and behind the login.
            assert http.get("/demo/mail", follow_redirects=False).status_code == 401
        # The phones check in by themselves (every 3 s; staging checked them in directly):
        # the agent keeps the marketing phone's last answer.
        last = homes[0] / "phones" / "phone-4" / "last-checkin.json"
        _wait_for("the background phones to check in", last.exists, 20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "stderr.txt").read_text()
        assert not homes[0].exists()
        assert "data removed" in stdout.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_demo_keep_refuses_a_directory_in_use(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    result = subprocess.run(
        [*COMMAND, "demo", "--port", str(free_port()), "--keep", str(used)],
        env=spillguard_env(tmp_path / "unused-home"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and "--keep" in result.stderr
    assert (used / "something").read_text() == "x"


def _start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`spillguard demo` as a process; waits for it to print its URL and answer /healthz."""
    port = free_port()
    env = spillguard_env(tmp_path / "unused-home")
    env["TMPDIR"] = str(tmp_path)
    stdout = tmp_path / "stdout.txt"
    with stdout.open("wb") as out, (tmp_path / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [*COMMAND, "demo", "--port", str(port), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 90
    while f"running at {url}" not in stdout.read_text():
        assert process.poll() is None, (stdout.read_text(), (tmp_path / "stderr.txt").read_text())
        assert time.monotonic() < deadline, stdout.read_text()
        time.sleep(0.2)
    with httpx2.Client(base_url=url, timeout=10) as http:
        for _ in range(100):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
    return process, url, stdout


def _token(home: Path, email: str) -> dict[str, str]:
    """An API token for a staged user, issued by `spillguard tokens create` on the demo's
    kept data directory (while the demo runs)."""
    result = subprocess.run(
        [*COMMAND, "tokens", "create", "--user", email],
        env=spillguard_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1].strip()
    assert secret.startswith("sgt_")
    return {"Authorization": f"Bearer {secret}"}


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_demo_walkthrough_lost_phone_to_notices_in_the_mailbox(tmp_path: Path) -> None:
    """The walk docs/demo.md describes, through the API of a running demo: report the
    marketing manager's phone lost, the background phone acknowledges the lock, the
    assessment names the 1,000 customers, and their notices reach the demo's SMTP sink
    once each and show on /demo/mail."""
    home = tmp_path / "kept"
    process, url, stdout = _start_demo(tmp_path, "--keep", str(home))
    try:
        password = re.search(r"password: (\S+)", stdout.read_text())
        assert password
        security = _token(home, f"security@{DOMAIN}")
        dpo = _token(home, f"dpo@{DOMAIN}")
        with httpx2.Client(base_url=url, timeout=30) as http:
            devices = http.get("/api/v1/devices", headers=security).json()["items"]
            phone = next(d for d in devices if d["owner_email"].startswith("marketing.manager@"))
            assert phone["compliant"] is False
            lost = http.post(
                f"/api/v1/devices/{phone['id']}/report-lost",
                json={"message": "Lost: please call reception."},
                headers=security,
            )
            assert lost.status_code == 200, lost.text

            def lock_acknowledged() -> bool:
                commands = http.get(
                    f"/api/v1/devices/{phone['id']}/commands", headers=security
                ).json()["items"]
                return any(c["type"] == "lock" and c["status"] == "acknowledged" for c in commands)

            _wait_for("the phone to acknowledge the lock", lock_acknowledged, 30)
            incidents = http.get("/api/v1/incidents", params={"open": "true"}, headers=dpo)
            (incident,) = [i for i in incidents.json()["items"] if i["device_id"] == phone["id"]]
            assessed = http.post(f"/api/v1/incidents/{incident['id']}/assessments", headers=dpo)
            assert assessed.status_code == 201, assessed.text
            assert assessed.json()["risk"] == "high"
            assert assessed.json()["customer_count"] == 1_000
            queued = http.post(f"/api/v1/incidents/{incident['id']}/notices", json={}, headers=dpo)
            assert queued.status_code == 200, queued.text
            assert queued.json()["email"] == 1_000

            def all_sent() -> bool:
                summary = http.get(
                    f"/api/v1/incidents/{incident['id']}/notices/summary", headers=dpo
                ).json()
                return bool(summary["by_status"].get("sent") == 1_000)

            _wait_for("the 1,000 notices to be sent", all_sent, 120)
        assert wait_for_messages(home / "mail", 1_000) == 1_000
        recipients = [
            line
            for path in (home / "mail").glob("*.eml")
            for line in path.read_text().splitlines()
            if line.startswith("X-Demo-Envelope-To:")
        ]
        assert len(recipients) == len(set(recipients)) == 1_000

        with httpx2.Client(base_url=url, timeout=30) as browser:
            page = browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf
            signed_in = browser.post(
                "/login",
                data={
                    "email": f"dpo@{DOMAIN}",
                    "password": password.group(1),
                    "csrf_token": csrf.group(1),
                },
            )
            assert signed_in.status_code in (200, 303), signed_in.text
            mailbox = browser.get("/demo/mail")
            assert mailbox.status_code == 200
            assert "1000 messages (the newest 200 shown)" in mailbox.text

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "stderr.txt").read_text()
        assert (home / "spillguard.db").exists()  # --keep keeps it
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
