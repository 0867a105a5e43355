"""Console pages of the incidents module: the list of incidents with their breach clocks,
the incident page (countdown, workflow, timeline, tasks, notes, attachments, exposure
assessment with its reasons), the affected customers' ids (names for the dpo), and the
home-page panel of open incidents.

Pages parse the form, make one service call and redirect or render; authorisation is
decided by the same service as the API. Every form carries the CSRF token (``Csrf``).
The countdown is refreshed by htmx polling ``/incidents/{id}/clock`` (no inline script:
the Content-Security-Policy refuses it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from spillguard.console.render import HomePanel, render
from spillguard.core.deps import (
    AppSettings,
    ConsoleOffset,
    ConsolePrincipal,
    DbSession,
    DoneFlag,
    IdPath,
    Keys,
)
from spillguard.core.errors import Conflict, InvalidInput
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.core.views import Csrf, remember
from spillguard.incidents.models import IncidentStatus, IncidentType, Severity
from spillguard.incidents.services import (
    MAX_ATTACHMENT_BYTES,
    IncidentFilter,
    IncidentService,
    allowed_next,
)

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
CUSTOMER_PAGE = 100
MESSAGES = {
    "created": "Incident opened; the breach clock is running.",
    "updated": "Incident updated.",
    "status": "Status changed.",
    "reopened": "Incident reopened.",
    "awareness": "Awareness time changed; the deadline moved with it.",
    "regulator": "Regulator notification recorded; the clock has stopped.",
    "task-added": "Task added.",
    "task-done": "Task marked done.",
    "note-added": "Note added.",
    "attached": "File attached (kept encrypted).",
    "assessed": "Exposure assessed; the new version is below.",
}


def _svc(
    db: Session, principal: Principal, settings: Settings, keys: KeyRing | None = None
) -> IncidentService:
    return IncidentService(db, principal, settings, keys)


def home_panel(db: Session, principal: Principal, settings: Settings) -> HomePanel | None:
    """Open incidents with their clocks on the home page, for roles that may see them."""
    if not principal.can(Permission.INCIDENTS_VIEW):
        return None
    svc = _svc(db, principal, settings)
    rows, total = svc.listing(IncidentFilter(open_only=True), limit=10, offset=0)
    return HomePanel(
        "incidents/_home_panel.html",
        {"incidents": [(i, svc.clock(i)) for i in rows], "total": total},
    )


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    show: Annotated[str, Query(pattern="^(open|all)$")] = "open",
) -> Response:
    svc = _svc(db, remember(request, principal), settings)
    rows, total = svc.listing(
        IncidentFilter(open_only=show == "open"), limit=PAGE_SIZE, offset=offset
    )
    can_manage = principal.can(Permission.INCIDENTS_MANAGE)
    return render(
        request,
        "incidents/list.html",
        {
            "incidents": [(i, svc.clock(i)) for i in rows],
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": f"show={show}&",
            "show": show,
            "can_manage": can_manage,
            "types": list(IncidentType),
            "severities": list(Severity),
            "users": svc.assignable_users() if can_manage else [],
        },
        principal=principal,
    )


def _optional_int(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput(f"'{field}' must be a number.", field=field)
    return int(value)


def _local_time(value: str, field: str) -> datetime | None:
    """A ``datetime-local`` input (the console shows and takes UTC)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'{field}' is not a date and time.", field=field) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@router.post("/incidents", dependencies=[Csrf])
def create_incident(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    type: Annotated[IncidentType, Form()],
    title: Annotated[str, Form(min_length=1, max_length=200)],
    severity: Annotated[Severity, Form()] = Severity.MEDIUM,
    description: Annotated[str, Form(max_length=20_000)] = "",
    owner_id: Annotated[str, Form(max_length=20)] = "",
    aware_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings)
    incident = svc.create(
        type=type,
        title=title.strip(),
        severity=severity,
        description=description.strip() or None,
        owner_id=_optional_int(owner_id, "owner_id"),
        aware_at=_local_time(aware_at, "aware_at"),
    )
    return RedirectResponse(f"/incidents/{incident.id}?done=created", status_code=303)


