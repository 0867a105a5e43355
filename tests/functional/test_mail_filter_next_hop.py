"""What the mail filter does with each answer of the next hop: a temporary failure is a
451 to the sender (retry), a permanent one a 5xx; when the next hop refuses some
recipients only, those keep no ledger row and the sender's retry reaches only them."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.settings import Settings
from spillguard.exposure.mailfilter import RelayError, SmtpRelay
from spillguard.exposure.models import Delivery
from tests.functional.live import LOOPBACK, free_port
from tests.functional.test_mail_filter import (
    Sink,
    SinkHandler,
    build,
    count,
    send,
    start_filter,
)


@dataclass
class PickyHandler(SinkHandler):
    """Refuses the recipients in ``refuse`` at RCPT, or every message at DATA."""

    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def picky() -> Any:
    sink = Sink()
    sink.handler = PickyHandler()
    sink.start()
    yield sink
    sink.stop()


@pytest.mark.parametrize(
    ("refuse", "data_reply", "temporary", "code"),
    [
        ({"a@x.example": "450 4.2.1 busy", "b@x.example": "450 4.2.1 busy"}, None, True, "451"),
        ({"a@x.example": "550 5.1.1 no", "b@x.example": "550 5.1.1 no"}, None, False, "550"),
        ({}, "554 5.7.1 spam", False, "554"),
        ({}, "452 4.3.1 full", True, "451"),
    ],
)
def test_relay_maps_next_hop_answers(
    picky: Sink, refuse: dict[str, str], data_reply: str | None, temporary: bool, code: str
) -> None:
    handler: PickyHandler = picky.handler  # type: ignore[assignment]
    handler.refuse, handler.data_reply = refuse, data_reply
    relay = SmtpRelay(LOOPBACK, picky.port, timeout=10)
    with pytest.raises(RelayError) as failed:
        relay.send("s@x.example", ["a@x.example", "b@x.example"], b"Subject: x\r\n\r\nhi\r\n")
    assert failed.value.temporary is temporary
    assert failed.value.reply.startswith(code)


def test_relay_to_nothing_is_temporary() -> None:
    relay = SmtpRelay(LOOPBACK, free_port(), timeout=5)
    with pytest.raises(RelayError) as failed:
        relay.send("", ["a@x.example"], b"Subject: x\r\n\r\nhi\r\n")
    assert failed.value.temporary and failed.value.reply.startswith("451 4.4.1")


def test_relay_returns_the_recipients_refused_when_others_were_taken(picky: Sink) -> None:
    handler: PickyHandler = picky.handler  # type: ignore[assignment]
    handler.refuse = {"b@x.example": "550 5.1.1 no"}
    refused = SmtpRelay(LOOPBACK, picky.port).send(
        "s@x.example", ["a@x.example", "b@x.example"], b"Subject: x\r\n\r\nhi\r\n"
    )
    assert refused == {"b@x.example": (550, b"5.1.1 no")}
    assert [r.recipients for r in picky.received] == [["a@x.example"]]


@pytest.mark.parametrize(("reply", "code"), [("450 4.2.1 later", 451), ("550 5.1.1 gone", 550)])
def test_a_partly_refused_message_records_and_retries_only_the_refused(
    app: FastAPI,
    settings: Settings,
    keys: KeyRing,
    client: TestClient,
    picky: Sink,
    db: Session,
    reply: str,
    code: int,
) -> None:
    handler: PickyHandler = picky.handler  # type: ignore[assignment]
    handler.refuse = {"b@x.example": reply}
    server = start_filter(app, settings, keys, mail_filter_next_hop=picky.address)
    try:
        message = build(to=["a@x.example", "b@x.example"])
        with pytest.raises(smtplib.SMTPDataError) as failed:
            send(server, message, ["a@x.example", "b@x.example"])
        assert failed.value.smtp_code == code
        recorded = {d.recipient for d in db.scalars(select(Delivery))}
        assert recorded == {"a@x.example"}  # the accepted recipient only
        # The sender retries; the next hop now takes b as well. a is not sent it again.
        handler.refuse = {}
        assert send(server, message, ["a@x.example", "b@x.example"]) == {}
    finally:
        server.stop()
    assert [r.recipients for r in picky.received] == [["a@x.example"], ["b@x.example"]]
    assert count(db, Delivery) == 2
