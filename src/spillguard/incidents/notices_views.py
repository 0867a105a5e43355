"""Console pages of the breach response's outward side.

- ``/incidents/{id}/notices``: the notices' statuses, "Notify customers" (dpo), the
  follow-up list (manual, unknown, bounced, failed, letters to post) with the dpo's
  resolution, the letters PDF;
- ``/incidents/{id}/regulator-report``: the ICO form's answers, edited by the dpo,
  submitted and followed up, every version kept, exported as PDF and JSON;
- ``/incidents/{id}/report``: the incident report (HTML here, PDF and HTML download);
- ``/notices/templates``: notice templates (a template with an unknown placeholder is
  refused when saved);
- ``/notices/escalation``: the escalation roster;
- ``/escalation/ack/{token}``: the public acknowledgement page of an escalation e-mail.

Pages parse the form, make one service call, and redirect or render; the services decide
authorisation.  Forms carry the CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from spillguard.console.render import render
from spillguard.core.deps import (
    AppSettings,
    ConsoleOffset,
    ConsolePrincipal,
    DbSession,
    DoneFlag,
    IdPath,
    Keys,
)
from spillguard.core.errors import DomainError
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.core.views import Csrf, remember
from spillguard.incidents.escalation import EscalationService
from spillguard.incidents.models import NoticeChannel, Severity
from spillguard.incidents.notice_templates import (
    DEFAULT_TEMPLATES,
    PLACEHOLDERS,
    NoticeTemplateService,
)
from spillguard.incidents.outbox import STATUSES, NoticeService
from spillguard.incidents.pdf import IncidentReportService, letters_pdf_of
from spillguard.incidents.regulator import QUESTIONS, RegulatorReportService, ReportFields

router = APIRouter(include_in_schema=False)
AckToken = Annotated[str, Path(max_length=200)]
PAGE_SIZE = 100
MESSAGES = {
    "queued": "Notices queued; they go out at the configured rate.",
    "resolved": "Notice settled.",
    "posted": "Letters recorded as posted.",
    "saved": "Saved.",
    "submitted": "Recorded as given to the regulator.",
    "drafted": "A new draft is open.",
    "refilled": "The draft was answered afresh from the incident.",
    "added": "Added to the roster.",
    "removed": "Taken off the roster.",
}
LIST_FIELDS = {"data_categories", "people_categories"}
INT_FIELDS = {"approx_records", "approx_people"}
BOOL_FIELDS = {"special_category_data"}


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _whole_number(value: str) -> bool:
    """An id as a form sends it: ASCII digits only ("²".isdigit() is true, and int()
    refuses it), short enough for the database's integers."""
    return value.isascii() and value.isdigit() and len(value) <= 18


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# --- notices ------------------------------------------------------------------------------


def _notices_context(
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    incident_id: int,
    status: str | None,
    offset: int,
) -> dict[str, Any]:
    svc = NoticeService(db, principal, settings, keys)
    counts = svc.counts(incident_id)
    rows, total = svc.listing(incident_id, status=status, limit=PAGE_SIZE, offset=offset)
    return {
        "incident_id": incident_id,
        "counts": counts,
        "notices": rows,
        "total": total,
        "status": status,
        "statuses": STATUSES,
        "follow_ups": svc.follow_ups(incident_id),
        "is_dpo": principal.role is Role.DPO,
        "offset": offset,
        "limit": PAGE_SIZE,
        "base_query": f"status={status or ''}&",
        "templates": NoticeTemplateService(db, principal).listing(),
    }


@router.get("/incidents/{incident_id}/notices", response_class=HTMLResponse)
def notices_page(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    status: Annotated[str | None, Query(max_length=16)] = None,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    ctx = _notices_context(
        db, settings, keys, remember(request, principal), incident_id, status or None, offset
    )
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "incidents/notices.html", ctx, principal=principal)


def _notices_refused(
    request: Request,
    db: Session,
    settings: Settings,
    keys: KeyRing,
    principal: Principal,
    incident_id: int,
    error: DomainError,
) -> Response:
    db.rollback()
    ctx = _notices_context(db, settings, keys, principal, incident_id, None, 0)
    ctx["error"] = error.detail
    return render(
        request, "incidents/notices.html", ctx, principal=principal, status_code=error.status
    )


