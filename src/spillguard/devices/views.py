"""Console pages of the devices module: the device list and device page (posture,
compliance, commands, report lost), enrollments with their QR code, device groups, and the
compliance policy editor.

Pages parse the form, make one service call and render; authorisation is decided by the
same services as the API.  Every form carries the CSRF token (``Csrf``).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from spillguard.console.render import HomePanel, render
from spillguard.core.db import utcnow
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
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.core.views import Csrf, remember
from spillguard.devices.commands import CommandService
from spillguard.devices.consequences import is_blocked_for_corporate_data
from spillguard.devices.enrollment import EnrollmentService, enrollment_status
from spillguard.devices.fleet import FleetFilter, FleetService
from spillguard.devices.models import PENDING_STATUSES, CommandType, DeviceState
from spillguard.devices.policies import PolicyService
from spillguard.devices.policy import CompliancePolicy, Consequence, Rule
from spillguard.devices.posture import PasscodeType, Platform
from spillguard.devices.schemas import ReportLost
from spillguard.devices.services import DeviceFilter, DeviceService, GroupService

router = APIRouter(include_in_schema=False)


def home_panel(db: Session, principal: Principal, settings: Settings) -> HomePanel | None:
    """The fleet's compliance counts on the home page, for roles that may see devices."""
    if not principal.can(Permission.DEVICES_VIEW):
        return None
    overview = FleetService(db, principal, settings).overview()
    return HomePanel("devices/_home_panel.html", overview)

PAGE_SIZE = 50
HISTORY_SIZE = 25
MESSAGES = {
    "command-queued": "Command queued; the device receives it at its next check-in.",
    "queue-cleared": "Queue cleared: every pending command was cancelled.",
    "command-cancelled": "Command cancelled.",
    "reported-lost": "Reported lost: lost mode, lock and locate are queued.",
    "device-updated": "Device updated.",
    "enrollment-revoked": "Enrollment revoked.",
    "group-created": "Group created.",
    "group-updated": "Group updated.",
    "policy-saved": "Policy saved; the devices it applies to were re-evaluated.",
}
COMMAND_LABELS = {
    CommandType.LOCK: "Lock",
    CommandType.LOST_MODE_ON: "Lost mode on",
    CommandType.LOST_MODE_OFF: "Lost mode off",
    CommandType.LOCATE: "Locate",
    CommandType.PLAY_SOUND: "Play sound",
    CommandType.SELECTIVE_WIPE: "Selective wipe",
    CommandType.WIPE: "Full wipe",
    CommandType.RETIRE: "Retire",
}
RULE_LABELS = {
    Rule.PASSCODE: "Passcode",
    Rule.AUTO_LOCK: "Auto-lock",
    Rule.ENCRYPTION: "Encryption",
    Rule.OS_VERSION: "OS version",
    Rule.ROOTED: "Rooted / jailbroken",
    Rule.AGENT: "Agent",
    Rule.STALE: "Last check-in",
}
CONSEQUENCE_LABELS = {
    Consequence.NOTIFY: "Notify the user",
    Consequence.BLOCK_CORPORATE_DATA: "Block corporate data",
    Consequence.LOCK: "Lock the device",
}


def flash(done: str | None) -> str | None:
    return MESSAGES.get(done or "")


async def read_form(request: Request) -> FormData:
    return await request.form()


Submitted = Annotated[FormData, Depends(read_form)]


# Device list -----------------------------------------------------------------------------
@router.get("/devices", response_class=HTMLResponse)
def devices_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    compliance: Annotated[str, Query(pattern="^(|compliant|non-compliant)$")] = "",
    state: Annotated[str, Query(pattern="^(|active|lost|wiped|retired)$")] = "",
    stale: Annotated[str, Query(pattern="^(|1)$")] = "",
    group_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    owner: Annotated[str, Query(max_length=320)] = "",
    platform: Annotated[str, Query(pattern="^(|ios|android|linux|other)$")] = "",
    offset: ConsoleOffset = 0,
) -> Response:
    svc = FleetService(db, remember(request, principal), settings)
    flt = FleetFilter(
        DeviceFilter(
            state=state or None,
            group_id=group_id,
            platform=platform or None,
            compliant={"compliant": True, "non-compliant": False}.get(compliance),
        ),
        stale=bool(stale),
        owner_email=owner.strip() or None,
    )
    now = utcnow()
    rows, total = svc.listing(flt, limit=PAGE_SIZE, offset=offset, now=now)
    groups, _ = GroupService(db, principal).listing(limit=500, offset=0)
    filters = {
        "compliance": compliance,
        "state": state,
        "stale": stale,
        "group_id": str(group_id or ""),
        "owner": owner,
        "platform": platform,
    }
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "devices/list.html",
        {
            "devices": rows,
            "stale_ids": {d.id for d in rows if svc.is_stale(d, now)},
            "overview": svc.overview(now),
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": query + "&" if query else "",
            "filters": filters,
            "groups": groups,
            "group_names": {g.id: g.name for g in groups},
            "platforms": [p.value for p in Platform],
            "states": [s.value for s in DeviceState],
            "filtered": bool(query),
        },
        principal=principal,
    )


