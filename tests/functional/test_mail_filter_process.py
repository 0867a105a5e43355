"""`spillguard mail-filter` as a real process: killed between receiving a message and the
next hop accepting it, the sending server's retry is delivered exactly once and recorded
once; started wrongly, it says why in one line."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from spillguard.core.settings import Settings
from spillguard.exposure.models import Delivery, GatewayLink, QuarantinedMessage
from tests.conftest import TEST_MASTER_KEY
from tests.factories.devices import SECURE
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.live import COMMAND, LOOPBACK, free_port, one_line_error, run_spillguard
from tests.functional.live import spillguard_env as make_env
from tests.functional.test_mail_filter import (
    FEW,
    XLSX,
    Sink,
    World,
    build,
    count,
    settings,
    sink,
    world,
)

__all__ = ["settings", "sink", "world"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow


def filter_env(settings: Settings, sink: Sink) -> dict[str, str]:
    return make_env(
        settings.home,
        settings.database_url,
        master_key=TEST_MASTER_KEY,
        mail_filter_next_hop=sink.address,
        mail_filter_next_hop_timeout_seconds=60,
        log_level="WARNING",
    )


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mail-filter exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as conn:
                if conn.makefile("rb").readline().startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("mail-filter never listened")


@contextmanager
def filter_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [*COMMAND, "mail-filter", "--listen", f"{LOOPBACK}:{port}"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            wait_listening(port, process)
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            err.seek(0)
            output = err.read()
            assert b"Traceback" not in output, output.decode(errors="replace")


def send_in_thread(port: int, data: bytes, to: list[str]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            with smtplib.SMTP(LOOPBACK, port, timeout=60) as smtp:
                outcome.append(smtp.sendmail("sales.lead@corp.example", to, data))
        except (smtplib.SMTPException, OSError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_killed_between_receipt_and_reinjection_the_retry_goes_exactly_once(
    client: TestClient,
    users: UserFactory,
    world: World,
    settings: Settings,
    sink: Sink,
    db: Session,
) -> None:
    manager, phone = world.phone_for(client, users, "marketing.manager@corp.example", SECURE)
    message = build(to=[manager.email], attachments=[("few.xlsx", customers_xlsx(FEW), XLSX)])
    data = message.as_bytes(policy=policy.SMTP)
    env = filter_env(settings, sink)
    port = free_port()

    # First attempt: the next hop holds the message without answering; the filter dies.
    sink.handler.stall.set()
    with filter_process(env, port) as process:
        thread, outcome = send_in_thread(port, data, [manager.email])
        while not sink.handler.stalled.wait(0.1):
            assert thread.is_alive(), f"the message never reached the next hop: {outcome}"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        thread.join(30)
    assert isinstance(outcome[0], smtplib.SMTPServerDisconnected | OSError), outcome
    sink.handler.stall.clear()
    time.sleep(0.2)
    assert sink.received == []  # the next hop never accepted it
    assert count(db, Delivery) == 0  # and nothing was recorded

    # The sending server retries (it never got a 250) through a restarted filter.
    with filter_process(env, port):
        thread, outcome = send_in_thread(port, data, [manager.email])
        thread.join(60)
        assert outcome == [{}]
        # ...and once more, as if our 250 had been lost on the way back.
        thread, outcome = send_in_thread(port, data, [manager.email])
        thread.join(60)
        assert outcome == [{}]
    assert len(sink.received) == 1
    assert sink.received[0].recipients == [manager.email]
    assert count(db, Delivery) == 2  # body and spreadsheet, on the phone, once each
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=world.security).json()
    assert on_phone["distinct_customers"] == len(FEW)
    assert count(db, GatewayLink) == 0 and count(db, QuarantinedMessage) == 0


def test_a_stopping_filter_answers_the_message_it_is_filtering(
    client: TestClient,
    users: UserFactory,
    world: World,
    settings: Settings,
    sink: Sink,
    db: Session,
) -> None:
    manager, _ = world.phone_for(client, users, "marketing.manager@corp.example", SECURE)
    data = build(to=[manager.email]).as_bytes(policy=policy.SMTP)
    port = free_port()
    sink.handler.stall.set()
    with filter_process(filter_env(settings, sink), port) as process:
        thread, outcome = send_in_thread(port, data, [manager.email])
        while not sink.handler.stalled.wait(0.1):
            assert thread.is_alive(), outcome
        os.killpg(process.pid, signal.SIGTERM)  # as systemd stops it
        time.sleep(0.5)
        assert process.poll() is None  # still finishing the message
        sink.handler.stall.clear()
        thread.join(60)
        assert process.wait(30) == 0
    assert outcome == [{}]  # the sender got its 250
    assert len(sink.received) == 1 and count(db, Delivery) == 1


def test_start_errors_are_one_line(settings: Settings, sink: Sink, tmp_path: Path) -> None:
    env = filter_env(settings, sink)
    bad = run_spillguard(["mail-filter", "--listen", "127.0.0.1:notaport"], env)
    assert "not host:port" in one_line_error(bad)
    loop = run_spillguard(
        ["mail-filter", "--listen", sink.address, "--next-hop", sink.address], env
    )
    assert "loop" in one_line_error(loop)
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_spillguard(["mail-filter", "--listen", f"{LOOPBACK}:{port}"], env)
    assert f"cannot listen on {LOOPBACK}:{port}" in one_line_error(busy)
    label = run_spillguard(
        ["mail-filter"], {**env, "SPILLGUARD_MAIL_FILTER_PROTECTED_LABEL": "secret"}
    )
    assert "mail_filter_protected_label" in one_line_error(label)
