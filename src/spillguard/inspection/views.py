"""Console page "Inspect" (``/inspections``): upload a file or paste text, see its report
(label, counts per category, matched customers, masked findings); the ``dpo`` can ask for
the full values, with a reason, and that is audited.

With htmx the form posts in place and only the report is swapped, so the chosen file stays
in the form and "Show full values" sends it again; without script the whole page is
rendered (choose the file again to reveal).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from spillguard.console.render import render
from spillguard.core.deps import ConsolePrincipal, DbSession
from spillguard.core.errors import ContentTooLarge, InvalidInput
from spillguard.core.roles import Principal
from spillguard.core.views import Csrf, remember
from spillguard.inspection.api import Runtime, upload_item
from spillguard.inspection.classify import InspectionReport
from spillguard.inspection.services import (
    InspectionItem,
    InspectionRuntime,
    InspectionService,
    RevealedReport,
    item_name,
)

router = APIRouter(include_in_schema=False)

SHOWN_FINDINGS = 500
SHOWN_CUSTOMERS = 200


def _size(number: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:,} {unit}" if unit == "bytes" else f"{number:.1f} {unit}"
        number /= 1024  # type: ignore[assignment]
    return str(number)


def _context(svc: InspectionService, runtime: InspectionRuntime) -> dict[str, Any]:
    return {
        "directory_customers": svc.directory_customers(),
        "may_reveal": svc.may_reveal(),
        "max_upload": _size(runtime.max_upload_bytes),
        "shown_findings": SHOWN_FINDINGS,
        "shown_customers": SHOWN_CUSTOMERS,
    }


def _item(file: UploadFile | None, text: str, name: str) -> InspectionItem:
    """The uploaded file if one was chosen, else the pasted text."""
    if file is not None and (file.filename or (file.size or 0) > 0):
        return upload_item(file, name.strip() or None)
    if text.strip():
        data = text.encode("utf-8", "replace")
        return InspectionItem(data, item_name(name, "pasted text"), len(data))
    raise InvalidInput("Choose a file or paste some text to inspect.", field="file")


def _answer(
    request: Request,
    db: Session,
    principal: Principal,
    runtime: InspectionRuntime,
    *,
    report: InspectionReport | None = None,
    revealed: RevealedReport | None = None,
    error: InvalidInput | ContentTooLarge | None = None,
    purpose: str = "",
) -> Response:
    """The report (or why there is none): the swapped part for htmx, else the page."""
    if error is not None:
        db.rollback()
    svc = InspectionService(db, principal, runtime)
    ctx = _context(svc, runtime)
    ctx.update(
        report=revealed.report if revealed else report,
        values=list(revealed.values) if revealed else None,
        error=error.detail if error else None,
        purpose=purpose,
    )
    htmx = request.headers.get("hx-request") == "true"
    # htmx swaps only 2xx answers, so its part says what went wrong with a 200.
    status = error.status if error is not None and not htmx else 200
    template = "inspection/_report.html" if htmx else "inspection/inspect.html"
    return render(request, template, ctx, principal=principal, status_code=status)


@router.get("/inspections", response_class=HTMLResponse)
def inspect_page(
    request: Request, db: DbSession, principal: ConsolePrincipal, runtime: Runtime
) -> Response:
    svc = InspectionService(db, remember(request, principal), runtime)
    svc.check_access()
    return render(request, "inspection/inspect.html", _context(svc, runtime), principal=principal)


@router.post("/inspections", response_class=HTMLResponse, dependencies=[Csrf])
def inspect_submit(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    runtime: Runtime,
    file: Annotated[UploadFile | None, File()] = None,
    text: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    svc = InspectionService(db, remember(request, principal), runtime)
    svc.check_access()
    try:
        report = svc.inspect(_item(file, text, name))
    except (InvalidInput, ContentTooLarge) as exc:
        return _answer(request, db, principal, runtime, error=exc)
    return _answer(request, db, principal, runtime, report=report)


@router.post("/inspections/reveal", response_class=HTMLResponse, dependencies=[Csrf])
def inspect_reveal(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    runtime: Runtime,
    file: Annotated[UploadFile | None, File()] = None,
    text: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=255)] = "",
    purpose: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = InspectionService(db, remember(request, principal), runtime)
    svc.require_reveal()
    try:
        revealed = svc.reveal(_item(file, text, name), purpose)
    except (InvalidInput, ContentTooLarge) as exc:
        return _answer(request, db, principal, runtime, error=exc, purpose=purpose)
    return _answer(request, db, principal, runtime, revealed=revealed, purpose=purpose)
