"""Access-log ingestion REST API: ``POST /api/v1/access-events`` (batches from the systems
that hold customer records; ``access:ingest``) and the read side (sources with their
counters, refused events, ingested events; ``access:view``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from spillguard.audit.ingest import (
    AccessAction,
    AccessEventFilter,
    AccessIngestService,
    AccessLogService,
    Channel,
)
from spillguard.audit.ingest_schemas import (
    AccessBatchIn,
    AccessBatchResult,
    AccessEventPublic,
    AccessRejectItem,
    AccessRejectPublic,
    AccessSourcePublic,
)
from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, Keys, Paging
from spillguard.core.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["access-log"])

Name = Annotated[str | None, Query(min_length=1, max_length=320)]


@router.post("/access-events", response_model=AccessBatchResult)
def ingest_access_events(
    body: AccessBatchIn,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
) -> AccessBatchResult:
    """Ingest a batch of access events. Answered only once the batch is committed;
    duplicates are counted, not refused; a source over its rate gets 429 and nothing of
    the batch is taken."""
    result = AccessIngestService(db, settings, keys, principal).ingest(
        body.source, body.events, Channel.REST
    )
    return AccessBatchResult(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[AccessRejectItem(index=r.index, reason=r.reason) for r in result.rejects],
    )


@router.get("/access-sources", response_model=list[AccessSourcePublic])
def list_access_sources(db: DbSession, principal: ApiPrincipal) -> list[AccessSourcePublic]:
    """Every source that sent events, with its accepted, duplicate and rejected counts."""
    return [AccessSourcePublic.model_validate(s) for s in AccessLogService(db, principal).sources()]


@router.get("/access-rejects", response_model=Page[AccessRejectPublic])
def list_access_rejects(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    source: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> Page[AccessRejectPublic]:
    """Refused events, newest first (optionally of one source)."""
    rows, total = AccessLogService(db, principal).rejects(
        source=source, limit=paging.limit, offset=paging.offset
    )
    items = [
        AccessRejectPublic(
            id=r.id,
            source=name,
            channel=r.channel,
            received_at=r.received_at,
            position=r.position,
            reason=r.reason,
            item_digest=r.item_digest,
        )
        for r, name in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/access-events", response_model=Page[AccessEventPublic])
def list_access_events(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    actor: Name = None,
    action: AccessAction | None = None,
    system: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    source: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    customer: Annotated[
        str | None, Query(min_length=1, max_length=200, description="A source customer id")
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AccessEventPublic]:
    """Ingested access events, latest first, filtered by actor, action, system, source,
    customer id and source time (since inclusive, until exclusive)."""
    flt = AccessEventFilter(
        actor=actor,
        action=action.value if action else None,
        system=system,
        source=source,
        customer=customer,
        since=since,
        until=until,
    )
    rows, total = AccessLogService(db, principal).events(
        flt, limit=paging.limit, offset=paging.offset
    )
    items = [
        AccessEventPublic(
            id=e.id,
            source=name,
            source_event_id=e.source_event_id,
            audit_event_id=e.audit_event_id,
            actor=e.actor,
            action=e.action,
            system=e.system,
            record_type=e.record_type,
            occurred_at=e.occurred_at,
            received_at=e.received_at,
            source_address=e.source_address,
            records=e.records,
            query_digest=e.query_digest.hex() if e.query_digest is not None else None,
        )
        for e, name in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)
