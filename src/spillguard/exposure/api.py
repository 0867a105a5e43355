"""Exposure REST API (``/api/v1/exposure``): register inspected content, record where it
went, and ask what reached a device, user or domain and where a customer's data has gone.

Everything here is ids, counts and labels; a customer list is ids only, and listing one
is audited.
"""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import AwareDatetime

from spillguard.console.render import render_error
from spillguard.core.deps import (
    MAX_ID,
    ApiPrincipal,
    AppSettings,
    DbSession,
    IdPath,
    Keys,
    Paging,
    anonymous,
)
from spillguard.core.errors import PermissionDenied
from spillguard.core.roles import mark_authz_checked
from spillguard.core.schemas import Page
from spillguard.core.settings import Settings
from spillguard.devices.protocol import DeviceAuthenticationRequired, authenticate_device
from spillguard.exposure.decisions import AccessDecisions, AccessOutcome, nginx_headers_problem
from spillguard.exposure.downloads import (
    NO_CREDENTIAL,
    authenticate_download,
    fetch,
    record_unauthenticated,
)
from spillguard.exposure.gateway import link_url
from spillguard.exposure.links import LinkRow, LinkService
from spillguard.exposure.models import Channel, Delivery, HeldDocument, InspectedContent
from spillguard.exposure.schemas import (
    SHA256_PATTERN,
    AccessDecisionIn,
    AccessDecisionOut,
    ContentBrief,
    ContentOnDestinationPublic,
    ContentPublic,
    DeliveryBatch,
    DeliveryPublic,
    DestinationExposurePublic,
    DestinationPublic,
    GatewayLinkCreated,
    GatewayLinkPublic,
    RecordOutcomePublic,
)
from spillguard.exposure.services import (
    DeliveryFilter,
    DestinationExposure,
    ExposureService,
    parse_min_label,
    reported_specs,
)
from spillguard.exposure.store import BlobStore, blob_store
from spillguard.inspection.api import Runtime, Submitted, submitted, upload_request_body
from spillguard.inspection.schemas import InspectionText
from spillguard.inspection.services import InspectionItem, InspectionService

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
    specs = reported_specs(batch.items)
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


def read_all(item: InspectionItem) -> bytes:
    """The bytes of an uploaded item (the upload is capped by the body-size limit)."""
    if isinstance(item.source, bytes):
        return item.source
    item.source.seek(0)
    return item.source.read()


def link_public(row: LinkRow) -> GatewayLinkPublic:
    link, doc = row.link, row.document
    return GatewayLinkPublic(
        id=link.id,
        user_id=link.user_id,
        document_id=doc.id,
        size=doc.size,
        media_type=doc.media_type,
        created_at=link.created_at,
        expires_at=link.expires_at,
        revoked_at=link.revoked_at,
        downloads=link.downloads,
        last_download_at=link.last_download_at,
    )


def _store(settings: Settings) -> BlobStore:
    return blob_store(settings.exposure_store_dir)


@router.post(
    "/links",
    response_model=GatewayLinkCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Share a document through the gateway",
    openapi_extra=upload_request_body(InspectionText, purpose=False),
)
def create_link(
    request: Request,
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    runtime: Runtime,
    content: Annotated[Submitted, Depends(submitted)],
    user_id: Annotated[int, Query(ge=1, le=MAX_ID, description="Who may open it")],
    days: Annotated[
        int | None,
        Query(
            ge=1,
            le=365,
            description="How many days the link works, 1 to 365 (default: the "
            "gateway_link_days setting, 14)",
        ),
    ] = None,
) -> GatewayLinkCreated:
    """Inspect the document, keep it encrypted, and return a link that opens only on
    `user_id`'s enrolled, compliant phone (`spillguard agent fetch URL`) for `days` days.
    The URL is shown this once. Needs `exposure:record`."""
    links = LinkService(db, principal, keys, _store(settings))
    links.check_share()
    report = InspectionService(db, principal, runtime).inspect(content.item)
    made = links.share(
        report,
        read_all(content.item),
        name=content.item.name,
        media_type=mimetypes.guess_type(content.item.name)[0] or "application/octet-stream",
        user_id=user_id,
        days=days or settings.gateway_link_days,
    )
    document = db.get(HeldDocument, made.link.document_id)
    assert document is not None
    public = link_public(LinkRow(made.link, document))
    return GatewayLinkCreated(
        **public.model_dump(),
        # The configured public address, else the one this request came in on.
        url=link_url(settings.public_url or str(request.base_url), made.token),
        label=report.label.value,
        customer_count=len(report.customer_ids),
    )


