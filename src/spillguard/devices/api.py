"""Devices REST API (``/api/v1/devices``, ``/device-groups``, ``/enrollments``,
``/compliance-policies``) and the device protocol (``/api/device/v1``).

Each route parses input, makes one service call and returns a schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.routing import APIRoute
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from spillguard.core.deps import (
    ApiPrincipal,
    AppSettings,
    DbSession,
    IdPath,
    Keys,
    Paging,
    anonymous,
    unit_of_work,
)
from spillguard.core.keys import KeyRing
from spillguard.core.roles import mark_authz_checked
from spillguard.core.schemas import Page
from spillguard.core.settings import Settings
from spillguard.devices.commands import CommandService
from spillguard.devices.enrollment import (
    EnrollmentService,
    enroll_device,
    enrollment_status,
)
from spillguard.devices.fast_checkin import FastCheckin
from spillguard.devices.models import CommandStatus, CommandType, Device, DeviceState, Enrollment
from spillguard.devices.policies import PolicyService
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.posture import Platform
from spillguard.devices.protocol import ProtocolService, authenticate_device
from spillguard.devices.schemas import (
    CheckinRequest,
    CheckinResponse,
    CommandCreate,
    CommandOut,
    CommandPublic,
    CommandQueued,
    CommandResultIn,
    CommandResultOut,
    ComplianceChangePublic,
    ComplianceOut,
    DevicePublic,
    DeviceUpdate,
    EnrollmentCreate,
    EnrollmentIssued,
    EnrollmentPublic,
    EnrollmentQr,
    EnrollRequest,
    EnrollResponse,
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    LocationIn,
    LocationPublic,
    PolicyPublic,
    QueueCleared,
    ReportedLost,
    ReportLost,
)
from spillguard.devices.services import (
    NO_POLICY_NOTE,
    DeviceFilter,
    DeviceService,
    GroupService,
    effective_policy,
)


@asynccontextmanager
async def protocol_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown, write the check-in times the fast path still holds (devices.lastseen)."""
    yield
    fast: FastCheckin | None = getattr(app.state, "fast_checkin", None)
    if fast is not None:
        await run_in_threadpool(fast.close)


router = APIRouter(prefix="/api/v1")
protocol = APIRouter(prefix="/api/device/v1", tags=["device protocol"], lifespan=protocol_lifespan)


def device_public(session: Session, device: Device) -> DevicePublic:
    record = effective_policy(session, device)
    return DevicePublic(
        id=device.id,
        name=device.name,
        platform=device.platform,
        model=device.model,
        serial=device.serial,
        os_version=device.os_version,
        owner_id=device.owner_id,
        owner_email=device.owner.email,
        group_id=device.group_id,
        policy_id=device.policy_id,
        effective_policy_id=record.id if record else None,
        state=DeviceState(device.state),
        enrolled_at=device.enrolled_at,
        last_checkin_at=device.last_checkin_at,
        compliant=device.compliant,
        compliance_reasons=list(device.compliance_reasons or []),
        compliance_note=NO_POLICY_NOTE if device.compliance_policy_id is None else None,
        compliance_evaluated_at=device.compliance_evaluated_at,
        blocked_for_corporate_data=device.blocked_for_corporate_data,
        lost_message=device.lost_message,
        lost_phone=device.lost_phone,
        lost_reported_at=device.lost_reported_at,
        posture=device.posture,
    )


def enrollment_public(enrollment: Enrollment) -> dict[str, Any]:
    from spillguard.core.db import utcnow

    data = EnrollmentPublic.model_validate(
        {
            **{k: getattr(enrollment, k) for k in EnrollmentPublic.model_fields if k != "status"},
            "status": enrollment_status(enrollment, utcnow()),
        }
    )
    return data.model_dump()


def policy_public(svc: PolicyService, record: Any) -> PolicyPublic:
    groups, devices = svc.assignments(record.id)
    return PolicyPublic(
        id=record.id,
        name=record.name,
        rules=CompliancePolicy.model_validate(record.rules),
        created_at=record.created_at,
        updated_at=record.updated_at,
        group_ids=groups,
        device_ids=devices,
    )


# --- devices -----------------------------------------------------------------------------


