"""The customer-notice outbox: one notice per affected customer, sent once.

**Queueing** (:meth:`NoticeService.enqueue`, the ``dpo``): one ``incident_notices`` row per
customer id of the incident's latest exposure assessment (UNIQUE per incident and
customer, so queueing twice adds only customers not queued before).  The channel is
chosen without decrypting anything, from which encrypted contact fields exist: an
e-mail address → ``email``; else a postal address → ``letter`` (printable PDF); else
``manual`` (listed for follow-up).  No customer is skipped: a customer no longer in the
directory is ``manual`` too, with the reason.

**Sending** (:class:`Outbox`, run by ``spillguard notices worker`` or the server's
scheduled job) — every state is a row status the console shows:

``queued`` → ``sending`` (claimed, with a lease) → ``handed-over`` (committed just before
the final ``.`` of SMTP DATA) → ``sent`` (the server answered 250).

* a 4xx, a timeout or no connection before the final ``.`` → ``queued`` again with
  exponential backoff (``notice_retry_base_seconds`` doubling, capped), and ``failed``
  after ``notice_max_attempts``;
* a 5xx → ``bounced`` (the server refused it; sending again would not help);
* no answer after the final ``.`` → ``unknown``.

**Never twice.**  SMTP has no way to ask a server whether it already took a message, so
the outbox keeps the one point where that is in doubt explicit.  A row is
``handed-over`` only from the moment the final ``.`` may leave; until then a server that
loses the connection discards the message.  After a crash (the lease lapsed):

* a ``sending`` row certainly did not reach the server: it is queued again and resent;
* a ``handed-over`` row may have: it becomes ``unknown`` and is **not** resent
  automatically.  The ``dpo`` checks the mail server's log for its Message-ID (which is
  deterministic, ``<notice-N.incident-M@domain>``, and shown) and records the outcome:
  ``delivered`` (→ ``sent``) or ``resend`` (→ ``queued``).

So a crash can cost a human check of at most the messages that were in flight — one per
sender — but it never sends a customer two notices.  (At-least-once with the same
Message-ID would rely on every hop deduplicating, which SMTP servers do not.)

Contact details are decrypted only in the sender, for the messages of the batch being
sent, and never logged.  Each batch is audited (counts) and put on the incident's
timeline.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from enum import StrEnum
from typing import Any

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.audit import record_event
from spillguard.core.db import affected, insert_rows, transaction, utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from spillguard.core.jobs import Job
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer, CustomerContact, CustomerDataKey
from spillguard.customers.services import ContactCipher, ContactUnreadable
from spillguard.incidents import timeline
from spillguard.incidents.errors import IncidentClosed, IncidentNotFound
from spillguard.incidents.mailer import (
    MailError,
    MailSender,
    PermanentMailError,
    mail_sender_from_settings,
)
from spillguard.incidents.models import (
    Incident,
    IncidentNotice,
    IncidentStatus,
    NoticeChannel,
    NoticeStatus,
    NoticeTemplate,
    RegulatorReport,
    TimelineKind,
)
from spillguard.incidents.notice_templates import (
    DEFAULT_TEMPLATES,
    NoticeContent,
    NoticeContext,
    render_notice,
)
from spillguard.incidents.regulator import ORGANISATION_PLACEHOLDER, ReportFields

log = structlog.get_logger("spillguard.incidents.outbox")

__all__ = [
    "HANDED_OVER",
    "UNKNOWN",
    "DrainReport",
    "EnqueueResult",
    "NoticeAuditAction",
    "NoticeService",
    "Outbox",
    "backoff_seconds",
    "message_id_for",
    "notices_job",
]

# The two statuses of a notice whose message may have reached the server (see NoticeStatus).
HANDED_OVER = NoticeStatus.HANDED_OVER.value
UNKNOWN = NoticeStatus.UNKNOWN.value

STATUSES = (
    NoticeStatus.QUEUED.value,
    NoticeStatus.SENDING.value,
    HANDED_OVER,
    NoticeStatus.SENT.value,
    UNKNOWN,
    NoticeStatus.BOUNCED.value,
    NoticeStatus.FAILED.value,
    NoticeStatus.MANUAL.value,
)
IN_FLIGHT = (NoticeStatus.SENDING.value, HANDED_OVER)
_CHUNK = 900  # ids per IN (...) list: below SQLite's bound-parameter limit
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
CATCH_UP_SECONDS = 0.25
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable source, 7-bit safe


class NoticeAuditAction(StrEnum):
    QUEUED = "incidents:notices:queued"
    SENT = "incidents:notices:sent"
    RESOLVED = "incidents:notice:resolved"
    LETTERS_PRINTED = "incidents:notices:letters-printed"
    LETTERS_POSTED = "incidents:notices:letters-posted"
    REQUEUED = "incidents:notice:requeued"


class NoticeNotFound(NotFound):
    slug = "notice-not-found"
    title = "Notice not found"


class NotificationNotRequired(Conflict):
    """The latest assessment says the people affected need not be told (Art 34(3));
    notifying anyway takes a stated reason."""

    slug = "notification-not-required"
    title = "Notification not required"


class NoticeContentMissing(Conflict):
    slug = "notice-content-missing"
    title = "Notice content missing"


# --- pure helpers ------------------------------------------------------------------------


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: base, 2·base, 4·base …
    capped at ``cap``."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def message_id_for(notice_id: int, incident_id: int, sender: str) -> str:
    """The notice's Message-ID: the same on every attempt, so the mail server's log can
    be searched for it; it names no customer."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<notice-{notice_id}.incident-{incident_id}@{domain}>"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _customer_name(name: str | None) -> str:
    return name.strip() if name and name.strip() else "Customer"


