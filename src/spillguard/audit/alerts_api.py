"""Insider-risk alerts and HR data over the REST API.

- ``GET /api/v1/alerts`` (the queue), ``GET /api/v1/alerts/{id}`` (with a page of its
  evidence events), ``POST /api/v1/alerts/{id}/dismiss`` (a reason is required),
  ``POST /api/v1/alerts/{id}/escalate`` (201: the ``insider-leak`` incident);
- ``GET /api/v1/actors/{actor}/activity?days=`` (daily counters with the baseline band);
- ``PUT /api/v1/staff`` (batch upsert of HR data) and ``GET /api/v1/staff``.

Routes are thin: each calls one service method (``AlertService``, ``StaffService``),
which checks authorisation first. What leaves is shown through the caller's
:func:`~spillguard.audit.honeytokens.redaction_for`: without ``honeytokens:manage``, a
honeytoken's id in evidence or an event's customer ids reads "honeytoken customer".
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spillguard.audit.alerts import (
    SEVERITIES,
    ActorActivity,
    AlertFilter,
    AlertService,
    AlertStatus,
)
from spillguard.audit.browse import with_alert_thresholds
from spillguard.audit.detect import Thresholds
from spillguard.audit.honeytokens import HoneytokenRedaction, redaction_for
from spillguard.audit.models import Alert
from spillguard.audit.staff import StaffImportResult, StaffService
from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.roles import Principal
from spillguard.core.schemas import Page
from spillguard.core.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["insider-alerts"])
staff_router = APIRouter(prefix="/api/v1/staff", tags=["staff"])

StatusQuery = Annotated[AlertStatus | None, Query(description="open, dismissed or escalated")]
SeverityQuery = Annotated[
    str | None, Query(pattern="^(" + "|".join(SEVERITIES) + ")$", description="Severity")
]
Text = Annotated[str | None, Query(min_length=1, max_length=320)]
ActorPath = Annotated[str, Path(min_length=1, max_length=320, description="The actor")]


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    detector: str
    actor: str | None
    channel: str | None
    severity: str
    score: float
    status: str
    title: str
    evidence: dict[str, Any] = Field(
        description="The explanation and its figures: observed, baseline, threshold..."
    )
    first_seen_at: datetime
    last_seen_at: datetime
    triaged_at: datetime | None
    triaged_by: str | None = Field(validation_alias="triaged_by_label")
    dismiss_reason: str | None
    incident_id: int | None


class EvidenceEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor: str
    action: str
    system: str
    record_type: str | None
    records: int
    source_address: str | None
    customers: int = Field(description="How many customer ids the event named.")
    customer_ids: list[str] = Field(description="The first 50 of them (the source's ids).")


class AlertDetailPublic(BaseModel):
    alert: AlertPublic
    events: Page[EvidenceEventPublic]


class DismissIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="Why it is dismissed.")


class EscalateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: int | None = Field(
        default=None, ge=1, le=2**62, description="Attach to this incident instead."
    )


class EscalatedPublic(BaseModel):
    incident_id: int
    alert: AlertPublic


class ActivityDayPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    day: date
    events: int
    records: int
    exported: int
    after_hours: int
    off_duty: int
    baseline: float | None
    threshold: float | None = Field(
        description="Records at which the volume detector alerts that day (None: too little "
        "history for a baseline)."
    )


class ActivityPublic(BaseModel):
    actor: str
    team: str | None
    job_role: str | None
    leaving_on: date | None
    days: list[ActivityDayPublic]
    alerts: list[AlertPublic]


class StaffMemberIn(BaseModel):
    """One staff member; fields left out keep their stored value."""

    model_config = ConfigDict(extra="forbid")

    actor: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=100)
    role: str | None = Field(default=None, max_length=100)
    duties: list[str] | str | None = Field(
        default=None, description="Record types their work needs (a list or ';'-separated)."
    )
    leaving_on: str | None = Field(default=None, max_length=10, description="YYYY-MM-DD")
    work_start: str | None = Field(default=None, max_length=5, description="HH:MM")
    work_end: str | None = Field(default=None, max_length=5, description="HH:MM")
    work_days: str | None = Field(default=None, max_length=16, description="e.g. 12345")
    timezone: str | None = Field(default=None, max_length=64, description="Europe/London")


class StaffBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    staff: list[StaffMemberIn] = Field(max_length=10_000)


class StaffResultPublic(BaseModel):
    added: int
    updated: int
    unchanged: int


class StaffMemberPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor: str
    name: str | None = Field(validation_alias="display_name")
    team: str | None
    role: str | None = Field(validation_alias="job_role")
    duties: list[str]
    leaving_on: date | None
    work_start: str
    work_end: str
    work_days: str
    timezone: str
    updated_at: datetime


def _public(alert: Alert, shown: HoneytokenRedaction) -> AlertPublic:
    public = AlertPublic.model_validate(alert)
    public.evidence = shown.evidence(alert.evidence)
    return public


def _shown(db: Session, principal: Principal, alerts: list[Alert]) -> list[AlertPublic]:
    """The alerts as this principal may see them (honeytoken ids redacted if need be)."""
    shown = redaction_for(db, principal, evidence=[a.evidence for a in alerts])
    return [_public(a, shown) for a in alerts]


@router.get("/alerts", response_model=Page[AlertPublic])
def list_alerts(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    status: StatusQuery = None,
    detector: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    severity: SeverityQuery = None,
    actor: Text = None,
) -> Page[AlertPublic]:
    """The alerts queue: most severe first, then highest score, then most recent."""
    rows, total = AlertService(db, principal).list(
        AlertFilter(
            status=status.value if status else None,
            detector=detector,
            severity=severity,
            actor=actor,
        ),
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=_shown(db, principal, rows), total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetailPublic)
def get_alert(
    alert_id: IdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> AlertDetailPublic:
    """An alert with a page of the access events behind it (oldest first)."""
    detail = AlertService(db, principal).get(alert_id, limit=paging.limit, offset=paging.offset)
    shown = redaction_for(
        db,
        principal,
        evidence=[detail.alert.evidence],
        refs=[r for e in detail.events for r in e.customer_ids],
    )
    return AlertDetailPublic(
        alert=_public(detail.alert, shown),
        events=Page(
            items=[
                EvidenceEventPublic.model_validate(e).model_copy(
                    update={"customer_ids": shown.refs(e.customer_ids)}
                )
                for e in detail.events
            ],
            total=detail.events_total,
            limit=paging.limit,
            offset=paging.offset,
        ),
    )


@router.post("/alerts/{alert_id}/dismiss", response_model=AlertPublic)
def dismiss_alert(
    alert_id: IdPath, body: DismissIn, db: DbSession, principal: ApiPrincipal
) -> AlertPublic:
    """Dismiss an open alert, with the reason."""
    return _shown(db, principal, [AlertService(db, principal).dismiss(alert_id, body.reason)])[0]


@router.post(
    "/alerts/{alert_id}/escalate",
    response_model=EscalatedPublic,
    status_code=status.HTTP_201_CREATED,
)
def escalate_alert(
    alert_id: IdPath,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
    keys: Keys,
    body: EscalateIn | None = None,
) -> EscalatedPublic:
    """Escalate to a new insider-leak incident scoped to the customers the alert's events
    touched, or attach it to an existing incident (``incident_id``)."""
    service = AlertService(db, principal, settings, keys)
    incident = service.escalate(alert_id, body.incident_id if body else None)
    alert = service.get(alert_id, limit=1).alert
    return EscalatedPublic(incident_id=incident.id, alert=_shown(db, principal, [alert])[0])


def _activity(
    db: Session, principal: Principal, settings: Settings, view: ActorActivity
) -> ActivityPublic:
    days = with_alert_thresholds(view.days, Thresholds.from_settings(settings))
    return ActivityPublic(
        actor=view.actor,
        team=view.team,
        job_role=view.job_role,
        leaving_on=view.leaving_on,
        days=[ActivityDayPublic.model_validate(d) for d in days],
        alerts=_shown(db, principal, view.alerts),
    )


@router.get("/actors/{actor}/activity", response_model=ActivityPublic)
def actor_activity(
    actor: ActorPath,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
    days: Annotated[int, Query(ge=1, le=366, description="Days up to today")] = 30,
) -> ActivityPublic:
    """An actor's daily counters with the band their own baseline allowed each day."""
    view = AlertService(db, principal, settings).activity(actor, days)
    return _activity(db, principal, settings, view)


def _staff_result(result: StaffImportResult) -> StaffResultPublic:
    return StaffResultPublic(added=result.added, updated=result.updated, unchanged=result.unchanged)


@staff_router.put("", response_model=StaffResultPublic)
def put_staff(body: StaffBatchIn, db: DbSession, principal: ApiPrincipal) -> StaffResultPublic:
    """Add or update staff members (HR data); one bad item refuses the batch."""
    renames = {"name": "display_name", "role": "job_role"}
    items = [
        {renames.get(k, k): v for k, v in item.model_dump(exclude_unset=True).items()}
        for item in body.staff
    ]
    return _staff_result(StaffService(db, principal).upsert(items))


@staff_router.get("", response_model=Page[StaffMemberPublic])
def list_staff(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    team: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> Page[StaffMemberPublic]:
    """Staff members by actor, optionally of one team."""
    rows, total = StaffService(db, principal).list(
        team=team, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[StaffMemberPublic.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
