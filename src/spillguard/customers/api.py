"""Customer-directory REST API (``/api/v1/customers``): directory counts, import
history, and importing a customer list as a CSV upload.

An import runs synchronously in the request, in one transaction (an error stores
nothing), with the upload capped by ``customers_import_max_upload_bytes``; very large
lists go through `spillguard customers import`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.schemas import Page
from spillguard.customers.models import ImportRun
from spillguard.customers.schemas import DirectoryStatsPublic, ImportRunPublic
from spillguard.customers.services import (
    CustomerDirectoryService,
    CustomerImportService,
    DirectoryStats,
    configured_edm_settings,
)
from spillguard.inspection.services import item_name

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


def stats_public(stats: DirectoryStats) -> DirectoryStatsPublic:
    return DirectoryStatsPublic(
        customers=stats.customers,
        removed=stats.removed,
        with_contact=stats.with_contact,
        hashes_by_kind=stats.hashes_by_kind,
        fields_present=sorted(k for k, n in stats.hashes_by_kind.items() if n),
        last_import=run_public(stats.last_import) if stats.last_import else None,
    )


def run_public(run: ImportRun) -> ImportRunPublic:
    return ImportRunPublic.model_validate(run)


def clean_overrides(values: list[str] | None) -> list[str]:
    """``map`` values as given, without empty entries (an empty form field)."""
    return [v for v in values or [] if v.strip()]


@router.get("", response_model=DirectoryStatsPublic)
def directory_stats(db: DbSession, principal: ApiPrincipal) -> DirectoryStatsPublic:
    """Customers, removed customers, contacts, hashed field kinds and the last import
    (counts only)."""
    return stats_public(CustomerDirectoryService(db, principal).stats())


@router.get("/imports", response_model=Page[ImportRunPublic])
def list_imports(db: DbSession, principal: ApiPrincipal, paging: Paging) -> Page[ImportRunPublic]:
    """Import runs, newest first."""
    rows, total = CustomerDirectoryService(db, principal).imports(
        limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[run_public(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/imports/{import_id}", response_model=ImportRunPublic)
def get_import(import_id: IdPath, db: DbSession, principal: ApiPrincipal) -> ImportRunPublic:
    return run_public(CustomerDirectoryService(db, principal).import_run(import_id))


@router.post("/imports", response_model=ImportRunPublic, status_code=status.HTTP_201_CREATED)
def import_customers(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    file: Annotated[UploadFile, File(description="The customer list: CSV with a header row.")],
    id_column: Annotated[
        str | None,
        Form(max_length=200, description="The column holding the customer id."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        Form(
            alias="map",
            description="COLUMN=KIND: what a column holds (a field kind, id or ignore); "
            "repeat the field for several columns.",
        ),
    ] = None,
) -> ImportRunPublic:
    """Import or re-import the customer list (keyed hashes, encrypted contacts).
    Customers missing from the file are removed.  Needs `customers:import`."""
    size = file.size if file.size is not None else 0
    run = CustomerImportService(
        db, principal, keys, configured_edm_settings(settings)
    ).import_upload(
        file.file,
        size=size,
        max_bytes=settings.customers_import_max_upload_bytes,
        file_name=item_name(file.filename, "upload.csv"),
        id_column=(id_column or "").strip() or None,
        overrides=clean_overrides(map_),
    )
    return run_public(run)
