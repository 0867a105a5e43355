"""Exposure REST API (``/api/v1/exposure``): register inspected content, record where it
went, and ask what reached a device, user or domain and where a customer's data has gone.

Everything here is ids, counts and labels; a customer list is ids only, and listing one
is audited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import AwareDatetime

from spillguard.core.deps import MAX_ID, ApiPrincipal, AppSettings, DbSession, IdPath, Paging
from spillguard.core.schemas import Page
from spillguard.exposure.ledger import DeliverySpec
from spillguard.exposure.models import Channel, Delivery, InspectedContent
from spillguard.exposure.schemas import (
    SHA256_PATTERN,
    ContentBrief,
    ContentOnDestinationPublic,
    ContentPublic,
    DeliveryBatch,
    DeliveryPublic,
    DestinationExposurePublic,
    DestinationPublic,
    RecordOutcomePublic,
)
from spillguard.exposure.services import (
    DeliveryFilter,
    DestinationExposure,
    ExposureService,
    destination_from,
    parse_min_label,
)
from spillguard.inspection.api import Runtime, Submitted, submitted, upload_request_body
from spillguard.inspection.schemas import InspectionText
from spillguard.inspection.services import InspectionService

router = APIRouter(prefix="/api/v1/exposure", tags=["exposure"])

Sha256Path = Annotated[str, Path(pattern=SHA256_PATTERN, description="SHA-256 (hex)")]
DomainPath = Annotated[str, Path(min_length=3, max_length=253, description="A domain name")]
CustomerIdPath = Annotated[
    str, Path(min_length=1, max_length=200, description="The customer's id in the directory")
]


def delivery_public(delivery: Delivery, content: InspectedContent) -> DeliveryPublic:
    return DeliveryPublic(
        id=delivery.id,
        occurred_at=delivery.occurred_at,
        recorded_at=delivery.recorded_at,
        channel=delivery.channel,
        destination=DestinationPublic(
            type=delivery.destination_type,
            device_id=delivery.device_id,
            user_id=delivery.user_id,
            recipient=delivery.recipient,
            domain=delivery.domain,
            third_party=delivery.third_party,
        ),
        content=ContentBrief(
            sha256=content.sha256,
            format=content.format,
            label=content.label,
            customer_count=content.customer_count,
        ),
        source_system=delivery.source_system,
    )


def exposure_public(found: DestinationExposure) -> DestinationExposurePublic:
    return DestinationExposurePublic(
        contents=[
            ContentOnDestinationPublic(
                content=ContentPublic.model_validate(item.content),
                first_at=item.first_at,
                last_at=item.last_at,
                deliveries=item.deliveries,
                channels=list(item.channels),
            )
            for item in found.contents
        ],
        distinct_customers=found.distinct_customers,
        label_counts=found.label_counts,
        categories=found.categories,
    )


def delivery_filter(
    device_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    domain: Annotated[str | None, Query(min_length=1, max_length=253)] = None,
    channel: Channel | None = None,
    min_label: Annotated[
        str | None, Query(max_length=20, description="public, internal, confidential, restricted")
    ] = None,
    sha256: Annotated[str | None, Query(pattern=SHA256_PATTERN)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> DeliveryFilter:
    return DeliveryFilter(
        device_id=device_id,
        user_id=user_id,
        domain=domain,
        channel=channel,
        min_label=parse_min_label(min_label),
        content_sha256=sha256,
        since=since,
        until=until,
    )


Filter = Annotated[DeliveryFilter, Depends(delivery_filter)]


@router.post(
    "/contents",
    response_model=ContentPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Inspect content and register it in the ledger",
    openapi_extra=upload_request_body(InspectionText, purpose=False),
)
def register_content(
    db: DbSession,
    principal: ApiPrincipal,
    runtime: Runtime,
    content: Annotated[Submitted, Depends(submitted)],
) -> ContentPublic:
    """Inspect a file (multipart `file`) or text (JSON) and keep what it holds — label,
    category counts, the directory customers it names — under its SHA-256, so deliveries
    of it can be recorded. Needs `inspections:run` and `exposure:record`."""
    exposure = ExposureService(db, principal)
    exposure.check_record()
    report = InspectionService(db, principal, runtime).inspect(content.item)
    return ContentPublic.model_validate(exposure.register(report))


@router.get("/contents/{sha256}", response_model=ContentPublic)
def get_content(sha256: Sha256Path, db: DbSession, principal: ApiPrincipal) -> ContentPublic:
    """What the ledger knows of one content."""
    return ContentPublic.model_validate(ExposureService(db, principal).content(sha256))


@router.post("/deliveries", response_model=RecordOutcomePublic)
def record_deliveries(
    batch: DeliveryBatch, db: DbSession, principal: ApiPrincipal, settings: AppSettings
) -> RecordOutcomePublic:
    """Record where inspected content went (up to 10,000 per batch). A delivery with a
    `source_id` already recorded from the same `source_system` is counted as a duplicate
    and not recorded again. One invalid item refuses the batch and names it."""
    specs = [
        DeliverySpec(
            sha256=item.sha256,
            destination=destination_from(
                type_=item.destination.type,
                device_id=item.destination.device_id,
                user_id=item.destination.user_id,
                recipient=item.destination.recipient,
                third_party=item.destination.third_party,
            ),
            channel=item.channel,
            occurred_at=item.occurred_at,
            source_system=item.source_system,
            source_id=item.source_id,
        )
        for item in batch.items
    ]
    outcome = ExposureService(db, principal).record_reported(
        specs, clock_skew=timedelta(seconds=settings.device_clock_skew_seconds)
    )
    return RecordOutcomePublic(recorded=outcome.recorded, duplicates=outcome.duplicates)


@router.get("/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    db: DbSession, principal: ApiPrincipal, flt: Filter, paging: Paging
) -> Page[DeliveryPublic]:
    """Ledger entries, newest first, narrowed by every filter given."""
    rows, total = ExposureService(db, principal).deliveries(
        flt, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[delivery_public(d, c) for d, c in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/devices/{device_id}", response_model=DestinationExposurePublic)
def device_exposure(
    device_id: IdPath, db: DbSession, principal: ApiPrincipal
) -> DestinationExposurePublic:
    """What is on this phone: the contents delivered to it, distinct customers, labels."""
    found = ExposureService(db, principal).destination_exposure(DeliveryFilter(device_id=device_id))
    return exposure_public(found)


@router.get("/devices/{device_id}/customers", response_model=Page[str])
def device_customers(
    device_id: IdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> Page[str]:
    """Ids of the distinct customers whose data reached this device (audited)."""
    ids, total = ExposureService(db, principal).destination_customers(
        DeliveryFilter(device_id=device_id), limit=paging.limit, offset=paging.offset
    )
    return Page(items=ids, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/users/{user_id}", response_model=DestinationExposurePublic)
def user_exposure(
    user_id: IdPath, db: DbSession, principal: ApiPrincipal
) -> DestinationExposurePublic:
    """What reached this person, on any of their devices or as mail."""
    found = ExposureService(db, principal).destination_exposure(DeliveryFilter(user_id=user_id))
    return exposure_public(found)


@router.get("/users/{user_id}/customers", response_model=Page[str])
def user_customers(
    user_id: IdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> Page[str]:
    ids, total = ExposureService(db, principal).destination_customers(
        DeliveryFilter(user_id=user_id), limit=paging.limit, offset=paging.offset
    )
    return Page(items=ids, total=total, limit=paging.limit, offset=paging.offset)


@router.get("/domains/{domain}", response_model=DestinationExposurePublic)
def domain_exposure(
    domain: DomainPath, db: DbSession, principal: ApiPrincipal
) -> DestinationExposurePublic:
    """What was sent to recipients at this domain."""
    found = ExposureService(db, principal).destination_exposure(DeliveryFilter(domain=domain))
    return exposure_public(found)


@router.get("/customers/{customer_id}/deliveries", response_model=Page[DeliveryPublic])
def customer_trail(
    customer_id: CustomerIdPath, db: DbSession, principal: ApiPrincipal, paging: Paging
) -> Page[DeliveryPublic]:
    """Where this customer's data has gone: every delivery of content naming them
    (audited as `exposure:customer:traced`)."""
    rows, total = ExposureService(db, principal).customer_trail(
        customer_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[delivery_public(d, c) for d, c in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