@router.get("/devices", response_model=Page[DevicePublic], tags=["devices"])
def list_devices(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    state: DeviceState | None = None,
    group_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    owner_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    platform: Platform | None = None,
    compliant: bool | None = None,
) -> Page[DevicePublic]:
    flt = DeviceFilter(
        state.value if state else None,
        group_id,
        owner_id,
        platform.value if platform else None,
        compliant,
    )
    rows, total = DeviceService(db, principal).listing(
        flt, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[device_public(db, d) for d in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/devices/{device_id}", response_model=DevicePublic, tags=["devices"])
def get_device(device_id: IdPath, db: DbSession, principal: ApiPrincipal) -> DevicePublic:
    return device_public(db, DeviceService(db, principal).get(device_id))


@router.patch("/devices/{device_id}", response_model=DevicePublic, tags=["devices"])
def update_device(
    device_id: IdPath, body: DeviceUpdate, db: DbSession, principal: ApiPrincipal
) -> DevicePublic:
    device = DeviceService(db, principal).update(
        device_id,
        fields=set(body.model_fields_set),
        name=body.name,
        group_id=body.group_id,
        policy_id=body.policy_id,
    )
    return device_public(db, device)


@router.get(
    "/devices/{device_id}/compliance-history",
    response_model=Page[ComplianceChangePublic],
    tags=["devices"],
)
def compliance_history(
    device_id: IdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> Page[ComplianceChangePublic]:
    rows, total = DeviceService(db, principal).compliance_history(
        device_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[ComplianceChangePublic.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/devices/{device_id}/locations", response_model=Page[LocationPublic], tags=["devices"])
def device_locations(
    device_id: IdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> Page[LocationPublic]:
    rows, total = DeviceService(db, principal).locations(
        device_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[LocationPublic.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/devices/{device_id}/commands", response_model=Page[CommandPublic], tags=["devices"])
def list_commands(
    device_id: IdPath,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
    paging: Paging,
    status_: Annotated[
        str | None,
        Query(
            alias="status",
            pattern="^(pending|queued|sent|acknowledged|error|expired|cancelled)$",
        ),
    ] = None,
) -> Page[CommandPublic]:
    rows, total = CommandService(db, principal, settings).listing(
        device_id, status=status_, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[CommandPublic.model_validate(c) for c in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandQueued,
    status_code=status.HTTP_201_CREATED,
    tags=["devices"],
    summary="Queue a command (an identical pending one is returned instead, with 200)",
    responses={200: {"model": CommandQueued, "description": "Collapsed into a pending one"}},
)
def queue_command(
    device_id: IdPath,
    body: CommandCreate,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
    response: Response,
) -> CommandQueued:
    queued = CommandService(db, principal, settings).queue(
        device_id,
        CommandType(body.type),
        body.params,
        confirm_name=body.confirm_name,
        expires_in_seconds=body.expires_in_seconds,
    )
    if queued.collapsed:
        response.status_code = status.HTTP_200_OK
    return CommandQueued(
        **CommandPublic.model_validate(queued.command).model_dump(), collapsed=queued.collapsed
    )


@router.delete(
    "/devices/{device_id}/commands",
    response_model=QueueCleared,
    tags=["devices"],
    summary="Clear the queue: cancel every pending command",
)
def clear_commands(
    device_id: IdPath, db: DbSession, principal: ApiPrincipal, settings: AppSettings
) -> QueueCleared:
    return QueueCleared(cancelled=CommandService(db, principal, settings).clear(device_id))


@router.delete(
    "/devices/{device_id}/commands/{command_id}", response_model=CommandPublic, tags=["devices"]
)
def cancel_command(
    device_id: IdPath,
    command_id: IdPath,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
) -> CommandPublic:
    command = CommandService(db, principal, settings).cancel(device_id, command_id)
    return CommandPublic.model_validate(command)


@router.post(
    "/devices/{device_id}/report-lost",
    response_model=ReportedLost,
    tags=["devices"],
    summary="Lost mode, lock with a message, and locate, in one audited action",
)
def report_lost(
    device_id: IdPath,
    body: ReportLost,
    db: DbSession,
    principal: ApiPrincipal,
    settings: AppSettings,
) -> ReportedLost:
    commands = CommandService(db, principal, settings).report_lost(
        device_id, body.message, body.phone
    )
    device = DeviceService(db, principal).get(device_id)
    return ReportedLost(
        device=device_public(db, device),
        commands=[CommandPublic.model_validate(c) for c in commands],
    )


# --- groups ------------------------------------------------------------------------------


@router.get("/device-groups", response_model=Page[GroupPublic], tags=["device groups"])
def list_groups(db: DbSession, principal: ApiPrincipal, paging: Paging) -> Page[GroupPublic]:
    rows, total = GroupService(db, principal).listing(limit=paging.limit, offset=paging.offset)
    return Page(
        items=[GroupPublic.model_validate(g) for g in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/device-groups",
    response_model=GroupPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["device groups"],
)
def create_group(body: GroupCreate, db: DbSession, principal: ApiPrincipal) -> GroupPublic:
    group = GroupService(db, principal).create(body.name, body.description, body.policy_id)
    return GroupPublic.model_validate(group)


@router.get("/device-groups/{group_id}", response_model=GroupPublic, tags=["device groups"])
def get_group(group_id: IdPath, db: DbSession, principal: ApiPrincipal) -> GroupPublic:
    return GroupPublic.model_validate(GroupService(db, principal).get(group_id))


@router.patch("/device-groups/{group_id}", response_model=GroupPublic, tags=["device groups"])
def update_group(
    group_id: IdPath, body: GroupUpdate, db: DbSession, principal: ApiPrincipal
) -> GroupPublic:
    group = GroupService(db, principal).update(
        group_id,
        fields=set(body.model_fields_set),
        name=body.name,
        description=body.description,
        policy_id=body.policy_id,
    )
    return GroupPublic.model_validate(group)


# --- enrollments -------------------------------------------------------------------------


@router.get("/enrollments", response_model=Page[EnrollmentPublic], tags=["enrollments"])
def list_enrollments(
    db: DbSession, principal: ApiPrincipal, keys: Keys, paging: Paging
) -> Page[EnrollmentPublic]:
    rows, total = EnrollmentService(db, principal, keys).listing(
        limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[EnrollmentPublic(**enrollment_public(e)) for e in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/enrollments",
    response_model=EnrollmentIssued,
    status_code=status.HTTP_201_CREATED,
    tags=["enrollments"],
    summary="Create an enrollment; its token and URL are in this response only",
)
def create_enrollment(
    body: EnrollmentCreate,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> EnrollmentIssued:
    issued = EnrollmentService(db, principal, keys).create(
        user_id=body.user_id,
        group_id=body.group_id,
        uses_allowed=body.uses_allowed,
        expires_in_hours=body.expires_in_hours,
        base_url=settings.base_url,
    )
    return EnrollmentIssued(
        **enrollment_public(issued.enrollment), token=issued.token, enrollment_url=issued.url
    )


@router.get("/enrollments/{enrollment_id}", response_model=EnrollmentPublic, tags=["enrollments"])
def get_enrollment(
    enrollment_id: IdPath, db: DbSession, principal: ApiPrincipal, keys: Keys
) -> EnrollmentPublic:
    return EnrollmentPublic(
        **enrollment_public(EnrollmentService(db, principal, keys).get(enrollment_id))
    )


@router.delete(
    "/enrollments/{enrollment_id}",
    response_model=EnrollmentPublic,
    tags=["enrollments"],
    summary="Revoke an enrollment",
)
def revoke_enrollment(
    enrollment_id: IdPath, db: DbSession, principal: ApiPrincipal, keys: Keys
) -> EnrollmentPublic:
    return EnrollmentPublic(
        **enrollment_public(EnrollmentService(db, principal, keys).revoke(enrollment_id))
    )


@router.post(
    "/enrollments/{enrollment_id}/qr",
    response_class=Response,
    tags=["enrollments"],
    summary="The enrollment URL as a QR code (SVG); send the enrollment's token",
    responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
)
def enrollment_qr(
    enrollment_id: IdPath,
    body: EnrollmentQr,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> Response:
    svg = EnrollmentService(db, principal, keys).qr_svg(
        enrollment_id, body.token, settings.base_url
    )
    return Response(svg, media_type="image/svg+xml")


# --- compliance policies -----------------------------------------------------------------


@router.get("/compliance-policies", response_model=Page[PolicyPublic], tags=["compliance policies"])
def list_policies(db: DbSession, principal: ApiPrincipal, paging: Paging) -> Page[PolicyPublic]:
    svc = PolicyService(db, principal)
    rows, total = svc.listing(limit=paging.limit, offset=paging.offset)
    return Page(
        items=[policy_public(svc, r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/compliance-policies",
    response_model=PolicyPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["compliance policies"],
)
def create_policy(body: CompliancePolicy, db: DbSession, principal: ApiPrincipal) -> PolicyPublic:
    svc = PolicyService(db, principal)
    return policy_public(svc, svc.create(body))


@router.get(
    "/compliance-policies/{policy_id}", response_model=PolicyPublic, tags=["compliance policies"]
)
def get_policy(policy_id: IdPath, db: DbSession, principal: ApiPrincipal) -> PolicyPublic:
    svc = PolicyService(db, principal)
    return policy_public(svc, svc.get(policy_id))


@router.put(
    "/compliance-policies/{policy_id}",
    response_model=PolicyPublic,
    tags=["compliance policies"],
    summary="Replace a policy's rules; every device it applies to is re-evaluated",
)
def replace_policy(
    policy_id: IdPath, body: CompliancePolicy, db: DbSession, principal: ApiPrincipal
) -> PolicyPublic:
    svc = PolicyService(db, principal)
    return policy_public(svc, svc.replace(policy_id, body))


@router.delete(
    "/compliance-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["compliance policies"],
)
def delete_policy(policy_id: IdPath, db: DbSession, principal: ApiPrincipal) -> None:
    PolicyService(db, principal).delete(policy_id)


def _export(db: Session, principal: Any, policy_id: int, fmt: str) -> Response:
    export = PolicyService(db, principal).export(policy_id, fmt)
    return Response(
        export.content,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )


@router.get(
    "/compliance-policies/{policy_id}/export.mobileconfig",
    response_class=Response,
    tags=["compliance policies"],
    summary="The policy as an Apple configuration profile (unsigned)",
    responses={
        200: {"content": {"application/x-apple-aspen-config": {"schema": {"type": "string"}}}}
    },
)
def export_apple(policy_id: IdPath, db: DbSession, principal: ApiPrincipal) -> Response:
    return _export(db, principal, policy_id, "apple")


@router.get(
    "/compliance-policies/{policy_id}/export.android.json",
    response_class=Response,
    tags=["compliance policies"],
    summary="The policy as Android Management API policy JSON",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def export_android(policy_id: IdPath, db: DbSession, principal: ApiPrincipal) -> Response:
    return _export(db, principal, policy_id, "android")


# --- device protocol ---------------------------------------------------------------------


def current_device(request: Request, db: DbSession) -> Device:
    """The device behind ``Authorization: Device <id>.<credential>``; refused before the
    request's input is validated.  (Keys and settings come from ``app.state`` directly in
    the protocol's routes: every dependency FastAPI resolves costs each check-in.)"""
    keys: KeyRing = request.app.state.keys
    return authenticate_device(db, keys, request.headers.get("authorization"), anonymous(request))


AuthDevice = Annotated[Device, Depends(current_device)]


@protocol.post(
    "/enroll",
    response_model=EnrollResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Exchange an enrollment token for a device id and credential",
)
def enroll(
    body: EnrollRequest, request: Request, db: DbSession, keys: Keys, settings: AppSettings
) -> EnrollResponse:
    enrolled = enroll_device(db, keys, anonymous(request), body.token, body.device)
    # Commit here, in this worker thread: the enrollment's row stays locked until the commit,
    # and the dependency's own commit needs another threadpool slot, which a burst of
    # devices enrolling with one N-use token (all waiting on that lock) would hold every one
    # of: the server deadlocked at ~50 concurrent enrollments before this.
    db.commit()
    return EnrollResponse(
        device_id=enrolled.device.id,
        credential=enrolled.credential,
        checkin_interval_seconds=settings.device_checkin_interval_seconds,
        server_time=enrolled.device.enrolled_at,
    )


def _checkin_answer(
    db: Session, device: Device, body: CheckinRequest, request: Request
) -> CheckinResponse:
    settings: Settings = request.app.state.settings
    svc = ProtocolService(db, device, anonymous(request), settings)
    commands = svc.checkin(body)
    return CheckinResponse(
        device_id=device.id,
        state=DeviceState(device.state),
        server_time=device.last_checkin_at or device.enrolled_at,
        next_checkin_seconds=settings.device_checkin_interval_seconds,
        compliance=ComplianceOut(
            compliant=bool(device.compliant), reasons=list(device.compliance_reasons)
        ),
        commands=[
            CommandOut(id=c.id, type=CommandType(c.type), params=c.params, expires_at=c.expires_at)
            for c in commands
        ],
    )


# What CheckinRoute falls back to, and what the OpenAPI operation is made from (no
# docstring: it would become the operation's description).
def checkin(device: AuthDevice, body: CheckinRequest, request: Request, db: DbSession) -> Response:
    return _committed(db, _checkin_answer(db, device, body, request))


def _checkin_in_one_go(request: Request, raw: bytes) -> Response | None:
    """A check-in in one worker thread: authenticate, validate the body, check in, commit.

    None when the body is not a valid check-in: the caller then runs the route the
    ordinary way, whose validation answers with FastAPI's own 422.
    """
    with unit_of_work(request.app.state.session_factory) as db:
        header = request.headers.get("authorization")
        device = authenticate_device(db, request.app.state.keys, header, anonymous(request))
        try:
            body = CheckinRequest.model_validate_json(raw)
        except ValidationError:
            db.rollback()  # authentication wrote nothing: the fallback starts afresh
            return None
        answer = _checkin_answer(db, device, body, request)
    return Response(content=answer.model_dump_json(), media_type="application/json")


def fast_checkin(app: FastAPI) -> FastCheckin:
    """This server process's fast path for unchanged check-ins (made at the first one)."""
    fast: FastCheckin | None = getattr(app.state, "fast_checkin", None)
    if fast is None:
        fast = FastCheckin(app.state.engine, app.state.keys, app.state.settings)
        answered = Counter(
            "spillguard_device_checkins",
            "Check-ins with a JSON body by the path that answered them: fast (unchanged, "
            "devices.fast_checkin) or ordinary (everything else, refusals included)",
            ["path"],
            registry=app.state.registry,
        )
        app.state.checkins_answered = (answered.labels("fast"), answered.labels("ordinary"))
        app.state.fast_checkin = fast
    return fast


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


class CheckinRoute(APIRoute):
    """The check-in route, in two steps before FastAPI's own handling.

    1. :meth:`handle`: a JSON ``POST`` is read here and offered to the fast path
       (devices.fast_checkin), which answers an unchanged check-in on the event loop
       without FastAPI's request, response and exception machinery around it.
    2. Otherwise the body is replayed to the handler of :meth:`get_route_handler`: one
       thread-pool hop instead of FastAPI's three (the device dependency, the endpoint,
       the unit of work's commit) and without its dependency machinery.

    The device is authenticated before the body is looked at (a bad credential gets 401
    whatever the body); a JSON body that is not a valid check-in, or a body that is not
    ``application/json``, goes through FastAPI's own handler of ``checkin`` so its 422 is
    the usual one.  The endpoint's signature still makes the OpenAPI operation.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await super().handle(scope, receive, send)
            return
        authorization, content_type = None, ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if not _is_json(content_type):
            await super().handle(scope, receive, send)
            return
        raw = await _read_body(receive)
        app = scope["app"]
        answer = fast_checkin(app).answer(authorization, raw)
        fast, ordinary = app.state.checkins_answered
        if answer is None:
            ordinary.inc()
            await super().handle(scope, _replay(raw, receive), send)
            return
        fast.inc()
        mark_authz_checked()  # the device's credential, checked by the fast path
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        ordinary = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if not _is_json(request.headers.get("content-type", "")):
                return await ordinary(request)
            raw = await request.body()
            answer = await run_in_threadpool(_checkin_in_one_go, request, raw)
            return answer if answer is not None else await ordinary(request)

        return handler


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the body-size cap of core.middleware.BodySizeLimit applies:
    its ``receive`` raises the 413 once the body passes it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(raw: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the body read by CheckinRoute.handle to FastAPI's handler
    (and then listens to the connection again)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replay


protocol.add_api_route(
    "/checkin",
    checkin,
    methods=["POST"],
    response_model=CheckinResponse,
    summary="Report posture, receive commands",
    route_class_override=CheckinRoute,
)


def _committed(db: Session, answer: BaseModel, status_code: int = 200) -> Response:
    """Commit in the handler's own thread and answer with the serialised model.

    The unit of work's commit would otherwise wait for another thread-pool slot while the
    transaction holds the device's row lock (a deadlock once every thread waits for such a
    lock), and FastAPI would validate the response model once more in a third slot.
    """
    db.commit()
    return Response(
        content=answer.model_dump_json(), status_code=status_code, media_type="application/json"
    )


@protocol.post(
    "/commands/{command_id}/result",
    response_model=CommandResultOut,
    summary="Report one command's result",
)
def command_result(
    device: AuthDevice,
    command_id: IdPath,
    body: CommandResultIn,
    request: Request,
    db: DbSession,
) -> Response:
    settings: Settings = request.app.state.settings
    command = ProtocolService(db, device, anonymous(request), settings).apply_result(
        command_id, body
    )
    return _committed(
        db,
        CommandResultOut(
            id=command.id, type=CommandType(command.type), status=CommandStatus(command.status)
        ),
    )


@protocol.post(
    "/location",
    response_model=LocationPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Report the location (accepted only in lost mode)",
)
def report_location(
    device: AuthDevice, body: LocationIn, request: Request, db: DbSession
) -> Response:
    settings: Settings = request.app.state.settings
    row = ProtocolService(db, device, anonymous(request), settings).store_location(body)
    return _committed(db, LocationPublic.model_validate(row), status.HTTP_201_CREATED)
