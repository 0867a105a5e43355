"""Alerts on SQLite and PostgreSQL: raise_alert creates or updates by its key; the
streaming detectors run inside ingestion and raise alerts with their events; triage
(dismiss with a reason, escalate to an insider-leak incident scoped to the customers the
events touched) is checked, audited and on the incident's timeline."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.alerts import (
    AlertAuditAction,
    AlertFilter,
    AlertNotFound,
    AlertService,
    AlreadyTriaged,
    raise_alert,
)
from spillguard.audit.models import AccessEvent, ActorDay, Alert, AlertEvent
from spillguard.core.errors import InvalidInput, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent, User
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.incidents.errors import IncidentClosed
from spillguard.incidents.models import Incident, IncidentStatus, TimelineEntry
from spillguard.incidents.services import IncidentService
from tests.factories.access import AccessFactory, access, actor_name, at
from tests.factories.users import UserFactory

TODAY = date(2026, 11, 17)  # a Tuesday; Europe/London is on UTC
NOW = at(TODAY, 16)


@pytest.fixture
def factory(db: Session, settings: Settings, keys: KeyRing) -> AccessFactory:
    return AccessFactory(db, settings, keys)


def as_user(user: User) -> Principal:
    return Principal("user", user.id, user.email, Role(user.role))


def audit_actions(db: Session, prefix: str = "audit:alert:") -> list[str]:
    return list(
        db.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.startswith(prefix))
            .order_by(AuditEvent.id)
        )
    )


def linked(db: Session, alert: Alert) -> int:
    return (
        db.scalar(
            select(func.count()).select_from(AlertEvent).where(AlertEvent.alert_id == alert.id)
        )
        or 0
    )


def test_raise_alert_creates_then_updates_by_its_key(db: Session, factory: AccessFactory) -> None:
    actor = actor_name()
    result = factory.ingest([access(actor, at(TODAY, 10)) for _ in range(3)], NOW)
    ids = [e.id for e in result.events]
    first = raise_alert(
        db,
        detector="volume",
        dedup_key=f"volume:{actor}:{TODAY}",
        severity="medium",
        score=55.0,
        title="first",
        evidence={"observed": 300, "threshold": 200},
        actor=actor,
        event_ids=ids[:2],
        now=NOW,
    )
    later = NOW + timedelta(minutes=5)
    second = raise_alert(
        db,
        detector="volume",
        dedup_key=f"volume:{actor}:{TODAY}",
        severity="low",
        score=40.0,
        title="second",
        evidence={"observed": 320, "extra": True},
        actor=actor,
        event_ids=ids,
        now=later,
    )
    assert second.id == first.id
    assert (second.severity, second.score, second.title) == ("medium", 55.0, "first")
    assert second.evidence == {"observed": 320, "threshold": 200, "extra": True}
    assert second.last_seen_at == later and second.first_seen_at == NOW
    assert linked(db, second) == 3
    assert audit_actions(db) == [AlertAuditAction.RAISED.value]  # no audit event for "low"
    raise_alert(
        db,
        detector="volume",
        dedup_key=f"volume:{actor}:{TODAY}",
        severity="high",
        score=80.0,
        title="third",
        evidence={},
        actor=actor,
        now=later,
    )
    assert (second.severity, second.score, second.title) == ("high", 80.0, "third")
    assert audit_actions(db) == [AlertAuditAction.RAISED.value, AlertAuditAction.UPDATED.value]
    raised = db.scalar(select(AuditEvent).where(AuditEvent.action == AlertAuditAction.RAISED.value))
    assert raised is not None and raised.actor_label == "insider detectors"
    assert db.scalar(select(func.count()).select_from(Alert)) == 1
    with pytest.raises(ValueError):
        raise_alert(
            db, detector="x", dedup_key="k", severity="urgent", score=1, title="t", evidence={}
        )


def test_ingestion_counts_days_and_raises_a_volume_alert_with_its_events(
    db: Session, factory: AccessFactory
) -> None:
    thief, colleague = actor_name(), actor_name()
    factory.baseline(thief, TODAY - timedelta(days=1), [40] * 20)
    factory.baseline(colleague, TODAY - timedelta(days=1), [40] * 20)
    # 150 records: below the threshold (200), no alert yet
    early = [
        access(thief, at(TODAY, 9, m), customer_ids=[f"A{m}-{i}" for i in range(10)])
        for m in range(15)
    ]
    ordinary = [access(colleague, at(TODAY, 10), customer_ids=["C9"]) for _ in range(30)]
    factory.ingest(early + ordinary, at(TODAY, 10, 30))
    assert db.scalars(select(Alert)).all() == []
    day = db.get(ActorDay, (thief, TODAY))
    assert day is not None and (day.events, day.records) == (15, 150)
    # the next batch crosses it: the alert carries the earlier batch's events too
    late = [
        access(thief, at(TODAY, 11, m), customer_ids=[f"B{m}-{i}" for i in range(100)])
        for m in range(3)
    ]
    factory.ingest(late, at(TODAY, 11, 30))
    alert = db.scalars(select(Alert)).one()
    assert (alert.detector, alert.actor, alert.status) == ("volume", thief, "open")
    assert alert.dedup_key == f"volume:{thief}:{TODAY}"
    assert alert.evidence["observed"] == 450 and alert.evidence["baseline"] == 40
    assert alert.evidence["threshold"] == 200 and alert.evidence["day"] == TODAY.isoformat()
    assert "baseline is 40" in alert.evidence["explanation"]
    assert linked(db, alert) == 18
    # more of the same updates that alert; an event of yesterday arriving late counts there
    more = [access(thief, at(TODAY, 12), customer_ids=[f"D-{i}" for i in range(500)])]
    straggler = [access(thief, at(TODAY - timedelta(days=1), 15), customer_ids=["Y-1"])]
    factory.ingest(more + straggler, at(TODAY, 12, 5))
    db.refresh(alert)
    assert db.scalar(select(func.count()).select_from(Alert)) == 1
    assert alert.evidence["observed"] == 950 and linked(db, alert) == 19
    assert alert.severity == "high" and alert.last_seen_at == at(TODAY, 12, 5)
    yesterday = db.get(ActorDay, (thief, TODAY - timedelta(days=1)))
    assert yesterday is not None and yesterday.records == 41
    colleague_day = db.get(ActorDay, (colleague, TODAY))
    assert colleague_day is not None and colleague_day.records == 30


def test_an_after_hours_export_by_an_unknown_actor(db: Session, factory: AccessFactory) -> None:
    actor = actor_name()
    export = access(actor, at(TODAY, 2, 14), action="export", customer_ids=None, result_count=2500)
    factory.ingest([export], at(TODAY, 2, 15))
    alerts = {a.detector: a for a in db.scalars(select(Alert))}
    assert set(alerts) == {"after-hours", "mass-export"}
    assert alerts["mass-export"].evidence["largest_event"] == 2500
    assert alerts["after-hours"].evidence["hr_record"] is False
    assert alerts["after-hours"].evidence["work_hours"] == "07:00-19:00"
    assert all(linked(db, a) == 1 for a in alerts.values())


def test_a_departing_renewals_agent_and_records_outside_duties(
    db: Session, factory: AccessFactory
) -> None:
    leaver, clerk = actor_name(), actor_name()
    factory.staff(
        leaver, team="renewals", duties=["contract-renewal"], leaving_on=TODAY + timedelta(days=14)
    )
    factory.staff(clerk, team="billing", duties=["billing"])
    factory.baseline(leaver, TODAY - timedelta(days=1), [40] * 20)
    factory.baseline(clerk, TODAY - timedelta(days=1), [40] * 20)
    items = [
        access(leaver, at(TODAY, 10, m), customer_ids=[f"L{m}-{i}" for i in range(10)])
        for m in range(12)
    ]
    items += [
        access(clerk, at(TODAY, 10, m), customer_ids=[f"K{m}-{i}" for i in range(10)])
        for m in range(9)
    ]
    items += [access(clerk, at(TODAY, 11), record_type="billing", customer_ids=["K-b"])]
    factory.ingest(items, at(TODAY, 12))
    alerts = {(a.detector, a.actor): a for a in db.scalars(select(Alert))}
    assert set(alerts) == {("departing", leaver), ("off-duty", clerk)}
    departing = alerts[("departing", leaver)]
    assert departing.severity == "high" and departing.evidence["days_to_leaving"] == 14
    assert departing.evidence["observed"] == 120
    off = alerts[("off-duty", clerk)]
    # threshold: 50 records, and above the clerk's usual 0 + 8 spreads (floor 10): 80
    assert off.evidence["observed"] == 90 and off.evidence["threshold"] == 80
    assert off.evidence["duties"] == ["billing"]
    assert linked(db, off) == 9  # the billing record is not evidence


def test_the_queue_is_filtered_and_ordered_and_needs_alerts_view(
    db: Session, users: UserFactory
) -> None:
    def make(
        key: str, severity: str, score: float, minutes: int, actor: str = "x@example.co.uk"
    ) -> Alert:
        return raise_alert(
            db,
            detector=key.split(":")[0],
            dedup_key=key,
            severity=severity,
            score=score,
            title=key,
            evidence={},
            actor=actor,
            now=NOW + timedelta(minutes=minutes),
        )

    make("volume:a", "medium", 90, 1)
    make("volume:b", "high", 60, 2)
    make("honeytoken:c", "critical", 100, 0, actor="y@example.co.uk")
    make("volume:d", "high", 60, 5)
    db.commit()
    service = AlertService(db, as_user(users.create("dpo")))
    rows, total = service.list(AlertFilter(), limit=10, offset=0)
    assert [r.dedup_key for r in rows] == ["honeytoken:c", "volume:d", "volume:b", "volume:a"]
    assert total == 4
    rows, total = service.list(AlertFilter(detector="volume", severity="high"), limit=1, offset=1)
    assert [r.dedup_key for r in rows] == ["volume:b"] and total == 2
    assert service.list(AlertFilter(actor="y@example.co.uk"), limit=5, offset=0)[1] == 1
    with pytest.raises(InvalidInput):
        service.list(AlertFilter(status="gone"), limit=5, offset=0)
    assert service.detectors() == ["honeytoken", "volume"]
    with pytest.raises(PermissionDenied):
        AlertService(db, as_user(users.create("helpdesk"))).list(AlertFilter(), limit=5, offset=0)
    with pytest.raises(AlertNotFound):
        service.get(10**9)


def test_dismiss_needs_a_reason_and_happens_once(db: Session, users: UserFactory) -> None:
    alert = raise_alert(
        db,
        detector="volume",
        dedup_key="volume:z",
        severity="medium",
        score=50,
        title="t",
        evidence={},
        actor="z@example.co.uk",
    )
    db.commit()
    security = users.create("security")
    service = AlertService(db, as_user(security))
    with pytest.raises(InvalidInput):
        service.dismiss(alert.id, "   ")
    with pytest.raises(PermissionDenied):
        AlertService(db, as_user(users.create("auditor"))).dismiss(alert.id, "fine")
    service.dismiss(alert.id, "Quarter-end renewals campaign, agreed with the team lead.")
    assert alert.status == "dismissed" and alert.triaged_by_label == security.email
    assert alert.dismiss_reason and alert.triaged_at is not None
    with pytest.raises(AlreadyTriaged):
        service.dismiss(alert.id, "again")
    assert audit_actions(db)[-1] == AlertAuditAction.DISMISSED.value


def test_escalation_opens_an_insider_leak_incident_scoped_to_the_customers(
    db: Session, factory: AccessFactory, settings: Settings, keys: KeyRing, users: UserFactory
) -> None:
    thief = actor_name()
    stolen = [f"R{n:05d}" for n in range(40)]
    factory.customers(stolen)
    export = access(thief, at(TODAY, 1), action="export", customer_ids=[*stolen, "NOT-IN-DIR"])
    search = access(thief, at(TODAY, 1, 5), action="search", customer_ids=None, result_count=3000)
    factory.ingest([export, search], at(TODAY, 1, 10))
    db.commit()
    alert = db.scalars(select(Alert).where(Alert.detector == "after-hours")).one()
    dpo = users.create("dpo")
    service = AlertService(db, as_user(dpo), settings, keys)
    detail = service.get(alert.id, limit=1, offset=0)
    assert detail.events_total == 2 and len(detail.events) == 1
    assert detail.events[0].customers == 41 and len(detail.events[0].customer_ids) == 41
    incident = service.escalate(alert.id)
    assert incident.type == "insider-leak" and incident.scope == {"customer_ids": stolen}
    assert alert.status == "escalated" and alert.incident_id == incident.id
    entries = list(
        db.scalars(select(TimelineEntry).where(TimelineEntry.incident_id == incident.id))
    )
    escalated = [e for e in entries if e.data.get("alert_id") == alert.id]
    assert escalated and escalated[0].data["not_in_directory"] == 1
    assert escalated[0].data["events_without_ids"] == 1
    assert "40 customer(s)" in escalated[0].summary
    with pytest.raises(AlreadyTriaged):
        service.escalate(alert.id)
    assert audit_actions(db)[-1] == AlertAuditAction.ESCALATED.value
    db.commit()

    # a second alert joins the existing incident, which keeps its scope and gains nothing new
    other = raise_alert(
        db,
        detector="volume",
        dedup_key="volume:second",
        severity="medium",
        score=60,
        title="t",
        evidence={},
        actor=thief,
        event_ids=list(db.scalars(select(AccessEvent.id))),
    )
    service.dismiss(other.id, "looked like a report")
    joined = service.escalate(other.id, incident_id=incident.id)  # a dismissed alert may
    assert joined.id == incident.id and other.status == "escalated"
    assert joined.scope == {"customer_ids": stolen}
    db.commit()
    IncidentService(db, as_user(dpo), settings, keys).change_status(
        incident.id, IncidentStatus.CLOSED
    )
    third = raise_alert(
        db,
        detector="volume",
        dedup_key="volume:late",
        severity="high",
        score=70,
        title="t",
        evidence={},
        actor=thief,
    )
    with pytest.raises(IncidentClosed):
        service.escalate(third.id, incident_id=incident.id)
    assert db.get(Incident, incident.id) is not None


def test_activity_shows_the_days_and_the_baseline_band(
    db: Session, factory: AccessFactory, users: UserFactory, settings: Settings
) -> None:
    actor = actor_name()
    factory.staff(actor, team="renewals", job_role="Renewals agent")
    factory.baseline(actor, TODAY - timedelta(days=1), [40] * 20)
    factory.ingest([access(actor, at(TODAY, 9), customer_ids=["Q1", "Q2"])], at(TODAY, 9, 1))
    db.commit()
    service = AlertService(db, as_user(users.create("auditor")), settings)
    view = service.activity(actor, days=7, now=NOW)
    assert [d.day for d in view.days][-1] == TODAY and len(view.days) == 7
    assert view.days[-1].records == 2 and view.days[-1].baseline == 40
    assert view.days[-1].threshold == 120  # 40 + 8 x max(1.4826 x 0, 10, 0.25 x 40)
    assert view.team == "renewals" and view.job_role == "Renewals agent"
    with pytest.raises(InvalidInput):
        service.activity(actor, days=0)
    with pytest.raises(PermissionDenied):
        AlertService(db, as_user(users.create("helpdesk"))).activity(actor)
