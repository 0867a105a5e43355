"""API schemas of access-log ingestion: the batch, its answer, sources, rejects, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EVENT_DESCRIPTION = (
    "Access events, each a JSON object: id (source event id, required), time (RFC 3339 with "
    "offset, required), actor (required), action (view|search|export|print|update, "
    "required), system (required), record_type, customer_ids (list of the source's customer "
    "ids), query (stored only as a keyed digest), result_count, source_address (IP). Items "
    "that do not validate are refused one by one (see 'rejected'); at most 5,000 per batch."
)


class AccessBatchIn(BaseModel):
    """A batch of access events from one source system."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1,
        max_length=100,
        description="The sending system's name (crm, billing...), printable ASCII.",
    )
    # Items are validated one by one by the service, so one bad item refuses only itself.
    events: list[Any] = Field(description=EVENT_DESCRIPTION)


class AccessRejectItem(BaseModel):
    index: int = Field(description="Position of the refused item in 'events' (from 0).")
    reason: str = Field(description="Why; names the field, never the value.")


class AccessBatchResult(BaseModel):
    accepted: int = Field(description="New events stored (committed before this answer).")
    duplicates: int = Field(description="Events already stored (same source and id).")
    rejected: list[AccessRejectItem]


class AccessSourcePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    accepted: int
    duplicates: int
    rejected: int
    created_at: datetime
    last_event_at: datetime | None
    last_reject_at: datetime | None


class AccessRejectPublic(BaseModel):
    id: int
    source: str | None
    channel: str
    received_at: datetime
    position: str | None
    reason: str
    item_digest: str | None = Field(description="SHA-256 (hex) of the raw item as received.")


class AccessEventPublic(BaseModel):
    id: int
    source: str
    source_event_id: str
    audit_event_id: int
    actor: str
    action: str
    system: str
    record_type: str | None
    occurred_at: datetime = Field(description="The source system's time of the access.")
    received_at: datetime
    source_address: str | None
    records: int = Field(description="Records touched: customer ids given, or result count.")
    query_digest: str | None = Field(description="HMAC-SHA256 (hex) of the normalised query.")
