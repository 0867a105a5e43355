"""The customer-notice outbox against a real SMTP server (aiosmtpd on loopback).

Every affected customer gets exactly one notice, by e-mail, by letter or on the manual
follow-up list; a server that refuses (5xx), defers (4xx) or never answers is handled;
and a sender process killed mid-run (SIGKILL) never makes the server receive a second
copy: notices the server cannot have are resent, the one it may have is set aside as
``unknown`` for a person to check by its Message-ID.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.audit import record_event  # noqa: F401  (keeps the audit tables loaded)
from spillguard.core.db import utcnow
from spillguard.core.errors import PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent, User
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer, CustomerContact, CustomerDataKey
from spillguard.customers.services import ContactCipher
from spillguard.incidents.mailer import SmtpMailSender
from spillguard.incidents.models import (
    ExposureAssessment,
    Incident,
    IncidentNotice,
    NoticeStatus,
    TimelineEntry,
)
from spillguard.incidents.outbox import (
    HANDED_OVER,
    UNKNOWN,
    NoticeService,
    NotificationNotRequired,
    Outbox,
    message_id_for,
)
from tests.conftest import TEST_MASTER_KEY
from tests.factories.customers import Person, people
from tests.factories.users import UserFactory
from tests.functional.live import LOOPBACK, free_port, spillguard_env

# --- a real SMTP server ---------------------------------------------------------------


@dataclass
class Got:
    mail_from: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class NoticeHandler:
    """Keeps a message when it answers 250. ``rcpt_reply`` / ``data_reply`` answer with a
    refusal instead; ``data_delay`` holds the answer to the end of DATA; ``on_rcpt`` and
    ``on_accepted`` run at those points (the tests kill the sender there)."""

    received: list[Got] = field(default_factory=list)
    rcpt_reply: Callable[[str], str | None] = lambda _address: None
    data_reply: str | None = None
    data_delay: float = 0.0
    on_rcpt: Callable[[str], None] | None = None
    on_accepted: Callable[[Got], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.on_rcpt is not None:
            self.on_rcpt(address)
        reply = self.rcpt_reply(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        got = Got(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.lock:
            self.received.append(got)
        if self.on_accepted is not None:
            self.on_accepted(got)
        return "250 OK"

    def per_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r for got in self.received for r in got.recipients)


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.handler = NoticeHandler()
        self.controller = Controller(
            self.handler, hostname=LOOPBACK, port=self.port, decode_data=False
        )

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": LOOPBACK,
            "smtp_port": sink.port,
            "smtp_from": "privacy@shop.example",
            "smtp_timeout_seconds": 5.0,
            "organisation_name": "Example Shop Ltd",
            "notice_rate_per_second": 1000.0,
            "notice_retry_base_seconds": 60.0,
            "notice_max_attempts": 3,
            "notice_lease_seconds": 5.0,
        }
    )


# --- data -------------------------------------------------------------------------------


def seed_customers(
    session: Session,
    keys: KeyRing,
    persons: list[Person],
    *,
    letter_only: set[str] = frozenset(),  # type: ignore[assignment]
    unreachable: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Directory customers with encrypted contacts, as an import leaves them."""
    cipher = ContactCipher(keys)
    key, wrapped = cipher.new_wrapped_key()
    data_key = CustomerDataKey(wrapped_key=wrapped)
    session.add(data_key)
    session.flush()
    aes = AESGCM(key)
    for person in persons:
        customer = Customer(external_id=person.customer_id)
        session.add(customer)
        session.flush()
        values = {"name": person.name, "email": person.email, "postal_address": person.address}
        if person.customer_id in letter_only:
            values.pop("email")
        if person.customer_id in unreachable:
            values = {"name": person.name}
        session.add(
            CustomerContact(
                customer_id=customer.id,
                data_key_id=data_key.id,
                **{k: ContactCipher.seal(aes, customer.id, k, v) for k, v in values.items()},
            )
        )
    session.flush()