def notice_context(fields: ReportFields, incident_id: int, customer_name: str) -> NoticeContext:
    """A notice's values from the incident's regulator report (what the dpo wrote)."""
    data = ", ".join(fields.data_categories) or "some of your personal details"
    return NoticeContext(
        customer_name=customer_name,
        organisation=fields.organisation,
        incident_reference=f"INC-{incident_id}",
        what_happened=fields.what_happened,
        when_happened=fields.occurred_at or "recently",
        when_discovered=fields.discovered_at or fields.occurred_at or "recently",
        data_involved=data[:1:].upper() + data[1:],
        likely_consequences=fields.likely_consequences,
        measures_taken=(fields.measures_taken + " " + fields.measures_proposed).strip(),
        advice=fields.advice_to_individuals,
        contact_point=fields.contact_point,
    )


# --- contacts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    name: str | None
    email: str | None
    postal_address: str | None


def read_contacts(
    session: Session, keys: KeyRing, external_ids: Sequence[str], fields: Sequence[str]
) -> dict[str, Contact]:
    """Decrypt the named contact fields of these customers (the sender's and the letter
    printer's use only; callers audit).  Customers without a contact row are absent."""
    cipher = ContactCipher(keys)
    data_keys: dict[int, AESGCM] = {}
    found: dict[str, Contact] = {}
    for chunk in _chunks(list(external_ids)):
        rows = session.execute(
            select(Customer.id, Customer.external_id, CustomerContact)
            .join(CustomerContact, CustomerContact.customer_id == Customer.id)
            .where(Customer.external_id.in_(chunk), Customer.removed_at.is_(None))
        ).all()
        for row_id, external_id, contact in rows:
            key = data_keys.get(contact.data_key_id)
            if key is None:
                wrapped = session.get(CustomerDataKey, contact.data_key_id)
                if wrapped is None:
                    raise ContactUnreadable("A contact's data key has been destroyed.")
                key = AESGCM(cipher.unwrap(wrapped.wrapped_key))
                data_keys[contact.data_key_id] = key
            values: dict[str, str | None] = {"name": None, "email": None, "postal_address": None}
            for name in fields:
                blob = getattr(contact, name)
                if blob is not None:
                    values[name] = ContactCipher.open(key, row_id, name, blob)
            found[external_id] = Contact(**values)
    return found


# --- the dpo's side: queueing, listing, resolving ----------------------------------------


@dataclass(frozen=True)
class EnqueueResult:
    email: int
    letter: int
    manual: int
    already: int

    @property
    def queued(self) -> int:
        return self.email + self.letter + self.manual


@dataclass(frozen=True)
class NoticeCounts:
    by_status: dict[str, int]
    by_channel: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def get(self, status: str) -> int:
        return self.by_status.get(status, 0)


