"""Console pages of the exposure ledger: the ledger with filters (``/exposure``), what is
on a phone (``/exposure/devices/{id}``, with its customer ids, names for the dpo after a
stated purpose), and where a customer's data has gone (``/exposure/customers``).

Ids, counts and labels only; names are decrypted for the dpo alone, audited.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.console.render import render
from spillguard.core.deps import MAX_ID, ConsoleOffset, ConsolePrincipal, DbSession, IdPath, Keys
from spillguard.core.errors import DomainError, InvalidInput
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.views import Csrf, remember
from spillguard.customers.fields import FieldKind
from spillguard.customers.services import ContactService
from spillguard.devices.models import Device
from spillguard.exposure.models import Channel, Delivery, InspectedContent
from spillguard.exposure.services import DeliveryFilter, ExposureService, parse_min_label
from spillguard.inspection.api import Runtime

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
CUSTOMER_PAGE = 200


def _names(db: Session, rows: list[tuple[Delivery, InspectedContent]]) -> dict[str, Any]:
    """Device names and user e-mails for the destinations on a page (one query each)."""
    device_ids = {d.device_id for d, _ in rows if d.device_id is not None}
    user_ids = {d.user_id for d, _ in rows if d.user_id is not None}
    devices = (
        dict(db.execute(select(Device.id, Device.name).where(Device.id.in_(device_ids))).all())
        if device_ids
        else {}
    )
    users = (
        dict(db.execute(select(User.id, User.email).where(User.id.in_(user_ids))).all())
        if user_ids
        else {}
    )
    return {"devices": devices, "users": users}


def _day(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{field} must be a date (YYYY-MM-DD).", field=field) from None


def _id(value: str | None, field: str) -> int | None:
    """A filter's id as typed into the form: blank is no filter (the form sends every field,
    empty or not), anything but a whole number a message on the page."""
    text = (value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"{field} must be a whole number (an id).", field=field)
    return int(text)


@router.get("/exposure", response_class=HTMLResponse)
def ledger_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    device_id: Annotated[str | None, Query(max_length=20)] = None,
    user_id: Annotated[str | None, Query(max_length=20)] = None,
    domain: Annotated[str | None, Query(max_length=253)] = None,
    channel: Annotated[str | None, Query(max_length=24)] = None,
    min_label: Annotated[str | None, Query(max_length=20)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    offset: ConsoleOffset = 0,
) -> Response:
    remember(request, principal)
    channels = [c.value for c in Channel]
    error = None
    try:
        if channel and channel not in channels:
            raise InvalidInput(f"Channel must be one of {', '.join(channels)}.")
        until_day = _day(until, "until")
        flt = DeliveryFilter(
            device_id=_id(device_id, "Device id"),
            user_id=_id(user_id, "User id"),
            domain=domain or None,
            channel=Channel(channel) if channel else None,
            min_label=parse_min_label(min_label),
            since=_day(since, "since"),
            until=until_day + timedelta(days=1) if until_day else None,
        )
        rows, total = ExposureService(db, principal).deliveries(flt, limit=PAGE_SIZE, offset=offset)
    except InvalidInput as exc:
        principal.require(Permission.EXPOSURE_VIEW)
        error, rows, total = exc.detail, [], 0
    filters = {
        "device_id": device_id or "",
        "user_id": user_id or "",
        "domain": domain or "",
        "channel": channel or "",
        "min_label": min_label or "",
        "since": since or "",
        "until": until or "",
    }
    query = urlencode({k: v for k, v in filters.items() if v})
    ctx = {
        "rows": rows,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": f"{query}&" if query else "",
        "filters": filters,
        "channels": channels,
        "labels": ["public", "internal", "confidential", "restricted"],
        "error": error,
        **_names(db, rows),
    }
    return render(request, "exposure/ledger.html", ctx, principal=principal)


def _device_ctx(db: Session, principal: Principal, device_id: int) -> dict[str, Any]:
    svc = ExposureService(db, principal)
    found = svc.destination_exposure(DeliveryFilter(device_id=device_id))
    device = db.get(Device, device_id)
    return {
        "device_id": device_id,
        "device": device,
        "exposure": found,
        "is_dpo": principal.role is Role.DPO,
    }


@router.get("/exposure/devices/{device_id}", response_class=HTMLResponse)
def device_exposure_page(
    request: Request, device_id: IdPath, db: DbSession, principal: ConsolePrincipal
) -> Response:
    """What is on this phone: every content that reached it, labels, distinct customers."""
    ctx = _device_ctx(db, remember(request, principal), device_id)
    return render(request, "exposure/device.html", ctx, principal=principal)


def _customer_ids_page(
    request: Request,
    db: Session,
    principal: Principal,
    keys: Any,
    device_id: int,
    offset: int,
    purpose: str | None,
) -> Response:
    svc = ExposureService(db, principal)
    ids, total = svc.destination_customers(
        DeliveryFilter(device_id=device_id), limit=CUSTOMER_PAGE, offset=offset
    )
    names: dict[str, str | None] = {}
    error = None
    if purpose is not None:
        try:
            revealed = ContactService(db, principal, keys).reveal_for_notification(ids, purpose)
            names = {r.customer_id: r.name for r in revealed}
        except DomainError as exc:
            error = exc.detail
    ctx = {
        "device_id": device_id,
        "device": db.get(Device, device_id),
        "ids": ids,
        "names": names,
        "total": total,
        "limit": CUSTOMER_PAGE,
        "offset": offset,
        "base_query": "",
        "is_dpo": principal.role is Role.DPO,
        "purpose": purpose or "",
        "error": error,
    }
    return render(request, "exposure/device_customers.html", ctx, principal=principal)


@router.get("/exposure/devices/{device_id}/customers", response_class=HTMLResponse)
def device_customers_page(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    keys: Keys,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
) -> Response:
    remember(request, principal)
    return _customer_ids_page(request, db, principal, keys, device_id, offset, None)


@router.post(
    "/exposure/devices/{device_id}/customers", response_class=HTMLResponse, dependencies=[Csrf]
)
def device_customer_names(
    request: Request,
    device_id: IdPath,
    db: DbSession,
    keys: Keys,
    principal: ConsolePrincipal,
    purpose: Annotated[str, Form(min_length=1, max_length=500)],
    offset: Annotated[int, Form(ge=0, le=10_000_000)] = 0,
) -> Response:
    """The dpo sees the names of this page's customers, for a stated purpose (audited)."""
    remember(request, principal)
    return _customer_ids_page(request, db, principal, keys, device_id, offset, purpose)


