"""The demo's local SMTP sink: every message received is written as a ``.eml`` file.

`spillguard demo` points ``smtp_host``/``smtp_port`` at it, so customer notices,
reminders and escalations really go through SMTP; the console page ``/demo/mail``
(:mod:`spillguard.demo.views`) reads the directory back.  Loopback only: it is a
demonstration sink, not a mail server.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final, cast

from aiosmtpd.controller import Controller

LOOPBACK: Final = "127.0.0.1"
# Names the sink gives its files; anything else in the directory is not shown.
FILE_NAME: Final = re.compile(r"^[0-9]{17}-[0-9a-f]{32}\.eml$")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class _Writer:
    """aiosmtpd handler: one file per message, written whole then renamed into place."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")[:17]
        name = f"{stamp}-{uuid.uuid4().hex}.eml"
        recipients = ", ".join(str(r) for r in envelope.rcpt_tos)
        data = f"X-Demo-Envelope-To: {recipients}\r\n".encode() + bytes(
            envelope.original_content or envelope.content
        )
        partial = self.directory / f".{name}.part"
        partial.write_bytes(data)
        os.replace(partial, self.directory / name)
        return "250 OK"


class MailSink:
    """A running SMTP sink on loopback writing into ``directory``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = port or free_port()
        self.controller = Controller(
            _Writer(self.directory), hostname=LOOPBACK, port=self.port, decode_data=False
        )

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class MailSummary:
    """One received message, as the mailbox list shows it."""

    name: str
    received_at: datetime
    recipients: str
    subject: str


def _parse(path: Path) -> EmailMessage:
    # policy.default makes EmailMessage objects (typeshed says Message).
    return cast(EmailMessage, message_from_bytes(path.read_bytes(), policy=policy.default))


def list_messages(directory: Path, limit: int = 200) -> tuple[list[MailSummary], int]:
    """The newest ``limit`` messages first, and how many there are."""
    names = sorted(
        (p.name for p in directory.glob("*.eml") if FILE_NAME.match(p.name)), reverse=True
    )
    summaries = []
    for name in names[:limit]:
        message = _parse(directory / name)
        received = datetime.strptime(name[:17] + "000", "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
        summaries.append(
            MailSummary(
                name=name,
                received_at=received,
                recipients=str(message.get("X-Demo-Envelope-To", "")),
                subject=str(message.get("Subject", "")),
            )
        )
    return summaries, len(names)


@dataclass(frozen=True)
class MailMessage:
    """One message for display: headers that matter and its text."""

    summary: MailSummary
    sender: str
    text: str
    attachments: list[str]


def read_message(directory: Path, name: str) -> MailMessage | None:
    """The message called ``name``, or None when there is no such (valid) file."""
    if not FILE_NAME.match(name) or not (directory / name).is_file():
        return None
    message = _parse(directory / name)
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    attachments = [str(part.get_filename() or "attachment") for part in message.iter_attachments()]
    received = datetime.strptime(name[:17] + "000", "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
    summary = MailSummary(
        name=name,
        received_at=received,
        recipients=str(message.get("X-Demo-Envelope-To", "")),
        subject=str(message.get("Subject", "")),
    )
    return MailMessage(summary, str(message.get("From", "")), str(text), attachments)


def wait_for_messages(directory: Path, count: int, timeout: float = 10.0) -> int:
    """Wait until ``count`` messages are in the directory (tests); how many there are."""
    deadline = time.monotonic() + timeout
    while True:
        found = len([p for p in directory.glob("*.eml") if FILE_NAME.match(p.name)])
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
