"""The one ASGI middleware around every request: request id, access log, metrics,
security headers and the authorisation backstop."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spillguard.core.errors import problem
from spillguard.core.roles import begin_request

log = structlog.get_logger("spillguard.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Routes open to anyone.  Everything else must decide authorisation (see core.roles).
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = {
    "/healthz",
    "/readyz",
    "/login",
    "/setup",
    "/api/openapi.json",
    "/api/docs",
    "/favicon.ico",
}

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


_IDS = random.Random()  # noqa: S311 - seeded from os.urandom; request ids are no secret


def new_request_id() -> str:
    """32 random hex digits, like ``uuid4().hex``, without a system call per request (on
    the event loop that call releases the GIL, and getting it back behind busy worker
    threads cost milliseconds under load)."""
    return f"{_IDS.getrandbits(128):032x}"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "spillguard_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "spillguard_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
        )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "<unmatched>"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics, strict_backstop: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.strict = strict_backstop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
        ctx = begin_request(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}
        path = scope.get("path", "")
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if (
                    not public
                    and not ctx.authz_checked
                    and status < 400
                    and route_template(scope) != "<unmatched>"
                ):
                    log.error("authz_check_missing", route=route_template(scope))
                    if self.strict:
                        # Answer with a problem instead, and drop the route's own body.
                        status = 500
                        status_holder["replacement"] = json.dumps(
                            problem(
                                500,
                                "Authorisation check missing",
                                "This route never decided authorisation.",
                                request_id=request_id,
                            )
                        ).encode()
                        message = {
                            **message,
                            "status": 500,
                            "headers": [(b"content-type", b"application/problem+json")],
                        }
                status_holder["status"] = status
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                if not path.startswith("/api/docs"):
                    headers.append((b"content-security-policy", CSP))
                message = {**message, "headers": headers}
            elif "replacement" in status_holder:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    await send({"type": "http.response.body", "body": status_holder["replacement"]})
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status_holder["status"])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info(
                "request",
                method=method,
                route=route,
                status=status_holder["status"],
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


class BodySizeLimit:
    """Refuse request bodies above ``max_bytes`` on paths under ``prefix`` (one prefix or
    a tuple of them) with a 413.

    A declared ``Content-Length`` above the cap is answered at once, without reading the
    body; a body without one (chunked) is counted as it arrives and refused once it passes
    the cap (FastAPI re-raises the HTTP exception from its body read, and the app's
    handler turns it into a problem document).
    """

    def __init__(self, app: ASGIApp, prefix: str | tuple[str, ...], max_bytes: int) -> None:
        self.app = app
        self.prefix = prefix
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0 or length > self.max_bytes:
                await self._refuse(send, 400 if length < 0 else 413)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, "Content too large")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send, status: int) -> None:
        title = "Content too large" if status == 413 else "Bad request"
        detail = (
            f"The request body is larger than {self.max_bytes} bytes."
            if status == 413
            else "The Content-Length header is not a number."
        )
        body = json.dumps(problem(status, title, detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