# Device page -----------------------------------------------------------------------------
def _device_context(
    db: Session, settings: Settings, principal: Principal, device_id: int
) -> dict[str, Any]:
    device = DeviceService(db, principal).get(device_id)
    commands, commands_total = CommandService(db, principal, settings).listing(
        device_id, status=None, limit=HISTORY_SIZE, offset=0
    )
    locations, _ = DeviceService(db, principal).locations(device_id, limit=1, offset=0)
    history, _ = DeviceService(db, principal).compliance_history(device_id, limit=10, offset=0)
    posture = device.posture or {}
    passcode = posture.get("passcode") or {}
    managed = device.state in (DeviceState.ACTIVE.value, DeviceState.LOST.value)
    ctx: dict[str, Any] = {
        "device": device,
        "posture": posture,
        "passcode": passcode,
        "documents": len(posture.get("managed_documents") or []),
        "stale": FleetService(db, principal, settings).is_stale(device),
        "commands": commands,
        "commands_total": commands_total,
        "pending": sum(1 for c in commands if c.status in PENDING_STATUSES),
        "location": locations[0] if locations else None,
        "history": history,
        "blocked": is_blocked_for_corporate_data(db, device.id),
        "labels": COMMAND_LABELS,
        "managed": managed,
        "lost": device.state == DeviceState.LOST.value,
        "can_command": managed and principal.can(Permission.DEVICES_COMMAND),
        "can_wipe": managed and principal.can(Permission.DEVICES_WIPE),
        "can_report_lost": managed and principal.can(Permission.DEVICES_REPORT_LOST),
        "can_manage": principal.can(Permission.DEVICES_MANAGE),
        "can_see_exposure": principal.can(Permission.EXPOSURE_VIEW),
    }
    if ctx["can_manage"]:
        ctx["groups"], _ = GroupService(db, principal).listing(limit=500, offset=0)
        ctx["policies"], _ = PolicyService(db, principal).listing(limit=500, offset=0)
    return ctx


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    done: DoneFlag = None,
) -> Response:
    ctx = _device_context(db, settings, remember(request, principal), device_id)
    ctx["message"] = flash(done)
    return render(request, "devices/device.html", ctx, principal=principal)


@router.get("/devices/{device_id}/live", response_class=HTMLResponse)
def device_live(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
) -> Response:
    """The part of the device page that changes as the device checks in (htmx polls it)."""
    ctx = _device_context(db, settings, remember(request, principal), device_id)
    return render(request, "devices/_live.html", ctx, principal=principal)


def _refused(
    request: Request,
    db: Session,
    settings: Settings,
    principal: Principal,
    device_id: int,
    error: InvalidInput | Conflict,
) -> Response:
    """The device page again, with why the action was refused."""
    if not error.keep_changes:
        db.rollback()
    ctx = _device_context(db, settings, principal, device_id)
    ctx["error"] = error.detail
    return render(
        request, "devices/device.html", ctx, principal=principal, status_code=error.status
    )


@router.post("/devices/{device_id}/commands", response_class=HTMLResponse, dependencies=[Csrf])
def device_command(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    type: Annotated[CommandType, Form()],
    message: Annotated[str, Form(max_length=1000)] = "",
    phone: Annotated[str, Form(max_length=100)] = "",
    confirm_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    params: dict[str, Any] = {}
    if type in (CommandType.LOCK, CommandType.LOST_MODE_ON):
        params = {k: v for k, v in {"message": message, "phone": phone}.items() if v.strip()}
    svc = CommandService(db, remember(request, principal), settings)
    try:
        svc.queue(device_id, type, params, confirm_name=confirm_name or None)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, principal, device_id, exc)
    return RedirectResponse(f"/devices/{device_id}?done=command-queued", status_code=303)


