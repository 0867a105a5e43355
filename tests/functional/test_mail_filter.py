"""The mail filter over a real SMTP path on loopback, on SQLite and PostgreSQL: messages
sent with smtplib to the filter, which hands them to an aiosmtpd sink (the next hop).

Per recipient: a compliant phone gets the message unchanged and the ledger shows the
spreadsheet's customers on that phone; a swipe-only phone gets the spreadsheet replaced by
a gateway link, whose fetch is refused until the phone has a PIN; an outside recipient of
a restricted spreadsheet gets nothing (quarantined) and the sender a notice. Nothing lost,
nothing twice: a next hop that is down gives 451 and records nothing, and the sender's
retry is delivered and recorded once. Bad input — broken MIME, an oversize message, bad
recipients, a client that hangs up mid-DATA, forged verdict headers — is answered with the
right reply code and never breaks the filter.

The helpers here (the sink, message builders, the in-process filter) are shared by the
other ``test_mail_filter_*`` modules and ``tests/browser/test_quarantine.py``.
"""

from __future__ import annotations

import asyncio
import email
import smtplib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings
from spillguard.exposure.mailfilter import MailFilter, MailFilterServer, SmtpRelay
from spillguard.exposure.models import (
    Delivery,
    GatewayLink,
    HeldDocument,
    InspectedContent,
    QuarantinedMessage,
)
from spillguard.exposure.store import HeldDocuments, blob_store
from tests.factories.customers import Person, people, to_csv
from tests.factories.devices import (
    SECURE,
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.spreadsheets import customers_xlsx
from tests.factories.users import UserFactory
from tests.functional.live import LOOPBACK, free_port
from tests.functional.test_api_errors import assert_clean_problem

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DIRECTORY = people(1200, seed=55)
TOP_1000 = DIRECTORY[:1000]
FEW = DIRECTORY[1000:1030]  # 30 customers: restricted (10 or more)
SENDER = "sales.lead@corp.example"


# --- the next hop ------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    """Keeps a message only once it answers 250; while ``stall`` is set it holds every
    message before answering (a connection lost meanwhile cancels it: nothing kept)."""

    received: list[Received] = field(default_factory=list)
    stall: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall.is_set():
            self.stalled.set()
            while self.stall.is_set():
                await asyncio.sleep(0.02)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 OK"


class Sink:
    """An aiosmtpd server on a fixed loopback port that can be stopped and started again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Sink:
        self.controller = Controller(
            self.handler,
            hostname=LOOPBACK,
            port=self.port,
            decode_data=False,
            enable_SMTPUTF8=True,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink().start()
    yield server
    server.handler.stall.clear()
    server.stop()


@pytest.fixture
def settings(settings: Settings, sink: Sink) -> Settings:
    """The test settings, with the sink as the mail filter's next hop."""
    return settings.model_copy(
        update={"mail_filter_next_hop": sink.address, "mail_filter_next_hop_timeout_seconds": 10}
    )


def start_filter(
    app: FastAPI, settings: Settings, keys: KeyRing, **changes: Any
) -> MailFilterServer:
    settings = settings.model_copy(update=changes) if changes else settings
    relay = SmtpRelay.from_settings(settings)
    mail_filter = MailFilter(settings, keys, app.state.session_factory, relay)
    return MailFilterServer(
        mail_filter, LOOPBACK, 0, max_message_bytes=settings.mail_filter_max_message_bytes
    ).start()


@pytest.fixture
def mail_filter(app: FastAPI, settings: Settings, keys: KeyRing) -> Iterator[MailFilterServer]:
    server = start_filter(app, settings, keys)
    yield server
    server.stop()


# --- messages ----------------------------------------------------------------------------


def build(
    *,
    to: list[str],
    subject: str = "Quarterly figures",
    body: str = "Hello,\n\nplease find the figures attached.\n\nBest regards\n",
    attachments: Sequence[tuple[str, bytes, str]] = (),
    sender: str = SENDER,
    message_id: str | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="corp.example")
    message.set_content(body)
    for name, data, media_type in attachments:
        maintype, subtype = media_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def send(
    server: MailFilterServer, message: EmailMessage | bytes, to: list[str], sender: str = SENDER
) -> dict[str, Any]:
    data = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
    with smtplib.SMTP(LOOPBACK, server.port, timeout=60) as smtp:
        return smtp.sendmail(sender, to, data)


def attachment_names(message: EmailMessage) -> list[str]:
    return [p.get_filename() for p in message.iter_attachments() if p.get_filename()]


def count(db: Session, model: Any) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


# --- the world ---------------------------------------------------------------------------


def import_directory(client: TestClient, users: UserFactory, rows: list[Person]) -> None:
    imported = client.post(
        "/api/v1/customers/imports",
        files={"file": ("customers.csv", to_csv(rows), "text/csv")},
        data={"id_column": "Customer ID"},
        headers=users.auth("dpo"),
    )
    assert imported.status_code == 201, imported.text


@dataclass
class World:
    admin: dict[str, str]
    security: dict[str, str]
    policy_id: int

    def phone_for(
        self, client: TestClient, users: UserFactory, email_address: str, posture: dict[str, Any]
    ) -> tuple[Any, EnrolledDevice]:
        owner = users.create("helpdesk", email=email_address)
        phone = enroll(client, create_enrollment(client, self.admin, owner.id)["token"])
        assigned = client.patch(
            f"/api/v1/devices/{phone.id}", json={"policy_id": self.policy_id}, headers=self.admin
        )
        assert assigned.is_success, assigned.text
        assert phone.checkin(client, posture).status_code == 200
        return owner, phone


@pytest.fixture
def world(client: TestClient, users: UserFactory) -> World:
    import_directory(client, users, DIRECTORY)
    admin = users.auth("admin")
    policy_body = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin)
    assert policy_body.status_code == 201, policy_body.text
    return World(admin, users.auth("security"), policy_body.json()["id"])


# --- the stories -------------------------------------------------------------------------


def test_a_compliant_phone_gets_the_spreadsheet_and_the_ledger_shows_its_customers(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    db: Session,
) -> None:
    manager, phone = world.phone_for(client, users, "marketing.manager@corp.example", SECURE)
    sheet = customers_xlsx(TOP_1000)
    message = build(to=[manager.email], attachments=[("top-1000-customers.xlsx", sheet, XLSX)])
    assert send(mail_filter, message, [manager.email]) == {}

    assert len(sink.received) == 1
    got = sink.received[0]
    assert got.recipients == [manager.email] and got.mail_from == SENDER
    delivered = got.message
    assert delivered["X-Spillguard-Action"] == "deliver"
    assert delivered["X-Spillguard-Label"] == "restricted"
    assert delivered["X-Spillguard-Customers"] == "1000"
    assert delivered["X-Spillguard-Verdict"] == "inspected"
    attached = next(delivered.iter_attachments())
    assert attached.get_filename() == "top-1000-customers.xlsx"
    assert attached.get_content() == sheet  # unchanged, byte for byte

    customers = client.get(
        f"/api/v1/exposure/devices/{phone.id}/customers?limit=500", headers=world.security
    ).json()
    assert customers["total"] == 1000
    expected = sorted(p.customer_id for p in TOP_1000)
    assert customers["items"] == expected[:500]
    rows = list(db.scalars(select(Delivery).order_by(Delivery.id)))
    assert {(r.channel, r.destination_type, r.device_id, r.user_id) for r in rows} == {
        ("mail", "device", phone.id, manager.id)
    }
    assert len(rows) == 2  # the body and the spreadsheet, each on the phone
    assert max(r.customer_count for r in rows) == 1000
    trail = client.get(
        f"/api/v1/exposure/customers/{TOP_1000[0].customer_id}/deliveries", headers=world.security
    ).json()
    assert trail["total"] == 1 and trail["items"][0]["destination"]["device_id"] == phone.id


def test_a_swipe_only_phone_gets_a_gateway_link_instead_of_the_spreadsheet(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    db: Session,
    keys: KeyRing,
    settings: Settings,
) -> None:
    manager, phone = world.phone_for(
        client, users, "marketing.manager@corp.example", SWIPE_UNENCRYPTED
    )
    sheet = customers_xlsx(FEW)
    message = build(to=[manager.email], attachments=[("top-customers.xlsx", sheet, XLSX)])
    send(mail_filter, message, [manager.email])

    assert len(sink.received) == 1
    delivered = sink.received[0].message
    assert delivered["X-Spillguard-Action"] == "link"
    assert attachment_names(delivered) == []  # the spreadsheet is gone
    texts = [p.get_content() for p in delivered.walk() if p.get_content_type() == "text/plain"]
    assert texts[0].startswith("Hello,")  # the body is kept
    notice = texts[1]
    assert "top-customers.xlsx" in notice and "restricted, naming 30 customers" in notice
    assert "Passcode" in notice  # why, in the words the phone's user can act on
    url = next(line for line in notice.splitlines() if "/gateway/" in line).strip()
    assert url.startswith(settings.base_url)
    for person in FEW:  # nothing of the spreadsheet is in the mail
        assert person.email not in delivered.as_string()

    link = db.scalar(select(GatewayLink))
    assert link is not None and link.user_id == manager.id
    document = db.get(HeldDocument, link.document_id)
    assert document is not None and document.purpose == "gateway"
    name, data = HeldDocuments(db, keys, blob_store(settings.exposure_store_dir)).read(document)
    assert (name, data) == ("top-customers.xlsx", sheet)
    rows = list(db.scalars(select(Delivery)))
    assert [(r.destination_type, r.user_id, r.customer_count) for r in rows] == [
        ("user", manager.id, 0)
    ]  # only the body reached the mailbox

    # The phone's fetch is refused in plain words until a PIN is set, then recorded.
    path = urlsplit(url).path
    refused = client.get(path, headers=phone.headers)
    assert_clean_problem(refused, 403)
    assert "then try again" in refused.json()["detail"]
    assert phone.checkin(client, SECURE).json()["compliance"]["compliant"] is True
    fetched = client.get(path, headers=phone.headers)
    assert fetched.status_code == 200 and fetched.content == sheet
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=world.security).json()
    assert on_phone["distinct_customers"] == 30


