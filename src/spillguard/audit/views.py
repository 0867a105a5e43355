"""Console pages of the audit module (issue 7 §6) and the export API.

- ``/audit``: the audit-event browser (moved here from ``core.views``): filters by action
  (name or prefix, e.g. ``audit:access`` for every ingested access event), actor, object,
  outcome and time range; paging; export of the filtered events as CSV or JSON.
- ``/audit/checkpoints``: signed checkpoints with their verification status.
- ``/audit/sources``: the systems sending access events, their counters and refusals.
- ``/audit/alerts``, ``/audit/alerts/{id}``: the insider-risk alert queue and triage.
- ``/audit/actors/{actor}``: one person's daily activity against their baseline.
- ``/audit/honeytokens``: honeytoken customers: list (ids only), create N, export as CSV
  for loading into the CRM, retire one or reactivate a retired one
  (``customers.honeytokens.HoneytokenService`` audits each).
- ``GET /api/v1/audit-events/export``: the export's API twin.

Pages parse the input, call one service and render; each service checks the permission.
Every form carries the CSRF token (``Csrf``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import AwareDatetime, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from spillguard.audit.alerts import SEVERITIES, AlertFilter, AlertService
from spillguard.audit.browse import (
    AuditBrowseService,
    AuditExport,
    StaffFactsService,
    activity_chart,
    evidence_view,
    honeytokens_csv,
    shown_details,
    with_alert_thresholds,
)
from spillguard.audit.detect import Thresholds
from spillguard.audit.honeytokens import redaction_for
from spillguard.audit.ingest import AccessEventFilter, AccessLogService
from spillguard.console.render import render
from spillguard.core.audit import AuditFilter
from spillguard.core.deps import (
    ApiPrincipal,
    AppSettings,
    ConsoleOffset,
    ConsolePrincipal,
    DbSession,
    DoneFlag,
    IdPath,
    Keys,
)
from spillguard.core.errors import PROBLEM_RESPONSES, Conflict, InvalidInput, NotFound
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.core.views import Csrf, remember
from spillguard.customers.honeytokens import MAX_CREATE, HoneytokenService

console = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["audit"])

PAGE_SIZE = 50
REJECTS_PAGE = 50
RECENT_EVENTS = 50
MESSAGES = {
    "dismissed": "Alert dismissed; the reason is kept with it and in the audit trail.",
    "created": "Honeytoken customers created. Export them for loading into the CRM.",
    "retired": "Honeytoken retired: it raises no new alerts and is out of exact data match; "
    "its past alerts stay.",
    "reactivated": "Honeytoken reactivated: exact data match finds it again and any sign of "
    "it raises an alert.",
}

ActionQuery = Annotated[str, Query(max_length=100)]
ActorQuery = Annotated[str, Query(max_length=320)]
ObjectTypeQuery = Annotated[str, Query(max_length=64)]
ObjectIdQuery = Annotated[str, Query(max_length=64)]
OutcomeQuery = Annotated[str, Query(pattern="^(|success|failure)$")]
WhenQuery = Annotated[str, Query(max_length=40)]


def subnav(principal: Principal) -> list[tuple[str, str]]:
    """The audit pages this principal may open: (label, href)."""
    entries = [
        ("Events", "/audit", Permission.AUDIT_VIEW),
        ("Checkpoints", "/audit/checkpoints", Permission.AUDIT_VIEW),
        ("Alerts", "/audit/alerts", Permission.ALERTS_VIEW),
        ("Access sources", "/audit/sources", Permission.ACCESS_VIEW),
        ("Honeytokens", "/audit/honeytokens", Permission.HONEYTOKENS_MANAGE),
    ]
    return [(label, href) for label, href, perm in entries if principal.can(perm)]


def parse_when(value: str, field: str) -> datetime | None:
    """A date (midnight UTC), a ``datetime-local`` value (UTC), or an ISO time with offset."""
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return TypeAdapter(AwareDatetime).validate_python(value)
    except ValidationError:
        raise InvalidInput(
            f"{field} must be a date (YYYY-MM-DD), a date and time in UTC "
            "(YYYY-MM-DDTHH:MM) or an ISO timestamp with a time zone.",
            field=field,
        ) from None


def _filters(
    action: str, actor: str, object_type: str, object_id: str, outcome: str, since: str, until: str
) -> tuple[AuditFilter, dict[str, str]]:
    flt = AuditFilter(
        action.strip() or None,
        actor.strip() or None,
        object_type.strip() or None,
        object_id.strip() or None,
        outcome or None,
        parse_when(since, "since"),
        parse_when(until, "until"),
    )
    shown = {
        "action": action,
        "actor": actor,
        "object_type": object_type,
        "object_id": object_id,
        "outcome": outcome,
        "since": since,
        "until": until,
    }
    return flt, shown


def _download(export: AuditExport) -> StreamingResponse:
    return StreamingResponse(
        export.body,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "X-Spillguard-Events": str(export.events),
        },
    )


# Audit-event browser ---------------------------------------------------------------------
@console.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    action: ActionQuery = "",
    actor: ActorQuery = "",
    object_type: ObjectTypeQuery = "",
    object_id: ObjectIdQuery = "",
    outcome: OutcomeQuery = "",
    since: WhenQuery = "",
    until: WhenQuery = "",
    offset: ConsoleOffset = 0,
) -> Response:
    svc = AuditBrowseService(db, remember(request, principal), keys, settings)
    flt, filters = _filters(action, actor, object_type, object_id, outcome, since, until)
    # Ingested access events name customer ids: honeytokens among them only for managers.
    rows, total = svc.shown_events(flt, limit=PAGE_SIZE, offset=offset)
    query = urlencode({k: v for k, v in filters.items() if v})
    ctx: dict[str, Any] = {
        "events": [(e.event, shown_details(e.details), e.object_id) for e in rows],
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": query + "&" if query else "",
        "export_query": query,
        "filters": filters,
        "subnav": subnav(principal),
    }
    # htmx swapping the rows gets the rows; a history restore (cache miss) needs the page.
    partial = request.headers.get("hx-request") and not request.headers.get(
        "hx-history-restore-request"
    )
    if partial:
        return render(request, "audit/_event_rows.html", ctx, principal=principal)
    ctx["actions"] = svc.known_actions()
    return render(request, "audit/events.html", ctx, principal=principal)


@console.get("/audit/export")
def audit_export(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
    action: ActionQuery = "",
    actor: ActorQuery = "",
    object_type: ObjectTypeQuery = "",
    object_id: ObjectIdQuery = "",
    outcome: OutcomeQuery = "",
    since: WhenQuery = "",
    until: WhenQuery = "",
) -> Response:
    """The filtered events as a file; the export itself is an audit event."""
    svc = AuditBrowseService(db, remember(request, principal), keys, settings)
    flt, _ = _filters(action, actor, object_type, object_id, outcome, since, until)
    return _download(svc.export(flt, format, request.app.state.session_factory))


@api.get(
    "/audit-events/export",
    responses={
        **PROBLEM_RESPONSES,
        200: {
            "description": "The matching events, oldest first, streamed.",
            "content": {"text/csv": {}, "application/json": {}},
        },
    },
    response_class=StreamingResponse,
)
def api_audit_export(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ApiPrincipal,
    format: Annotated[str, Query(pattern="^(csv|json)$", description="csv or json")] = "json",
    action: Annotated[str | None, Query(max_length=100, description="Name or prefix")] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|failure)$")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Response:
    """Export the audit events matching the filters (those of `GET /audit-events`), oldest
    first, as CSV or a JSON array. The export is recorded as an `audit:events:exported`
    event; the header `X-Spillguard-Events` says how many events the body holds."""
    flt = AuditFilter(action, actor, object_type, object_id, outcome, since, until)
    svc = AuditBrowseService(db, principal, keys, settings)
    return _download(svc.export(flt, format, request.app.state.session_factory))


# Checkpoints -----------------------------------------------------------------------------
@console.get("/audit/checkpoints", response_class=HTMLResponse)
def checkpoints_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
) -> Response:
    svc = AuditBrowseService(db, remember(request, principal), keys, settings)
    history = svc.checkpoint_history(limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "audit/checkpoints.html",
        {
            "history": history,
            "total": history.total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": "",
            "subnav": subnav(principal),
        },
        principal=principal,
    )


# Access sources --------------------------------------------------------------------------
@console.get("/audit/sources", response_class=HTMLResponse)
def sources_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    source: Annotated[str, Query(max_length=100)] = "",
    offset: ConsoleOffset = 0,
) -> Response:
    svc = AccessLogService(db, remember(request, principal))
    sources = svc.sources()
    rejects, total = svc.rejects(source=source or None, limit=REJECTS_PAGE, offset=offset)
    return render(
        request,
        "audit/sources.html",
        {
            "sources": sources,
            "rejects": rejects,
            "source": source,
            "total": total,
            "limit": REJECTS_PAGE,
            "offset": offset,
            "base_query": f"source={quote(source)}&" if source else "",
            "subnav": subnav(principal),
        },
        principal=principal,
    )


# Alerts ----------------------------------------------------------------------------------
def _alerts(db: Session, principal: Principal, settings: Settings, keys: KeyRing) -> AlertService:
    return AlertService(db, principal, settings, keys)


@console.get("/audit/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    status: Annotated[str, Query(pattern="^(open|dismissed|escalated|all)$")] = "open",
    severity: Annotated[str, Query(pattern="^(|low|medium|high|critical)$")] = "",
    detector: Annotated[str, Query(max_length=32)] = "",
    actor: ActorQuery = "",
    offset: ConsoleOffset = 0,
) -> Response:
    svc = _alerts(db, remember(request, principal), settings, keys)
    flt = AlertFilter(
        status=None if status == "all" else status,
        detector=detector.strip() or None,
        severity=severity or None,
        actor=actor.strip() or None,
    )
    rows, total = svc.list(flt, limit=PAGE_SIZE, offset=offset)
    filters = {"status": status, "severity": severity, "detector": detector, "actor": actor}
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "audit/alerts.html",
        {
            "alerts": rows,
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": query + "&" if query else "",
            "filters": filters,
            "detectors": svc.detectors(),
            "severities": SEVERITIES,
            "subnav": subnav(principal),
        },
        principal=principal,
    )


def _alert_context(
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    alert_id: int,
    offset: int,
) -> dict[str, Any]:
    detail = _alerts(db, principal, settings, keys).get(alert_id, limit=PAGE_SIZE, offset=offset)
    alert = detail.alert
    can_triage = principal.can(Permission.ALERTS_TRIAGE)
    shown = redaction_for(
        db,
        principal,
        evidence=[alert.evidence],
        refs=[r for e in detail.events for r in e.customer_ids],
    )
    return {
        "alert": alert,
        "evidence": evidence_view(shown.evidence(alert.evidence)),
        "events": [replace(e, customer_ids=shown.refs(e.customer_ids)) for e in detail.events],
        "total": detail.events_total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": "",
        "can_dismiss": can_triage and alert.status == "open",
        "can_escalate": can_triage
        and principal.can(Permission.INCIDENTS_MANAGE)
        and alert.status != "escalated",
        "can_see_actor": principal.can(Permission.ACCESS_VIEW),
        "subnav": subnav(principal),
    }


@console.get("/audit/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request,
    alert_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    ctx = _alert_context(db, settings, keys, remember(request, principal), alert_id, offset)
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "audit/alert.html", ctx, principal=principal)


def _alert_refused(
    request: Request,
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    alert_id: int,
    error: InvalidInput | Conflict,
) -> Response:
    """The alert page again, saying why the triage was refused."""
    db.rollback()
    ctx = _alert_context(db, settings, keys, principal, alert_id, 0)
    ctx["error"] = error.detail
    return render(request, "audit/alert.html", ctx, principal=principal, status_code=error.status)


@console.post("/audit/alerts/{alert_id}/dismiss", dependencies=[Csrf])
def dismiss_alert(
    request: Request,
    alert_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = _alerts(db, remember(request, principal), settings, keys)
    try:
        svc.dismiss(alert_id, reason)
    except (InvalidInput, Conflict) as exc:
        return _alert_refused(request, db, settings, keys, principal, alert_id, exc)
    return RedirectResponse(f"/audit/alerts/{alert_id}?done=dismissed", status_code=303)


@console.post("/audit/alerts/{alert_id}/escalate", dependencies=[Csrf])
def escalate_alert(
    request: Request,
    alert_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    incident_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Open an insider-leak incident from the alert (or attach it to an existing one) and
    go to the incident."""
    svc = _alerts(db, remember(request, principal), settings, keys)
    try:
        target = _optional_id(incident_id, "incident_id")
        incident = svc.escalate(alert_id, target)
    except (InvalidInput, Conflict) as exc:
        return _alert_refused(request, db, settings, keys, principal, alert_id, exc)
    return RedirectResponse(f"/incidents/{incident.id}", status_code=303)