LOOKUP_KINDS = {
    "email": FieldKind.EMAIL,
    "phone": FieldKind.PHONE,
    "card": FieldKind.CARD,
    "loyalty_number": FieldKind.LOYALTY_NUMBER,
}


@router.post("/exposure/customers", response_class=HTMLResponse, dependencies=[Csrf])
def customer_lookup(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    runtime: Runtime,
    kind: Annotated[str, Form(max_length=20)],
    value: Annotated[str, Form(min_length=1, max_length=320)],
) -> Response:
    """Find customers by a value (posted, never in the address): it is hashed to look it
    up and not kept. One match shows where their data went; several are listed by id."""
    remember(request, principal)
    svc = ExposureService(db, principal)
    error = None
    found: list[str] = []
    if kind not in LOOKUP_KINDS:
        principal.require(Permission.EXPOSURE_VIEW)
        error = "Search by e-mail, phone, card or loyalty number."
    else:
        found = svc.customers_with(runtime.edm.current(db), LOOKUP_KINDS[kind], value)
        if not found:
            error = "No customer in the directory has that value."
    if len(found) == 1:
        return _trail(request, db, principal, found[0], 0)
    ctx = {
        "customer_id": "",
        "rows": [],
        "total": 0,
        "limit": PAGE_SIZE,
        "offset": 0,
        "base_query": "",
        "error": error,
        "matches": found,
        "kind": kind,
        "devices": {},
        "users": {},
    }
    return render(request, "exposure/customer.html", ctx, principal=principal)


def _trail(
    request: Request, db: Session, principal: Principal, customer_id: str, offset: int
) -> Response:
    svc = ExposureService(db, principal)
    rows: list[tuple[Delivery, InspectedContent]] = []
    total = 0
    error = None
    try:
        rows, total = svc.customer_trail(customer_id, limit=PAGE_SIZE, offset=offset)
    except DomainError as exc:
        error = exc.detail
    ctx = {
        "customer_id": customer_id.strip(),
        "rows": rows,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": f"{urlencode({'customer_id': customer_id})}&",
        "error": error,
        "matches": [],
        "kind": "",
        **_names(db, rows),
    }
    return render(request, "exposure/customer.html", ctx, principal=principal)


@router.get("/exposure/customers", response_class=HTMLResponse)
def customer_trail_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    customer_id: Annotated[str | None, Query(max_length=200)] = None,
    offset: ConsoleOffset = 0,
) -> Response:
    """Where has this customer's data gone: search by the customer's directory id."""
    remember(request, principal)
    if customer_id and customer_id.strip():
        return _trail(request, db, principal, customer_id, offset)
    principal.require(Permission.EXPOSURE_VIEW)
    ctx = {
        "customer_id": "",
        "rows": [],
        "total": 0,
        "limit": PAGE_SIZE,
        "offset": 0,
        "base_query": "",
        "error": None,
        "matches": [],
        "kind": "",
        "devices": {},
        "users": {},
    }
    return render(request, "exposure/customer.html", ctx, principal=principal)