def test_restricted_content_to_an_outsider_is_quarantined_and_the_sender_told(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    db: Session,
    keys: KeyRing,
    settings: Settings,
) -> None:
    colleague, _ = world.phone_for(client, users, "colleague@corp.example", SECURE)
    outsider = "buyer@partner.example"
    sheet = customers_xlsx(FEW)
    message = build(to=[outsider, colleague.email], attachments=[("customers.xlsx", sheet, XLSX)])
    send(mail_filter, message, [outsider, colleague.email])

    # The colleague (compliant phone) gets it; the outsider does not; the sender is told.
    assert [r.recipients for r in sink.received] == [[SENDER], [colleague.email]]
    notice = sink.received[0]
    assert notice.mail_from in ("", "<>")  # a null sender: a notice never starts a loop
    text = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert outsider in text and message["Message-ID"] in text and "restricted" in text
    assert "30 customers" in text
    for person in FEW:
        assert person.email not in notice.data.decode() and person.name not in notice.data.decode()
    assert notice.message["X-Spillguard-Action"] == "notice"
    assert sink.received[1].message["X-Spillguard-Action"] == "deliver"

    held = db.scalar(select(QuarantinedMessage))
    assert held is not None
    assert (held.sender, held.recipients, held.status) == (SENDER, [outsider], "held")
    assert (held.label, held.customer_count) == ("restricted", 30)
    assert "outside the organisation" in held.reason
    document = db.get(HeldDocument, held.document_id)
    assert document is not None and document.purpose == "quarantine"
    _, raw = HeldDocuments(db, keys, blob_store(settings.exposure_store_dir)).read(document)
    kept = email.message_from_bytes(raw, policy=policy.default)
    assert attachment_names(kept) == ["customers.xlsx"]  # type: ignore[arg-type]
    assert not any(r.destination_type == "recipient" for r in db.scalars(select(Delivery)))
    audit = db.scalar(select(AuditEvent).where(AuditEvent.action == "exposure:quarantine:held"))
    assert audit is not None and audit.details["recipients"] == 1
    assert outsider not in str(audit.details)


