"""Quarantine REST API (``/api/v1/exposure/quarantine``): list the messages the mail
filter held, release one to its recipients or delete it. ``security`` and ``dpo`` only;
each decision is audited. Bodies carry addresses, labels and counts, never the message.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.errors import DomainError
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.schemas import Page
from spillguard.core.settings import Settings
from spillguard.exposure.mail_policy import AddressError
from spillguard.exposure.mailfilter import SmtpRelay
from spillguard.exposure.models import QuarantineStatus
from spillguard.exposure.quarantine import MAX_NOTE, QuarantineService
from spillguard.exposure.store import blob_store

router = APIRouter(prefix="/api/v1/exposure/quarantine", tags=["quarantine"])


class MailFilterMisconfigured(DomainError):
    status = 500
    slug = "mail-filter-misconfigured"
    title = "The mail filter is misconfigured"


class QuarantinedPublic(BaseModel):
    """A held message: who sent it to whom, why it was held, what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: datetime
    sender: str = Field(description="Envelope sender; empty for a bounce (null sender).")
    recipients: list[str]
    reason: str
    label: str
    customer_count: int
    status: QuarantineStatus
    decided_by_id: int | None
    decided_at: datetime | None
    decision_note: str | None


class StatusFilter(StrEnum):
    """Which held messages to list: those in one state, or every one whatever its state."""

    HELD = QuarantineStatus.HELD.value
    RELEASED = QuarantineStatus.RELEASED.value
    DELETED = QuarantineStatus.DELETED.value
    ALL = "all"

    def status(self) -> QuarantineStatus | None:
        """The state to filter on; None for every message."""
        return None if self is StatusFilter.ALL else QuarantineStatus(self.value)


class QuarantineDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=MAX_NOTE, description="Why (optional).")


def quarantine_service(
    db: Session, principal: Principal, settings: Settings, keys: KeyRing
) -> QuarantineService:
    """The service with the document store and the next hop the settings name."""
    try:
        relay = SmtpRelay.from_settings(settings)
    except AddressError as exc:
        raise MailFilterMisconfigured(str(exc)) from None
    return QuarantineService(db, principal, keys, blob_store(settings.exposure_store_dir), relay)


def api_service(
    db: DbSession, principal: ApiPrincipal, settings: AppSettings, keys: Keys
) -> QuarantineService:
    return quarantine_service(db, principal, settings, keys)


Service = Annotated[QuarantineService, Depends(api_service)]


@router.get("", response_model=Page[QuarantinedPublic])
def list_quarantine(
    svc: Service,
    paging: Paging,
    status: Annotated[
        StatusFilter,
        Query(description="held, released, deleted, or all (the default: every message)"),
    ] = StatusFilter.ALL,
) -> Page[QuarantinedPublic]:
    """Quarantined messages, newest first: those in one state, or all of them."""
    rows, total = svc.listing(status=status.status(), limit=paging.limit, offset=paging.offset)
    return Page(
        items=[QuarantinedPublic.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{message_id}", response_model=QuarantinedPublic)
def get_quarantined(message_id: IdPath, svc: Service) -> QuarantinedPublic:
    return QuarantinedPublic.model_validate(svc.get(message_id))


@router.post("/{message_id}/release", response_model=QuarantinedPublic)
def release_quarantined(
    message_id: IdPath, svc: Service, body: QuarantineDecision | None = None
) -> QuarantinedPublic:
    """Hand the message to its original recipients (through the mail filter's next hop)
    and record the deliveries. 503 when the next hop is down (nothing changes)."""
    released = svc.release(message_id, note=body.note if body else None)
    return QuarantinedPublic.model_validate(released.message)


@router.delete("/{message_id}", response_model=QuarantinedPublic)
def delete_quarantined(message_id: IdPath, svc: Service) -> QuarantinedPublic:
    """Erase the held message for good (its record stays, marked deleted)."""
    return QuarantinedPublic.model_validate(svc.delete(message_id))
