"""Tables of the incidents module.

The incident core (``incidents``, ``incident_tasks``, ``incident_notes``,
``incident_attachments``, ``incident_timeline``, ``incident_assessments``,
``incident_clock_reminders``) and the response tables the regulator report, the customer
notices outbox and the escalation roster use (``incident_regulator_reports``,
``notice_templates``, ``incident_notices``, ``escalation_contacts``,
``incident_escalations``).

No column holds a customer value. Customer ids are the directory's ids as the rest of the
product shows them (``customers.external_id``, an opaque business key); names and contact
details stay in the customers module's encrypted store. Note bodies are encrypted (a note
is free text a person types, so it may name a customer); attachments are held documents
of the exposure module's store (encrypted per document).

``device_id`` is a plain column, not a foreign key: an incident is history and outlives
the device it is about (as the exposure ledger does).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from spillguard.core.db import Base, UTCDateTime, utcnow
from spillguard.core.models import BigId

MAX_CUSTOMER_ID = 200  # customers.models.MAX_EXTERNAL_ID


class IncidentType(StrEnum):
    LOST_DEVICE = "lost-device"
    INSIDER_LEAK = "insider-leak"
    HEADER_LEAK = "header-leak"
    VULNERABILITY_REPORT = "vulnerability-report"
    OTHER = "other"


class Severity(StrEnum):
    """How bad an incident is, least first (the declaration order is the rank)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class IncidentStatus(StrEnum):
    """The workflow: open → contained → assessed → notifying → closed."""

    OPEN = "open"
    CONTAINED = "contained"
    ASSESSED = "assessed"
    NOTIFYING = "notifying"
    CLOSED = "closed"


class Incident(Base):
    """A breach or suspected breach being handled: type, severity, owner, where it is in
    the workflow, and when the organisation became aware of it (the breach clock's start).
    """

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_device_status", "device_id", "status"),
        Index("ix_incidents_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.OPEN.value)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    device_id: Mapped[int | None] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    opened_by_label: Mapped[str | None] = mapped_column(String(320))
    # When the organisation became aware (GDPR Art 33(1)): the breach clock starts here.
    aware_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    contained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notifying_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the regulator was notified, and why late if after the deadline (Art 33(1)).
    regulator_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late_reason: Mapped[str | None] = mapped_column(Text)
    # An insider leak's scope: {"customer_ids": [...]} and/or {"delivery_ids": [...]}.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IncidentTask(Base):
    """Something to do for an incident, for someone, by a time."""

    __tablename__ = "incident_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by_label: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_label: Mapped[str | None] = mapped_column(String(320))


class IncidentNote(Base):
    """A note on an incident; the body is AES-256-GCM encrypted
    (``incidents.services.NoteCipher``)."""

    __tablename__ = "incident_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_label: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IncidentAttachment(Base):
    """A file attached to an incident: a held document of the exposure store (encrypted
    under a key of its own)."""

    __tablename__ = "incident_attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("exposure_held_documents.id", ondelete="RESTRICT"), index=True
    )
    media_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    # The file name again, sealed with the notes key, so listing needs no document read.
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by_label: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineKind(StrEnum):
    """What a timeline entry records."""

    OPENED = "opened"
    STATUS = "status"
    ACTION = "action"  # who did what (edits, owner, severity, awareness time ...)
    TASK = "task"
    NOTE = "note"
    ATTACHMENT = "attachment"
    COMMAND = "command"  # a device command queued, acknowledged, failed
    COMPLIANCE = "compliance"  # the device's compliance verdict changed
    LEDGER = "ledger"  # exposure facts (assessments)
    NOTIFICATION = "notification"  # notices, reminders, regulator report, escalation
    REGULATOR = "regulator"


class TimelineEntry(Base):
    """One event of an incident's history. Rows are only ever inserted (see
    ``incidents.timeline``); the summary is plain words and never a customer value."""

    __tablename__ = "incident_timeline"
    __table_args__ = (Index("ix_incident_timeline_incident_at", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    summary: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ExposureAssessment(Base):
    """A versioned snapshot of an incident's exposure: the facts gathered (documents,
    categories, protections), the distinct customers affected (directory ids), and the
    risk with its reasons. Re-computing adds a version; versions are never changed."""

    __tablename__ = "incident_assessments"
    __table_args__ = (UniqueConstraint("incident_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    computed_by_label: Mapped[str | None] = mapped_column(String(320))
    risk: Mapped[str] = mapped_column(String(8))
    notify_regulator: Mapped[bool] = mapped_column(Boolean)
    notify_individuals: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    customer_count: Mapped[int] = mapped_column(Integer, default=0)
    # Loaded only when asked for (100,000 ids are a large value to read with every row).
    customer_ids: Mapped[list[str]] = mapped_column(JSON, default=list, deferred=True)


class ClockReminder(Base):
    """A breach-clock reminder that was sent (once per incident and point)."""

    __tablename__ = "incident_clock_reminders"
    __table_args__ = (UniqueConstraint("incident_id", "hours_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    hours_before: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recipients: Mapped[int] = mapped_column(Integer, default=0)


# --- the response: regulator report, notices, escalation (services: part B) -------------


class RegulatorReportStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    FOLLOW_UP = "follow-up"


class RegulatorReport(Base):
    """One version of the report to the regulator (the ICO form's fields in ``fields``)."""

    __tablename__ = "incident_regulator_reports"
    __table_args__ = (UniqueConstraint("incident_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RegulatorReportStatus.DRAFT.value)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_label: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NoticeChannel(StrEnum):
    EMAIL = "email"
    LETTER = "letter"
    MANUAL = "manual"


class NoticeTemplate(Base):
    """An editable customer-notice template (Art 34(2) content) for e-mail or letter."""

    __tablename__ = "notice_templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_label: Mapped[str | None] = mapped_column(String(320))


class NoticeStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    # The final "." of DATA may have left: the server may hold the message.
    HANDED_OVER = "handed-over"
    SENT = "sent"
    # The sender stopped (or got no answer) after handing the message over: the dpo checks
    # the mail server's log for the Message-ID, then records delivered or resends.
    UNKNOWN = "unknown"
    BOUNCED = "bounced"
    FAILED = "failed"
    MANUAL = "manual"


class IncidentNotice(Base):
    """The notice to one affected customer, in the durable outbox. One row per incident
    and customer (UNIQUE): a customer is never notified twice for one incident."""

    __tablename__ = "incident_notices"
    __table_args__ = (
        UniqueConstraint("incident_id", "customer_id"),
        Index("ix_incident_notices_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(MAX_CUSTOMER_ID))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=NoticeStatus.QUEUED.value)
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("notice_templates.id", ondelete="SET NULL")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A sender's claim on the row while it sends (status "sending").
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EscalationContact(Base):
    """A person on the escalation roster, told when an incident reaches ``min_severity``."""

    __tablename__ = "escalation_contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    role_title: Mapped[str] = mapped_column(String(100))
    min_severity: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IncidentEscalation(Base):
    """A roster contact told about an incident, and their acknowledgement (the ack link's
    secret is stored as a keyed digest only)."""

    __tablename__ = "incident_escalations"
    __table_args__ = (UniqueConstraint("incident_id", "contact_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("escalation_contacts.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ack_token_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
