"""The download gateway: a held document goes to the phone that proves it may have it.

A fetch must carry the link (its secret is in the URL) and a device credential
(``Authorization: Device <id>.<credential>``, as the device protocol). It succeeds only
when the link is current, the device belongs to the person the link was made for, and
the device's current verdict is compliant (access.device_decision). Every success is a
ledger delivery (channel ``gateway``) to that device; every refusal is audited and
answered in plain words the person can act on, a request without a working device
credential (401) included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import DomainError, NotFound, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.devices.models import Device
from spillguard.devices.protocol import DeviceAuthenticationRequired, authenticate_device
from spillguard.devices.services import device_principal
from spillguard.exposure.access import device_decision, verdict_of
from spillguard.exposure.gateway import find_link
from spillguard.exposure.ledger import Destination, NewDelivery
from spillguard.exposure.models import Channel, GatewayLink, HeldDocument
from spillguard.exposure.services import ExposureAuditAction, record_deliveries
from spillguard.exposure.store import BlobStore, HeldDocuments
from spillguard.inspection.classify import Label

SOURCE_SYSTEM = "gateway"


class LinkNotFound(NotFound):
    slug = "link-not-found"
    title = "Link not found"
    keep_changes = True  # the failed attempt is audited


class LinkGone(DomainError):
    status = 410
    slug = "link-gone"
    title = "Link expired or withdrawn"
    keep_changes = True


class DownloadRefused(PermissionDenied):
    slug = "download-refused"
    title = "Download refused"
    keep_changes = True


class DownloadUnauthenticated(DeviceAuthenticationRequired):
    """A download without a device credential that works: 401, as the device protocol
    answers, but the refusal is audited (and kept) like every other."""

    keep_changes = True


@dataclass(frozen=True)
class Fetched:
    name: str
    media_type: str
    data: bytes
    link_id: int


def _audit(
    session: Session,
    principal: Principal,
    action: ExposureAuditAction,
    link: GatewayLink | None,
    *,
    outcome: str,
    reason: str,
    device_id: int | None,
) -> None:
    record_event(
        session,
        principal,
        action,
        object_type="gateway-link",
        object_id=link.id if link else None,
        outcome=outcome,
        details={"device_id": device_id, "reason": reason},
    )


NO_CREDENTIAL = "no device credential"
BAD_CREDENTIAL = "device credential refused"


def record_unauthenticated(
    session: Session, keys: KeyRing, token: str, base: Principal, *, reason: str
) -> None:
    """Audit a download refused before any device was proven (401), as every refusal is:
    the link by its id when it exists (never its secret), no device."""
    _audit(
        session,
        base,
        ExposureAuditAction.GATEWAY_REFUSED,
        find_link(session, keys, token),
        outcome="failure",
        reason=reason,
        device_id=None,
    )


def authenticate_download(
    session: Session, keys: KeyRing, token: str, header: str | None, base: Principal
) -> Device:
    """The device an ``Authorization: Device <id>.<credential>`` header proves; otherwise
    the refusal is audited and answered 401 (the anonymous caller learns nothing about the
    link: the answer is the same whether it exists or not)."""
    try:
        return authenticate_device(session, keys, header, base)
    except DeviceAuthenticationRequired as exc:
        reason = BAD_CREDENTIAL if header and header.strip() else NO_CREDENTIAL
        record_unauthenticated(session, keys, token, base, reason=reason)
        if exc.keep_changes:  # a revoked or mismatched credential: its own answer
            raise
        raise DownloadUnauthenticated(exc.detail, **exc.extra) from None


def fetch(
    session: Session,
    keys: KeyRing,
    store: BlobStore,
    token: str,
    device: Device,
    base: Principal,
    *,
    now: datetime | None = None,
) -> Fetched:
    """Serve a gateway link to an authenticated device, or refuse and say why."""
    now = now or utcnow()
    principal = device_principal(device.id, base)
    link = find_link(session, keys, token)

    def refuse(error: DomainError, why: str) -> DomainError:
        _audit(
            session,
            principal,
            ExposureAuditAction.GATEWAY_REFUSED,
            link,
            outcome="failure",
            reason=why,
            device_id=device.id,
        )
        return error

    if link is None:
        raise refuse(LinkNotFound("This link is not valid."), "unknown link")
    if link.revoked_at is not None:
        raise refuse(LinkGone("This link has been withdrawn by the security team."), "revoked")
    if link.expires_at <= now:
        raise refuse(
            LinkGone(
                f"This link expired on {link.expires_at:%d %B %Y}; ask the sender to send the "
                "document again."
            ),
            "expired",
        )
    if device.owner_id != link.user_id:
        raise refuse(
            DownloadRefused(
                "This link was sent to someone else; it opens only on the recipient's phone."
            ),
            "not the recipient's device",
        )
    # Only a compliant phone gets a held document, whatever its label: it was held because
    # the recipient's phones did not all pass.
    decision = device_decision(verdict_of(device), Label.RESTRICTED, protected=Label.PUBLIC)
    if not decision.allow:
        raise refuse(DownloadRefused(decision.reason_text), "device not compliant")
    document = session.get(HeldDocument, link.document_id)
    if document is None:
        raise refuse(LinkGone("The document behind this link has been deleted."), "no document")
    name, data = HeldDocuments(session, keys, store).read(document)
    if document.content_id is not None:
        record_deliveries(
            session,
            [
                NewDelivery(
                    document.content_id,
                    Destination.device(device.id, device.owner_id),
                    Channel.GATEWAY,
                    now,
                    SOURCE_SYSTEM,
                )
            ],
            now=now,
        )
    link.downloads = (link.downloads or 0) + 1
    link.last_download_at = now
    _audit(
        session,
        principal,
        ExposureAuditAction.GATEWAY_DOWNLOADED,
        link,
        outcome="success",
        reason="compliant device of the recipient",
        device_id=device.id,
    )
    session.flush()
    return Fetched(name, document.media_type, data, link.id)