class NoticeService:
    """Queueing and following up customer notices: the dpo decides and resolves; anyone
    who may view incidents sees statuses (customer ids, never contact details)."""

    def __init__(
        self, session: Session, principal: Principal, settings: Settings, keys: KeyRing
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.keys = keys

    def _incident(self, incident_id: int) -> Incident:
        incident = self.session.get(Incident, incident_id)
        if incident is None:
            raise IncidentNotFound(f"No incident with id {incident_id}.")
        return incident

    def _dpo(self) -> None:
        self.principal.require(Permission.INCIDENTS_NOTIFY)
        if self.principal.role is not Role.DPO:
            # Sending notices decrypts customers' contact details: the dpo's decision
            # alone (admin holds every permission but not this one).
            raise PermissionDenied("Only the dpo role may send or resolve customer notices.")

    # --- queueing ---------------------------------------------------------------------
    def enqueue(
        self,
        incident_id: int,
        *,
        override_reason: str | None = None,
        email_template_id: int | None = None,
        letter_template_id: int | None = None,
    ) -> EnqueueResult:
        """Queue a notice for every affected customer not queued before."""
        from spillguard.incidents.regulator import RegulatorReportService, latest_assessment

        self._dpo()
        incident = self._incident(incident_id)
        if incident.status == IncidentStatus.CLOSED.value:
            raise IncidentClosed(f"Incident {incident_id} is closed; reopen it to notify.")
        assessment = latest_assessment(self.session, incident_id)
        if assessment is None:
            raise NoticeContentMissing(
                "Assess the exposure first: the notices go to the customers it names."
            )
        reason = (override_reason or "").strip()
        if not assessment.notify_individuals and not reason:
            raise NotificationNotRequired(
                f"The latest assessment (version {assessment.version}, risk {assessment.risk}) "
                "says the people affected need not be told; give a reason to notify anyway "
                "(override_reason)."
            )
        if len(reason) > 1000:
            raise InvalidInput("The reason is longer than 1,000 characters.")
        reports = RegulatorReportService(self.session, self.principal, self.settings, self.keys)
        report = reports.latest(incident_id) or reports.draft(incident_id)
        fields = ReportFields.model_validate(report.fields)
        missing = [
            n
            for n in ("organisation", "what_happened", "contact_point")
            if not getattr(fields, n) or getattr(fields, n) == ORGANISATION_PLACEHOLDER
        ]
        if missing:
            raise NoticeContentMissing(
                "The notices take their words from the regulator report: answer "
                + ", ".join(missing)
                + " there first.",
                field=missing[0],
            )
        templates = {
            NoticeChannel.EMAIL: self._template(email_template_id, NoticeChannel.EMAIL),
            NoticeChannel.LETTER: self._template(letter_template_id, NoticeChannel.LETTER),
        }
        wanted = list(dict.fromkeys(assessment.customer_ids or []))
        existing = set(
            self.session.scalars(
                select(IncidentNotice.customer_id).where(IncidentNotice.incident_id == incident_id)
            )
        )
        new_ids = [c for c in wanted if c not in existing]
        reachable: dict[str, tuple[bool, bool]] = {}
        for chunk in _chunks(new_ids):
            for external_id, has_email, has_post in self.session.execute(
                select(
                    Customer.external_id,
                    CustomerContact.email.is_not(None),
                    CustomerContact.postal_address.is_not(None),
                )
                .outerjoin(CustomerContact, CustomerContact.customer_id == Customer.id)
                .where(Customer.external_id.in_(chunk), Customer.removed_at.is_(None))
            ):
                reachable[external_id] = (bool(has_email), bool(has_post))
        now = utcnow()
        rows: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for external_id in new_ids:
            has_email, has_post = reachable.get(external_id, (False, False))
            error = None
            if has_email:
                channel, status = NoticeChannel.EMAIL, NoticeStatus.QUEUED.value
            elif has_post:
                channel, status = NoticeChannel.LETTER, NoticeStatus.QUEUED.value
            else:
                channel, status = NoticeChannel.MANUAL, NoticeStatus.MANUAL.value
                error = (
                    "no e-mail or postal address in the directory"
                    if external_id in reachable
                    else "not in the customer directory (removed since the assessment)"
                )
            counts[channel.value] += 1
            rows.append(
                {
                    "incident_id": incident_id,
                    "customer_id": external_id,
                    "channel": channel.value,
                    "status": status,
                    "template_id": templates.get(channel),
                    "attempts": 0,
                    "next_attempt_at": now if status == NoticeStatus.QUEUED.value else None,
                    "lease_until": None,
                    "last_error": error,
                    "message_id": None,
                    "sent_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        for chunk in _chunks(rows, 5000):
            insert_rows(self.session.connection(), IncidentNotice.__table__, list(chunk))
        result = EnqueueResult(
            counts[NoticeChannel.EMAIL.value],
            counts[NoticeChannel.LETTER.value],
            counts[NoticeChannel.MANUAL.value],
            len(wanted) - len(new_ids),
        )
        details: dict[str, Any] = {
            "email": result.email,
            "letter": result.letter,
            "manual": result.manual,
            "already_queued": result.already,
            "assessment_version": assessment.version,
            "report_version": report.version,
        }
        if reason:
            details["override_reason"] = reason
        summary = (
            f"Customer notices queued by {self.principal.label}: {result.email} by e-mail, "
            f"{result.letter} by letter, {result.manual} for manual follow-up"
            + (f" ({result.already} already queued)" if result.already else "")
            + "."
        )
        if reason:
            summary += f" Notified although not required: {reason}"
        timeline.add(
            self.session,
            incident_id,
            TimelineKind.NOTIFICATION,
            summary,
            actor_label=self.principal.label,
            data=details,
            at=now,
        )
        record_event(
            self.session,
            self.principal,
            NoticeAuditAction.QUEUED,
            object_type="incident",
            object_id=incident_id,
            details=details,
        )
        self._advance_to_notifying(incident)
        return result

    def _advance_to_notifying(self, incident: Incident) -> None:
        from spillguard.incidents.services import IncidentService, allowed_next

        current = IncidentStatus(incident.status)
        if IncidentStatus.NOTIFYING in allowed_next(current):
            IncidentService(self.session, self.principal, self.settings, self.keys).change_status(
                incident.id, IncidentStatus.NOTIFYING, "customer notices queued"
            )

    def _template(self, template_id: int | None, channel: NoticeChannel) -> int | None:
        if template_id is None:
            # The most recently saved template of the channel, else the built-in one.
            return self.session.scalar(
                select(NoticeTemplate.id)
                .where(NoticeTemplate.channel == channel.value)
                .order_by(NoticeTemplate.updated_at.desc(), NoticeTemplate.id.desc())
                .limit(1)
            )
        template = self.session.get(NoticeTemplate, template_id)
        if template is None or template.channel != channel.value:
            raise InvalidInput(
                f"There is no {channel.value} template {template_id}.",
                field=f"{channel.value}_template_id",
            )
        return template.id

    # --- reading ----------------------------------------------------------------------
    def counts(self, incident_id: int) -> NoticeCounts:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._incident(incident_id)
        by_status: dict[str, int] = {}
        by_channel: dict[str, int] = {}
        for status, channel, n in self.session.execute(
            select(IncidentNotice.status, IncidentNotice.channel, func.count())
            .where(IncidentNotice.incident_id == incident_id)
            .group_by(IncidentNotice.status, IncidentNotice.channel)
        ):
            by_status[status] = by_status.get(status, 0) + int(n)
            by_channel[channel] = by_channel.get(channel, 0) + int(n)
        return NoticeCounts(by_status, by_channel)

    def listing(
        self,
        incident_id: int,
        *,
        status: str | None = None,
        channel: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[IncidentNotice], int]:
        """Notices of an incident (ids and statuses; never a contact detail)."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._incident(incident_id)
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"Unknown status {status!r}; one of {', '.join(STATUSES)}.", field="status"
            )
        if channel is not None and channel not in {c.value for c in NoticeChannel}:
            raise InvalidInput(f"Unknown channel {channel!r}.", field="channel")
        query = select(IncidentNotice).where(IncidentNotice.incident_id == incident_id)
        if status:
            query = query.where(IncidentNotice.status == status)
        if channel:
            query = query.where(IncidentNotice.channel == channel)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(IncidentNotice.id).limit(limit).offset(offset)
        ).all()
        return list(rows), int(total)

    def follow_ups(self, incident_id: int) -> list[IncidentNotice]:
        """Every notice a person must act on: manual, unknown, bounced, failed, and
        letters not yet posted."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._incident(incident_id)
        return list(
            self.session.scalars(
                select(IncidentNotice)
                .where(
                    IncidentNotice.incident_id == incident_id,
                    or_(
                        IncidentNotice.status.in_(
                            [
                                NoticeStatus.MANUAL.value,
                                UNKNOWN,
                                NoticeStatus.BOUNCED.value,
                                NoticeStatus.FAILED.value,
                            ]
                        ),
                        and_(
                            IncidentNotice.channel == NoticeChannel.LETTER.value,
                            IncidentNotice.status == NoticeStatus.QUEUED.value,
                        ),
                    ),
                )
                .order_by(IncidentNotice.status, IncidentNotice.id)
                .limit(10_000)
            )
        )

    def _notice(self, incident_id: int, notice_id: int) -> IncidentNotice:
        notice = self.session.get(IncidentNotice, notice_id)
        if notice is None or notice.incident_id != incident_id:
            raise NoticeNotFound(f"Incident {incident_id} has no notice {notice_id}.")
        return notice

    # --- follow-up --------------------------------------------------------------------
    def resolve(self, incident_id: int, notice_id: int, outcome: str, note: str) -> IncidentNotice:
        """Settle a notice the outbox cannot: ``delivered`` (the mail server's log shows
        its Message-ID, or the person was told another way) or ``resend`` (queue it
        again).  Allowed for ``unknown``, ``bounced``, ``failed`` and ``manual`` notices."""
        self._dpo()
        note = (note or "").strip()
        if not note:
            raise InvalidInput("Say how you checked or why (note).", field="note")
        if len(note) > 500:
            raise InvalidInput("The note is longer than 500 characters.", field="note")
        if outcome not in {"delivered", "resend"}:
            raise InvalidInput("outcome must be 'delivered' or 'resend'.", field="outcome")
        incident = self._incident(incident_id)
        if incident.status == IncidentStatus.CLOSED.value:
            raise IncidentClosed(f"Incident {incident_id} is closed; reopen it first.")
        notice = self._notice(incident_id, notice_id)
        settle = {UNKNOWN, NoticeStatus.BOUNCED.value, NoticeStatus.FAILED.value}
        settle.add(NoticeStatus.MANUAL.value)
        if notice.status not in settle:
            raise Conflict(
                f"Notice {notice_id} is {notice.status}; only unknown, bounced, failed or "
                "manual notices are resolved by hand."
            )
        if outcome == "resend" and notice.channel != NoticeChannel.EMAIL.value:
            raise Conflict("Only e-mail notices can be sent again; record 'delivered'.")
        before = notice.status
        now = utcnow()
        if outcome == "delivered":
            notice.status = NoticeStatus.SENT.value
            notice.sent_at = now
        else:
            notice.status = NoticeStatus.QUEUED.value
            notice.next_attempt_at = now
            notice.attempts = 0
        notice.last_error = f"{before} → {outcome} by {self.principal.label}: {note}"[:500]
        notice.lease_until = None
        notice.updated_at = now
        self.session.flush()
        details = {"notice_id": notice.id, "from": before, "outcome": outcome, "note": note}
        timeline.add(
            self.session,
            incident_id,
            TimelineKind.NOTIFICATION,
            f"Notice {notice.id} ({before}) recorded as {outcome} by {self.principal.label}.",
            actor_label=self.principal.label,
            data=details,
            at=now,
        )
        record_event(
            self.session,
            self.principal,
            NoticeAuditAction.RESOLVED,
            object_type="incident",
            object_id=incident_id,
            details=details,
        )
        return notice

    def letters(self, incident_id: int) -> list[tuple[IncidentNotice, Contact, NoticeContent]]:
        """The letters not yet posted, rendered (the PDF's content); decrypts names and
        postal addresses, so the dpo only, audited."""
        self._dpo()
        self._incident(incident_id)
        notices = list(
            self.session.scalars(
                select(IncidentNotice)
                .where(
                    IncidentNotice.incident_id == incident_id,
                    IncidentNotice.channel == NoticeChannel.LETTER.value,
                    IncidentNotice.status == NoticeStatus.QUEUED.value,
                )
                .order_by(IncidentNotice.id)
            )
        )
        if not notices:
            return []
        contacts = read_contacts(
            self.session,
            self.keys,
            [n.customer_id for n in notices],
            ("name", "postal_address"),
        )
        renderer = _Renderer(self.session)
        out = []
        for notice in notices:
            contact = contacts.get(notice.customer_id) or Contact(None, None, None)
            content = renderer.render(
                notice.incident_id, notice.template_id, notice.channel, contact.name
            )
            out.append((notice, contact, content))
        record_event(
            self.session,
            self.principal,
            NoticeAuditAction.LETTERS_PRINTED,
            object_type="incident",
            object_id=incident_id,
            details={"letters": len(out)},
        )
        return out

    def mark_letters_posted(self, incident_id: int, notice_ids: Sequence[int] | None) -> int:
        """Record queued letters as posted (all, or the ones named)."""
        self._dpo()
        incident = self._incident(incident_id)
        if incident.status == IncidentStatus.CLOSED.value:
            raise IncidentClosed(f"Incident {incident_id} is closed; reopen it first.")
        now = utcnow()
        query = update(IncidentNotice).where(
            IncidentNotice.incident_id == incident_id,
            IncidentNotice.channel == NoticeChannel.LETTER.value,
            IncidentNotice.status == NoticeStatus.QUEUED.value,
        )
        if notice_ids is not None:
            query = query.where(IncidentNotice.id.in_(list(notice_ids)[:10_000]))
        posted = affected(
            self.session.execute(
                query.values(
                    status=NoticeStatus.SENT.value, sent_at=now, updated_at=now
                ).execution_options(synchronize_session=False)
            )
        )
        if posted:
            timeline.add(
                self.session,
                incident_id,
                TimelineKind.NOTIFICATION,
                f"{posted} letter(s) recorded as posted by {self.principal.label}.",
                actor_label=self.principal.label,
                data={"letters": posted},
                at=now,
            )
            record_event(
                self.session,
                self.principal,
                NoticeAuditAction.LETTERS_POSTED,
                object_type="incident",
                object_id=incident_id,
                details={"letters": posted},
            )
        return posted


# --- rendering -----------------------------------------------------------------------------


def report_fields_of(session: Session, incident_id: int) -> ReportFields:
    """The answers of the incident's latest regulator report (the notices' words)."""
    report = session.scalar(
        select(RegulatorReport)
        .where(RegulatorReport.incident_id == incident_id)
        .order_by(RegulatorReport.version.desc())
        .limit(1)
    )
    if report is None:
        raise NoticeContentMissing(f"Incident {incident_id} has no regulator report.")
    return ReportFields.model_validate(report.fields)


class _Renderer:
    """Renders notices with each incident's report and each template, loaded once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._fields: dict[int, ReportFields] = {}
        self._templates: dict[tuple[int | None, str], tuple[str, str]] = {}

    def fields(self, incident_id: int) -> ReportFields:
        if incident_id not in self._fields:
            self._fields[incident_id] = report_fields_of(self.session, incident_id)
        return self._fields[incident_id]

    def template(self, template_id: int | None, channel: str) -> tuple[str, str]:
        key = (template_id, channel)
        if key not in self._templates:
            row = self.session.get(NoticeTemplate, template_id) if template_id else None
            if row is not None:
                self._templates[key] = (row.subject or "", row.body)
            else:
                default = DEFAULT_TEMPLATES[NoticeChannel(channel)]
                self._templates[key] = (default.subject, default.body)
        return self._templates[key]

    def render(
        self, incident_id: int, template_id: int | None, channel: str, name: str | None
    ) -> NoticeContent:
        subject, body = self.template(template_id, channel)
        context = notice_context(self.fields(incident_id), incident_id, _customer_name(name))
        return render_notice(subject, body, context)


# --- the sender ----------------------------------------------------------------------------


@dataclass
class DrainReport:
    """What one run of the sender did."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    unknown: int = 0
    manual: int = 0
    requeued_after_crash: int = 0
    unknown_after_crash: int = 0
    seconds: float = 0.0
    by_incident: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def count(self, incident_id: int, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.by_incident[incident_id][outcome] += 1

    def as_dict(self) -> dict[str, float | int]:
        return {
            k: v for k, v in self.__dict__.items() if isinstance(v, int | float) and k != "seconds"
        } | {"seconds": round(self.seconds, 3)}


class LeaseLost(Exception):
    """The row is no longer this sender's (its lease lapsed and another took it over)."""


@dataclass
class _Claimed:
    id: int
    incident_id: int
    customer_id: str
    template_id: int | None
    attempts: int
    channel: str


class Outbox:
    """Drains queued e-mail notices: claim a batch, decrypt, render, send each at the
    configured rate, record each outcome (see the module docstring for the states).

    ``sender`` is used from this thread only.  Several Outbox instances (processes) may
    drain one database: claims are conditional UPDATEs (and ``SKIP LOCKED`` on
    PostgreSQL), so each notice is claimed by one sender at a time.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        keys: KeyRing,
        sender: MailSender,
        *,
        rate: float | None = None,
        batch: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.keys = keys
        self.sender = sender
        self.rate = rate or settings.notice_rate_per_second
        # A batch must finish well within its lease, at the configured rate.
        fits = int(self.rate * settings.notice_lease_seconds / 4)
        self.batch = max(1, min(batch or 200, fits))
        self.lease = timedelta(seconds=settings.notice_lease_seconds)
        self.engine = factory.kw["bind"]
        self.monotonic = monotonic
        self.sleep = sleep
        self._next_slot = monotonic()
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._outcomes: list[tuple[int, str]] = []
        self._renderer: _Renderer | None = None

    # --- recovery ---------------------------------------------------------------------
    def recover(self, report: DrainReport | None = None) -> tuple[int, int]:
        """Settle notices whose sender stopped (lease lapsed): ``sending`` ones go back to
        the queue (the server cannot have them); ``handed-over`` ones become ``unknown``
        (it may have).  Returns (requeued, unknown)."""
        now = utcnow()
        with transaction(self.factory) as session:
            stale = session.execute(
                select(IncidentNotice.id, IncidentNotice.incident_id, IncidentNotice.status)
                .where(
                    IncidentNotice.status.in_(IN_FLIGHT),
                    IncidentNotice.lease_until < now,
                )
                .order_by(IncidentNotice.id)
            ).all()
            requeued = unknown = 0
            per_incident: dict[int, Counter[str]] = defaultdict(Counter)
            for notice_id, incident_id, status in stale:
                values: dict[str, Any]
                if status == NoticeStatus.SENDING.value:
                    values = {
                        "status": NoticeStatus.QUEUED.value,
                        "next_attempt_at": now,
                        "last_error": "the sender stopped before the message was complete "
                        "(not delivered); queued again",
                    }
                else:
                    values = {
                        "status": UNKNOWN,
                        "last_error": "the sender stopped after handing the message to the "
                        "mail server: check the server's log for the Message-ID, then "
                        "record delivered or resend",
                    }
                done = session.execute(
                    update(IncidentNotice)
                    .where(
                        IncidentNotice.id == notice_id,
                        IncidentNotice.status == status,
                        IncidentNotice.lease_until < now,
                    )
                    .values(lease_until=None, updated_at=now, **values)
                    .execution_options(synchronize_session=False)
                )
                if affected(done):
                    if status == NoticeStatus.SENDING.value:
                        requeued += 1
                        per_incident[incident_id]["requeued"] += 1
                    else:
                        unknown += 1
                        per_incident[incident_id]["unknown"] += 1
            for incident_id, counts in per_incident.items():
                timeline.add(
                    session,
                    incident_id,
                    TimelineKind.NOTIFICATION,
                    f"A notice sender stopped mid-run: {counts['requeued']} notice(s) queued "
                    f"again (not delivered), {counts['unknown']} to check (perhaps delivered).",
                    actor_label="system",
                    data=dict(counts),
                    at=now,
                )
        if report is not None:
            report.requeued_after_crash += requeued
            report.unknown_after_crash += unknown
        if requeued or unknown:
            log.warning("notice_sender_recovered", requeued=requeued, unknown=unknown)
        return requeued, unknown

    # --- claiming ---------------------------------------------------------------------
    def _claim(self) -> list[_Claimed]:
        now = utcnow()
        with transaction(self.factory) as session:
            candidates = (
                select(IncidentNotice.id)
                .where(
                    IncidentNotice.status == NoticeStatus.QUEUED.value,
                    IncidentNotice.channel == NoticeChannel.EMAIL.value,
                    or_(
                        IncidentNotice.next_attempt_at.is_(None),
                        IncidentNotice.next_attempt_at <= now,
                    ),
                )
                .order_by(IncidentNotice.id)
                .limit(self.batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            ids = list(session.scalars(candidates))
            if not ids:
                return []
            rows = session.execute(
                update(IncidentNotice)
                .where(
                    IncidentNotice.id.in_(ids),
                    IncidentNotice.status == NoticeStatus.QUEUED.value,
                )
                .values(
                    status=NoticeStatus.SENDING.value,
                    lease_until=now + self.lease,
                    updated_at=now,
                )
                .returning(
                    IncidentNotice.id,
                    IncidentNotice.incident_id,
                    IncidentNotice.customer_id,
                    IncidentNotice.template_id,
                    IncidentNotice.attempts,
                    IncidentNotice.channel,
                )
                .execution_options(synchronize_session=False)
            ).all()
            for row in rows:
                session.execute(
                    update(IncidentNotice)
                    .where(IncidentNotice.id == row.id)
                    .values(message_id=message_id_for(row.id, row.incident_id, self._from))
                    .execution_options(synchronize_session=False)
                )
        return sorted((_Claimed(*row) for row in rows), key=lambda c: c.id)

    @property
    def _from(self) -> str:
        return self.settings.smtp_from

    # --- recording --------------------------------------------------------------------
    def _record(self, notice_id: int, outcome: str, values: dict[str, Any]) -> None:
        """Note an outcome.  A delivery is committed at once: until it is, a crash would
        leave the notice ``handed-over`` and so to be checked by hand.  Other outcomes
        ride along with the next commit (lost in a crash, the notice is still
        ``sending`` and simply tried again)."""
        self._pending.append((notice_id, values))
        self._outcomes.append((notice_id, outcome))
        if outcome == "sent":
            self._flush_now()

    def _flush(self, conn: Connection) -> None:
        now = utcnow()
        for notice_id, values in self._pending:
            conn.execute(
                update(IncidentNotice)
                .where(IncidentNotice.id == notice_id, IncidentNotice.status.in_(IN_FLIGHT))
                .values(updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
        self._pending.clear()

    def _flush_now(self) -> None:
        if self._pending:
            with self.engine.begin() as conn:
                self._flush(conn)

    def _hand_over(self, notice_id: int) -> None:
        """Runs just before the final "." goes out: record the pending outcomes and that
        this notice may now reach the server, in one commit.  If the lease was lost,
        nothing is sent."""
        now = utcnow()
        # Core connections, not ORM sessions: two of these commits per message are the
        # sender's main cost after SMTP itself.
        with self.engine.begin() as conn:
            self._flush(conn)
            done = conn.execute(
                update(IncidentNotice)
                .where(
                    IncidentNotice.id == notice_id,
                    IncidentNotice.status == NoticeStatus.SENDING.value,
                    IncidentNotice.lease_until > now,
                )
                .values(status=HANDED_OVER, updated_at=now)
            )
            if affected(done) != 1:
                raise LeaseLost(f"notice {notice_id} is no longer claimed by this sender")

    # --- the loop ---------------------------------------------------------------------
    def _pace(self) -> None:
        """Wait for the next send slot (``rate`` messages per second); outcomes waiting
        to be recorded are recorded first when there is time."""
        now = self.monotonic()
        wait = self._next_slot - now
        if wait > 0.002 and self._pending:
            self._flush_now()
            wait = self._next_slot - self.monotonic()
        if wait > 0:
            self.sleep(wait)
        # A slot missed because a message took long (a slow reply, a batch claim) may be
        # made up within CATCH_UP_SECONDS, so the rate holds on average and not only as
        # a ceiling per message; it never runs ahead of the schedule.
        self._next_slot = max(self._next_slot, self.monotonic() - CATCH_UP_SECONDS) + (
            1.0 / self.rate
        )

    @property
    def renderer(self) -> _Renderer:
        if self._renderer is None:
            raise RuntimeError("the renderer exists only while draining")
        return self._renderer

    def _message(self, claimed: _Claimed, contact: Contact, content: NoticeContent) -> Message:
        """The notice as a text/plain message.  Built with the classic (compat32) email
        API: a third of the cost of EmailMessage's header objects, which at hundreds of
        messages a second is most of the sender's own CPU."""
        address = contact.email or ""
        if not _PLAIN_ADDRESS.match(address):
            raise ValueError("not a plain ASCII e-mail address")
        fields = self.renderer.fields(claimed.incident_id)
        message = MIMEText(content.body, "plain", _UTF8_QP)  # type: ignore[arg-type]
        message["From"] = formataddr((fields.organisation[:100], self._from))
        message["To"] = formataddr((contact.name or "", address))
        subject = content.subject
        message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = message_id_for(claimed.id, claimed.incident_id, self._from)
        message["Auto-Submitted"] = "auto-generated"
        return message

    def drain(
        self,
        *,
        max_seconds: float | None = None,
        max_messages: int | None = None,
        stop: threading.Event | None = None,
    ) -> DrainReport:
        """Send queued notices until none is due (or a limit or ``stop``)."""
        report = DrainReport()
        started = self.monotonic()
        self._next_slot = started
        self._renderer = _Renderer(self.factory())
        try:
            self.recover(report)
            handled = 0
            while True:
                if stop is not None and stop.is_set():
                    break
                if max_seconds is not None and self.monotonic() - started >= max_seconds:
                    break
                if max_messages is not None and handled >= max_messages:
                    break
                claimed = self._claim()
                if not claimed:
                    break
                if max_messages is not None:
                    # Hand back what this run will not reach.
                    keep = max_messages - handled
                    self._release(claimed[keep:])
                    claimed = claimed[:keep]
                done, server_away = self._send_batch(claimed, report, started, max_seconds, stop)
                handled += done
                if server_away:
                    break  # the next run tries again
        finally:
            self._flush_now()
            self.sender.close()
            self.renderer.session.close()
            self._renderer = None
            report.seconds = self.monotonic() - started
        return report

    def _release(self, claimed: Sequence[_Claimed]) -> None:
        if not claimed:
            return
        with transaction(self.factory) as session:
            for chunk in _chunks([c.id for c in claimed]):
                session.execute(
                    update(IncidentNotice)
                    .where(
                        IncidentNotice.id.in_(chunk),
                        IncidentNotice.status == NoticeStatus.SENDING.value,
                    )
                    .values(status=NoticeStatus.QUEUED.value, lease_until=None)
                    .execution_options(synchronize_session=False)
                )

    def _send_batch(
        self,
        claimed: list[_Claimed],
        report: DrainReport,
        started: float,
        max_seconds: float | None,
        stop: threading.Event | None,
    ) -> tuple[int, bool]:
        """Send a claimed batch; returns how many were handled and whether the server
        seems away (several temporary failures in a row)."""
        with transaction(self.factory) as session:
            contacts = read_contacts(
                session, self.keys, [c.customer_id for c in claimed], ("name", "email")
            )
        handled = 0
        temporary_in_a_row = 0
        claimed_at = self.monotonic()
        half_lease = self.lease.total_seconds() / 2
        for index, item in enumerate(claimed):
            now = self.monotonic()
            out_of_time = max_seconds is not None and now - started >= max_seconds
            lease_short = now - claimed_at > half_lease
            stopping = stop is not None and stop.is_set()
            if stopping or out_of_time or lease_short or temporary_in_a_row >= 3:
                # Stopping, a slow or absent server: hand the rest back untouched (the
                # next claim takes them with a fresh lease).
                self._flush_now()
                self._release(claimed[index:])
                break
            handled += 1
            contact = contacts.get(item.customer_id)
            if contact is None or not contact.email:
                self._record(
                    item.id,
                    "manual",
                    {
                        "status": NoticeStatus.MANUAL.value,
                        "channel": NoticeChannel.MANUAL.value,
                        "lease_until": None,
                        "last_error": "no e-mail address in the directory any more",
                    },
                )
                report.count(item.incident_id, "manual")
                continue
            try:
                content = self.renderer.render(
                    item.incident_id, item.template_id, item.channel, contact.name
                )
                message = self._message(item, contact, content)
            except (ValueError, IndexError) as exc:  # an address e-mail cannot carry
                self._record(
                    item.id,
                    "bounced",
                    {
                        "status": NoticeStatus.BOUNCED.value,
                        "lease_until": None,
                        "attempts": item.attempts + 1,
                        "last_error": f"the address cannot be used: {exc}",
                    },
                )
                report.count(item.incident_id, "bounced")
                continue
            self._pace()
            try:
                self.sender.send(message, before_commit=functools.partial(self._hand_over, item.id))
            except LeaseLost:
                log.error("notice_lease_lost", notice_id=item.id)
                continue
            except MailError as exc:
                temporary_in_a_row = temporary_in_a_row + 1 if exc.temporary else 0
                self._failed(item, exc, report)
                continue
            temporary_in_a_row = 0
            self._record(
                item.id,
                "sent",
                {
                    "status": NoticeStatus.SENT.value,
                    "sent_at": utcnow(),
                    "lease_until": None,
                    "attempts": item.attempts + 1,
                    "last_error": None,
                },
            )
            report.count(item.incident_id, "sent")
        self._flush_now()
        self._batch_done(report)
        return handled, temporary_in_a_row >= 3

    def _failed(self, item: _Claimed, exc: MailError, report: DrainReport) -> None:
        attempts = item.attempts + 1
        values: dict[str, Any]
        if exc.maybe_delivered:
            values = {"status": UNKNOWN, "last_error": exc.reply}
            outcome = "unknown"
        elif isinstance(exc, PermanentMailError):
            values = {"status": NoticeStatus.BOUNCED.value, "last_error": exc.reply}
            outcome = "bounced"
        elif attempts >= self.settings.notice_max_attempts:
            values = {
                "status": NoticeStatus.FAILED.value,
                "last_error": f"gave up after {attempts} attempts: {exc.reply}",
            }
            outcome = "failed"
        else:
            delay = backoff_seconds(
                attempts,
                self.settings.notice_retry_base_seconds,
                self.settings.notice_retry_max_seconds,
            )
            values = {
                "status": NoticeStatus.QUEUED.value,
                "next_attempt_at": utcnow() + timedelta(seconds=delay),
                "last_error": exc.reply,
            }
            outcome = "retried"
        values |= {"attempts": attempts, "lease_until": None}
        self._record(item.id, outcome, values)
        report.count(item.incident_id, outcome)

    def _batch_done(self, report: DrainReport) -> None:
        """Timeline and audit for what this batch settled (counts only)."""
        if not self._outcomes:
            return
        by_incident: dict[int, Counter[str]] = defaultdict(Counter)
        ids = [notice_id for notice_id, _ in self._outcomes]
        with transaction(self.factory) as session:
            incident_of = dict(
                session.execute(
                    select(IncidentNotice.id, IncidentNotice.incident_id).where(
                        IncidentNotice.id.in_(ids)
                    )
                ).all()
            )
            for notice_id, outcome in self._outcomes:
                by_incident[incident_of.get(notice_id, 0)][outcome] += 1
            for incident_id, counts in by_incident.items():
                if not incident_id:
                    continue
                words = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
                timeline.add(
                    session,
                    incident_id,
                    TimelineKind.NOTIFICATION,
                    f"Customer notices by e-mail: {words}.",
                    actor_label="system",
                    data=dict(counts),
                )
                record_event(
                    session,
                    Principal.system("notices"),
                    NoticeAuditAction.SENT,
                    object_type="incident",
                    object_id=incident_id,
                    details=dict(counts),
                )
        self._outcomes.clear()


def due_count(session: Session) -> int:
    """Queued e-mail notices whose time has come (for status pages and metrics)."""
    now = utcnow()
    return int(
        session.scalar(
            select(func.count())
            .select_from(IncidentNotice)
            .where(
                IncidentNotice.status == NoticeStatus.QUEUED.value,
                IncidentNotice.channel == NoticeChannel.EMAIL.value,
                or_(
                    IncidentNotice.next_attempt_at.is_(None),
                    IncidentNotice.next_attempt_at <= now,
                ),
            )
        )
        or 0
    )


def notices_job(settings: Settings, keys: KeyRing) -> Job:
    """The server's scheduled job (core.jobs) that drains the outbox; the job lease
    makes one process send at a time."""

    def run(session: Session) -> dict[str, float | int] | str:
        if settings.mail_backend == "smtp" and not settings.smtp_host:
            # Not an attempt per notice every run: they wait, queued and visible.
            due = due_count(session)
            if due:
                log.warning("notices_waiting_for_smtp_host", due=due)
            return f"no SMTP server configured; {due} notice(s) waiting"
        factory = sessionmaker(bind=session.get_bind(), expire_on_commit=False)
        budget = max(1.0, min(settings.notice_lease_seconds / 2, 240.0))
        outbox = Outbox(factory, settings, keys, mail_sender_from_settings(settings))
        return outbox.drain(max_seconds=budget).as_dict()

    return Job(
        "incidents.notices",
        settings.notice_worker_interval_seconds,
        run,
        lease_seconds=max(600.0, settings.notice_lease_seconds * 2),
    )