def _optional_id(value: str, field: str) -> int | None:
    value = value.strip().lstrip("#")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        what = "an incident number" if field == "incident_id" else "a whole number"
        raise InvalidInput(f"'{field}' must be {what}.", field=field)
    return int(value)


# Per-actor activity ----------------------------------------------------------------------
@console.get("/audit/actors/{actor:path}", response_class=HTMLResponse)
def actor_page(
    request: Request,
    actor: Annotated[str, PathParam(min_length=1, max_length=320)],
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    days: Annotated[int, Query(ge=7, le=366)] = 30,
) -> Response:
    remember(request, principal)
    activity = _alerts(db, principal, settings, keys).activity(actor, days)
    # The line drawn is the volume detector's own threshold: a bar reaching it alerted.
    activity = replace(
        activity, days=with_alert_thresholds(activity.days, Thresholds.from_settings(settings))
    )
    recent, _ = AccessLogService(db, principal).events(
        AccessEventFilter(actor=actor), limit=RECENT_EVENTS, offset=0
    )
    return render(
        request,
        "audit/actor.html",
        {
            "activity": activity,
            "staff": StaffFactsService(db, principal).staff(actor),
            "recent": recent,
            "chart": activity_chart(activity.days),
            "days": days,
            "subnav": subnav(principal),
        },
        principal=principal,
    )


