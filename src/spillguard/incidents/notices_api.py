"""REST routes of the breach response's outward side: the regulator report, customer
notices (the outbox), notice templates, the escalation roster and the incident report.

Thin: each route parses input, makes one service call and returns a schema.  Bodies
carry customer ids and statuses, never a contact detail; documents (PDF, JSON, HTML)
count customers and never name them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.schemas import Page
from spillguard.incidents.escalation import EscalationService
from spillguard.incidents.models import NoticeChannel, Severity
from spillguard.incidents.notice_templates import PLACEHOLDERS, NoticeTemplateService
from spillguard.incidents.outbox import STATUSES, NoticeService
from spillguard.incidents.pdf import IncidentReportService, letters_pdf_of
from spillguard.incidents.regulator import RegulatorReportService, ReportFields

router = APIRouter(prefix="/api/v1", tags=["incident response"])

Version = Annotated[int | None, Query(ge=1, le=100_000, description="Default: the latest.")]


# --- schemas ----------------------------------------------------------------------------


class RegulatorReportPublic(BaseModel):
    """One version of the regulator report (the ICO form's answers)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int
    version: int
    status: str = Field(description="draft, submitted or follow-up")
    fields: ReportFields
    created_by_label: str | None
    created_at: datetime
    submitted_at: datetime | None


class ReportEdit(BaseModel):
    """Answers to change (only the ones given)."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Any] = Field(description="Field name → new answer (see ReportFields).")


class EnqueueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    override_reason: str | None = Field(
        default=None,
        max_length=1000,
        description="Why the customers are told although the assessment says they need not be.",
    )
    email_template_id: int | None = Field(default=None, ge=1)
    letter_template_id: int | None = Field(default=None, ge=1)


class EnqueuePublic(BaseModel):
    email: int
    letter: int
    manual: int
    already: int = Field(description="Customers queued before (not queued again).")


class NoticePublic(BaseModel):
    """One customer's notice: where it stands (no contact detail)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int
    customer_id: str
    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    message_id: str | None
    sent_at: datetime | None
    updated_at: datetime


class NoticeSummary(BaseModel):
    total: int
    by_status: dict[str, int]
    by_channel: dict[str, int]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(pattern="^(delivered|resend)$")
    note: str = Field(min_length=1, max_length=500, description="How it was checked, or why.")


class PostedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notice_ids: list[int] | None = Field(default=None, max_length=10_000)


class PostedPublic(BaseModel):
    posted: int


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    channel: NoticeChannel
    subject: str = Field(max_length=1000)
    body: str = Field(max_length=100_000)


class TemplatePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    channel: str
    subject: str | None
    body: str
    updated_at: datetime
    updated_by_label: str | None


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(max_length=1000)
    body: str = Field(max_length=100_000)


class PreviewPublic(BaseModel):
    subject: str
    body: str
    placeholders: dict[str, str]


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    role_title: str = Field(min_length=1, max_length=100)
    min_severity: Severity


class ContactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str
    role_title: str
    min_severity: str
    active: bool


class EscalationPublic(BaseModel):
    contact_id: int
    contact_name: str
    role_title: str
    notified_at: datetime | None
    acknowledged_at: datetime | None


# --- services -----------------------------------------------------------------------------


def _reports(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> RegulatorReportService:
    return RegulatorReportService(db, principal, settings, keys)


def _notices(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> NoticeService:
    return NoticeService(db, principal, settings, keys)


def _templates(db: DbSession, principal: ApiPrincipal) -> NoticeTemplateService:
    return NoticeTemplateService(db, principal)


def _escalation(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> EscalationService:
    return EscalationService(db, principal, settings, keys)


def _incident_report(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> IncidentReportService:
    return IncidentReportService(db, principal, settings, keys)


Reports = Annotated[RegulatorReportService, Depends(_reports)]
Notices = Annotated[NoticeService, Depends(_notices)]
Templates = Annotated[NoticeTemplateService, Depends(_templates)]
Escalation = Annotated[EscalationService, Depends(_escalation)]
IncidentReport = Annotated[IncidentReportService, Depends(_incident_report)]


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- regulator report -----------------------------------------------------------------


@router.get("/incidents/{incident_id}/regulator-report", response_model=RegulatorReportPublic)
def get_regulator_report(
    incident_id: IdPath, svc: Reports, version: Version = None
) -> RegulatorReportPublic:
    """A version of the regulator report (default: the latest)."""
    return RegulatorReportPublic.model_validate(svc.get(incident_id, version))


@router.get(
    "/incidents/{incident_id}/regulator-report/versions",
    response_model=list[RegulatorReportPublic],
)
def regulator_report_versions(incident_id: IdPath, svc: Reports) -> list[RegulatorReportPublic]:
    return [RegulatorReportPublic.model_validate(r) for r in svc.versions(incident_id)]


@router.post(
    "/incidents/{incident_id}/regulator-report/draft", response_model=RegulatorReportPublic
)
def draft_regulator_report(incident_id: IdPath, svc: Reports) -> RegulatorReportPublic:
    """The open draft; else a new one, pre-filled (first) or carrying the last submitted
    answers (follow-up).  dpo."""
    return RegulatorReportPublic.model_validate(svc.draft(incident_id))


@router.post(
    "/incidents/{incident_id}/regulator-report/refill", response_model=RegulatorReportPublic
)
def refill_regulator_report(incident_id: IdPath, svc: Reports) -> RegulatorReportPublic:
    """Answer the draft afresh from the incident and its latest assessment.  dpo."""
    return RegulatorReportPublic.model_validate(svc.refill(incident_id))


@router.patch("/incidents/{incident_id}/regulator-report", response_model=RegulatorReportPublic)
def edit_regulator_report(
    incident_id: IdPath, body: ReportEdit, svc: Reports
) -> RegulatorReportPublic:
    """Change answers of the draft.  dpo."""
    return RegulatorReportPublic.model_validate(svc.edit(incident_id, body.fields))


@router.post(
    "/incidents/{incident_id}/regulator-report/submit", response_model=RegulatorReportPublic
)
def submit_regulator_report(incident_id: IdPath, svc: Reports) -> RegulatorReportPublic:
    """Record the draft as given to the regulator (the first stops the breach clock; after
    the deadline it needs late_reason).  dpo."""
    return RegulatorReportPublic.model_validate(svc.submit(incident_id))


@router.get("/incidents/{incident_id}/regulator-report/export.json")
def export_regulator_report_json(
    incident_id: IdPath, svc: Reports, version: Version = None
) -> dict[str, Any]:
    return svc.export(incident_id, version, "json")


@router.get(
    "/incidents/{incident_id}/regulator-report/export.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def export_regulator_report_pdf(
    incident_id: IdPath, svc: Reports, version: Version = None
) -> Response:
    pdf, number = svc.export_pdf(incident_id, version)
    return _pdf(pdf, f"incident-{incident_id}-regulator-report-v{number}.pdf")


# --- customer notices ---------------------------------------------------------------


@router.post("/incidents/{incident_id}/notices", response_model=EnqueuePublic)
def enqueue_notices(
    incident_id: IdPath, svc: Notices, body: EnqueueRequest | None = None
) -> EnqueuePublic:
    """Queue one notice per affected customer not queued before.  dpo."""
    body = body or EnqueueRequest()
    result = svc.enqueue(
        incident_id,
        override_reason=body.override_reason,
        email_template_id=body.email_template_id,
        letter_template_id=body.letter_template_id,
    )
    return EnqueuePublic(
        email=result.email, letter=result.letter, manual=result.manual, already=result.already
    )


@router.get("/incidents/{incident_id}/notices", response_model=Page[NoticePublic])
def list_notices(
    incident_id: IdPath,
    svc: Notices,
    paging: Paging,
    status: Annotated[str | None, Query(max_length=16, description=", ".join(STATUSES))] = None,
    channel: Annotated[NoticeChannel | None, Query()] = None,
) -> Page[NoticePublic]:
    rows, total = svc.listing(
        incident_id,
        status=status,
        channel=channel.value if channel else None,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[NoticePublic.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/incidents/{incident_id}/notices/summary", response_model=NoticeSummary)
def notices_summary(incident_id: IdPath, svc: Notices) -> NoticeSummary:
    counts = svc.counts(incident_id)
    return NoticeSummary(
        total=counts.total, by_status=counts.by_status, by_channel=counts.by_channel
    )


@router.get("/incidents/{incident_id}/notices/follow-ups", response_model=list[NoticePublic])
def notices_follow_ups(incident_id: IdPath, svc: Notices) -> list[NoticePublic]:
    """Notices a person must act on: manual, unknown, bounced, failed, letters to post."""
    return [NoticePublic.model_validate(n) for n in svc.follow_ups(incident_id)]


@router.post("/incidents/{incident_id}/notices/{notice_id}/resolve", response_model=NoticePublic)
def resolve_notice(
    incident_id: IdPath, notice_id: IdPath, body: ResolveRequest, svc: Notices
) -> NoticePublic:
    """Settle an unknown, bounced, failed or manual notice: delivered, or resend.  dpo."""
    return NoticePublic.model_validate(svc.resolve(incident_id, notice_id, body.outcome, body.note))


@router.get(
    "/incidents/{incident_id}/notices/letters.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def letters_pdf(incident_id: IdPath, svc: Notices) -> Response:
    """The letters not yet posted, one per page (names and addresses: dpo, audited)."""
    return _pdf(letters_pdf_of(svc, incident_id), f"incident-{incident_id}-letters.pdf")


@router.post("/incidents/{incident_id}/notices/letters/posted", response_model=PostedPublic)
def letters_posted(
    incident_id: IdPath, svc: Notices, body: PostedRequest | None = None
) -> PostedPublic:
    """Record letters as posted (all queued letters, or the ones named).  dpo."""
    return PostedPublic(
        posted=svc.mark_letters_posted(incident_id, body.notice_ids if body else None)
    )


# --- the incident report ----------------------------------------------------------------


@router.get(
    "/incidents/{incident_id}/report.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def incident_report_pdf(incident_id: IdPath, svc: IncidentReport) -> Response:
    return _pdf(svc.pdf(incident_id), f"incident-{incident_id}-report.pdf")


@router.get("/incidents/{incident_id}/report.html", response_class=HTMLResponse)
def incident_report_html(incident_id: IdPath, svc: IncidentReport) -> HTMLResponse:
    """The same report as a self-contained HTML document (a download)."""
    return HTMLResponse(
        svc.html(incident_id),
        headers={
            "Content-Disposition": f'attachment; filename="incident-{incident_id}-report.html"'
        },
    )


# --- notice templates ------------------------------------------------------------------


@router.get("/notice-templates", response_model=list[TemplatePublic])
def list_templates(svc: Templates) -> list[TemplatePublic]:
    return [TemplatePublic.model_validate(t) for t in svc.listing()]


@router.post("/notice-templates", response_model=TemplatePublic, status_code=201)
def create_template(body: TemplateIn, svc: Templates) -> TemplatePublic:
    """Save a new template; one with an unknown placeholder is refused (422).  dpo."""
    return TemplatePublic.model_validate(
        svc.save(name=body.name, channel=body.channel.value, subject=body.subject, body=body.body)
    )


@router.put("/notice-templates/{template_id}", response_model=TemplatePublic)
def update_template(template_id: IdPath, body: TemplateIn, svc: Templates) -> TemplatePublic:
    return TemplatePublic.model_validate(
        svc.save(
            name=body.name,
            channel=body.channel.value,
            subject=body.subject,
            body=body.body,
            template_id=template_id,
        )
    )


@router.post("/notice-templates/preview", response_model=PreviewPublic)
def preview_template(body: PreviewIn, svc: Templates) -> PreviewPublic:
    """A template rendered with sample values (checked like a save)."""
    content = svc.preview(body.subject, body.body)
    return PreviewPublic(subject=content.subject, body=content.body, placeholders=PLACEHOLDERS)


# --- escalation -----------------------------------------------------------------------------


@router.get("/escalation-contacts", response_model=list[ContactPublic])
def list_contacts(svc: Escalation) -> list[ContactPublic]:
    return [ContactPublic.model_validate(c) for c in svc.contacts()]


@router.post("/escalation-contacts", response_model=ContactPublic, status_code=201)
def add_contact(body: ContactIn, svc: Escalation) -> ContactPublic:
    return ContactPublic.model_validate(
        svc.add_contact(body.name, body.email, body.role_title, body.min_severity.value)
    )


@router.delete("/escalation-contacts/{contact_id}", response_model=ContactPublic)
def deactivate_contact(contact_id: IdPath, svc: Escalation) -> ContactPublic:
    """Take a contact off the roster (kept, inactive, for the record)."""
    return ContactPublic.model_validate(svc.deactivate(contact_id))


@router.get("/incidents/{incident_id}/escalations", response_model=list[EscalationPublic])
def incident_escalations(incident_id: IdPath, svc: Escalation) -> list[EscalationPublic]:
    return [
        EscalationPublic(
            contact_id=c.id,
            contact_name=c.name,
            role_title=c.role_title,
            notified_at=e.notified_at,
            acknowledged_at=e.acknowledged_at,
        )
        for e, c in svc.escalations(incident_id)
    ]
