"""The mail senders: each meets the MailSender interface; the SMTP one against a real
aiosmtpd server on loopback tells temporary (4xx, timeout, refused connection) from
permanent (5xx) failures, and "perhaps delivered" (no answer after the end of the data)
from both, and calls ``before_commit`` exactly before the point of no return."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from spillguard.core.settings import Settings
from spillguard.incidents.mailer import (
    MailOutcomeUnknown,
    MailSender,
    MemoryMailSender,
    PermanentMailError,
    SmtpMailSender,
    TemporaryMailError,
    UnconfiguredMailSender,
    mail_sender_from_settings,
)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Handler:
    received: list[bytes] = field(default_factory=list)
    sessions: int = 0
    rcpt_reply: str | None = None
    data_reply: str | None = None
    data_delay: float = 0.0
    committed_before_data_end: list[bool] = field(default_factory=list)
    flag: threading.Event = field(default_factory=threading.Event)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.committed_before_data_end.append(self.flag.is_set())
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        self.received.append(bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port)
    controller.start()
    yield handler, port
    controller.stop()


def message(to: str = "alex@example.com", body: str = "Hello\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "privacy@shop.example"
    msg["To"] = to
    msg["Subject"] = "Notice"
    msg["Message-ID"] = "<notice-1.incident-1@shop.example>"
    msg.set_content(body)
    return msg


def sender(port: int, **kw: Any) -> SmtpMailSender:
    return SmtpMailSender(LOOPBACK, port, sender="privacy@shop.example", timeout=2.0, **kw)


@pytest.mark.parametrize(
    "implementation",
    [MemoryMailSender(), UnconfiguredMailSender(), SmtpMailSender(LOOPBACK, 25, sender="a@b.c")],
)
def test_every_sender_meets_the_interface(implementation: object) -> None:
    assert isinstance(implementation, MailSender)


def test_settings_choose_the_sender(tmp_path: Path) -> None:
    base = Settings(home=tmp_path)
    assert isinstance(mail_sender_from_settings(base), UnconfiguredMailSender)
    smtp = mail_sender_from_settings(base.model_copy(update={"smtp_host": "mail.example"}))
    assert isinstance(smtp, SmtpMailSender) and smtp.host == "mail.example"
    memory = mail_sender_from_settings(base.model_copy(update={"mail_backend": "memory"}))
    assert isinstance(memory, MemoryMailSender)


def test_unconfigured_mail_is_a_temporary_failure() -> None:
    with pytest.raises(TemporaryMailError, match="no SMTP server is configured"):
        UnconfiguredMailSender().send(message())


def test_memory_sender_keeps_messages_and_refuses_no_recipient() -> None:
    memory = MemoryMailSender()
    calls: list[str] = []
    memory.send(message(), before_commit=lambda: calls.append("commit"))
    assert calls == ["commit"] and len(memory.sent) == 1
    no_one = message()
    del no_one["To"]
    with pytest.raises(PermanentMailError):
        memory.send(no_one)


def test_smtp_delivers_with_its_message_id_and_dot_lines_intact(
    server: tuple[Handler, int],
) -> None:
    handler, port = server
    smtp = sender(port)
    calls: list[str] = []

    def before() -> None:
        calls.append("commit")
        handler.flag.set()

    smtp.send(message(body="Line one\n.\n.hidden dot\n"), before_commit=before)
    smtp.send(message(to="sam@example.com"))
    smtp.close()
    assert calls == ["commit"]
    # The hook ran before the server could have the first message.
    assert handler.committed_before_data_end == [True, True]
    assert len(handler.received) == 2
    first = handler.received[0].decode()
    assert "Message-ID: <notice-1.incident-1@shop.example>" in first
    assert "\n.\n" in first.replace("\r\n", "\n") and ".hidden dot" in first
    assert handler.sessions == 1  # one connection for consecutive messages


def test_a_hook_that_fails_sends_nothing(server: tuple[Handler, int]) -> None:
    handler, port = server

    def refuse() -> None:
        raise RuntimeError("lease lost")

    smtp = sender(port)
    with pytest.raises(RuntimeError):
        smtp.send(message(), before_commit=refuse)
    assert smtp._smtp is None  # the half-sent session was dropped, not reused
    assert handler.received == [] and handler.committed_before_data_end == []


@pytest.mark.parametrize(
    ("rcpt", "data", "error", "code"),
    [
        ("550 5.1.1 No such user", None, PermanentMailError, "550"),
        ("450 4.2.1 Busy", None, TemporaryMailError, "450"),
        (None, "554 5.7.1 Spam", PermanentMailError, "554"),
        (None, "452 4.3.1 Full", TemporaryMailError, "452"),
    ],
)
def test_smtp_replies_are_classified(
    server: tuple[Handler, int],
    rcpt: str | None,
    data: str | None,
    error: type[Exception],
    code: str,
) -> None:
    handler, port = server
    handler.rcpt_reply, handler.data_reply = rcpt, data
    smtp = sender(port)
    with pytest.raises(error) as failed:
        smtp.send(message())
    assert code in failed.value.reply  # type: ignore[attr-defined]
    assert not failed.value.maybe_delivered  # type: ignore[attr-defined]
    handler.rcpt_reply = handler.data_reply = None
    smtp.send(message())  # the sender recovers for the next message
    smtp.close()
    assert len(handler.received) == 1


def test_no_answer_after_the_end_of_data_is_perhaps_delivered(
    server: tuple[Handler, int],
) -> None:
    handler, port = server
    handler.data_delay = 3.0
    smtp = SmtpMailSender(LOOPBACK, port, sender="privacy@shop.example", timeout=0.5)
    with pytest.raises(MailOutcomeUnknown) as failed:
        smtp.send(message())
    assert failed.value.maybe_delivered and failed.value.temporary
    assert "timed out" in failed.value.reply


def test_a_refused_connection_is_temporary() -> None:
    with pytest.raises(TemporaryMailError, match="connection refused") as failed:
        sender(free_port()).send(message())
    assert not failed.value.maybe_delivered


def test_a_server_that_never_greets_times_out_as_temporary() -> None:
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(1)
    try:
        smtp = SmtpMailSender(
            LOOPBACK, listener.getsockname()[1], sender="a@shop.example", timeout=0.5
        )
        with pytest.raises(TemporaryMailError, match="timed out") as failed:
            smtp.send(message())
        assert not failed.value.maybe_delivered
    finally:
        listener.close()


def test_starttls_required_but_not_offered_is_refused(server: tuple[Handler, int]) -> None:
    handler, port = server
    with pytest.raises(PermanentMailError, match="STARTTLS"):
        sender(port, starttls=True).send(message())
    assert handler.received == []