def test_a_notice_for_a_message_without_a_message_id_gives_the_quarantine_reference(
    world: World, mail_filter: MailFilterServer, sink: Sink, db: Session
) -> None:
    outsider = "buyer@partner.example"
    message = build(to=[outsider], attachments=[("customers.xlsx", customers_xlsx(FEW), XLSX)])
    del message["Message-ID"]
    send(mail_filter, message, [outsider])

    held = db.scalar(select(QuarantinedMessage))
    assert held is not None
    [notice] = sink.received
    text = notice.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Message-ID" not in text and "(none)" not in text
    lines = text.splitlines()
    sent = lines.index(f"Sent: {held.received_at:%Y-%m-%d %H:%M} UTC")
    assert lines[sent + 1] == f"Quarantine reference: {held.id}"
    assert f"quoting the quarantine reference {held.id}." in text
    assert "Quarterly figures" not in text  # the subject is not quoted


def test_below_the_outbound_limit_an_outsider_gets_it_and_the_ledger_names_the_domain(
    client: TestClient, world: World, mail_filter: MailFilterServer, sink: Sink
) -> None:
    few = DIRECTORY[1100:1103]  # 3 customers: confidential, below restricted
    message = build(
        to=["Partner@Example.CO.UK"], attachments=[("three.csv", to_csv(few), "text/csv")]
    )
    send(mail_filter, message, ["Partner@Example.CO.UK"])
    assert [r.recipients for r in sink.received] == [["Partner@Example.CO.UK"]]
    assert sink.received[0].message["X-Spillguard-Label"] == "confidential"
    domain = client.get("/api/v1/exposure/domains/example.co.uk", headers=world.security).json()
    assert domain["distinct_customers"] == 3


