"""Tables of the tamper-evident audit log.

- ``audit_log_leaves``: one row per log entry, at a dense ``position`` 0..n-1, naming the
  audit event it holds and the RFC 9162 leaf hash of that event's canonical bytes.
- ``audit_log_nodes``: the hash of every completed perfect subtree above the leaves
  (level >= 1; level 0 is the leaf table), so any proof takes a few indexed reads.
- ``audit_log_state``: one row, the log's size and compact-range frontier (the right edge
  of the tree) and when the sequencer last ran; its conditional update is what makes two
  racing sequencers unable to both append.
- ``audit_checkpoints``: signed tree heads (size, root hash, time, Ed25519 signature), and
  when each was mailed to the log's e-mail witnesses.

Access-log ingestion and insider-risk detection (issue 7 §2-§4):

- ``access_sources``: each system that sends access events (CRM, billing, call centre, a
  syslog sender), with counts of accepted, duplicate and rejected events.
- ``access_rejects``: every refused event: when, from which source and channel, why, and a
  digest of the raw item (never its content, which may quote customer data).
- ``access_events``: one ingested access (actor, action, system, record type, source time,
  records touched); each also becomes an ``audit_events`` row, and so a Merkle log entry.
- ``access_event_customers``: the customer ids (the source system's own ids) an event touched.
- ``access_tail_positions``: how far ``spillguard audit ingest`` has read a file, committed
  with the events it read, so a killed tailer resumes without loss or repetition.
- ``audit_staff``: HR data about the actors (team, job role, duties, leaving date, hours).
- ``access_actor_days``: per actor and day, counters the detectors compare with baselines.
- ``insider_alerts`` / ``insider_alert_events``: what a detector raised, its evidence and
  score, its triage; the access events behind it.

Rows are only ever inserted (the state row is updated in place); nothing here is deleted
by the application.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
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

STATE_ROW = 1


class LogLeaf(Base):
    """Entry ``position`` of the log: the event it holds and its leaf hash."""

    __tablename__ = "audit_log_leaves"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # No foreign key (migration 0009): checking and locking the event of each appended
    # leaf cost PostgreSQL more than a sixth of the append. Triggers on audit_events refuse
    # to delete a logged event or change its id instead; an attacker who gets round them
    # (drops the triggers) is caught by `audit verify`.
    event_id: Mapped[int] = mapped_column(BigId, unique=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sequenced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LogNode(Base):
    """The hash of the perfect subtree of leaves ``[index << level, (index + 1) << level)``."""

    __tablename__ = "audit_log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogState(Base):
    """The single row describing the log as the last sequencing run left it."""

    __tablename__ = "audit_log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # The frontier hashes (one per set bit of size, largest subtree first), concatenated.
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    # The largest event id in the log: events above it are new to the sequencer.
    max_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Checkpoint(Base):
    """A signed tree head: the log had ``tree_size`` entries with root ``root_hash``."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    origin: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    # When it went out to the e-mail witnesses (audit.witness); null: not yet. Not signed.
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# --- access-log ingestion (issue 7 §2) --------------------------------------------------


class AccessSource(Base):
    """A system that sends access events, named by its sender (``crm``, ``billing``...).

    The counters let an operator see at a glance that a source is sending and how much of
    what it sends is refused (the rejects themselves are in ``access_rejects``).
    """

    __tablename__ = "access_sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reject_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessReject(Base):
    """An access event that was refused, kept so refusals are counted and visible.

    ``item_digest`` is the SHA-256 (hex) of the raw item as received, so the sender can find
    it in its own records; the raw item is not kept (it may quote customer data).
    """

    __tablename__ = "access_rejects"
    __table_args__ = (Index("ix_access_rejects_source", "source_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("access_sources.id", ondelete="RESTRICT")
    )
    channel: Mapped[str] = mapped_column(String(16))  # rest | file | syslog
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    position: Mapped[str | None] = mapped_column(String(100))  # item index, line number...
    reason: Mapped[str] = mapped_column(String(500))
    item_digest: Mapped[str | None] = mapped_column(String(64))


class AccessEvent(Base):
    """One access to customer records in another system, as that system reported it.

    ``occurred_at`` is the source's time (may arrive out of order); ``received_at`` ours.
    ``records`` is how many records the access touched: the number of customer ids, or
    the result count a search or export reported. A query is kept only as a keyed digest
    (HMAC-SHA256), so repeated queries can be compared without storing what was searched.
    Each event is also an ``audit_events`` row (``audit_event_id``) and so in the Merkle log.
    """

    __tablename__ = "access_events"
    __table_args__ = (
        UniqueConstraint("source_id", "source_event_id", name="uq_access_events_source_event"),
        Index("ix_access_events_actor", "actor", "occurred_at"),
        Index("ix_access_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("access_sources.id", ondelete="RESTRICT")
    )
    source_event_id: Mapped[str] = mapped_column(String(200))
    audit_event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("audit_events.id", ondelete="RESTRICT"), unique=True
    )
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(16))  # view | search | export | print | update
    system: Mapped[str] = mapped_column(String(100))
    record_type: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_address: Mapped[str | None] = mapped_column(String(64))
    query_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    records: Mapped[int] = mapped_column(Integer, default=0)


