"""Escalation: the people told when an incident gets serious, and their acknowledgement.

The roster (``escalation_contacts``) lists people such as the IT director, the COO,
counsel and PR, each with the least severity they want to hear about.  When an open
incident is at or above that severity, each such contact gets one e-mail (one
``incident_escalations`` row per incident and contact) with a link to acknowledge it.
The link carries a random secret; only its keyed digest (HMAC-SHA256 under a key derived
for this purpose) is stored.  Opening the link shows the incident's number and a button;
pressing it records the acknowledgement on the incident's timeline (a GET never does,
so a mail scanner that follows links does not acknowledge for anyone).

The scheduled job (:func:`escalation_job`) sends what is due, so a severity raised by any
route, and a send that failed, are picked up on its next run.  The e-mail names the
incident's number, type and severity, never a customer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput, NotFound
from spillguard.core.jobs import Job
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, mark_authz_checked
from spillguard.core.settings import Settings
from spillguard.incidents import timeline
from spillguard.incidents.errors import IncidentNotFound
from spillguard.incidents.mailer import MailError, MailSender, mail_sender_from_settings
from spillguard.incidents.models import (
    EscalationContact,
    Incident,
    IncidentEscalation,
    IncidentStatus,
    Severity,
    TimelineKind,
)

log = structlog.get_logger("spillguard.incidents.escalation")

ACK_KEY_PURPOSE = "spillguard/v1/escalation-ack-digest"
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


class EscalationAuditAction(StrEnum):
    CONTACT_ADDED = "incidents:escalation-contact:added"
    CONTACT_DEACTIVATED = "incidents:escalation-contact:deactivated"
    NOTIFIED = "incidents:escalation:notified"
    ACKNOWLEDGED = "incidents:escalation:acknowledged"


class ContactNotFound(NotFound):
    slug = "escalation-contact-not-found"
    title = "Escalation contact not found"


class AckLinkInvalid(NotFound):
    slug = "escalation-link-invalid"
    title = "Link not valid"


def ack_digest(keys: KeyRing, token: str) -> str:
    return hmac.new(keys.derive(ACK_KEY_PURPOSE), token.encode(), hashlib.sha256).hexdigest()


def qualifies(contact_severity: str, incident_severity: str) -> bool:
    """Whether a contact who wants incidents from ``contact_severity`` up hears of this one."""
    try:
        return Severity(incident_severity).rank >= Severity(contact_severity).rank
    except ValueError:
        return False


@dataclass(frozen=True)
class AckView:
    """What the acknowledgement page shows (no customer data, no other contact)."""

    incident_id: int
    incident_type: str
    severity: str
    contact_name: str
    acknowledged_at: str | None


class EscalationService:
    """The roster (security and the dpo manage it) and the acknowledgement links."""

    def __init__(
        self, session: Session, principal: Principal, settings: Settings, keys: KeyRing
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.keys = keys

    # --- roster ------------------------------------------------------------------------
    def contacts(self) -> list[EscalationContact]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        return list(
            self.session.scalars(
                select(EscalationContact).order_by(
                    EscalationContact.active.desc(), EscalationContact.name
                )
            )
        )

    def add_contact(
        self, name: str, email: str, role_title: str, min_severity: str
    ) -> EscalationContact:
        self.principal.require(Permission.INCIDENTS_MANAGE)
        name, email, role_title = name.strip(), email.strip(), role_title.strip()
        if not name or len(name) > 200:
            raise InvalidInput("Give a name of at most 200 characters.", field="name")
        if len(email) > 320 or not _EMAIL.match(email):
            raise InvalidInput("Give a valid e-mail address.", field="email")
        if not role_title or len(role_title) > 100:
            raise InvalidInput(
                "Give a role (e.g. COO) of at most 100 characters.", field="role_title"
            )
        if min_severity not in {s.value for s in Severity}:
            raise InvalidInput(
                f"min_severity must be one of {', '.join(s.value for s in Severity)}.",
                field="min_severity",
            )
        contact = EscalationContact(
            name=name, email=email, role_title=role_title, min_severity=min_severity, active=True
        )
        self.session.add(contact)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            EscalationAuditAction.CONTACT_ADDED,
            object_type="escalation-contact",
            object_id=contact.id,
            details={"role_title": role_title, "min_severity": min_severity},
        )
        return contact

    def deactivate(self, contact_id: int) -> EscalationContact:
        self.principal.require(Permission.INCIDENTS_MANAGE)
        contact = self.session.get(EscalationContact, contact_id)
        if contact is None:
            raise ContactNotFound(f"There is no escalation contact {contact_id}.")
        if contact.active:
            contact.active = False
            record_event(
                self.session,
                self.principal,
                EscalationAuditAction.CONTACT_DEACTIVATED,
                object_type="escalation-contact",
                object_id=contact.id,
            )
        return contact

    def escalations(self, incident_id: int) -> list[tuple[IncidentEscalation, EscalationContact]]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        if self.session.get(Incident, incident_id) is None:
            raise IncidentNotFound(f"No incident with id {incident_id}.")
        return [
            (e, c)
            for e, c in self.session.execute(
                select(IncidentEscalation, EscalationContact)
                .join(EscalationContact, EscalationContact.id == IncidentEscalation.contact_id)
                .where(IncidentEscalation.incident_id == incident_id)
                .order_by(IncidentEscalation.id)
            ).all()
        ]

    # --- acknowledging (anyone holding the link) --------------------------------------
    def _by_token(self, token: str) -> tuple[IncidentEscalation, EscalationContact, Incident]:
        mark_authz_checked()  # public: holding the link's secret is the authorisation
        if not token or len(token) > 200:
            raise AckLinkInvalid("This acknowledgement link is not valid.")
        row = self.session.scalar(
            select(IncidentEscalation).where(
                IncidentEscalation.ack_token_digest == ack_digest(self.keys, token)
            )
        )
        if row is None:
            raise AckLinkInvalid("This acknowledgement link is not valid.")
        contact = self.session.get(EscalationContact, row.contact_id)
        incident = self.session.get(Incident, row.incident_id)
        if contact is None or incident is None:
            raise AckLinkInvalid("This acknowledgement link is not valid.")
        return row, contact, incident

    def view(self, token: str) -> AckView:
        row, contact, incident = self._by_token(token)
        return AckView(
            incident.id,
            incident.type,
            incident.severity,
            contact.name,
            row.acknowledged_at.isoformat() if row.acknowledged_at else None,
        )

    def acknowledge(self, token: str) -> AckView:
        """Record the acknowledgement (once; pressing again changes nothing)."""
        row, contact, incident = self._by_token(token)
        if row.acknowledged_at is None:
            now = utcnow()
            row.acknowledged_at = now
            timeline.add(
                self.session,
                incident.id,
                TimelineKind.NOTIFICATION,
                f"Escalation acknowledged by {contact.name} ({contact.role_title}).",
                actor_label=contact.name,
                data={"contact_id": contact.id},
                at=now,
            )
            record_event(
                self.session,
                Principal(
                    "anonymous",
                    None,
                    f"escalation-contact:{contact.id}",
                    None,
                    source_ip=self.principal.source_ip,
                    request_id=self.principal.request_id,
                ),
                EscalationAuditAction.ACKNOWLEDGED,
                object_type="incident",
                object_id=incident.id,
                details={"contact_id": contact.id},
            )
        return self.view(token)


def escalation_message(
    incident: Incident, contact: EscalationContact, link: str, settings: Settings
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = contact.email
    message["Subject"] = (
        f"[Spillguard] {incident.severity.upper()} incident #{incident.id}: {incident.type}"
    )
    message.set_content(
        f"{contact.name},\n\n"
        f"Incident #{incident.id} ({incident.type}) is at severity {incident.severity}; you "
        f"are on the escalation roster as {contact.role_title} for {contact.min_severity} "
        "and above.\n\n"
        f"Please acknowledge that you have seen this: {link}\n\n"
        f"The details are in the console: {settings.base_url}/incidents/{incident.id}\n"
    )
    return message


def send_escalations(
    session: Session, settings: Settings, keys: KeyRing, sender: MailSender
) -> int:
    """Tell every qualifying roster contact about every open incident they have not been
    told about; returns how many e-mails went out.  A failed send is tried again on the
    next run."""
    contacts = list(
        session.scalars(select(EscalationContact).where(EscalationContact.active.is_(True)))
    )
    if not contacts:
        return 0
    incidents = list(
        session.scalars(select(Incident).where(Incident.status != IncidentStatus.CLOSED.value))
    )
    done = {
        (e.incident_id, e.contact_id): e
        for e in session.scalars(
            select(IncidentEscalation).where(
                IncidentEscalation.incident_id.in_([i.id for i in incidents] or [0])
            )
        )
    }
    sent = 0
    for incident in incidents:
        for contact in contacts:
            if not qualifies(contact.min_severity, incident.severity):
                continue
            row = done.get((incident.id, contact.id))
            if row is not None and row.notified_at is not None:
                continue
            token = secrets.token_urlsafe(32)
            if row is None:
                row = IncidentEscalation(incident_id=incident.id, contact_id=contact.id)
                session.add(row)
            row.ack_token_digest = ack_digest(keys, token)
            link = f"{settings.base_url}/escalation/ack/{token}"
            try:
                sender.send(escalation_message(incident, contact, link, settings))
            except MailError as exc:
                log.warning(
                    "escalation_not_sent",
                    incident_id=incident.id,
                    contact_id=contact.id,
                    error=exc.reply,
                )
                session.flush()
                continue
            now = utcnow()
            row.notified_at = now
            session.flush()
            timeline.add(
                session,
                incident.id,
                TimelineKind.NOTIFICATION,
                f"Escalated to {contact.name} ({contact.role_title}) at severity "
                f"{incident.severity}.",
                actor_label="system",
                data={"contact_id": contact.id, "severity": incident.severity},
                at=now,
            )
            record_event(
                session,
                Principal.system("escalation"),
                EscalationAuditAction.NOTIFIED,
                object_type="incident",
                object_id=incident.id,
                details={"contact_id": contact.id, "severity": incident.severity},
            )
            sent += 1
    return sent


def escalation_job(settings: Settings, keys: KeyRing) -> Job:
    """The scheduled job (core.jobs) that sends due escalations."""

    def run(session: Session) -> int:
        sender = mail_sender_from_settings(settings)
        try:
            return send_escalations(session, settings, keys, sender)
        finally:
            sender.close()

    return Job("incidents.escalation", settings.notice_worker_interval_seconds, run)
