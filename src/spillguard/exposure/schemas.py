"""Request and response bodies of the exposure API (ids, counts and labels; no values)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from spillguard.core.deps import MAX_ID
from spillguard.exposure.ledger import MAX_SOURCE_ID, MAX_SOURCE_SYSTEM, MAX_THIRD_PARTY
from spillguard.exposure.models import Channel, DestinationType
from spillguard.inspection.classify import Label

SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


class ContentPublic(BaseModel):
    """An inspected content as the ledger knows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    size: int | None
    format: str
    status: str = Field(description="inspected, uninspected or unscannable")
    label: str
    categories: dict[str, int]
    customer_count: int = Field(description="Distinct directory customers it names.")
    first_seen_at: datetime
    inspected_at: datetime


class DestinationIn(BaseModel):
    """Where content went: set the field(s) of its type and nothing else."""

    model_config = ConfigDict(extra="forbid")

    type: DestinationType = Field(
        description="device, user, recipient or third-party: which one field below to set."
    )
    device_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="For a device: the enrolled device's id (its owner is recorded with it).",
    )
    user_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="For a user: the person's user id."
    )
    recipient: str | None = Field(
        default=None,
        min_length=3,
        max_length=320,
        description="For a recipient: an outside e-mail address (its domain is recorded too).",
    )
    third_party: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_THIRD_PARTY,
        description="For a third party: its name (a company, a service).",
    )


class DeliveryIn(BaseModel):
    """One delivery of already inspected content (see ``POST /api/v1/exposure/contents``)."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=SHA256_PATTERN, description="The content's SHA-256 (hex).")
    destination: DestinationIn = Field(description="Where the content went.")
    channel: Channel = Field(
        default=Channel.API, description="How it got there: mail, gateway, device-inventory, api."
    )
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it was delivered (default: now)."
    )
    source_system: str = Field(
        min_length=1,
        max_length=MAX_SOURCE_SYSTEM,
        description="Required: the name of the system reporting the delivery (e.g. crm); "
        "with source_id, it makes a retried report count once.",
    )
    source_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SOURCE_ID,
        description="The sender's own id of this delivery: the same id is recorded once.",
    )


class DeliveryBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[DeliveryIn] = Field(
        min_length=1, max_length=10_000, description="1 to 10,000 deliveries, all or none."
    )


class RecordOutcomePublic(BaseModel):
    recorded: int
    duplicates: int = Field(description="Deliveries already in the ledger (same source id).")


class DestinationPublic(BaseModel):
    type: str
    device_id: int | None
    user_id: int | None
    recipient: str | None
    domain: str | None
    third_party: str | None


class ContentBrief(BaseModel):
    sha256: str
    format: str
    label: str
    customer_count: int


class DeliveryPublic(BaseModel):
    id: int
    occurred_at: datetime
    recorded_at: datetime
    channel: str
    destination: DestinationPublic
    content: ContentBrief
    source_system: str


class ContentOnDestinationPublic(BaseModel):
    content: ContentPublic
    first_at: datetime
    last_at: datetime
    deliveries: int
    channels: list[str]


class DestinationExposurePublic(BaseModel):
    """What reached a device, user or domain: contents, distinct customers, labels."""

    contents: list[ContentOnDestinationPublic]
    distinct_customers: int
    label_counts: dict[str, int]
    categories: dict[str, int]


class GatewayLinkPublic(BaseModel):
    """A gateway link without its secret (shown once, when made)."""

    id: int = Field(description="The link's id (to list or withdraw it).")
    user_id: int = Field(description="The person whose enrolled, compliant phone may open it.")
    document_id: int = Field(description="The held (encrypted) document behind the link.")
    size: int = Field(description="The document's size in bytes.")
    media_type: str = Field(description="The document's media type, from its file name.")
    created_at: datetime = Field(description="When the link was made.")
    expires_at: datetime = Field(description="When the link stops working.")
    revoked_at: datetime | None = Field(description="When the link was withdrawn, if it was.")
    downloads: int = Field(description="How many times a phone fetched it.")
    last_download_at: datetime | None = Field(description="When a phone last fetched it.")


class GatewayLinkCreated(GatewayLinkPublic):
    url: str = Field(description="The link to send; shown this once.")
    label: str = Field(description="The document's label, from its inspection.")
    customer_count: int = Field(description="Distinct directory customers it names.")


class AccessDecisionIn(BaseModel):
    """Who wants what: a person (e-mail or user id), optionally one of their phones, and
    the content's label or SHA-256 (or both: the higher label counts)."""

    model_config = ConfigDict(extra="forbid")

    user: (
        Annotated[str, Field(min_length=1, max_length=320)]
        | Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    ) = Field(
        description="The person: e-mail address or user id (a number, or its digits as a "
        "string, as in nginx's X-Spillguard-User)."
    )
    device_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    label: Label | None = None
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)


class AccessDecisionOut(BaseModel):
    allow: bool
    decision: str = Field(description="allow or deny")
    reasons: list[str] = Field(description="Why not, in words for the person (empty if allowed)")
    label: str = Field(description="The label the decision was made for")
    user_id: int | None
    device_id: int | None