def _detail_context(
    db: Session, settings: Settings, keys: KeyRing, principal: Principal, incident_id: int
) -> dict[str, Any]:
    svc = _svc(db, principal, settings, keys)
    incident = svc.get(incident_id)
    tasks = svc.tasks(incident_id)
    assessments = svc.assessments(incident_id)
    can_manage = principal.can(Permission.INCIDENTS_MANAGE)
    users = svc.assignable_users()
    emails = svc.users_by_id({incident.owner_id, *(t.assignee_id for t in tasks)})
    return {
        "incident": incident,
        "clock": svc.clock(incident),
        "timeline": svc.timeline(incident_id),
        "tasks": tasks,
        "notes": svc.notes(incident_id),
        "attachments": svc.attachments(incident_id),
        "assessment": assessments[0] if assessments else None,
        "assessment_versions": len(assessments),
        "emails": emails,
        "users": users,
        "can_manage": can_manage,
        "closed": incident.status == IncidentStatus.CLOSED.value,
        "next_statuses": allowed_next(IncidentStatus(incident.status)),
        "severities": list(Severity),
        "can_list_customers": principal.can(Permission.CUSTOMERS_VIEW),
        "max_attachment_mib": MAX_ATTACHMENT_BYTES // (1024 * 1024),
    }


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    done: DoneFlag = None,
) -> Response:
    ctx = _detail_context(db, settings, keys, remember(request, principal), incident_id)
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "incidents/incident.html", ctx, principal=principal)


@router.get("/incidents/{incident_id}/clock", response_class=HTMLResponse)
def incident_clock(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
) -> Response:
    """The countdown alone (htmx polls it)."""
    svc = _svc(db, remember(request, principal), settings)
    incident = svc.get(incident_id)
    return render(
        request,
        "incidents/_clock.html",
        {"incident": incident, "clock": svc.clock(incident)},
        principal=principal,
    )


def _refused(
    request: Request,
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    incident_id: int,
    error: InvalidInput | Conflict,
) -> Response:
    """The incident page again, saying why the action was refused."""
    db.rollback()
    ctx = _detail_context(db, settings, keys, principal, incident_id)
    ctx["error"] = error.detail
    return render(
        request, "incidents/incident.html", ctx, principal=principal, status_code=error.status
    )


def _done(incident_id: int, flag: str) -> Response:
    return RedirectResponse(f"/incidents/{incident_id}?done={flag}", status_code=303)


@router.post("/incidents/{incident_id}/edit", dependencies=[Csrf])
def edit_incident(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    severity: Annotated[Severity, Form()],
    owner_id: Annotated[str, Form(max_length=20)] = "",
    title: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        owner = _optional_int(owner_id, "owner_id")
        svc.update(
            incident_id,
            title=title.strip() or None,
            severity=severity,
            owner_id=owner,
            clear_owner=owner is None,
        )
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "updated")


@router.post("/incidents/{incident_id}/status", dependencies=[Csrf])
def change_status(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    status: Annotated[IncidentStatus, Form()],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        svc.change_status(incident_id, status, reason.strip())
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "status")


@router.post("/incidents/{incident_id}/reopen", dependencies=[Csrf])
def reopen(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        svc.reopen(incident_id, reason)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "reopened")


@router.post("/incidents/{incident_id}/awareness", dependencies=[Csrf])
def set_awareness(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    aware_at: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        when = _local_time(aware_at, "aware_at")
        if when is None:
            principal.require(Permission.INCIDENTS_MANAGE)
            raise InvalidInput("Give the time the organisation became aware.", field="aware_at")
        svc.set_awareness(incident_id, when, reason)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "awareness")


@router.post("/incidents/{incident_id}/regulator-notification", dependencies=[Csrf])
def regulator_notified(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    notified_at: Annotated[str, Form(max_length=40)] = "",
    late_reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        svc.record_regulator_notification(
            incident_id, _local_time(notified_at, "notified_at"), late_reason
        )
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "regulator")


