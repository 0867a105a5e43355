"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from spillguard.core import db as dbmod
from spillguard.core.deps import ApiPrincipal
from spillguard.core.roles import Permission, mark_authz_checked

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    mark_authz_checked()
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and migrations at head")
def readyz(request: Request) -> JSONResponse:
    mark_authz_checked()
    engine = request.app.state.engine
    head = dbmod.migration_head()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = dbmod.current_revision(engine)
    except Exception:  # any failure to reach the database means "not ready"
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    ready = current == head
    return JSONResponse(
        {
            "status": "ok" if ready else "unavailable",
            "database": "ok",
            "migration_current": current,
            "migration_head": head,
        },
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer token with metrics:view: admin, security, auditor)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request, principal: ApiPrincipal) -> Response:
    principal.require(Permission.METRICS_VIEW)
    registry = request.app.state.registry
    shared = request.app.state.metrics_multiproc_dir
    if shared:  # several worker processes: the samples of all of them, added up
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


SWAGGER = "/static/vendor/swagger-ui-5.35.0"


@router.get("/api/docs", include_in_schema=False)
def api_docs() -> HTMLResponse:
    """Interactive API documentation, served from the project's own static files."""
    mark_authz_checked()
    return get_swagger_ui_html(
        openapi_url="/api/openapi.json",
        title="Spillguard API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url="data:,",
        # No call-outs: Swagger UI would otherwise send the spec URL to its online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