def test_next_hop_down_gives_451_records_nothing_and_the_retry_goes_once(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    db: Session,
) -> None:
    manager, phone = world.phone_for(client, users, "marketing.manager@corp.example", SECURE)
    message = build(to=[manager.email], attachments=[("few.xlsx", customers_xlsx(FEW), XLSX)])
    sink.stop()
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        send(mail_filter, message, [manager.email])
    assert deferred.value.smtp_code == 451
    assert count(db, Delivery) == 0 and count(db, InspectedContent) == 0

    sink.start()  # the next hop is back; the sending server retries the same message
    assert send(mail_filter, message, [manager.email]) == {}
    assert len(sink.received) == 1
    assert count(db, Delivery) == 2

    # A duplicate retry (the sender never saw our 250) is answered 250 and not handed on.
    assert send(mail_filter, message, [manager.email]) == {}
    assert len(sink.received) == 1
    assert count(db, Delivery) == 2
    on_phone = client.get(f"/api/v1/exposure/devices/{phone.id}", headers=world.security).json()
    assert on_phone["distinct_customers"] == 30


def test_recipients_with_different_outcomes_each_get_their_own_copy(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    db: Session,
) -> None:
    good, good_phone = world.phone_for(client, users, "good@corp.example", SECURE)
    weak, _ = world.phone_for(client, users, "weak@corp.example", SWIPE_UNENCRYPTED)
    nobody = users.create("helpdesk", email="no.phone@corp.example")  # no enrolled phone
    outsider = "someone@elsewhere.example"
    sheet = customers_xlsx(FEW)
    to = [good.email, weak.email, nobody.email, outsider]
    send(mail_filter, build(to=to, attachments=[("c.xlsx", sheet, XLSX)]), to)

    by_recipient = {tuple(r.recipients): r.message for r in sink.received}
    assert set(by_recipient) == {(SENDER,), (good.email,), (weak.email,), (nobody.email,)}
    assert attachment_names(by_recipient[(good.email,)]) == ["c.xlsx"]
    for address in (weak.email, nobody.email):
        copy = by_recipient[(address,)]
        assert attachment_names(copy) == [] and copy["X-Spillguard-Action"] == "link"
    links = {link.user_id for link in db.scalars(select(GatewayLink))}
    assert links == {weak.id, nobody.id}
    nobody_copy = by_recipient[(nobody.email,)].as_string()
    assert "no enrolled phone" in nobody_copy
    assert db.scalar(select(QuarantinedMessage.recipients)) == [outsider]
    on_good = client.get(f"/api/v1/exposure/devices/{good_phone.id}", headers=world.security)
    assert on_good.json()["distinct_customers"] == 30


