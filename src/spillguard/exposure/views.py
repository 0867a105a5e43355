"""Console pages of the exposure module: the mail quarantine (list, release, delete).

Pages parse the form, make one service call and render; authorisation is decided by the
same service as the API (``security`` and ``dpo`` only). Every form carries the CSRF
token (``Csrf``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from spillguard.console.render import render
from spillguard.core.deps import (
    AppSettings,
    ConsoleOffset,
    ConsolePrincipal,
    DbSession,
    DoneFlag,
    IdPath,
    Keys,
)
from spillguard.core.errors import Conflict, DomainError, InvalidInput
from spillguard.core.views import Csrf, remember
from spillguard.exposure.models import QuarantineStatus
from spillguard.exposure.quarantine import MAX_NOTE, QuarantineService
from spillguard.exposure.quarantine_api import quarantine_service

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MESSAGES = {
    "released": "Released: the message was handed to its recipients and recorded in the ledger.",
    "deleted": "Deleted: the stored message was erased.",
}
StatusQuery = Annotated[str, Query(pattern="^(|held|released|deleted|all)$")]


def _context(svc: QuarantineService, status: str, offset: int) -> dict[str, Any]:
    chosen = None if status == "all" else QuarantineStatus(status or "held")
    rows, total = svc.listing(status=chosen, limit=PAGE_SIZE, offset=offset)
    shown = status or "held"
    return {
        "messages": rows,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "status": shown,
        "statuses": ["held", "released", "deleted", "all"],
        "base_query": urlencode({"status": shown}) + "&",
        "max_note": MAX_NOTE,
    }


@router.get("/exposure/quarantine", response_class=HTMLResponse)
def quarantine_page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    status: StatusQuery = "",
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    svc = quarantine_service(db, remember(request, principal), settings, keys)
    ctx = _context(svc, status, offset)
    ctx["message"] = MESSAGES.get(done or "")
    return render(request, "exposure/quarantine.html", ctx, principal=principal)


def _decided(
    request: Request,
    db: DbSession,
    svc: QuarantineService,
    action: str,
    message_id: int,
    note: str,
) -> Response:
    try:
        if action == "release":
            svc.release(message_id, note=note)
        else:
            svc.delete(message_id, note=note)
    except (Conflict, InvalidInput) as exc:
        return _refused(request, db, svc, exc)
    except DomainError as exc:
        if exc.status < 500:
            raise
        return _refused(request, db, svc, exc)  # the mail server is down: say so, keep all
    return RedirectResponse(
        f"/exposure/quarantine?done={'released' if action == 'release' else 'deleted'}",
        status_code=303,
    )


def _refused(
    request: Request, db: DbSession, svc: QuarantineService, error: DomainError
) -> Response:
    """The list again, with why the decision was not carried out (nothing changed)."""
    db.rollback()
    ctx = _context(svc, "", 0)
    ctx["error"] = error.detail
    return render(
        request,
        "exposure/quarantine.html",
        ctx,
        principal=svc.principal,
        status_code=error.status,
    )


@router.post("/exposure/quarantine/{message_id}/release", dependencies=[Csrf])
def quarantine_release(
    request: Request,
    message_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
) -> Response:
    svc = quarantine_service(db, remember(request, principal), settings, keys)
    return _decided(request, db, svc, "release", message_id, note)


@router.post("/exposure/quarantine/{message_id}/delete", dependencies=[Csrf])
def quarantine_delete(
    request: Request,
    message_id: IdPath,
    db: DbSession,
    settings: AppSettings,
    keys: Keys,
    principal: ConsolePrincipal,
    note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
) -> Response:
    svc = quarantine_service(db, remember(request, principal), settings, keys)
    return _decided(request, db, svc, "delete", message_id, note)