class AccessEventCustomer(Base):
    """A customer (by the source system's own customer id) that an access event touched."""

    __tablename__ = "access_event_customers"
    __table_args__ = (Index("ix_access_event_customers_customer", "customer_ref"),)

    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("access_events.id", ondelete="CASCADE"), primary_key=True
    )
    customer_ref: Mapped[str] = mapped_column(String(200), primary_key=True)


class AccessTailPosition(Base):
    """How far ``spillguard audit ingest`` has read a file for a source.

    Updated in the same transaction as the events read, so after a kill the tailer resumes
    at the first line not committed: nothing acknowledged is lost, nothing is read twice.
    ``file_key`` identifies the file's content (digest of its first line) so a rotated or
    replaced file is read from its start.
    """

    __tablename__ = "access_tail_positions"
    __table_args__ = (UniqueConstraint("source_id", "path", name="uq_access_tail_positions"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("access_sources.id", ondelete="RESTRICT")
    )
    path: Mapped[str] = mapped_column(String(1000))
    file_key: Mapped[str] = mapped_column(String(64))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- insider-risk detection (issue 7 §3) -------------------------------------------------


class StaffMember(Base):
    """What HR knows about an actor of the access logs: team, job role, duties (the record
    types their work needs), working hours, and the date they leave, if set."""

    __tablename__ = "audit_staff"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100), index=True)
    job_role: Mapped[str | None] = mapped_column(String(100))
    duties: Mapped[list[str]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    work_start: Mapped[str] = mapped_column(String(5), default="07:00")  # HH:MM local
    work_end: Mapped[str] = mapped_column(String(5), default="19:00")
    work_days: Mapped[str] = mapped_column(String(16), default="12345")  # ISO weekdays
    leaving_on: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActorDay(Base):
    """One actor's activity on one day (in the actor's time zone): the counters the
    detectors compare with the actor's own baseline and with their team's."""

    __tablename__ = "access_actor_days"
    __table_args__ = (Index("ix_access_actor_days_day", "day"),)

    actor: Mapped[str] = mapped_column(String(320), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    events: Mapped[int] = mapped_column(Integer, default=0)
    records: Mapped[int] = mapped_column(Integer, default=0)
    exported: Mapped[int] = mapped_column(Integer, default=0)  # records exported or printed
    after_hours: Mapped[int] = mapped_column(Integer, default=0)  # records outside hours
    off_duty: Mapped[int] = mapped_column(Integer, default=0)  # records outside duties


class Alert(Base):
    """What a detector (or a honeytoken) raised: who or which channel, why, how sure.

    ``dedup_key`` (detector, actor, day...) makes a detector that sees more of the same
    behaviour update its open alert instead of raising another. ``evidence`` holds the
    explanation: the baseline, the threshold, the observed figure, sample event ids.
    Triage: ``dismissed`` with a reason, or ``escalated`` to an incident.
    """

    __tablename__ = "insider_alerts"
    __table_args__ = (Index("ix_insider_alerts_status", "status", "last_seen_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    detector: Mapped[str] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    actor: Mapped[str | None] = mapped_column(String(320), index=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))  # low | medium | high | critical
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="open")
    title: Mapped[str] = mapped_column(String(300))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    triaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    triaged_by_label: Mapped[str | None] = mapped_column(String(320))
    dismiss_reason: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("incidents.id", ondelete="RESTRICT")
    )
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)


class AlertEvent(Base):
    """An access event that is evidence for an alert."""

    __tablename__ = "insider_alert_events"
    __table_args__ = (Index("ix_insider_alert_events_event", "event_id"),)

    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("insider_alerts.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("access_events.id", ondelete="RESTRICT"), primary_key=True
    )