@router.get("/links", response_model=Page[GatewayLinkPublic])
def list_links(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    paging: Paging,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this person's")] = None,
) -> Page[GatewayLinkPublic]:
    """Gateway links, newest first, never with their secret."""
    rows, total = LinkService(db, principal, keys, _store(settings)).links(
        user_id=user_id, limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[link_public(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post("/links/{link_id}/revoke", response_model=GatewayLinkPublic)
def revoke_link(
    link_id: IdPath, db: DbSession, principal: ApiPrincipal, keys: Keys, settings: AppSettings
) -> GatewayLinkPublic:
    """Withdraw a link: it stops working at once (410 for the phone). Audited."""
    link = LinkService(db, principal, keys, _store(settings)).revoke(link_id)
    document = db.get(HeldDocument, link.document_id)
    assert document is not None
    return link_public(LinkRow(link, document))


# --- the download gateway ----------------------------------------------------------------

gateway = APIRouter(tags=["gateway"])

# Any text is accepted here: an unknown link is a 404 after the device is authenticated,
# so an anonymous caller learns nothing about which links exist.
LinkToken = Annotated[str, Path(min_length=1, max_length=200, description="The link's secret")]
BROWSER_HELP = (
    "This document opens only on your enrolled phone, through the Spillguard agent: "
    "run `spillguard agent fetch` with this address on the phone. The phone must meet the "
    "security policy; if it does not, the agent says what to change."
)


def _disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback or 'document'}\"; filename*=UTF-8''{quote(name)}"


@gateway.get(
    "/gateway/{token}",
    response_class=Response,
    summary="Fetch a held document on an enrolled, compliant phone",
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}},
        401: {"description": "No or bad device credential (a browser gets a help page)."},
        403: {"description": "Not the recipient's phone, or the phone fails the policy."},
        410: {"description": "The link expired or was withdrawn."},
    },
)
def download(token: LinkToken, request: Request, db: DbSession) -> Response:
    """The document behind a gateway link, for `Authorization: Device <id>.<credential>`
    of the recipient's compliant phone; recorded in the ledger (channel `gateway`).
    Refusals say in plain words what to change."""
    header = request.headers.get("authorization")
    keys = request.app.state.keys
    base = anonymous(request)
    if header is None and "text/html" in request.headers.get("accept", ""):
        mark_authz_checked()
        record_unauthenticated(db, keys, token, base, reason=NO_CREDENTIAL)
        return render_error(
            request,
            401,
            "Open this link on your phone",
            BROWSER_HELP,
            headers={"WWW-Authenticate": "Device"},
        )
    settings = request.app.state.settings
    device = authenticate_download(db, keys, token, header, base)
    got = fetch(db, keys, blob_store(settings.exposure_store_dir), token, device, base)
    return Response(
        content=got.data,
        media_type=got.media_type,
        headers={"Content-Disposition": _disposition(got.name)},  # no-store: middleware
    )


# --- access decisions ---------------------------------------------------------------------

decisions = APIRouter(prefix="/api/v1/access-decisions", tags=["access decisions"])

DEVICE_HEADER = "X-Spillguard-Device"
MAX_REASON_HEADER = 1000


class AccessDenied(PermissionDenied):
    slug = "access-denied"
    title = "Access denied"
    keep_changes = True  # the denial is audited


