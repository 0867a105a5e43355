"""Insider-risk alerts: raising them (detectors, honeytokens) and triaging them (people).

:func:`raise_alert` is what every detector calls, in the caller's transaction: an alert is
identified by its ``dedup_key`` (detector, actor, day...), so a detector that sees more of
the same behaviour updates its alert (``last_seen_at`` moves on, the highest score and
severity are kept, the evidence is merged, new events are linked) instead of raising
another. A new alert is an audit event (``audit:alert:raised``); an update is one only
when it raises the severity (``audit:alert:updated``), so a long theft streamed in many
batches does not write an audit event per batch.

:class:`AlertService` is the triage side, authorisation first:

- list (filters: status, detector, severity, actor; the most severe, highest scored and
  most recent first) and read one alert with a page of its evidence events;
- dismiss with a reason (required);
- escalate: open an ``insider-leak`` incident whose exposure scope is the customer ids
  the alert's events touched (those in the customer directory), link the alert to it and
  put the escalation on the incident's timeline; or attach the alert to an existing
  incident (its scope grows by the alert's customers).

Triage rules: an ``open`` alert may be dismissed or escalated; a ``dismissed`` alert may
still be escalated (a second look); an ``escalated`` alert is final.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spillguard.audit.models import (
    AccessEvent,
    AccessEventCustomer,
    ActorDay,
    Alert,
    AlertEvent,
    StaffMember,
)
from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.customers.honeytokens import all_honeytoken_ids
from spillguard.customers.models import Customer
from spillguard.incidents import timeline
from spillguard.incidents.errors import IncidentClosed
from spillguard.incidents.models import (
    Incident,
    IncidentStatus,
    IncidentType,
    Severity,
    TimelineKind,
)

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
DETECTOR_PRINCIPAL = "insider detectors"
MAX_TITLE = 300
MAX_DEDUP_KEY = 300
MAX_REASON = 2000
# Customer ids shown per evidence event in an alert's detail (the count is always given).
EVENT_CUSTOMER_SAMPLE = 50


class AlertStatus(StrEnum):
    OPEN = "open"
    DISMISSED = "dismissed"
    ESCALATED = "escalated"


class AlertAuditAction(StrEnum):
    """Audit event names of the alerts (``domain:subject:action``)."""

    RAISED = "audit:alert:raised"
    UPDATED = "audit:alert:updated"
    DISMISSED = "audit:alert:dismissed"
    ESCALATED = "audit:alert:escalated"


class AlertNotFound(NotFound):
    slug = "alert-not-found"
    title = "Alert not found"


class AlreadyTriaged(Conflict):
    """The alert's triage is final (escalated) or already what was asked (dismissed)."""

    slug = "alert-already-triaged"
    title = "Alert already triaged"


def dedup_key_for(detector: str, actor: str | None, scope: str) -> str:
    """``detector:actor:scope``; an actor too long for the key is replaced by its digest."""
    who = actor or "-"
    key = f"{detector}:{who}:{scope}"
    if len(key) > MAX_DEDUP_KEY:
        who = "sha256-" + hashlib.sha256(who.encode()).hexdigest()
        key = f"{detector}:{who}:{scope}"[:MAX_DEDUP_KEY]
    return key


def _detector_principal() -> Principal:
    return Principal.system(DETECTOR_PRINCIPAL)


def _link_events(session: Session, alert_id: int, event_ids: Iterable[int]) -> int:
    """Link events to the alert (those not linked yet); returns how many were new."""
    wanted = sorted(set(event_ids))
    if not wanted:
        return 0
    known: set[int] = set()
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        known.update(
            session.scalars(
                select(AlertEvent.event_id).where(
                    AlertEvent.alert_id == alert_id, AlertEvent.event_id.in_(chunk)
                )
            )
        )
    new = [e for e in wanted if e not in known]
    if new:
        session.execute(insert(AlertEvent), [{"alert_id": alert_id, "event_id": e} for e in new])
    return len(new)


