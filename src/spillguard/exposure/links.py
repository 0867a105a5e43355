"""Sharing a document through the gateway by hand (the API), and withdrawing links.

The mail filter makes links by itself when it strips an attachment; this is the same
thing for a document someone wants to send to a colleague's phone safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.keys import KeyRing
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.exposure.gateway import MadeLink, ensure_link
from spillguard.exposure.models import GatewayLink, HeldDocument
from spillguard.exposure.services import ExposureAuditAction, register_report
from spillguard.exposure.store import BlobStore, HeldDocuments
from spillguard.inspection.classify import InspectionReport


class LinkUnknown(NotFound):
    slug = "gateway-link-not-found"
    title = "Gateway link not found"


class LinkAlreadyRevoked(Conflict):
    slug = "gateway-link-revoked"
    title = "Gateway link already withdrawn"


@dataclass(frozen=True)
class LinkRow:
    link: GatewayLink
    document: HeldDocument


class LinkService:
    def __init__(
        self, session: Session, principal: Principal, keys: KeyRing, store: BlobStore
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.store = store

    def check_share(self) -> None:
        self.principal.require(Permission.EXPOSURE_RECORD)

    def share(
        self,
        report: InspectionReport,
        data: bytes,
        *,
        name: str,
        media_type: str,
        user_id: int,
        days: int,
    ) -> MadeLink:
        """Hold an inspected document and make a link that only ``user_id``'s compliant
        phone can open."""
        self.principal.require(Permission.EXPOSURE_RECORD)
        if self.session.get(User, user_id) is None:
            raise InvalidInput(f"There is no user {user_id}.", field="user_id")
        content = register_report(self.session, report)
        held = HeldDocuments(self.session, self.keys, self.store)
        made = ensure_link(
            self.session,
            self.keys,
            user_id=user_id,
            days=days,
            hold=lambda: held.hold(
                data, name=name, media_type=media_type, purpose="gateway", content_id=content.id
            ),
        )
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.LINK_CREATED,
            object_type="gateway-link",
            object_id=made.link.id,
            details={
                "user_id": user_id,
                "label": content.label,
                "customers": content.customer_count,
                "days": days,
            },
        )
        return made

    def links(self, *, user_id: int | None, limit: int, offset: int) -> tuple[list[LinkRow], int]:
        self.principal.require(Permission.EXPOSURE_VIEW)
        conditions = [GatewayLink.user_id == user_id] if user_id is not None else []
        total = self.session.scalar(
            select(func.count()).select_from(GatewayLink).where(*conditions)
        )
        rows = self.session.execute(
            select(GatewayLink, HeldDocument)
            .join(HeldDocument, HeldDocument.id == GatewayLink.document_id)
            .where(*conditions)
            .order_by(GatewayLink.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return [LinkRow(link, doc) for link, doc in rows], int(total or 0)

    def revoke(self, link_id: int, *, now: datetime | None = None) -> GatewayLink:
        self.principal.require(Permission.EXPOSURE_RECORD)
        link = self.session.get(GatewayLink, link_id)
        if link is None:
            raise LinkUnknown(f"There is no gateway link {link_id}.")
        if link.revoked_at is not None:
            raise LinkAlreadyRevoked("This link was already withdrawn.")
        link.revoked_at = now or utcnow()
        link.revoked_by_id = self.principal.user_id
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.LINK_REVOKED,
            object_type="gateway-link",
            object_id=link.id,
            details={"user_id": link.user_id, "downloads": link.downloads},
        )
        self.session.flush()
        return link
