"""Console page "Customers" (``/customers``): the directory's counts, the import history,
and importing the customer list from a CSV upload (the column mapping is shown with the
result).  Counts, kinds and file names only: never a customer value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from spillguard.console.render import render
from spillguard.core.deps import AppSettings, ConsoleOffset, ConsolePrincipal, DbSession, Keys
from spillguard.core.errors import ContentTooLarge, InvalidInput
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.core.views import Csrf, remember
from spillguard.customers.columns import HEADER_NAMES, ID_HEADERS
from spillguard.customers.fields import PRIMARY, FieldKind
from spillguard.customers.services import (
    CustomerDirectoryService,
    CustomerImportService,
    configured_edm_settings,
)
from spillguard.inspection.services import item_name

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25


def _context(
    db: Session, principal: Principal, settings: Settings, offset: int, run_id: int | None
) -> dict[str, Any]:
    svc = CustomerDirectoryService(db, principal)
    stats = svc.stats()
    runs, total = svc.imports(limit=PAGE_SIZE, offset=offset)
    return {
        "stats": stats,
        "runs": runs,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": "",
        "result": svc.import_run(run_id) if run_id else None,
        "can_import": principal.can(Permission.CUSTOMERS_IMPORT),
        "max_upload_mib": settings.customers_import_max_upload_bytes // (1024 * 1024),
        "kinds": [
            (kind.value, "primary" if kind in PRIMARY else "supporting", sorted(HEADER_NAMES[kind]))
            for kind in FieldKind
        ],
        "id_headers": sorted(ID_HEADERS),
    }


@router.get("/customers", response_class=HTMLResponse)
def customers_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    run: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    ctx = _context(db, remember(request, principal), settings, offset, run)
    return render(request, "customers/customers.html", ctx, principal=principal)


@router.post("/customers/imports", response_class=HTMLResponse, dependencies=[Csrf])
def customers_import(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    principal: ConsolePrincipal,
    file: Annotated[UploadFile | None, File()] = None,
    id_column: Annotated[str, Form(max_length=200)] = "",
    mapping: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    svc = CustomerImportService(
        db, remember(request, principal), keys, configured_edm_settings(settings)
    )
    try:
        if file is None or not (file.filename or (file.size or 0) > 0):
            principal.require(Permission.CUSTOMERS_IMPORT)
            raise InvalidInput("Choose the customer list (a CSV file) to import.", field="file")
        run = svc.import_upload(
            file.file,
            size=file.size or 0,
            max_bytes=settings.customers_import_max_upload_bytes,
            file_name=item_name(file.filename, "upload.csv"),
            id_column=id_column.strip() or None,
            overrides=[line.strip() for line in mapping.splitlines() if line.strip()],
        )
    except (InvalidInput, ContentTooLarge) as exc:
        db.rollback()
        ctx = _context(db, principal, settings, 0, None)
        ctx.update(error=exc.detail, id_column=id_column, mapping=mapping)
        return render(
            request, "customers/customers.html", ctx, principal=principal, status_code=exc.status
        )
    return RedirectResponse(f"/customers?run={run.id}", status_code=303)