@router.post("/incidents/{incident_id}/notices", dependencies=[Csrf])
def notices_enqueue(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    override_reason: Annotated[str, Form(max_length=1000)] = "",
    email_template_id: Annotated[str, Form(max_length=20)] = "",
    letter_template_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    principal = remember(request, principal)
    try:
        NoticeService(db, principal, settings, keys).enqueue(
            incident_id,
            override_reason=override_reason or None,
            email_template_id=int(email_template_id) if _whole_number(email_template_id) else None,
            letter_template_id=(
                int(letter_template_id) if _whole_number(letter_template_id) else None
            ),
        )
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return _notices_refused(request, db, settings, keys, principal, incident_id, exc)
    return _redirect(f"/incidents/{incident_id}/notices?done=queued")


@router.post("/incidents/{incident_id}/notices/{notice_id}/resolve", dependencies=[Csrf])
def notices_resolve(
    request: Request,
    incident_id: IdPath,
    notice_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    outcome: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    principal = remember(request, principal)
    try:
        NoticeService(db, principal, settings, keys).resolve(incident_id, notice_id, outcome, note)
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        return _notices_refused(request, db, settings, keys, principal, incident_id, exc)
    return _redirect(f"/incidents/{incident_id}/notices?done=resolved")


@router.get("/incidents/{incident_id}/notices/letters.pdf")
def notices_letters(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = NoticeService(db, remember(request, principal), settings, keys)
    return _pdf(letters_pdf_of(svc, incident_id), f"incident-{incident_id}-letters.pdf")


@router.post("/incidents/{incident_id}/notices/letters/posted", dependencies=[Csrf])
def notices_letters_posted(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    NoticeService(db, remember(request, principal), settings, keys).mark_letters_posted(
        incident_id, None
    )
    return _redirect(f"/incidents/{incident_id}/notices?done=posted")


# --- regulator report -----------------------------------------------------------------


def _report_context(
    db: Session, settings: Settings, keys: KeyRing, principal: Principal, incident_id: int
) -> dict[str, Any]:
    svc = RegulatorReportService(db, principal, settings, keys)
    versions = svc.versions(incident_id)
    latest = versions[-1] if versions else None
    fields = ReportFields.model_validate(latest.fields) if latest else None
    return {
        "incident_id": incident_id,
        "versions": versions,
        "latest": latest,
        "fields": fields.model_dump(mode="json") if fields else {},
        "questions": QUESTIONS,
        "list_fields": LIST_FIELDS,
        "int_fields": INT_FIELDS,
        "bool_fields": BOOL_FIELDS,
        "people_told_choices": ["yes", "planned", "no", "not-required"],
        "may_edit": principal.can(Permission.INCIDENTS_NOTIFY),
    }


@router.get("/incidents/{incident_id}/regulator-report", response_class=HTMLResponse)
def regulator_report_page(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    done: DoneFlag = None,
) -> Response:
    ctx = _report_context(db, settings, keys, remember(request, principal), incident_id)
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "incidents/report_regulator.html", ctx, principal=principal)


def _form_fields(form: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, _label in QUESTIONS:
        raw = form.get(name)
        if name in BOOL_FIELDS:
            changes[name] = raw == "on"
            continue
        if raw is None:
            continue
        text = str(raw)
        if name in LIST_FIELDS:
            changes[name] = [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]
        elif name in INT_FIELDS:
            changes[name] = text.strip() or "0"
        else:
            changes[name] = text
    return changes


@router.post("/incidents/{incident_id}/regulator-report", dependencies=[Csrf])
async def regulator_report_save(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    principal = remember(request, principal)
    form = await request.form()
    action = str(form.get("action") or "save")
    svc = RegulatorReportService(db, principal, settings, keys)
    try:
        if action == "draft":
            svc.draft(incident_id)
            flag = "drafted"
        elif action == "refill":
            svc.refill(incident_id)
            flag = "refilled"
        else:
            svc.edit(incident_id, _form_fields(form))
            flag = "saved"
            if action == "submit":
                svc.submit(incident_id)
                flag = "submitted"
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        db.rollback()
        ctx = _report_context(db, settings, keys, principal, incident_id)
        ctx["error"] = exc.detail
        return render(
            request,
            "incidents/report_regulator.html",
            ctx,
            principal=principal,
            status_code=exc.status,
        )
    return _redirect(f"/incidents/{incident_id}/regulator-report?done={flag}")


@router.get("/incidents/{incident_id}/regulator-report.pdf")
def regulator_report_pdf(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    svc = RegulatorReportService(db, remember(request, principal), settings, keys)
    data, number = svc.export_pdf(incident_id, version)
    return _pdf(data, f"incident-{incident_id}-regulator-report-v{number}.pdf")


@router.get("/incidents/{incident_id}/regulator-report.json")
def regulator_report_json(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    svc = RegulatorReportService(db, remember(request, principal), settings, keys)
    data = svc.export(incident_id, version, "json")
    return JSONResponse(
        data,
        headers={
            "Content-Disposition": f'attachment; filename="incident-{incident_id}-'
            f'regulator-report-v{data["version"]}.json"'
        },
    )


# --- incident report --------------------------------------------------------------------


@router.get("/incidents/{incident_id}/report", response_class=HTMLResponse)
def incident_report_page(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = IncidentReportService(db, remember(request, principal), settings, keys)
    return render(request, "incidents/report.html", svc.context(incident_id), principal=principal)


@router.get("/incidents/{incident_id}/report.pdf")
def incident_report_pdf(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = IncidentReportService(db, remember(request, principal), settings, keys)
    return _pdf(svc.pdf(incident_id), f"incident-{incident_id}-report.pdf")


@router.get("/incidents/{incident_id}/report.html")
def incident_report_download(
    request: Request,
    incident_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    svc = IncidentReportService(db, remember(request, principal), settings, keys)
    return HTMLResponse(
        svc.html(incident_id),
        headers={
            "Content-Disposition": f'attachment; filename="incident-{incident_id}-report.html"'
        },
    )


# --- templates ---------------------------------------------------------------------------


def _templates_context(db: Session, principal: Principal) -> dict[str, Any]:
    svc = NoticeTemplateService(db, principal)
    return {
        "templates": svc.listing(),
        "defaults": list(DEFAULT_TEMPLATES.values()),
        "placeholders": PLACEHOLDERS,
        "channels": [NoticeChannel.EMAIL.value, NoticeChannel.LETTER.value],
        "may_edit": principal.can(Permission.INCIDENTS_NOTIFY),
        "form": {},
    }


@router.get("/notices/templates", response_class=HTMLResponse)
def templates_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    edit: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    done: DoneFlag = None,
) -> Response:
    principal = remember(request, principal)
    ctx = _templates_context(db, principal)
    if edit is not None:
        t = NoticeTemplateService(db, principal).get(edit)
        ctx["form"] = {
            "id": t.id,
            "name": t.name,
            "channel": t.channel,
            "subject": t.subject,
            "body": t.body,
        }
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "incidents/notices_templates.html", ctx, principal=principal)


@router.post("/notices/templates", dependencies=[Csrf])
def templates_save(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    name: Annotated[str, Form(max_length=200)],
    channel: Annotated[str, Form(max_length=16)],
    subject: Annotated[str, Form(max_length=1000)],
    body: Annotated[str, Form(max_length=100_000)],
    template_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    principal = remember(request, principal)
    try:
        NoticeTemplateService(db, principal).save(
            name=name,
            channel=channel,
            subject=subject,
            body=body,
            template_id=int(template_id) if _whole_number(template_id) else None,
        )
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        db.rollback()
        ctx = _templates_context(db, principal)
        ctx["error"] = exc.detail
        ctx["form"] = {
            "id": template_id,
            "name": name,
            "channel": channel,
            "subject": subject,
            "body": body,
        }
        return render(
            request,
            "incidents/notices_templates.html",
            ctx,
            principal=principal,
            status_code=exc.status,
        )
    return _redirect("/notices/templates?done=saved")


# --- escalation ---------------------------------------------------------------------------


@router.get("/notices/escalation", response_class=HTMLResponse)
def escalation_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    done: DoneFlag = None,
) -> Response:
    principal = remember(request, principal)
    svc = EscalationService(db, principal, settings, keys)
    ctx = {
        "contacts": svc.contacts(),
        "severities": [s.value for s in Severity],
        "may_edit": principal.can(Permission.INCIDENTS_MANAGE),
        "message": MESSAGES.get(done or ""),
    }
    return render(request, "incidents/notices_escalation.html", ctx, principal=principal)


@router.post("/notices/escalation", dependencies=[Csrf])
def escalation_add(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    name: Annotated[str, Form(max_length=200)],
    email: Annotated[str, Form(max_length=320)],
    role_title: Annotated[str, Form(max_length=100)],
    min_severity: Annotated[str, Form(max_length=16)],
) -> Response:
    principal = remember(request, principal)
    svc = EscalationService(db, principal, settings, keys)
    try:
        svc.add_contact(name, email, role_title, min_severity)
    except DomainError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        db.rollback()
        ctx = {
            "contacts": svc.contacts(),
            "severities": [s.value for s in Severity],
            "may_edit": True,
            "error": exc.detail,
        }
        return render(
            request,
            "incidents/notices_escalation.html",
            ctx,
            principal=principal,
            status_code=exc.status,
        )
    return _redirect("/notices/escalation?done=added")


@router.post("/notices/escalation/{contact_id}/remove", dependencies=[Csrf])
def escalation_remove(
    request: Request,
    contact_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    EscalationService(db, remember(request, principal), settings, keys).deactivate(contact_id)
    return _redirect("/notices/escalation?done=removed")


@router.get("/escalation/ack/{token}", response_class=HTMLResponse)
def escalation_ack_page(
    request: Request,
    token: AckToken,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    """What the link in an escalation e-mail opens: the incident's number and a button
    (a GET acknowledges nothing)."""
    view = EscalationService(db, remember(request, principal), settings, keys).view(token)
    return render(
        request,
        "incidents/notices_ack.html",
        {"view": view, "token": token},
        principal=principal,
        headers={"Referrer-Policy": "no-referrer"},
    )


@router.post("/escalation/ack/{token}", dependencies=[Csrf])
def escalation_ack(
    request: Request,
    token: AckToken,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
) -> Response:
    view = EscalationService(db, remember(request, principal), settings, keys).acknowledge(token)
    return render(
        request,
        "incidents/notices_ack.html",
        {"view": view, "token": token, "acknowledged": True},
        principal=principal,
    )