@router.post("/incidents/{incident_id}/tasks", dependencies=[Csrf])
def add_task(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    title: Annotated[str, Form(max_length=200)] = "",
    assignee_id: Annotated[str, Form(max_length=20)] = "",
    due_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        if not title.strip():
            principal.require(Permission.INCIDENTS_MANAGE)
            raise InvalidInput("A task needs a title.", field="title")
        svc.add_task(
            incident_id,
            title.strip(),
            assignee_id=_optional_int(assignee_id, "assignee_id"),
            due_at=_local_time(due_at, "due_at"),
        )
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "task-added")


@router.post("/incidents/{incident_id}/tasks/{task_id}/done", dependencies=[Csrf])
def complete_task(
    request: Request,
    incident_id: IdPath,
    task_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        svc.complete_task(incident_id, task_id)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "task-done")


@router.post("/incidents/{incident_id}/notes", dependencies=[Csrf])
def add_note(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    body: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        if not body.strip():
            principal.require(Permission.INCIDENTS_MANAGE)
            raise InvalidInput("The note is empty.", field="body")
        svc.add_note(incident_id, body.strip())
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "note-added")


@router.post("/incidents/{incident_id}/attachments", dependencies=[Csrf])
def add_attachment(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    file: Annotated[UploadFile, File()],
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        name = (file.filename or "attachment").strip()[:255] or "attachment"
        if any(ord(ch) < 0x20 for ch in name):
            principal.require(Permission.INCIDENTS_MANAGE)
            raise InvalidInput("The file name must not contain control characters.")
        svc.attach(
            incident_id,
            name=name,
            media_type=file.content_type or "application/octet-stream",
            data=file.file.read(MAX_ATTACHMENT_BYTES + 1),
        )
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "attached")


@router.get("/incidents/{incident_id}/attachments/{attachment_id}")
def download_attachment(
    request: Request,
    incident_id: IdPath,
    attachment_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    name, _media_type, data = svc.read_attachment(incident_id, attachment_id)
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{fallback or "file"}"; '
            f"filename*=UTF-8''{quote(name)}"
        },
    )


@router.post("/incidents/{incident_id}/assess", dependencies=[Csrf])
def assess(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = _svc(db, remember(request, principal), settings, keys)
    try:
        svc.assess(incident_id)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, keys, principal, incident_id, exc)
    return _done(incident_id, "assessed")


def _customers_page(
    request: Request,
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    incident_id: int,
    offset: int,
    purpose: str | None,
) -> Response:
    svc = _svc(db, principal, settings, keys)
    incident = svc.get(incident_id)
    latest = svc.latest_assessment(incident_id)
    ids: list[str] = []
    total = 0
    names: dict[str, str | None] = {}
    if latest is not None:
        if purpose is not None:
            pairs = svc.affected_customer_names(
                incident_id, latest.version, purpose=purpose, limit=CUSTOMER_PAGE, offset=offset
            )
            names = dict(pairs)
        ids, total = svc.affected_customers(
            incident_id, latest.version, limit=CUSTOMER_PAGE, offset=offset
        )
    return render(
        request,
        "incidents/customers.html",
        {
            "incident": incident,
            "assessment": latest,
            "ids": ids,
            "names": names,
            "total": total,
            "limit": CUSTOMER_PAGE,
            "offset": offset,
            "base_query": "",
            "purpose": purpose or "",
            "can_reveal": principal.role is Role.DPO,
        },
        principal=principal,
    )


@router.get("/incidents/{incident_id}/customers", response_class=HTMLResponse)
def customers_page(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
) -> Response:
    """The affected customers' directory ids (listing audited)."""
    return _customers_page(
        request, db, settings, keys, remember(request, principal), incident_id, offset, None
    )


@router.post("/incidents/{incident_id}/customers", response_class=HTMLResponse, dependencies=[Csrf])
def customers_with_names(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    purpose: Annotated[str, Form(min_length=1, max_length=500)],
    offset: Annotated[int, Form(ge=0, le=10_000_000)] = 0,
) -> Response:
    """The dpo sees this page's names, for a stated purpose (audited)."""
    return _customers_page(
        request, db, settings, keys, remember(request, principal), incident_id, offset, purpose
    )
