"""Request and response bodies of the inspection API.

The response is the report's JSON form (:meth:`InspectionReport.to_dict`), the same
object `spillguard scan --format json` prints per item; these models describe it in the
OpenAPI document.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spillguard.inspection.classify import ItemStatus, Label


class InspectionText(BaseModel):
    """Text to inspect, sent as JSON instead of a file."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The content to inspect (UTF-8 text).")
    name: str | None = Field(
        default=None, max_length=255, description="Name shown in the report (default <text>)."
    )


class InspectionTextReveal(InspectionText):
    """Text to inspect with full values shown (dpo only), and why."""

    purpose: str = Field(
        min_length=1, max_length=500, description="Why the full values are needed (audited)."
    )


class FindingLocationPublic(BaseModel):
    part: str
    line: int | None = None
    column: int | None = None
    row: int | None = None
    cell: int | None = None
    start: int
    end: int


class MaskedFindingPublic(BaseModel):
    entity: str
    detector: str
    masked: str = Field(description="The value masked for display (07700 9•••21).")
    confidence: float
    location: FindingLocationPublic


class RevealedFindingPublic(MaskedFindingPublic):
    value: str = Field(description="The full (normalised) value: reveal responses only.")


class CustomerHitPublic(BaseModel):
    customer_id: str
    primary: list[str] = Field(description="Primary field kinds that matched (no values).")
    supporting: list[str] = Field(description="Supporting field kinds that matched.")


class IncompletePublic(BaseModel):
    part: str
    status: ItemStatus
    reason: str


class InspectionPublic(BaseModel):
    """The report of one inspected item, with masked values only."""

    path: str = Field(description="The item's name as given.")
    sha256: str | None
    size: int | None
    format: str
    status: ItemStatus
    label: Label
    categories: dict[str, int] = Field(description="Findings per data category (entity).")
    customer_count: int
    customer_ids: list[str]
    customers: list[CustomerHitPublic]
    primary_only_count: int
    primary_only_ids: list[str]
    findings: list[MaskedFindingPublic]
    findings_truncated: bool
    reasons: list[str]
    incomplete: list[IncompletePublic]
    parts: int


class RevealedInspectionPublic(InspectionPublic):
    """The report with each finding's full value, for the dpo, and the stated purpose."""

    findings: list[RevealedFindingPublic]  # type: ignore[assignment]
    purpose: str