# Honeytokens -----------------------------------------------------------------------------
def _honeytokens_context(
    db: Session, keys: KeyRing, settings: Settings, principal: Principal, offset: int
) -> dict[str, Any]:
    svc = HoneytokenService(db, principal, keys, settings)
    rows, total = svc.listing(limit=PAGE_SIZE, offset=offset)
    return {
        "honeytokens": rows,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": "",
        "max_create": MAX_CREATE,
        "email_domain": settings.honeytoken_email_domain or "",
        "subnav": subnav(principal),
    }


@console.get("/audit/honeytokens", response_class=HTMLResponse)
def honeytokens_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    ctx = _honeytokens_context(db, keys, settings, remember(request, principal), offset)
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "audit/honeytokens.html", ctx, principal=principal)


@console.post("/audit/honeytokens", dependencies=[Csrf])
def honeytokens_create(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    count: Annotated[str, Form(max_length=10)] = "",
    batch: Annotated[str, Form(max_length=100)] = "",
    email_domain: Annotated[str, Form(max_length=253)] = "",
) -> Response:
    """Create N honeytoken customers; their values leave only through the export."""
    svc = HoneytokenService(db, remember(request, principal), keys, settings)
    try:
        number = _optional_id(count, "count")
        if number is None:
            principal.require(Permission.HONEYTOKENS_MANAGE)
            raise InvalidInput("Say how many honeytokens to create.", field="count")
        svc.create(number, batch=batch or None, email_domain=email_domain or None)
    except InvalidInput as exc:
        db.rollback()
        ctx = _honeytokens_context(db, keys, settings, principal, 0)
        ctx.update(error=exc.detail, form={"count": count, "batch": batch})
        return render(
            request, "audit/honeytokens.html", ctx, principal=principal, status_code=exc.status
        )
    return RedirectResponse("/audit/honeytokens?done=created", status_code=303)