# --- bad input ---------------------------------------------------------------------------

BROKEN = [
    # A multipart that names no boundary.
    b"From: a@corp.example\r\nTo: {to}\r\nSubject: broken\r\nMessage-ID: <b1@corp.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
    b"Card 4111 1111 1111 1111, expiry 01/29\r\n",
    # The closing boundary is missing.
    b"From: a@corp.example\r\nTo: {to}\r\nSubject: broken\r\nMessage-ID: <b2@corp.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    b"--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\n!!!not base64!!!\r\n",
    # Not MIME at all: no header block, just lines.
    b"just some text without headers\r\nand another line\r\n",
    # Nested deeper than the filter takes apart.
    b"From: a@corp.example\r\nTo: {to}\r\nMessage-ID: <b3@corp.example>\r\n"
    + b"".join(
        f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}\r\n".encode()
        for i in range(80)
    )
    + b"Content-Type: text/plain\r\n\r\nvery deep\r\n",
]


@pytest.mark.parametrize("raw", BROKEN, ids=["no-boundary", "no-close", "no-headers", "deep"])
def test_broken_mime_is_handled_and_fails_closed(
    client: TestClient,
    users: UserFactory,
    world: World,
    mail_filter: MailFilterServer,
    sink: Sink,
    raw: bytes,
) -> None:
    good, _ = world.phone_for(client, users, "good@corp.example", SECURE)
    weak, _ = world.phone_for(client, users, "weak@corp.example", SWIPE_UNENCRYPTED)
    data = raw.replace(b"{to}", f"{good.email}, {weak.email}".encode())
    assert send(mail_filter, data, [good.email, weak.email]) == {}
    copies = {tuple(r.recipients): r.message for r in sink.received}
    assert set(copies) == {(good.email,), (weak.email,)}
    whole = copies[(good.email,)]
    # Content that could not be taken apart safely counts as not fully inspected...
    assert whole["X-Spillguard-Verdict"] == "incomplete"
    assert whole["X-Spillguard-Label"] in {"confidential", "restricted"}
    # ...so the phone that fails gets a notice with a link instead of the message.
    stub = copies[(weak.email,)]
    assert stub["X-Spillguard-Action"] == "link"
    assert "/gateway/" in stub.get_content()  # type: ignore[attr-defined]
    assert b"4111 1111" not in sink.to(weak.email)[0].data


def raw_smtp(port: int, *lines: bytes, read_greeting: bool = True) -> list[bytes]:
    """Speak SMTP by hand: send each line, collect each reply line."""
    replies = []
    with socket.create_connection((LOOPBACK, port), timeout=30) as conn:
        reader = conn.makefile("rb")
        if read_greeting:
            replies.append(reader.readline())
        for line in lines:
            conn.sendall(line)
            if line.endswith(b"\r\n") and not line.startswith(b" "):
                reply = reader.readline()
                while reply[3:4] == b"-":
                    reply = reader.readline()
                replies.append(reply)
    return replies