def make_incident(
    session: Session, customer_ids: list[str], *, notify_individuals: bool = True
) -> Incident:
    """An incident with an exposure assessment naming these customers."""
    now = utcnow()
    incident = Incident(
        type="lost-device",
        title="Marketing manager's phone lost in a restaurant",
        severity="high",
        status="assessed",
        aware_at=now - timedelta(hours=2),
        opened_at=now - timedelta(hours=2),
        opened_by_label="helpdesk@shop.example",
        device_id=7,
    )
    session.add(incident)
    session.flush()
    session.add(
        ExposureAssessment(
            incident_id=incident.id,
            version=1,
            risk="high" if notify_individuals else "low",
            notify_regulator=True,
            notify_individuals=notify_individuals,
            reasons=["Swipe-only, unencrypted phone: the data is readable."],
            facts={"categories": {"email": 10, "phone": 10}, "documents": [{"id": 1}]},
            customer_count=len(customer_ids),
            customer_ids=customer_ids,
        )
    )
    session.flush()
    return incident


@pytest.fixture
def dpo(db: Session, users: UserFactory) -> Principal:
    user: User = users.create(Role.DPO, email="dpo@shop.example")
    return Principal("user", user.id, user.email, Role.DPO)


def statuses(db: Session, incident_id: int) -> dict[str, str]:
    db.expire_all()
    return {
        n.customer_id: n.status
        for n in db.scalars(select(IncidentNotice).where(IncidentNotice.incident_id == incident_id))
    }


def outbox(app: FastAPI, settings: Settings, keys: KeyRing, **kw: Any) -> Outbox:
    sender = SmtpMailSender.from_settings(settings)
    return Outbox(app.state.session_factory, settings, keys, sender, **kw)


# --- queueing and sending ---------------------------------------------------------------


def test_every_customer_gets_one_notice_by_email_letter_or_manual_follow_up(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    persons = people(30, seed=61)
    letter_only = {p.customer_id for p in persons[20:25]}
    unreachable = {p.customer_id for p in persons[25:]}
    seed_customers(db, keys, persons, letter_only=letter_only, unreachable=unreachable)
    ids = [p.customer_id for p in persons] + ["C9999999"]  # gone from the directory
    incident = make_incident(db, ids)
    db.commit()

    result = NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    assert (result.email, result.letter, result.manual, result.already) == (20, 5, 6, 0)

    report = outbox(app, settings, keys).drain()
    assert report.sent == 20

    got = sink.handler.per_recipient()
    assert got == Counter({p.email: 1 for p in persons[:20]})
    by_address = {g.recipients[0]: g.message for g in sink.handler.received}
    notices = {
        n.customer_id: n
        for n in db.scalars(select(IncidentNotice).where(IncidentNotice.incident_id == incident.id))
    }
    for person in persons[:20]:
        message = by_address[person.email]
        notice = notices[person.customer_id]
        assert notice.status == NoticeStatus.SENT.value and notice.sent_at is not None
        assert message["Message-ID"] == notice.message_id
        assert message["Message-ID"] == message_id_for(notice.id, incident.id, settings.smtp_from)
        body = message.get_content()
        assert f"Dear {person.name}," in body
        assert "Example Shop Ltd" in body and "dpo@shop.example" in body
        assert "e-mail addresses, phone numbers" in body.lower()
        assert f"INC-{incident.id}" in message["Subject"]
    for customer_id in letter_only:
        assert (notices[customer_id].channel, notices[customer_id].status) == ("letter", "queued")
    for customer_id in [*unreachable, "C9999999"]:
        assert notices[customer_id].status == NoticeStatus.MANUAL.value
        assert notices[customer_id].last_error
    assert "not in the customer directory" in (notices["C9999999"].last_error or "")
    follow = NoticeService(db, dpo, settings, keys).follow_ups(incident.id)
    assert {n.customer_id for n in follow} == letter_only | unreachable | {"C9999999"}

    # Queueing again adds nobody; draining again sends nothing.
    again = NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    assert (again.queued, again.already) == (0, 31)
    assert outbox(app, settings, keys).drain().sent == 0
    assert len(sink.handler.received) == 20
    db.expire_all()
    assert db.get(Incident, incident.id).status == "notifying"  # type: ignore[union-attr]
    summaries = [e.summary for e in db.scalars(select(TimelineEntry))]
    assert any("20 by e-mail, 5 by letter, 6 for manual follow-up" in s for s in summaries)
    assert any("20 sent" in s for s in summaries)
    # The audit trail counts; it never names an address.
    for event in db.scalars(select(AuditEvent)):
        assert "@" not in str(event.details).replace("dpo@shop.example", "")


def test_a_low_risk_incident_is_notified_only_with_a_stated_reason(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    persons = people(3, seed=62)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons], notify_individuals=False)
    db.commit()
    with pytest.raises(NotificationNotRequired):
        NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.rollback()
    assert statuses(db, incident.id) == {}
    result = NoticeService(db, dpo, settings, keys).enqueue(
        incident.id, override_reason="The customers asked to be told."
    )
    db.commit()
    assert result.email == 3