def raise_alert(
    session: Session,
    *,
    detector: str,
    dedup_key: str,
    severity: str,
    score: float,
    title: str,
    evidence: dict[str, Any],
    actor: str | None = None,
    channel: str | None = None,
    event_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> Alert:
    """Create the alert named by ``dedup_key``, or update it if it exists.

    An update moves ``last_seen_at`` to ``now``, keeps the higher of the two scores and
    severities, merges the evidence (the newer figures win) and links the new events.
    The status is never changed here: a dismissed alert that sees more of the same stays
    dismissed (its evidence still grows). Runs in the caller's transaction; the audit
    event is recorded as the system principal "insider detectors".
    """
    if severity not in SEVERITY_RANK:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    if not dedup_key or len(dedup_key) > MAX_DEDUP_KEY:
        raise ValueError(f"dedup_key must be 1 to {MAX_DEDUP_KEY} characters")
    at = now or utcnow()
    ids = list(event_ids)
    alert = session.scalar(select(Alert).where(Alert.dedup_key == dedup_key))
    if alert is None:
        candidate = Alert(
            detector=detector,
            dedup_key=dedup_key,
            actor=actor,
            channel=channel,
            severity=severity,
            score=float(score),
            status=AlertStatus.OPEN.value,
            title=title[:MAX_TITLE],
            evidence=dict(evidence),
            first_seen_at=at,
            last_seen_at=at,
            created_at=at,
        )
        try:
            # A savepoint: another transaction may raise the same alert at the same moment.
            with session.begin_nested():
                session.add(candidate)
                session.flush()
        except IntegrityError:
            alert = session.scalar(select(Alert).where(Alert.dedup_key == dedup_key))
            if alert is None:
                raise
        else:
            _link_events(session, candidate.id, ids)
            record_event(
                session,
                _detector_principal(),
                AlertAuditAction.RAISED,
                object_type="alert",
                object_id=candidate.id,
                details={
                    "detector": detector,
                    "severity": severity,
                    "score": round(float(score), 2),
                    "actor": actor,
                    "channel": channel,
                    "events": len(set(ids)),
                },
            )
            return candidate
    raised = SEVERITY_RANK[severity] > SEVERITY_RANK.get(alert.severity, 0)
    before = alert.severity
    if raised:
        alert.severity = severity
    if float(score) >= alert.score:
        alert.score = float(score)
        alert.title = title[:MAX_TITLE]
    alert.evidence = {**(alert.evidence or {}), **evidence}
    if at > alert.last_seen_at:
        alert.last_seen_at = at
    if channel and not alert.channel:
        alert.channel = channel
    added = _link_events(session, alert.id, ids)
    session.flush()
    if raised:
        record_event(
            session,
            _detector_principal(),
            AlertAuditAction.UPDATED,
            object_type="alert",
            object_id=alert.id,
            details={
                "detector": alert.detector,
                "severity": {"from": before, "to": severity},
                "score": round(alert.score, 2),
                "new_events": added,
            },
        )
    return alert


# --- triage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertFilter:
    """Filters of the alerts queue; every field is optional."""

    status: str | None = None
    detector: str | None = None
    severity: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class EvidenceEvent:
    """An access event behind an alert, as the alert's detail shows it."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    system: str
    record_type: str | None
    records: int
    source_address: str | None
    customers: int
    customer_ids: list[str]


@dataclass(frozen=True)
class AlertDetail:
    alert: Alert
    events: list[EvidenceEvent]
    events_total: int


@dataclass(frozen=True)
class ActivityDay:
    """One day of an actor's activity and the band their own baseline allowed that day."""

    day: date
    events: int
    records: int
    exported: int
    after_hours: int
    off_duty: int
    baseline: float | None  # median records of the prior active days (None: too little history)
    threshold: float | None  # the volume detector's threshold that day


@dataclass(frozen=True)
class ActorActivity:
    actor: str
    team: str | None
    job_role: str | None
    leaving_on: date | None
    days: list[ActivityDay]
    alerts: list[Alert]


def _severity_order() -> Any:
    return case(
        {name: rank for rank, name in enumerate(SEVERITIES)}, value=Alert.severity, else_=-1
    )


class AlertService:
    """The alerts queue and its triage, for the roles holding alerts:view / alerts:triage
    (security, dpo; auditors read). Every triage action is audited and, when it concerns
    an incident, put on its timeline."""

    def __init__(
        self,
        session: Session,
        principal: Principal,
        settings: Settings | None = None,
        keys: KeyRing | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.keys = keys

    # --- reading --------------------------------------------------------------------

    def _get(self, alert_id: int, *, for_update: bool = False) -> Alert:
        query = select(Alert).where(Alert.id == alert_id)
        if for_update:
            query = query.with_for_update()
        alert = self.session.scalar(query)
        if alert is None:
            raise AlertNotFound(f"No alert with id {alert_id}.")
        return alert

    def list(
        self, flt: AlertFilter, *, limit: int, offset: int
    ) -> tuple[builtins.list[Alert], int]:
        """A page of alerts, the most severe first, then the highest score, then the
        most recently seen."""
        self.principal.require(Permission.ALERTS_VIEW)
        if flt.status is not None and flt.status not in set(AlertStatus):
            raise InvalidInput(f"status must be one of {', '.join(AlertStatus)}.", field="status")
        if flt.severity is not None and flt.severity not in SEVERITY_RANK:
            raise InvalidInput(
                f"severity must be one of {', '.join(SEVERITIES)}.", field="severity"
            )
        base = select(Alert)
        if flt.status:
            base = base.where(Alert.status == flt.status)
        if flt.detector:
            base = base.where(Alert.detector == flt.detector)
        if flt.severity:
            base = base.where(Alert.severity == flt.severity)
        if flt.actor:
            base = base.where(Alert.actor == flt.actor)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(
                _severity_order().desc(),
                Alert.score.desc(),
                Alert.last_seen_at.desc(),
                Alert.id.desc(),
            )
            .limit(limit)
            .offset(offset)
        )
        return list(rows), total

    def get(self, alert_id: int, *, limit: int = 50, offset: int = 0) -> AlertDetail:
        """An alert with a page of its evidence events (oldest first)."""
        self.principal.require(Permission.ALERTS_VIEW)
        alert = self._get(alert_id)
        total = (
            self.session.scalar(
                select(func.count()).select_from(AlertEvent).where(AlertEvent.alert_id == alert_id)
            )
            or 0
        )
        rows = list(
            self.session.scalars(
                select(AccessEvent)
                .join(AlertEvent, AlertEvent.event_id == AccessEvent.id)
                .where(AlertEvent.alert_id == alert_id)
                .order_by(AccessEvent.occurred_at, AccessEvent.id)
                .limit(limit)
                .offset(offset)
            )
        )
        ids = [r.id for r in rows]
        refs: dict[int, builtins.list[str]] = {i: [] for i in ids}
        counts: dict[int, int] = {i: 0 for i in ids}
        if ids:
            for event_id, n in self.session.execute(
                select(AccessEventCustomer.event_id, func.count())
                .where(AccessEventCustomer.event_id.in_(ids))
                .group_by(AccessEventCustomer.event_id)
            ):
                counts[event_id] = n
            ranked = (
                select(
                    AccessEventCustomer.event_id,
                    AccessEventCustomer.customer_ref,
                    func.row_number()
                    .over(
                        partition_by=AccessEventCustomer.event_id,
                        order_by=AccessEventCustomer.customer_ref,
                    )
                    .label("n"),
                )
                .where(AccessEventCustomer.event_id.in_(ids))
                .subquery()
            )
            for event_id, ref in self.session.execute(
                select(ranked.c.event_id, ranked.c.customer_ref).where(
                    ranked.c.n <= EVENT_CUSTOMER_SAMPLE
                )
            ):
                refs[event_id].append(ref)
        events = [
            EvidenceEvent(
                id=r.id,
                occurred_at=r.occurred_at,
                actor=r.actor,
                action=r.action,
                system=r.system,
                record_type=r.record_type,
                records=r.records,
                source_address=r.source_address,
                customers=counts[r.id],
                customer_ids=sorted(refs[r.id]),
            )
            for r in rows
        ]
        return AlertDetail(alert, events, total)

    def detectors(self) -> builtins.list[str]:
        """The detectors that raised at least one alert (for the queue's filter)."""
        self.principal.require(Permission.ALERTS_VIEW)
        return list(
            self.session.scalars(select(Alert.detector).distinct().order_by(Alert.detector))
        )

    def activity(self, actor: str, days: int = 30, now: datetime | None = None) -> ActorActivity:
        """An actor's daily counters over the last ``days`` days, each with the band the
        volume detector allowed that day, their HR data and their alerts."""
        from spillguard.audit.detect import DayCounts, Thresholds, volume_band

        self.principal.require(Permission.ACCESS_VIEW)
        if not 1 <= days <= 366:
            raise InvalidInput("days must be between 1 and 366.", field="days")
        if not actor or len(actor) > 320:
            raise InvalidInput("actor must be 1 to 320 characters.", field="actor")
        thresholds = Thresholds.from_settings(self.settings or Settings())
        today = (now or utcnow()).date()
        first = today - timedelta(days=days - 1)
        lookback = first - timedelta(days=thresholds.baseline_lookback_days)
        rows = list(
            self.session.scalars(
                select(ActorDay)
                .where(ActorDay.actor == actor, ActorDay.day >= lookback)
                .order_by(ActorDay.day)
            )
        )
        history = [
            DayCounts(r.day, r.events, r.records, r.exported, r.after_hours, r.off_duty)
            for r in rows
        ]
        by_day = {h.day: h for h in history}
        out: builtins.list[ActivityDay] = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            counts = by_day.get(day) or DayCounts(day, 0, 0, 0, 0, 0)
            band = volume_band([h for h in history if h.day < day], day, thresholds)
            out.append(
                ActivityDay(
                    day=day,
                    events=counts.events,
                    records=counts.records,
                    exported=counts.exported,
                    after_hours=counts.after_hours,
                    off_duty=counts.off_duty,
                    baseline=band.median if band else None,
                    threshold=band.threshold if band else None,
                )
            )
        staff = self.session.scalar(select(StaffMember).where(StaffMember.actor == actor))
        alerts = list(
            self.session.scalars(
                select(Alert)
                .where(Alert.actor == actor)
                .order_by(Alert.last_seen_at.desc())
                .limit(100)
            )
        )
        return ActorActivity(
            actor=actor,
            team=staff.team if staff else None,
            job_role=staff.job_role if staff else None,
            leaving_on=staff.leaving_on if staff else None,
            days=out,
            alerts=alerts,
        )

    # --- triage ---------------------------------------------------------------------

    def dismiss(self, alert_id: int, reason: str) -> Alert:
        """Dismiss an open alert; the reason is required and kept with it."""
        self.principal.require(Permission.ALERTS_TRIAGE)
        text = (reason or "").strip()
        if not text:
            raise InvalidInput("Say why the alert is dismissed.", field="reason")
        if len(text) > MAX_REASON:
            raise InvalidInput(
                f"The reason may be at most {MAX_REASON} characters.", field="reason"
            )
        alert = self._get(alert_id, for_update=True)
        if alert.status != AlertStatus.OPEN.value:
            raise AlreadyTriaged(
                f"Alert {alert_id} is already {alert.status}.", alert_status=alert.status
            )
        alert.status = AlertStatus.DISMISSED.value
        alert.dismiss_reason = text
        alert.triaged_at = utcnow()
        alert.triaged_by_label = self.principal.label
        alert.acknowledged = True
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            AlertAuditAction.DISMISSED,
            object_type="alert",
            object_id=alert.id,
            details={"detector": alert.detector, "reason": text[:500]},
        )
        return alert

    def alert_customer_ids(self, alert_id: int) -> tuple[builtins.list[str], int]:
        """The distinct customer ids the alert's events touched, and how many of its events
        reported only a count (a search or export without ids)."""
        ids = list(
            self.session.scalars(
                select(AccessEventCustomer.customer_ref)
                .join(AlertEvent, AlertEvent.event_id == AccessEventCustomer.event_id)
                .where(AlertEvent.alert_id == alert_id)
                .distinct()
            )
        )
        with_ids = select(AccessEventCustomer.event_id).distinct()
        uncounted = (
            self.session.scalar(
                select(func.count())
                .select_from(AlertEvent)
                .join(AccessEvent, AccessEvent.id == AlertEvent.event_id)
                .where(
                    AlertEvent.alert_id == alert_id,
                    AccessEvent.records > 0,
                    AccessEvent.id.not_in(with_ids),
                )
            )
            or 0
        )
        return sorted(ids), uncounted

    def _in_directory(self, ids: Sequence[str]) -> builtins.list[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 5000):
            chunk = list(ids[start : start + 5000])
            found.update(
                self.session.scalars(
                    select(Customer.external_id).where(Customer.external_id.in_(chunk))
                )
            )
        return sorted(found)

    def escalate(self, alert_id: int, incident_id: int | None = None) -> Incident:
        """Escalate to a new ``insider-leak`` incident (or attach to ``incident_id``) whose
        exposure scope holds the customer ids of the alert's events; returns the incident.
        """
        from spillguard.incidents.services import IncidentService

        self.principal.require(Permission.ALERTS_TRIAGE)
        self.principal.require(Permission.INCIDENTS_MANAGE)
        if self.settings is None:
            raise RuntimeError("AlertService needs the settings to escalate")
        alert = self._get(alert_id, for_update=True)
        if alert.status == AlertStatus.ESCALATED.value:
            raise AlreadyTriaged(
                f"Alert {alert_id} is already escalated to incident {alert.incident_id}.",
                alert_status=alert.status,
                incident_id=alert.incident_id,
            )
        incidents = IncidentService(self.session, self.principal, self.settings, self.keys)
        touched, uncounted = self.alert_customer_ids(alert_id)
        known = self._in_directory(touched)
        unknown = len(touched) - len(known)
        if incident_id is None:
            incident = incidents.create(
                type=IncidentType.INSIDER_LEAK,
                title=f"Insider leak: {alert.title}"[:200],
                severity=Severity(alert.severity),
                description=(
                    f"Escalated from insider-risk alert {alert.id} ({alert.detector}) "
                    f"by {self.principal.label}."
                ),
            )
            scope = known
            existing_deliveries: builtins.list[int] = []
        else:
            incident = incidents.get(incident_id)
            if incident.status == IncidentStatus.CLOSED.value:
                raise IncidentClosed(
                    f"Incident {incident_id} is closed; reopen it (an audited action) to "
                    "attach an alert to it."
                )
            current = incident.scope or {}
            scope = sorted(set(current.get("customer_ids", [])) | set(known))
            existing_deliveries = list(current.get("delivery_ids", []))
        if scope or existing_deliveries:
            incidents.set_scope(
                incident.id,
                customer_ids=scope or None,
                delivery_ids=existing_deliveries or None,
            )
        now = utcnow()
        # Every reader of the incident reads this entry: honeytokens are planted, not
        # customers, and how many of them a scope holds is for honeytokens:manage only.
        planted = len(all_honeytoken_ids(self.session).intersection(known)) if known else 0
        people = len(known) - planted
        words = [
            f"Insider-risk alert {alert.id} ({alert.detector}, {alert.severity}) escalated "
            f"by {self.principal.label}: {people} customer(s) of its events in scope"
            + (" and honeytoken customers (planted, never notified)" if planted else "")
        ]
        if unknown:
            words.append(f"{unknown} customer id(s) not in the directory")
        if uncounted:
            words.append(f"{uncounted} event(s) reported only a count, without customer ids")
        timeline.add(
            self.session,
            incident.id,
            TimelineKind.ACTION,
            "; ".join(words) + ".",
            actor_label=self.principal.label,
            data={
                "alert_id": alert.id,
                "detector": alert.detector,
                "customers": people,
                "honeytokens": planted > 0,
                "not_in_directory": unknown,
                "events_without_ids": uncounted,
            },
            at=now,
        )
        alert.status = AlertStatus.ESCALATED.value
        alert.incident_id = incident.id
        alert.triaged_at = now
        alert.triaged_by_label = self.principal.label
        alert.acknowledged = True
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            AlertAuditAction.ESCALATED,
            object_type="alert",
            object_id=alert.id,
            details={
                "incident_id": incident.id,
                "new_incident": incident_id is None,
                "customers": people,
                "honeytokens": planted > 0,
                "not_in_directory": unknown,
            },
        )
        return incident
