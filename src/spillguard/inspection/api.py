"""Inspection REST API: ``POST /api/v1/inspections`` (a file as multipart, or text as
JSON) returns the item's report with masked values; ``POST /api/v1/inspections/reveal``
returns the full values to the ``dpo``, for a stated purpose, audited.

Routes read the body, make one service call and return the report's JSON form, the same
object `spillguard scan --format json` prints per item.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, Keys
from spillguard.core.errors import DomainError, InvalidInput
from spillguard.inspection.schemas import (
    InspectionPublic,
    InspectionText,
    InspectionTextReveal,
    RevealedInspectionPublic,
)
from spillguard.inspection.services import (
    InspectionItem,
    InspectionRuntime,
    InspectionService,
    item_name,
)

router = APIRouter(prefix="/api/v1", tags=["inspections"])

_RUNTIME_LOCK = threading.Lock()


class UnsupportedMediaType(DomainError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


def inspection_runtime(request: Request, settings: AppSettings, keys: Keys) -> InspectionRuntime:
    """This process's inspection state, built on first use and kept in the app state."""
    state = request.app.state
    runtime: InspectionRuntime | None = getattr(state, "inspection", None)
    if runtime is None:
        with _RUNTIME_LOCK:
            runtime = getattr(state, "inspection", None)
            if runtime is None:
                runtime = InspectionRuntime.from_settings(settings, keys)
                state.inspection = runtime
    return runtime


Runtime = Annotated[InspectionRuntime, Depends(inspection_runtime)]


@dataclass(frozen=True)
class Submitted:
    """What a request asked to inspect, and (for a reveal) why."""

    item: InspectionItem
    purpose: str | None


def form_text(form: FormData, field: str) -> str | None:
    """A plain form field, or an error naming it if a file was sent in its place."""
    value = form.get(field)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"'{field}' must be a plain form field, not a file.", field=field)


def upload_item(upload: UploadFile, name: str | None, default: str = "upload") -> InspectionItem:
    """An uploaded file as an item to inspect (the spooled file is read as a stream)."""
    size = upload.size
    if size is None:
        upload.file.seek(0, 2)
        size = upload.file.tell()
        upload.file.seek(0)
    return InspectionItem(upload.file, item_name(name or upload.filename, default), size)


async def read_submitted(
    request: Request, model: type[InspectionText]
) -> tuple[Submitted, FormData | None]:
    """Parse the body: a multipart upload (field ``file``) or JSON text.  The form, if
    any, is returned so that the caller closes its spooled files."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput(
                    "Send the file as the multipart file field 'file' (curl -F file=@PATH).",
                    field="file",
                )
            item = upload_item(upload, form_text(form, "name"))
            return Submitted(item, form_text(form, "purpose")), form
        except BaseException:
            await form.close()
            raise
    if media == "application/json" or media.endswith("+json"):
        raw = await request.body()
        try:
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            ) from None
        data = body.text.encode("utf-8", "replace")
        item = InspectionItem(data, item_name(body.name, "<text>"), len(data))
        return Submitted(item, getattr(body, "purpose", None)), None
    raise UnsupportedMediaType(
        "Send a file as multipart/form-data (field 'file') or text as application/json "
        '({"text": "…"}).'
    )


async def submitted(request: Request, principal: ApiPrincipal) -> AsyncIterator[Submitted]:
    """The content of an inspection request (read after the caller is authenticated)."""
    content, form = await read_submitted(request, InspectionText)
    try:
        yield content
    finally:
        if form is not None:
            await form.close()


async def submitted_for_reveal(
    request: Request, principal: ApiPrincipal
) -> AsyncIterator[Submitted]:
    content, form = await read_submitted(request, InspectionTextReveal)
    try:
        yield content
    finally:
        if form is not None:
            await form.close()


def upload_request_body(model: type[BaseModel], *, purpose: bool) -> dict[str, Any]:
    """The OpenAPI request body: a multipart file upload or a JSON text object."""
    properties: dict[str, Any] = {
        "file": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "The file to inspect.",
        },
        "name": {"type": "string", "maxLength": 255, "description": "Name for the report."},
    }
    required = ["file"]
    if purpose:
        properties["purpose"] = {
            "type": "string",
            "minLength": 1,
            "maxLength": 500,
            "description": "Why the full values are needed (audited).",
        }
        required.append("purpose")
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": required, "properties": properties}
                },
                "application/json": {"schema": model.model_json_schema()},
            },
        }
    }


@router.post(
    "/inspections",
    response_model=InspectionPublic,
    summary="Inspect a file or text",
    openapi_extra=upload_request_body(InspectionText, purpose=False),
)
def inspect(
    db: DbSession,
    principal: ApiPrincipal,
    runtime: Runtime,
    content: Annotated[Submitted, Depends(submitted)],
) -> JSONResponse:
    """Inspect one file (multipart field `file`) or text (JSON `{"text", "name"}`) for
    customer data: categories, matched customers, label, masked findings.  Needs
    `inspections:run`; audited as `inspection:content:inspected` (counts, no values)."""
    report = InspectionService(db, principal, runtime).inspect(content.item)
    return JSONResponse(report.to_dict())


@router.post(
    "/inspections/reveal",
    response_model=RevealedInspectionPublic,
    summary="Inspect and show full values (dpo)",
    openapi_extra=upload_request_body(InspectionTextReveal, purpose=True),
)
def reveal(
    db: DbSession,
    principal: ApiPrincipal,
    runtime: Runtime,
    content: Annotated[Submitted, Depends(submitted_for_reveal)],
) -> JSONResponse:
    """As `POST /inspections`, with each finding's full `value` and a required `purpose`.
    The `dpo` role only (`inspections:reveal`); audited as `inspection:values:revealed`
    with the purpose."""
    revealed = InspectionService(db, principal, runtime).reveal(content.item, content.purpose or "")
    return JSONResponse(revealed.to_dict())