def test_only_the_dpo_sends_notices(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, users: UserFactory
) -> None:
    persons = people(2, seed=63)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    for role in (Role.ADMIN, Role.SECURITY):
        user = users.create(role)
        principal = Principal("user", user.id, user.email, role)
        with pytest.raises(PermissionDenied):
            NoticeService(db, principal, settings, keys).enqueue(incident.id)


@pytest.mark.parametrize(
    ("where", "reply"),
    [("rcpt", "550 5.1.1 <{address}>: No such user"), ("data", "554 5.7.1 Rejected as spam")],
)
def test_a_refusing_server_bounces_the_notice_without_retrying(
    app: FastAPI,
    settings: Settings,
    keys: KeyRing,
    db: Session,
    sink: SmtpSink,
    dpo: Principal,
    where: str,
    reply: str,
) -> None:
    persons = people(4, seed=64)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    refused = persons[1]
    if where == "rcpt":
        sink.handler.rcpt_reply = lambda a: reply.format(address=a) if a == refused.email else None
    else:
        sink.handler.data_reply = reply
    NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    report = outbox(app, settings, keys).drain()
    states = statuses(db, incident.id)
    if where == "rcpt":
        assert report.bounced == 1 and report.sent == 3
        assert states[refused.customer_id] == NoticeStatus.BOUNCED.value
        assert sink.handler.per_recipient() == Counter(
            {p.email: 1 for p in persons if p is not refused}
        )
    else:
        assert report.bounced == 4 and set(states.values()) == {NoticeStatus.BOUNCED.value}
        assert sink.handler.received == []
    bounced = db.scalars(
        select(IncidentNotice).where(IncidentNotice.status == NoticeStatus.BOUNCED.value)
    ).all()
    assert all(reply.split()[0] in (n.last_error or "") for n in bounced)
    # The server quoted the address; the status column does not keep it.
    assert all("@" not in (n.last_error or "") for n in bounced)
    assert outbox(app, settings, keys).drain().sent == 0  # no retry of a bounce


def test_a_deferring_server_is_retried_with_backoff_then_gives_up(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    persons = people(1, seed=65)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [persons[0].customer_id])
    db.commit()
    sink.handler.rcpt_reply = lambda _a: "450 4.2.1 Mailbox busy, try later"
    NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    delays = []
    for attempt in (1, 2, 3):
        before = utcnow()
        report = outbox(app, settings, keys).drain()
        db.expire_all()
        notice = db.scalars(select(IncidentNotice)).one()
        assert notice.attempts == attempt
        if attempt < 3:
            assert report.retried == 1 and notice.status == NoticeStatus.QUEUED.value
            assert notice.next_attempt_at is not None
            delays.append((notice.next_attempt_at - before).total_seconds())
            assert outbox(app, settings, keys).drain().retried == 0  # not due yet
            notice.next_attempt_at = utcnow()  # time passes
            db.commit()
        else:
            assert report.failed == 1 and notice.status == NoticeStatus.FAILED.value
            assert "gave up after 3 attempts" in (notice.last_error or "")
    assert 59 <= delays[0] <= 62 and 119 <= delays[1] <= 122  # 60 s, then doubled
    assert sink.handler.received == []