def _change_honeytoken(
    request: Request,
    db: Session,
    keys: KeyRing,
    settings: Settings,
    principal: Principal,
    customer_id: str,
    done: str,
) -> Response:
    """Retire or reactivate one honeytoken from its row's button; back to the list."""
    svc = HoneytokenService(db, remember(request, principal), keys, settings)
    change = svc.retire if done == "retired" else svc.reactivate
    try:
        change([customer_id])
    except (InvalidInput, NotFound) as exc:
        db.rollback()
        ctx = _honeytokens_context(db, keys, settings, principal, 0)
        ctx["error"] = exc.detail
        return render(
            request, "audit/honeytokens.html", ctx, principal=principal, status_code=exc.status
        )
    return RedirectResponse(f"/audit/honeytokens?done={done}", status_code=303)


@console.post("/audit/honeytokens/retire", dependencies=[Csrf])
def honeytokens_retire(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    customer_id: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Retire one honeytoken (the row's button); idempotent."""
    return _change_honeytoken(request, db, keys, settings, principal, customer_id, "retired")


@console.post("/audit/honeytokens/reactivate", dependencies=[Csrf])
def honeytokens_reactivate(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    customer_id: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Reactivate one retired honeytoken (the row's button); idempotent."""
    return _change_honeytoken(request, db, keys, settings, principal, customer_id, "reactivated")


@console.post("/audit/honeytokens/export", dependencies=[Csrf])
def honeytokens_export(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    batch: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Every active honeytoken with its values, as CSV for the CRM's import (audited)."""
    svc = HoneytokenService(db, remember(request, principal), keys, settings)
    records = svc.export(batch=batch.strip() or None)
    return Response(
        honeytokens_csv(records),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="honeytokens.csv"'},
    )


router = APIRouter()
router.include_router(console)
router.include_router(api)
