"""Response bodies of the customer-directory API: counts, kinds and import runs, never a
customer value."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ImportRunPublic(BaseModel):
    """One customer-list import: who, when, which file, the column mapping and counts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    actor_id: int | None
    actor_label: str | None
    started_at: datetime
    finished_at: datetime | None
    file_name: str
    file_sha256: str
    file_bytes: int
    encoding: str
    rows: int
    added: int
    changed: int
    unchanged: int
    removed: int
    invalid_rows: int
    invalid: dict[str, int] = Field(description="Invalid values skipped, per field kind.")
    mapping: dict[str, str] = Field(
        description="Column header → field kind used (`id` for the customer id column)."
    )


class DirectoryStatsPublic(BaseModel):
    """The customer directory in numbers."""

    customers: int = Field(description="Active customers.")
    removed: int = Field(description="Customers dropped by a later import.")
    with_contact: int = Field(description="Customers with encrypted contact details.")
    hashes_by_kind: dict[str, int] = Field(
        description="Customers holding keyed hashes of each field kind."
    )
    fields_present: list[str] = Field(description="Field kinds present in the directory.")
    last_import: ImportRunPublic | None