def test_a_server_that_never_answers_the_end_of_data_leaves_the_notice_to_check(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    persons = people(2, seed=66)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    sink.handler.data_delay = 3.0
    quick = settings.model_copy(update={"smtp_timeout_seconds": 1.0})
    NoticeService(db, dpo, quick, keys).enqueue(incident.id)
    db.commit()
    report = outbox(app, quick, keys).drain()
    # The first times out after its final "."; it may have been delivered, so it is not
    # retried: the sender goes on with the next one.
    assert report.unknown == 2 and report.retried == 0
    assert set(statuses(db, incident.id).values()) == {UNKNOWN}
    assert outbox(app, quick, keys).drain().sent == 0


def test_no_smtp_server_keeps_notices_queued(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, dpo: Principal
) -> None:
    persons = people(5, seed=67)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    nowhere = settings.model_copy(update={"smtp_port": free_port()})
    NoticeService(db, dpo, nowhere, keys).enqueue(incident.id)
    db.commit()
    report = outbox(app, nowhere, keys).drain()
    # Three connection failures in a row: the rest of the batch goes back untouched.
    assert report.retried == 3 and report.sent == 0
    states = statuses(db, incident.id)
    assert set(states.values()) == {NoticeStatus.QUEUED.value}
    errors = {n.last_error for n in db.scalars(select(IncidentNotice)) if n.attempts}
    assert errors == {"cannot connect to the SMTP server: connection refused"}


def test_the_dpo_settles_an_unknown_notice_after_checking_the_mail_log(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    persons = people(2, seed=68)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    first, second = db.scalars(select(IncidentNotice).order_by(IncidentNotice.id)).all()
    first.status, second.status = UNKNOWN, UNKNOWN
    db.commit()
    service = NoticeService(db, dpo, settings, keys)
    service.resolve(incident.id, first.id, "delivered", "Found its Message-ID in the MTA log")
    service.resolve(incident.id, second.id, "resend", "Not in the MTA log")
    db.commit()
    report = outbox(app, settings, keys).drain()
    assert report.sent == 1
    assert sink.handler.per_recipient() == Counter({persons[1].email: 1})
    assert set(statuses(db, incident.id).values()) == {NoticeStatus.SENT.value}


# --- a sender killed mid-run -------------------------------------------------------------


def _worker(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spillguard", "notices", "worker", "--once", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 90) -> str:
    out, errors = process.communicate(timeout=timeout)
    assert process.returncode == 0, errors
    return out


@pytest.fixture
def crash_setup(
    engine: Engine,
    factory: sessionmaker[Session],
    settings: Settings,
    keys: KeyRing,
    sink: SmtpSink,
    tmp_path: Path,
    database_url: str,
) -> Iterator[tuple[dict[str, str], int, list[Person], sessionmaker[Session]]]:
    persons = people(60, seed=69)
    with factory() as session:
        user = UserFactory(session, keys).create(Role.DPO, email="dpo@shop.example")
        dpo = Principal("user", user.id, user.email, Role.DPO)
        seed_customers(session, keys, persons)
        incident = make_incident(session, [p.customer_id for p in persons])
        session.commit()
        NoticeService(session, dpo, settings, keys).enqueue(incident.id)
        session.commit()
        incident_id = incident.id
    env = spillguard_env(
        tmp_path / "worker-home",
        database_url,
        master_key=TEST_MASTER_KEY,
        smtp_host=LOOPBACK,
        smtp_port=sink.port,
        smtp_from="privacy@shop.example",
        notice_lease_seconds=5,
        notice_rate_per_second=25,
        log_level="WARNING",
    )
    yield env, incident_id, persons, factory


def _states(factory: sessionmaker[Session], incident_id: int) -> dict[str, IncidentNotice]:
    with factory() as session:
        return {
            n.customer_id: n
            for n in session.scalars(
                select(IncidentNotice).where(IncidentNotice.incident_id == incident_id)
            )
        }


def _kill_when(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the worker never got that far"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    _reap(process)


def _reap(process: subprocess.Popen[str], timeout: float = 60) -> int:
    """Wait for a (killed) worker and close its pipes."""
    process.communicate(timeout=timeout)
    return process.returncode


def _restart_after_lease(env: dict[str, str]) -> str:
    time.sleep(5.2)  # the killed sender's lease (5 s) lapses
    return _finish(_worker(env))


def test_a_sender_killed_mid_run_resumes_and_nobody_gets_two(
    crash_setup: tuple[dict[str, str], int, list[Person], sessionmaker[Session]], sink: SmtpSink
) -> None:
    env, incident_id, persons, factory = crash_setup
    worker = _worker(env)
    _kill_when(lambda: len(sink.handler.received) >= 20, worker)
    killed_at = len(sink.handler.received)
    assert 20 <= killed_at < 60
    _restart_after_lease(env)

    received = sink.handler.per_recipient()
    assert max(received.values()) == 1  # nobody got two
    states = _states(factory, incident_id)
    for person in persons:
        notice = states[person.customer_id]
        if notice.status == UNKNOWN:
            # Perhaps delivered when the sender died: the only status that may hide a
            # message the server has; it is not resent.
            assert received[person.email] <= 1
        else:
            assert notice.status == NoticeStatus.SENT.value
            assert received[person.email] == 1
    assert sum(1 for n in states.values() if n.status == UNKNOWN) <= 1  # one sender, one


def test_killed_after_the_server_accepted_the_message_it_is_not_sent_again(
    crash_setup: tuple[dict[str, str], int, list[Person], sessionmaker[Session]], sink: SmtpSink
) -> None:
    """The worst moment: the server took the message (250 on its way) and the sender dies
    before recording it."""
    env, incident_id, persons, factory = crash_setup
    victim = persons[9]
    worker = _worker(env)

    def die(got: Got) -> None:
        if got.recipients == [victim.email]:
            os.kill(worker.pid, signal.SIGKILL)

    sink.handler.on_accepted = die
    assert _reap(worker) == -signal.SIGKILL
    sink.handler.on_accepted = None
    assert _states(factory, incident_id)[victim.customer_id].status == HANDED_OVER

    out = _restart_after_lease(env)
    assert "to check 1" in out
    received = sink.handler.per_recipient()
    assert received == Counter({p.email: 1 for p in persons})  # exactly one each
    states = _states(factory, incident_id)
    assert states[victim.customer_id].status == UNKNOWN
    assert {n.status for c, n in states.items() if c != victim.customer_id} == {"sent"}
    # The Message-ID the dpo looks for in the mail server's log is the one it received.
    accepted = next(g for g in sink.handler.received if g.recipients == [victim.email])
    assert accepted.message["Message-ID"] == states[victim.customer_id].message_id


def test_killed_before_the_end_of_the_message_it_is_sent_once_after_restart(
    crash_setup: tuple[dict[str, str], int, list[Person], sessionmaker[Session]], sink: SmtpSink
) -> None:
    env, incident_id, persons, factory = crash_setup
    victim = persons[9]
    worker = _worker(env)

    def die(address: str) -> None:
        if address == victim.email:
            os.kill(worker.pid, signal.SIGKILL)

    sink.handler.on_rcpt = die
    assert _reap(worker) == -signal.SIGKILL
    sink.handler.on_rcpt = None
    assert _states(factory, incident_id)[victim.customer_id].status == NoticeStatus.SENDING.value
    _restart_after_lease(env)
    assert sink.handler.per_recipient() == Counter({p.email: 1 for p in persons})
    states = _states(factory, incident_id)
    assert {n.status for n in states.values()} == {NoticeStatus.SENT.value}
    assert states[victim.customer_id].attempts == 1  # the dead attempt never reached the end


def test_the_server_job_drains_the_outbox_and_waits_without_an_smtp_server(
    app: FastAPI, settings: Settings, keys: KeyRing, db: Session, sink: SmtpSink, dpo: Principal
) -> None:
    from spillguard.core.jobs import run_due
    from spillguard.incidents.outbox import notices_job

    persons = people(3, seed=70)
    seed_customers(db, keys, persons)
    incident = make_incident(db, [p.customer_id for p in persons])
    db.commit()
    NoticeService(db, dpo, settings, keys).enqueue(incident.id)
    db.commit()
    unconfigured = settings.model_copy(update={"smtp_host": None})
    factory = app.state.session_factory
    assert run_due(factory, [notices_job(unconfigured, keys)]) == ["incidents.notices"]
    assert set(statuses(db, incident.id).values()) == {NoticeStatus.QUEUED.value}
    assert {n.attempts for n in db.scalars(select(IncidentNotice))} == {0}  # no attempt spent
    job = notices_job(settings.model_copy(update={"notice_worker_interval_seconds": 0.001}), keys)
    time.sleep(0.01)
    assert run_due(factory, [job]) == ["incidents.notices"]
    assert set(statuses(db, incident.id).values()) == {NoticeStatus.SENT.value}
    assert sink.handler.per_recipient() == Counter({p.email: 1 for p in persons})