@router.post("/devices/{device_id}/commands/clear", dependencies=[Csrf])
def device_clear_queue(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
) -> Response:
    CommandService(db, remember(request, principal), settings).clear(device_id)
    return RedirectResponse(f"/devices/{device_id}?done=queue-cleared", status_code=303)


@router.post("/devices/{device_id}/commands/{command_id}/cancel", dependencies=[Csrf])
def device_cancel_command(
    request: Request,
    device_id: IdPath,
    command_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
) -> Response:
    svc = CommandService(db, remember(request, principal), settings)
    try:
        svc.cancel(device_id, command_id)
    except Conflict as exc:
        return _refused(request, db, settings, principal, device_id, exc)
    return RedirectResponse(f"/devices/{device_id}?done=command-cancelled", status_code=303)


@router.post("/devices/{device_id}/report-lost", response_class=HTMLResponse, dependencies=[Csrf])
def device_report_lost(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    message: Annotated[str, Form(max_length=1000)] = "",
    phone: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    svc = CommandService(db, remember(request, principal), settings)
    try:
        try:
            body = ReportLost(message=message, phone=phone.strip() or None)
        except ValidationError:
            principal.require(Permission.DEVICES_REPORT_LOST)
            raise InvalidInput(
                "Report lost needs a lock-screen message of 1 to 200 characters and a phone "
                "number of at most 32.",
                field="message",
            ) from None
        svc.report_lost(device_id, body.message, body.phone)
    except (InvalidInput, Conflict) as exc:
        return _refused(request, db, settings, principal, device_id, exc)
    return RedirectResponse(f"/devices/{device_id}?done=reported-lost", status_code=303)


@router.post("/devices/{device_id}/assignment", dependencies=[Csrf])
def device_assignment(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    group_id: Annotated[str, Form(max_length=20)] = "",
    policy_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    DeviceService(db, remember(request, principal)).update(
        device_id,
        fields={"group_id", "policy_id"},
        group_id=_optional_id(group_id, "group_id"),
        policy_id=_optional_id(policy_id, "policy_id"),
    )
    return RedirectResponse(f"/devices/{device_id}?done=device-updated", status_code=303)


def _optional_id(value: str, field: str) -> int | None:
    if not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a number.", field=field) from None
    if not 1 <= number <= 2**62:
        raise InvalidInput(f"{field} is out of range.", field=field)
    return number


# Enrollments -----------------------------------------------------------------------------
def _enrollments_context(
    db: Session, keys: Any, principal: Principal, offset: int
) -> dict[str, Any]:
    rows, total = EnrollmentService(db, principal, keys).listing(limit=PAGE_SIZE, offset=offset)
    ctx: dict[str, Any] = {
        "enrollments": rows,
        "statuses": {e.id: enrollment_status(e, utcnow()) for e in rows},
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": "",
        "can_manage": principal.can(Permission.DEVICES_MANAGE),
    }
    if ctx["can_manage"]:
        ctx["groups"], _ = GroupService(db, principal).listing(limit=500, offset=0)
    return ctx


@router.get("/enrollments", response_class=HTMLResponse)
def enrollments_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    ctx = _enrollments_context(db, keys, remember(request, principal), offset)
    ctx["message"] = flash(done)
    return render(request, "devices/enrollments.html", ctx, principal=principal)


@router.post("/enrollments", response_class=HTMLResponse, dependencies=[Csrf])
def enrollments_create(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    email: Annotated[str, Form(max_length=320)],
    group_id: Annotated[str, Form(max_length=20)] = "",
    uses_allowed: Annotated[int, Form(ge=1, le=10_000)] = 1,
    expires_in_hours: Annotated[int, Form(ge=1, le=24 * 90)] = 72,
) -> Response:
    remember(request, principal)
    svc = EnrollmentService(db, principal, keys)
    try:
        user_id = FleetService(db, principal, settings).user_id_for_email(email)
        issued = svc.create(
            user_id=user_id,
            group_id=_optional_id(group_id, "group_id"),
            uses_allowed=uses_allowed,
            expires_in_hours=expires_in_hours,
            base_url=settings.base_url,
        )
    except (InvalidInput, Conflict) as exc:
        db.rollback()
        ctx = _enrollments_context(db, keys, principal, 0)
        ctx.update(error=exc.detail, email=email)
        return render(
            request, "devices/enrollments.html", ctx, principal=principal, status_code=exc.status
        )
    svg = svc.qr_svg(issued.enrollment.id, issued.token, settings.base_url)
    ctx = _enrollments_context(db, keys, principal, 0)
    ctx["issued"] = issued
    ctx["qr_data_uri"] = "data:image/svg+xml;base64," + base64.b64encode(svg).decode()
    return render(request, "devices/enrollments.html", ctx, principal=principal, status_code=201)


@router.post("/enrollments/{enrollment_id}/revoke", dependencies=[Csrf])
def enrollments_revoke(
    request: Request, enrollment_id: IdPath, db: DbSession, keys: Keys, principal: ConsolePrincipal
) -> Response:
    EnrollmentService(db, remember(request, principal), keys).revoke(enrollment_id)
    return RedirectResponse("/enrollments?done=enrollment-revoked", status_code=303)


# Groups ----------------------------------------------------------------------------------
@router.get("/device-groups", response_class=HTMLResponse)
def groups_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    rows, total = GroupService(db, remember(request, principal)).listing(
        limit=PAGE_SIZE, offset=offset
    )
    policies, _ = PolicyService(db, principal).listing(limit=500, offset=0)
    return render(
        request,
        "devices/groups.html",
        {
            "groups": rows,
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": "",
            "policies": policies,
            "policy_names": {p.id: p.name for p in policies},
            "can_manage": principal.can(Permission.DEVICES_MANAGE),
            "message": flash(done),
        },
        principal=principal,
    )


@router.post("/device-groups", dependencies=[Csrf])
def groups_create(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    description: Annotated[str, Form(max_length=500)] = "",
    policy_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    GroupService(db, remember(request, principal)).create(
        name.strip(), description.strip() or None, _optional_id(policy_id, "policy_id")
    )
    return RedirectResponse("/device-groups?done=group-created", status_code=303)


@router.post("/device-groups/{group_id}/policy", dependencies=[Csrf])
def groups_policy(
    request: Request,
    group_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    policy_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    GroupService(db, remember(request, principal)).update(
        group_id, fields={"policy_id"}, policy_id=_optional_id(policy_id, "policy_id")
    )
    return RedirectResponse("/device-groups?done=group-updated", status_code=303)


# Compliance policies ---------------------------------------------------------------------
@router.get("/policies", response_class=HTMLResponse)
def policies_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    svc = PolicyService(db, remember(request, principal))
    rows, total = svc.listing(limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "devices/policies.html",
        {
            "policies": rows,
            "assignments": {p.id: svc.assignments(p.id) for p in rows},
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": "",
            "can_manage": principal.can(Permission.DEVICES_MANAGE),
            "message": flash(done),
        },
        principal=principal,
    )


def _editor(
    request: Request,
    principal: Principal,
    values: dict[str, Any],
    policy_id: int | None,
    *,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "devices/policy_edit.html",
        {
            "values": values,
            "policy_id": policy_id,
            "errors": errors or [],
            "passcode_types": [t.value for t in PasscodeType],
            "platforms": list(Platform),
            "rules": [(r.value, RULE_LABELS[r]) for r in Rule],
            "consequences": [(c.value, CONSEQUENCE_LABELS[c]) for c in Consequence],
        },
        principal=principal,
        status_code=status_code,
    )


def policy_form_values(policy: CompliancePolicy) -> dict[str, Any]:
    """A policy as the editor's field values."""
    data = policy.model_dump(mode="json")
    values: dict[str, Any] = {
        k: ("" if v is None else v) for k, v in data.items() if not isinstance(v, dict)
    }
    for platform in Platform:
        values[f"min_os_version_{platform.value}"] = data["min_os_version"].get(platform.value, "")
    for rule in Rule:
        chosen = policy.consequence_for(rule)
        values[f"consequence_{rule.value}"] = chosen.consequence.value
        values[f"grace_{rule.value}"] = chosen.grace_seconds
    return values


def parse_policy_form(form: FormData) -> tuple[dict[str, Any], CompliancePolicy | None, list[str]]:
    """The editor's fields as a policy, or the plain-words reasons it is not one."""
    values = {k: v for k, v in form.items() if k != "csrf_token" and isinstance(v, str)}
    errors: list[str] = []

    def number(field: str) -> int | None:
        text = str(values.get(field, "")).strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            errors.append(f"{field.replace('_', ' ').capitalize()} must be a whole number.")
            return None

    raw: dict[str, Any] = {
        "name": str(values.get("name", "")).strip(),
        "min_passcode_type": values.get("min_passcode_type", "none"),
        "min_passcode_length": number("min_passcode_length") or 0,
        "allow_simple_passcode": "allow_simple_passcode" in values,
        "max_auto_lock_seconds": number("max_auto_lock_seconds"),
        "encryption_required": "encryption_required" in values,
        "max_failed_attempts": number("max_failed_attempts"),
        "min_os_version": {
            p.value: str(values[f"min_os_version_{p.value}"]).strip()
            for p in Platform
            if str(values.get(f"min_os_version_{p.value}", "")).strip()
        },
        "block_rooted": "block_rooted" in values,
        "agent_required": "agent_required" in values,
        "min_agent_version": str(values.get("min_agent_version", "")).strip() or None,
        "max_checkin_age_seconds": number("max_checkin_age_seconds"),
        "consequences": {},
    }
    for rule in Rule:
        consequence = values.get(f"consequence_{rule.value}", Consequence.NOTIFY.value)
        grace = number(f"grace_{rule.value}") or 0
        if consequence != Consequence.NOTIFY.value or grace:
            raw["consequences"][rule.value] = {"consequence": consequence, "grace_seconds": grace}
    if errors:
        return values, None, errors
    try:
        return values, CompliancePolicy.model_validate(raw), []
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "policy"
            errors.append(f"{where}: {err['msg']}")
        return values, None, errors


@router.get("/policies/new", response_class=HTMLResponse)
def policy_new(request: Request, principal: ConsolePrincipal) -> Response:
    remember(request, principal).require(Permission.DEVICES_MANAGE)
    return _editor(
        request, principal, policy_form_values(CompliancePolicy(name="New policy")), None
    )


@router.get("/policies/{policy_id}", response_class=HTMLResponse)
def policy_edit(
    request: Request, policy_id: IdPath, db: DbSession, principal: ConsolePrincipal
) -> Response:
    record = PolicyService(db, remember(request, principal)).get(policy_id)
    values = policy_form_values(CompliancePolicy.model_validate(record.rules))
    return _editor(request, principal, values, policy_id)


@router.post("/policies", response_class=HTMLResponse, dependencies=[Csrf])
def policy_create(
    request: Request, db: DbSession, principal: ConsolePrincipal, form: Submitted
) -> Response:
    remember(request, principal).require(Permission.DEVICES_MANAGE)
    values, policy, errors = parse_policy_form(form)
    if policy is None:
        return _editor(request, principal, values, None, errors=errors, status_code=422)
    try:
        PolicyService(db, principal).create(policy)
    except Conflict as exc:
        return _editor(request, principal, values, None, errors=[exc.detail], status_code=409)
    return RedirectResponse("/policies?done=policy-saved", status_code=303)


@router.post("/policies/{policy_id}", response_class=HTMLResponse, dependencies=[Csrf])
def policy_replace(
    request: Request,
    policy_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    form: Submitted,
) -> Response:
    remember(request, principal).require(Permission.DEVICES_MANAGE)
    values, policy, errors = parse_policy_form(form)
    if policy is None:
        return _editor(request, principal, values, policy_id, errors=errors, status_code=422)
    try:
        PolicyService(db, principal).replace(policy_id, policy)
    except Conflict as exc:
        return _editor(request, principal, values, policy_id, errors=[exc.detail], status_code=409)
    return RedirectResponse("/policies?done=policy-saved", status_code=303)


@router.get("/policies/{policy_id}/export.mobileconfig")
def policy_export_apple(
    request: Request, policy_id: IdPath, db: DbSession, principal: ConsolePrincipal
) -> Response:
    return _download(PolicyService(db, remember(request, principal)), policy_id, "apple")


@router.get("/policies/{policy_id}/export.android.json")
def policy_export_android(
    request: Request, policy_id: IdPath, db: DbSession, principal: ConsolePrincipal
) -> Response:
    return _download(PolicyService(db, remember(request, principal)), policy_id, "android")


def _download(svc: PolicyService, policy_id: int, fmt: str) -> Response:
    export = svc.export(policy_id, fmt)
    return Response(
        export.content,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )
