"""Incidents REST API (``/api/v1/incidents``): open and run incidents, their timeline,
tasks, notes, attachments, exposure assessment and breach clock.

Routes are thin: parse, one service call, a schema. Customer lists are ids only (their
listing is audited); names only for the dpo, for a stated purpose.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.errors import InvalidInput
from spillguard.core.schemas import Page
from spillguard.incidents.models import Incident, IncidentStatus, IncidentType
from spillguard.incidents.schemas import (
    AssessmentPublic,
    AttachmentPublic,
    AwarenessChange,
    CustomerIdsPage,
    CustomerName,
    IncidentCreate,
    IncidentPublic,
    IncidentUpdate,
    NamesReveal,
    NoteCreate,
    NotePublic,
    RegulatorNotification,
    Reopen,
    ScopeChange,
    StatusChange,
    TaskCreate,
    TaskPublic,
    TimelineEntryPublic,
)
from spillguard.incidents.services import (
    MAX_ATTACHMENT_BYTES,
    IncidentFilter,
    IncidentService,
)

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
VersionPath = Annotated[int, Path(ge=1, le=1_000_000, description="Assessment version")]


def incident_service(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> IncidentService:
    return IncidentService(db, principal, settings, keys)


Service = Annotated[IncidentService, Depends(incident_service)]


def _public(svc: IncidentService, incident: Incident) -> IncidentPublic:
    counts = svc.scope_counts(incident)
    return IncidentPublic.of(incident, svc.clock(incident), counts.customers, counts.honeytokens)


@router.get("", response_model=Page[IncidentPublic], summary="List incidents")
def list_incidents(
    svc: Service,
    paging: Paging,
    status_: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    type_: Annotated[IncidentType | None, Query(alias="type")] = None,
) -> Page[IncidentPublic]:
    """Incidents, oldest awareness first (the most urgent clock first)."""
    flt = IncidentFilter(status=status_, open_only=open_only, type=type_)
    rows, total = svc.listing(flt, limit=paging.limit, offset=paging.offset)
    return Page(
        items=[_public(svc, r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post("", response_model=IncidentPublic, status_code=status.HTTP_201_CREATED, summary="Open")
def create_incident(body: IncidentCreate, svc: Service) -> IncidentPublic:
    incident = svc.create(
        type=body.type,
        title=body.title,
        severity=body.severity,
        description=body.description,
        owner_id=body.owner_id,
        device_id=body.device_id,
        aware_at=body.aware_at,
    )
    return _public(svc, incident)


@router.get("/{incident_id}", response_model=IncidentPublic, summary="One incident")
def get_incident(incident_id: IdPath, svc: Service) -> IncidentPublic:
    return _public(svc, svc.get(incident_id))


@router.patch("/{incident_id}", response_model=IncidentPublic, summary="Edit")
def update_incident(incident_id: IdPath, body: IncidentUpdate, svc: Service) -> IncidentPublic:
    """Title, description, severity, owner. A closed incident: 409 (reopen it first)."""
    incident = svc.update(
        incident_id,
        title=body.title,
        description=body.description,
        severity=body.severity,
        owner_id=body.owner_id,
        clear_owner=body.clear_owner,
    )
    return _public(svc, incident)


@router.post("/{incident_id}/status", response_model=IncidentPublic, summary="Move on")
def change_status(incident_id: IdPath, body: StatusChange, svc: Service) -> IncidentPublic:
    """open → contained → assessed → notifying → closed; forward only (steps may be
    skipped)."""
    return _public(svc, svc.change_status(incident_id, body.status, body.reason))


@router.post("/{incident_id}/reopen", response_model=IncidentPublic, summary="Reopen")
def reopen(incident_id: IdPath, body: Reopen, svc: Service) -> IncidentPublic:
    return _public(svc, svc.reopen(incident_id, body.reason))


@router.put("/{incident_id}/awareness", response_model=IncidentPublic, summary="Awareness")
def set_awareness(incident_id: IdPath, body: AwarenessChange, svc: Service) -> IncidentPublic:
    """Correct when the organisation became aware (moves the regulator deadline)."""
    return _public(svc, svc.set_awareness(incident_id, body.aware_at, body.reason))


@router.put("/{incident_id}/scope", response_model=IncidentPublic, summary="Scope")
def set_scope(incident_id: IdPath, body: ScopeChange, svc: Service) -> IncidentPublic:
    """Customers (directory ids) and/or ledger entries an incident concerns (an insider
    leak); unknown ids are refused."""
    incident = svc.set_scope(
        incident_id, customer_ids=body.customer_ids, delivery_ids=body.delivery_ids
    )
    return _public(svc, incident)


@router.post(
    "/{incident_id}/regulator-notification",
    response_model=IncidentPublic,
    summary="Record the regulator notification",
)
def regulator_notified(
    incident_id: IdPath, body: RegulatorNotification, svc: Service
) -> IncidentPublic:
    """After the deadline, ``late_reason`` is required (GDPR Art 33(1))."""
    incident = svc.record_regulator_notification(incident_id, body.notified_at, body.late_reason)
    return _public(svc, incident)


@router.get("/{incident_id}/timeline", response_model=list[TimelineEntryPublic], summary="Timeline")
def get_timeline(incident_id: IdPath, svc: Service) -> list[TimelineEntryPublic]:
    return [TimelineEntryPublic.model_validate(e) for e in svc.timeline(incident_id)]


@router.get("/{incident_id}/tasks", response_model=list[TaskPublic], summary="Tasks")
def list_tasks(incident_id: IdPath, svc: Service) -> list[TaskPublic]:
    return [TaskPublic.model_validate(t) for t in svc.tasks(incident_id)]


@router.post(
    "/{incident_id}/tasks",
    response_model=TaskPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a task",
)
def add_task(incident_id: IdPath, body: TaskCreate, svc: Service) -> TaskPublic:
    task = svc.add_task(incident_id, body.title, assignee_id=body.assignee_id, due_at=body.due_at)
    return TaskPublic.model_validate(task)


@router.post("/{incident_id}/tasks/{task_id}/done", response_model=TaskPublic, summary="Task done")
def complete_task(incident_id: IdPath, task_id: IdPath, svc: Service) -> TaskPublic:
    return TaskPublic.model_validate(svc.complete_task(incident_id, task_id))


@router.get("/{incident_id}/notes", response_model=list[NotePublic], summary="Notes")
def list_notes(incident_id: IdPath, svc: Service) -> list[NotePublic]:
    return [NotePublic.model_validate(n) for n in svc.notes(incident_id)]


@router.post(
    "/{incident_id}/notes",
    response_model=NotePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a note",
)
def add_note(incident_id: IdPath, body: NoteCreate, svc: Service) -> NotePublic:
    note = svc.add_note(incident_id, body.body)
    return NotePublic(
        id=note.id, author_label=note.author_label, created_at=note.created_at, body=body.body
    )


@router.get(
    "/{incident_id}/attachments", response_model=list[AttachmentPublic], summary="Attachments"
)
def list_attachments(incident_id: IdPath, svc: Service) -> list[AttachmentPublic]:
    return [
        AttachmentPublic(
            id=row.id,
            name=name,
            media_type=row.media_type,
            size=row.size,
            uploaded_by_label=row.uploaded_by_label,
            created_at=row.created_at,
        )
        for row, name in svc.attachments(incident_id)
    ]


@router.post(
    "/{incident_id}/attachments",
    response_model=AttachmentPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Attach a file (kept encrypted)",
)
def add_attachment(
    incident_id: IdPath,
    svc: Service,
    file: Annotated[UploadFile, File(description="The file")],
    name: Annotated[str | None, Form(max_length=255)] = None,
) -> AttachmentPublic:
    data = file.file.read(MAX_ATTACHMENT_BYTES + 1)
    file_name = (name or file.filename or "attachment").strip()[:255] or "attachment"
    if any(ord(ch) < 0x20 for ch in file_name):
        raise InvalidInput("The file name must not contain control characters.", field="name")
    row = svc.attach(
        incident_id,
        name=file_name,
        media_type=file.content_type or "application/octet-stream",
        data=data,
    )
    return AttachmentPublic(
        id=row.id,
        name=file_name,
        media_type=row.media_type,
        size=row.size,
        uploaded_by_label=row.uploaded_by_label,
        created_at=row.created_at,
    )


def _disposition(name: str) -> str:
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name)}"


@router.get(
    "/{incident_id}/attachments/{attachment_id}",
    response_class=Response,
    summary="Download an attachment",
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
def download_attachment(incident_id: IdPath, attachment_id: IdPath, svc: Service) -> Response:
    name, media_type, data = svc.read_attachment(incident_id, attachment_id)
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": _disposition(name), "X-Original-Type": media_type[:200]},
    )


@router.get(
    "/{incident_id}/assessments", response_model=list[AssessmentPublic], summary="Assessments"
)
def list_assessments(incident_id: IdPath, svc: Service) -> list[AssessmentPublic]:
    """Every version, newest first."""
    return [AssessmentPublic.model_validate(a) for a in svc.assessments(incident_id)]


@router.post(
    "/{incident_id}/assessments",
    response_model=AssessmentPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Assess (again)",
)
def assess(incident_id: IdPath, svc: Service) -> AssessmentPublic:
    """Gather the facts (ledger, last posture, lock and wipe) and store a new version."""
    return AssessmentPublic.model_validate(svc.assess(incident_id))


@router.get(
    "/{incident_id}/assessments/{version}",
    response_model=AssessmentPublic,
    summary="One assessment version",
)
def get_assessment(incident_id: IdPath, version: VersionPath, svc: Service) -> AssessmentPublic:
    return AssessmentPublic.model_validate(svc.assessment(incident_id, version))


@router.get(
    "/{incident_id}/assessments/{version}/customers",
    response_model=CustomerIdsPage,
    summary="Affected customers (directory ids)",
)
def affected_customers(
    incident_id: IdPath, version: VersionPath, svc: Service, paging: Paging
) -> CustomerIdsPage:
    """Directory ids only; the listing is audited."""
    ids, total = svc.affected_customers(
        incident_id, version, limit=paging.limit, offset=paging.offset
    )
    return CustomerIdsPage(items=ids, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "/{incident_id}/assessments/{version}/customers/names",
    response_model=list[CustomerName],
    summary="Affected customers' names (dpo, stated purpose)",
)
def affected_customer_names(
    incident_id: IdPath, version: VersionPath, body: NamesReveal, svc: Service
) -> list[CustomerName]:
    pairs = svc.affected_customer_names(
        incident_id, version, purpose=body.purpose, limit=body.limit, offset=body.offset
    )
    return [CustomerName(customer_id=i, name=n) for i, n in pairs]
