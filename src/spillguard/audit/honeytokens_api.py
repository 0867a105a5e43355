"""Honeytoken REST API (``/api/v1/honeytokens``): create honeytoken customers, list them
(ids, batch, created, status: never values), export them as CSV for the CRM (values;
audited), retire them (``POST /api/v1/honeytokens/retire``) and reactivate retired ones
(``POST /api/v1/honeytokens/reactivate``). Every route needs
``honeytokens:manage``."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, Keys, Paging
from spillguard.core.schemas import Page
from spillguard.customers.honeytokens import (
    CSV_HEADERS,
    MAX_CREATE,
    MAX_RETIRE,
    HoneytokenService,
    HoneytokenSummary,
)

router = APIRouter(prefix="/api/v1/honeytokens", tags=["honeytokens"])

BatchQuery = Annotated[str | None, Query(max_length=100, description="Only this batch.")]


class HoneytokenCreate(BaseModel):
    """How many honeytokens to add, and optionally their batch, mail domain, phone range."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_CREATE)
    batch: str | None = Field(default=None, max_length=100)
    email_domain: str | None = Field(default=None, max_length=253)
    phone_range: str | None = Field(default=None, max_length=60)
    id_prefix: str | None = Field(default=None, max_length=20)


class HoneytokenPublic(BaseModel):
    """A honeytoken customer as listed: no value of it."""

    customer_id: str
    batch: str | None
    created_at: datetime
    created_by: str | None
    status: str


class HoneytokensCreated(BaseModel):
    """What a create did: the new ids (values only through the export)."""

    created: int
    batch: str | None
    phone_range: str
    drama_phone_range: bool
    customer_ids: list[str]


class HoneytokenRetire(BaseModel):
    """The honeytoken customer ids to retire."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_RETIRE
    )


class HoneytokensRetired(BaseModel):
    """What a retire did: ids newly retired, and those that were retired already."""

    retired: list[str]
    already_retired: list[str]


class HoneytokenReactivate(BaseModel):
    """The retired honeytoken customer ids to make active again."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_RETIRE
    )
    phone_range: str | None = Field(
        default=None,
        max_length=60,
        description="START-END their phone numbers came from, if no creation recorded it.",
    )


class HoneytokensReactivated(BaseModel):
    """What a reactivate did: ids made active again, and those that were active already."""

    reactivated: list[str]
    already_active: list[str]


def honeytoken_public(row: HoneytokenSummary) -> HoneytokenPublic:
    return HoneytokenPublic(
        customer_id=row.customer_id,
        batch=row.batch,
        created_at=row.created_at,
        created_by=row.created_by,
        status=row.status,
    )


@router.post("", response_model=HoneytokensCreated, status_code=status.HTTP_201_CREATED)
def create_honeytokens(
    body: HoneytokenCreate,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> HoneytokensCreated:
    """Add synthetic customers to the directory, marked as honeytokens."""
    result = HoneytokenService(db, principal, keys, settings).create(
        body.count,
        batch=body.batch,
        email_domain=body.email_domain,
        phone_range=body.phone_range,
        id_prefix=body.id_prefix,
    )
    return HoneytokensCreated(
        created=len(result.records),
        batch=result.batch,
        phone_range=result.phone_range,
        drama_phone_range=result.drama_range,
        customer_ids=[r.identity.customer_id for r in result.records],
    )


@router.get("", response_model=Page[HoneytokenPublic])
def list_honeytokens(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    paging: Paging,
    batch: BatchQuery = None,
) -> Page[HoneytokenPublic]:
    """Honeytoken customers, newest first: id, batch, created, status (audited)."""
    rows, total = HoneytokenService(db, principal, keys, settings).listing(
        limit=paging.limit, offset=paging.offset, batch=batch
    )
    return Page(
        items=[honeytoken_public(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The honeytokens as CSV."}},
)
def export_honeytokens(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    batch: BatchQuery = None,
    phone_range: Annotated[
        str | None, Query(max_length=60, description="The START-END used at creation.")
    ] = None,
) -> Response:
    """The active honeytokens with their values, as CSV for the CRM (audited)."""
    records = HoneytokenService(db, principal, keys, settings).export(
        batch=batch, phone_range=phone_range
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADERS)
    for record in records:
        writer.writerow(record.row())
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="honeytokens.csv"'},
    )


@router.post("/retire", response_model=HoneytokensRetired)
def retire_honeytokens(
    body: HoneytokenRetire,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> HoneytokensRetired:
    """Retire honeytokens: no new alerts, out of exact data match, past alerts kept.
    Idempotent; an id that is not a honeytoken refuses the whole request (404)."""
    result = HoneytokenService(db, principal, keys, settings).retire(body.customer_ids)
    return HoneytokensRetired(retired=result.retired, already_retired=result.already_retired)


@router.post("/reactivate", response_model=HoneytokensReactivated)
def reactivate_honeytokens(
    body: HoneytokenReactivate,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> HoneytokensReactivated:
    """Reactivate retired honeytokens: their keyed hashes are rebuilt, so they alert and
    are matched again. Idempotent; an id that is not a honeytoken refuses the whole request
    (404); values that cannot be rebuilt, or now belong to another customer, 422."""
    result = HoneytokenService(db, principal, keys, settings).reactivate(
        body.customer_ids, phone_range=body.phone_range
    )
    return HoneytokensReactivated(
        reactivated=result.reactivated, already_active=result.already_active
    )