def outcome_public(outcome: AccessOutcome) -> AccessDecisionOut:
    return AccessDecisionOut(
        allow=outcome.allow,
        decision="allow" if outcome.allow else "deny",
        reasons=list(outcome.reasons),
        label=outcome.label.value,
        user_id=outcome.user_id,
        device_id=outcome.device_id,
    )


def header_text(text: str) -> str:
    """Text safe for an HTTP header value: printable ASCII, bounded."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return cleaned[:MAX_REASON_HEADER]


@decisions.post("", response_model=AccessDecisionOut)
def access_decision(
    body: AccessDecisionIn, db: DbSession, principal: ApiPrincipal
) -> AccessDecisionOut:
    """May this person (on this phone) have content of this label or hash? The answer is
    always 200 with `allow` and the reasons; denials are audited. Needs `exposure:decide`
    (a token limited to `access-decisions` is enough)."""
    outcome = AccessDecisions(db, principal).decide(
        user=body.user, device_id=body.device_id, label=body.label, sha256=body.sha256
    )
    return outcome_public(outcome)


NGINX_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Allowed; X-Spillguard-Decision: allow"},
    401: {"description": "The request carries no valid X-Spillguard-Device credential"},
    403: {"description": "Denied; the reason is in X-Spillguard-Reason"},
}


# nginx sends the subrequest with the client's method (a body is never passed on), so GET,
# POST and HEAD all answer; only GET and POST are in the OpenAPI document.
@decisions.head("/nginx", status_code=204, response_class=Response, include_in_schema=False)
@decisions.post(
    "/nginx",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="nginx auth_request (POST requests)",
    operation_id="nginx_auth_request_post",
    responses=NGINX_RESPONSES,
)
@decisions.get(
    "/nginx",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="nginx auth_request: 204 allow, 401 no phone credential, 403 deny",
    operation_id="nginx_auth_request",
    responses=NGINX_RESPONSES,
)
def nginx_auth_request(
    request: Request,
    db: DbSession,
    principal: ApiPrincipal,
    label: Annotated[str | None, Header(alias="X-Spillguard-Label")] = None,
    sha256: Annotated[str | None, Header(alias="X-Spillguard-Content-Sha256")] = None,
    user: Annotated[
        str | None,
        Header(
            alias="X-Spillguard-User",
            description="The person: e-mail address or user id; must be the phone's owner",
        ),
    ] = None,
) -> Response:
    """For nginx's `auth_request` (docs/exposure.md): the phone proves itself with
    `X-Spillguard-Device: <id>.<credential>`; the location's label comes in
    `X-Spillguard-Label` (or the content's hash in `X-Spillguard-Content-Sha256`), the
    person optionally in `X-Spillguard-User`, by e-mail address or user id as `user` in
    `POST /api/v1/access-decisions` (else the phone's owner)."""
    svc = AccessDecisions(db, principal)
    svc.check()
    unreadable = nginx_headers_problem(label, sha256, user)
    if unreadable is not None:  # deny (403): nginx turns a 422 into a 500
        denied = AccessDenied(unreadable)
        denied.response_headers = {
            "X-Spillguard-Decision": "deny",
            "X-Spillguard-Reason": header_text(unreadable),
        }
        raise denied
    parsed = parse_min_label(label)
    credential = request.headers.get(DEVICE_HEADER)
    if not credential:
        raise DeviceAuthenticationRequired(
            f"The phone must present its device credential in {DEVICE_HEADER}."
        )
    device = authenticate_device(
        db, request.app.state.keys, f"Device {credential}", anonymous(request)
    )
    outcome = svc.decide(user=user, device=device, label=parsed, sha256=sha256)
    headers = {
        "X-Spillguard-Decision": "allow" if outcome.allow else "deny",
        "X-Spillguard-Label": outcome.label.value,
    }
    if not outcome.allow:
        denied = AccessDenied(" ".join(outcome.reasons))
        denied.response_headers = {**headers, "X-Spillguard-Reason": header_text(denied.detail)}
        raise denied
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)