def test_bad_recipients_and_senders_get_rfc_5321_replies(
    mail_filter: MailFilterServer, sink: Sink
) -> None:
    with smtplib.SMTP(LOOPBACK, mail_filter.port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.mail("not an address")[0] in (501, 553)
        assert smtp.mail("someone@nodot")[0] == 501
        assert smtp.mail("")[0] == 250  # the null sender (bounces) is fine
        assert smtp.rcpt("no-at-sign")[0] in (501, 553)
        assert smtp.rcpt("bad@-domain-.example")[0] == 501
        assert smtp.rcpt("x@y")[0] == 501
        for n in range(1000):
            assert smtp.rcpt(f"r{n}@corp.example")[0] == 250
        assert smtp.rcpt("one.too.many@corp.example")[0] == 452
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail(SENDER, ["@@"], b"Subject: x\r\n\r\nhi\r\n")
    assert sink.received == []


def test_an_oversize_message_is_refused_with_552(
    app: FastAPI, settings: Settings, keys: KeyRing, sink: Sink, db: Session
) -> None:
    server = start_filter(app, settings, keys, mail_filter_max_message_bytes=4096)
    try:
        big = build(to=["a@corp.example"], body="x" * 10_000)
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE= declared up front
            send(server, big, ["a@corp.example"])
        assert declared.value.smtp_code == 552
        # A client that does not declare the size is refused after DATA.
        payload = big.as_bytes(policy=policy.SMTP)
        replies = raw_smtp(
            server.port,
            b"HELO client.example\r\n",
            b"MAIL FROM:<a@corp.example>\r\n",
            b"RCPT TO:<a@corp.example>\r\n",
            b"DATA\r\n",
            payload + b".\r\n",
            b"QUIT\r\n",
        )
        assert replies[-2].startswith(b"552"), replies
        # A message just under the limit still goes.
        assert send(server, build(to=["a@corp.example"], body="fine"), ["a@corp.example"]) == {}
    finally:
        server.stop()
    assert len(sink.received) == 1
    assert count(db, Delivery) == 1  # the body, to an outside address


def test_a_client_that_hangs_up_mid_data_changes_nothing(
    mail_filter: MailFilterServer, sink: Sink, db: Session
) -> None:
    with socket.create_connection((LOOPBACK, mail_filter.port), timeout=30) as conn:
        reader = conn.makefile("rb")
        reader.readline()
        for line in (b"HELO c.example\r\n", b"MAIL FROM:<a@corp.example>\r\n"):
            conn.sendall(line)
            reader.readline()
        conn.sendall(b"RCPT TO:<b@corp.example>\r\n")
        reader.readline()
        conn.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        conn.sendall(b"Subject: half\r\n\r\nCard 4111 1111 1111 1111 and then")
    time.sleep(0.3)
    assert sink.received == [] and count(db, Delivery) == 0
    # The filter is still there for the next message.
    assert send(mail_filter, build(to=["b@corp.example"]), ["b@corp.example"]) == {}
    assert len(sink.received) == 1


def test_forged_verdict_headers_are_removed(mail_filter: MailFilterServer, sink: Sink) -> None:
    message = build(to=["b@corp.example"])
    message["X-Spillguard-Action"] = "deliver"
    message["X-Spillguard-Label"] = "public"
    message["X-SPILLGUARD-Customers"] = "0"
    send(mail_filter, message, ["b@corp.example"])
    delivered = sink.received[0].message
    assert delivered.get_all("X-Spillguard-Label") == ["public"]
    assert len(delivered.get_all("X-Spillguard-Action") or []) == 1
    assert len(delivered.get_all("X-Spillguard-Customers") or []) == 1
    header_block = sink.received[0].data.split(b"\r\n\r\n", 1)[0]
    assert header_block.count(b"X-Spillguard-") == 4  # ours only
    assert b"X-SPILLGUARD" not in header_block


def test_internal_action_quarantine_holds_and_tells_only_an_inside_sender(
    app: FastAPI,
    settings: Settings,
    keys: KeyRing,
    client: TestClient,
    users: UserFactory,
    world: World,
    sink: Sink,
    db: Session,
) -> None:
    weak, _ = world.phone_for(client, users, "weak@corp.example", SWIPE_UNENCRYPTED)
    server = start_filter(
        app,
        settings,
        keys,
        mail_filter_internal_action="quarantine",
        mail_filter_internal_domains="corp.example",
    )
    try:
        sheet = customers_xlsx(FEW)
        inside = build(to=[weak.email], attachments=[("c.xlsx", sheet, XLSX)])
        send(server, inside, [weak.email])
        outside = build(
            to=[weak.email], attachments=[("c.xlsx", sheet, XLSX)], sender="x@outside.example"
        )
        send(server, outside, [weak.email], sender="x@outside.example")
    finally:
        server.stop()
    held = list(db.scalars(select(QuarantinedMessage).order_by(QuarantinedMessage.id)))
    assert [h.sender for h in held] == [SENDER, "x@outside.example"]
    assert all("Passcode" in h.reason for h in held)
    # The inside sender is told; the outsider learns nothing about a colleague's phone.
    assert [r.recipients for r in sink.received] == [[SENDER]]
    assert count(db, GatewayLink) == 0 and count(db, Delivery) == 0
