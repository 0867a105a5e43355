"""The app factory.  ``create_app(settings)`` builds a complete server; nothing happens
at import time, so tests and each worker process build their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from spillguard import __version__
from spillguard.core import db as dbmod
from spillguard.core.errors import (
    PROBLEM_RESPONSES,
    AuthenticationRequired,
    DomainError,
    MalformedBody,
    Throttled,
    problem,
)
from spillguard.core.jobs import Job, scheduler_loop
from spillguard.core.keys import KeyRing, load_or_create_key_ring
from spillguard.core.logging import configure_logging
from spillguard.core.middleware import (
    SECURITY_HEADERS,
    BodySizeLimit,
    HttpMetrics,
    RequestMiddleware,
)
from spillguard.core.sessions import purge_expired
from spillguard.core.settings import ConfigError, Settings, load_settings

log = structlog.get_logger("spillguard.app")

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
PROBLEM_JSON = "application/problem+json"
UPLOAD_ENVELOPE_BYTES = 1024 * 1024  # multipart headers and small form fields


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api/") or path in {"/metrics", "/healthz", "/readyz"}:
        return False
    return "text/html" in request.headers.get("accept", "") or request.method == "POST"


def _problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """The one place domain errors become RFC 9457 problems (or console pages)."""
    from spillguard.console.render import render_error

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        headers = dict(exc.response_headers)
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(exc.retry_after)
        if _wants_html(request):
            if isinstance(exc, AuthenticationRequired) and request.method == "GET":
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return render_error(request, exc.status, exc.title, exc.detail, headers)
        if isinstance(exc, AuthenticationRequired):
            headers["WWW-Authenticate"] = exc.challenge
        body = problem(exc.status, exc.title, exc.detail, exc.slug, **exc.extra)
        return _problem_response(exc.status, body, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        names = ", ".join(e["field"] for e in errors[:5])
        detail = f"Invalid input in {names}." if names else "Invalid input."
        if _wants_html(request):
            return render_error(request, 422, "Invalid input", detail)
        return _problem_response(
            422, problem(422, "Invalid input", detail, "invalid-input", errors=errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # Starlette and FastAPI raise a bare 400 only when their body parsers fail (a
            # multipart upload without its boundary or cut short, too many files): answered
            # as the project's own problem, not as an about:blank titled by the parser.
            content_type = request.headers.get("content-type", "")
            return await domain_error(
                request, MalformedBody.from_parser(content_type, str(exc.detail))
            )
        titles = {404: "Not found", 405: "Method not allowed", 413: "Content too large"}
        title = titles.get(exc.status_code, str(exc.detail))
        detail = {
            404: "There is nothing at this address.",
            413: "The request body is larger than this endpoint accepts.",
        }.get(exc.status_code, str(exc.detail))
        if _wants_html(request):
            return render_error(request, exc.status_code, title, detail, exc.headers)
        return _problem_response(
            exc.status_code, problem(exc.status_code, title, detail), dict(exc.headers or {})
        )

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # The database refused a value the client sent (PostgreSQL: a NUL character, a number
        # out of range): the client's mistake, so a 422, not a 500.
        log.warning("database_refused_value", error=type(exc.orig).__name__)
        detail = "A value in this request cannot be stored or searched (e.g. a NUL character)."
        if _wants_html(request):
            return render_error(request, 422, "Invalid input", detail)
        return _problem_response(422, problem(422, "Invalid input", detail, "invalid-input"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
        detail = "Something went wrong on the server. The request id identifies it in the logs."
        # This handler answers outside RequestMiddleware, so it adds that middleware's headers.
        headers = {"X-Request-ID": request.state.request_id}
        headers.update((k.decode(), v.decode()) for k, v in SECURITY_HEADERS)
        if _wants_html(request):
            return render_error(request, 500, "Server error", detail, headers)
        return _problem_response(
            500, problem(500, "Server error", detail, request_id=request.state.request_id), headers
        )


def housekeeping_job(settings: Settings) -> Job:
    return Job(
        "core.housekeeping",
        settings.housekeeping_interval_seconds,
        lambda session: purge_expired(session, settings),
    )


DELIVERY_BATCH_MAX_BYTES = 8 * 1024 * 1024
"""A batch of 10,000 deliveries is about 4 MiB of JSON."""
ACCESS_BATCH_MAX_BYTES = 32 * 1024 * 1024
"""POST /api/v1/access-events: 5,000 events with long customer-id lists."""


def create_app(settings: Settings | None = None, keys: KeyRing | None = None) -> FastAPI:
    """Build the Spillguard server from settings (default: environment and config file)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_json)
    keys = keys or load_or_create_key_ring(settings)
    dbmod.check_sqlite_location(settings.resolved_database_url)
    from spillguard.inspection.config import inspection_config_for

    try:  # read now, once: a bad [inspection] table stops the server from starting
        inspection_config_for(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    engine = dbmod.make_engine(settings.resolved_database_url)
    session_factory = dbmod.make_session_factory(engine)
    registry = CollectorRegistry()
    from spillguard.audit.log import sequencer_job
    from spillguard.audit.witness import witness_mail_job
    from spillguard.devices.commands import consequences_job, maintenance_job
    from spillguard.exposure.inventory import inventory_job
    from spillguard.exposure.services import retention_job
    from spillguard.incidents.clock import reminders_job
    from spillguard.incidents.escalation import escalation_job
    from spillguard.incidents.outbox import notices_job

    jobs = [
        housekeeping_job(settings),
        maintenance_job(settings),
        consequences_job(settings),
        sequencer_job(settings, keys),
        witness_mail_job(settings, keys),
        retention_job(settings),
        inventory_job(settings),
        reminders_job(settings),
        notices_job(settings, keys),
        escalation_job(settings, keys),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = None
        if settings.scheduler_enabled:
            tick = min(30.0, max(0.2, settings.housekeeping_interval_seconds / 4))
            task = asyncio.create_task(scheduler_loop(session_factory, jobs, tick))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            engine.dispose()

    app = FastAPI(
        title="Spillguard API",
        version=__version__,
        description="Keep customer data from leaking through phones; respond when it does. "
        "Authenticate with `Authorization: Bearer <token>` (create one with "
        "`spillguard tokens create`). Errors are RFC 9457 problem documents.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by core.ops from vendored Swagger UI (no CDN)
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.registry = registry
    app.state.jobs = jobs
    # Under `serve --workers N` every worker writes its samples to PROMETHEUS_MULTIPROC_DIR
    # (set by `serve` before the workers start) and /metrics adds them up across workers.
    app.state.metrics_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    Gauge(
        "spillguard_build_info",
        "Version of this server",
        ["version"],
        registry=registry,
        multiprocess_mode="max",
    ).labels(
        __version__
    ).set(1)

    install_error_handlers(app)
    # Inside RequestMiddleware (added after it), so a 413 gets the request id and headers.
    app.add_middleware(
        BodySizeLimit, prefix="/api/device/", max_bytes=settings.device_max_body_bytes
    )
    # Uploads: the cap plus room for the multipart envelope; services check the file itself.
    app.add_middleware(
        BodySizeLimit,
        prefix=(
            "/api/v1/inspections",
            "/inspections",
            "/api/v1/exposure/contents",
            "/api/v1/exposure/links",
        ),
        max_bytes=settings.inspection_max_upload_bytes + UPLOAD_ENVELOPE_BYTES,
    )
    app.add_middleware(
        BodySizeLimit,
        prefix=("/api/v1/customers/imports", "/customers/imports"),
        max_bytes=settings.customers_import_max_upload_bytes + UPLOAD_ENVELOPE_BYTES,
    )
    app.add_middleware(
        BodySizeLimit, prefix="/api/v1/exposure/deliveries", max_bytes=DELIVERY_BATCH_MAX_BYTES
    )
    app.add_middleware(
        BodySizeLimit, prefix="/api/v1/access-events", max_bytes=ACCESS_BATCH_MAX_BYTES
    )
    app.add_middleware(
        RequestMiddleware,
        metrics=HttpMetrics(registry),
        strict_backstop=settings.authz_backstop_strict,
    )
    app.mount("/static", StaticFiles(directory=CONSOLE_DIR / "static"), name="static")

    from spillguard.audit import alerts_api, honeytokens_api, ingest_api
    from spillguard.audit import api as audit_api
    from spillguard.audit import views as audit_views
    from spillguard.core import api, ops, views
    from spillguard.customers import api as customers_api
    from spillguard.customers import views as customers_views
    from spillguard.devices import api as devices_api
    from spillguard.devices import views as devices_views
    from spillguard.exposure import api as exposure_api
    from spillguard.exposure import ledger_views as exposure_ledger_views
    from spillguard.exposure import quarantine_api
    from spillguard.exposure import views as exposure_views
    from spillguard.inspection import api as inspection_api
    from spillguard.inspection import views as inspection_views

    # The device protocol first: it takes most of the requests, and routes match in order.
    app.include_router(devices_api.protocol, responses=PROBLEM_RESPONSES)
    app.include_router(ops.router, responses=PROBLEM_RESPONSES)
    app.include_router(api.router, responses=PROBLEM_RESPONSES)
    app.include_router(views.router)
    app.include_router(devices_views.router)
    app.state.home_panels = [devices_views.home_panel]
    app.include_router(devices_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(inspection_views.router)
    app.include_router(inspection_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(customers_views.router)
    app.include_router(customers_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(audit_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(ingest_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(honeytokens_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(alerts_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(alerts_api.staff_router, responses=PROBLEM_RESPONSES)
    app.include_router(audit_views.router)
    app.include_router(exposure_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(quarantine_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(exposure_views.router)
    app.include_router(exposure_api.gateway, responses=PROBLEM_RESPONSES)
    app.include_router(exposure_api.decisions, responses=PROBLEM_RESPONSES)
    app.include_router(exposure_ledger_views.router)
    from spillguard.incidents import api as incidents_api
    from spillguard.incidents import views as incidents_views

    app.include_router(incidents_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(incidents_views.router)
    app.state.home_panels.insert(0, incidents_views.home_panel)
    from spillguard.incidents import notices_api, notices_views

    app.include_router(notices_api.router, responses=PROBLEM_RESPONSES)
    app.include_router(notices_views.router)
    if settings.demo_mailbox_dir is not None:
        from spillguard.demo import views as demo_views

        app.include_router(demo_views.router)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for uvicorn workers (``--factory``): settings from the environment."""
    return create_app()
