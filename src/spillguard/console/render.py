"""Rendering console pages: one Jinja2 environment over the shared layout and every
domain's templates, the CSRF cookie, and the navigation of the modules that exist."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from spillguard import __version__
from spillguard.core.keys import KeyPurpose
from spillguard.core.roles import Permission, Principal, Role

SRC = Path(__file__).resolve().parent.parent
CSRF_COOKIE = "sg_csrf"


@dataclass(frozen=True)
class NavEntry:
    """One entry in the console navigation; shown only to roles holding the permission."""

    label: str
    href: str
    permission: Permission
    # When set, only these roles see the entry (admin holds every permission).
    roles: frozenset[Role] | None = None

    def shown_to(self, principal: Principal | None) -> bool:
        if principal is None or not principal.can(self.permission):
            return False
        return self.roles is None or principal.role in self.roles


# Modules add their entries here as they land; absent modules have no entry at all.
NAVIGATION: list[NavEntry] = [
    NavEntry("Home", "/", Permission.STATUS_VIEW),
    NavEntry("Devices", "/devices", Permission.DEVICES_VIEW),
    NavEntry("Inspect", "/inspections", Permission.INSPECTIONS_RUN),
    NavEntry("Customers", "/customers", Permission.CUSTOMERS_VIEW),
    NavEntry("Exposure", "/exposure", Permission.EXPOSURE_VIEW),
    NavEntry("Incidents", "/incidents", Permission.INCIDENTS_VIEW),
    NavEntry(
        "Quarantine",
        "/exposure/quarantine",
        Permission.QUARANTINE_MANAGE,
        frozenset({Role.SECURITY, Role.DPO}),
    ),
    NavEntry("Alerts", "/audit/alerts", Permission.ALERTS_VIEW),
    NavEntry("Users", "/users", Permission.USERS_VIEW),
    NavEntry("API tokens", "/tokens", Permission.TOKENS_OWN),
    NavEntry("Audit events", "/audit", Permission.AUDIT_VIEW),
]


@dataclass(frozen=True)
class HomePanel:
    """A section a domain adds to the console's home page: its template and its data.

    Domains register a function ``(session, principal, settings) -> HomePanel | None``
    in ``app.state.home_panels`` (see ``core.app``); None means "nothing to show to this
    principal", so the core home page needs no knowledge of any domain.
    """

    template: str
    data: Any


@lru_cache(maxsize=1)
def templates() -> Jinja2Templates:
    dirs = [
        SRC / "console" / "templates",
        *sorted(p for p in SRC.glob("*/templates") if p.parent.name != "console"),
    ]
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in dirs]),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)


def csrf_seed(request: Request) -> tuple[str, bool]:
    """The browser's CSRF seed cookie, or a new one (second item: whether it is new)."""
    seed = request.cookies.get(CSRF_COOKIE)
    if seed and 16 <= len(seed) <= 100:
        return seed, False
    return secrets.token_urlsafe(24), True


def csrf_token_for(request: Request, seed: str) -> str:
    return str(request.app.state.keys.digest(KeyPurpose.CSRF, seed))


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https"


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the layout's context: user, navigation, CSRF token."""
    seed, new = csrf_seed(request)
    ctx: dict[str, Any] = {
        "principal": principal,
        "nav": [n for n in NAVIGATION if n.shown_to(principal)],
        "csrf_token": csrf_token_for(request, seed),
        "path": request.url.path,
    }
    ctx.update(context or {})
    response = templates().TemplateResponse(
        request, name, ctx, status_code=status_code, headers=headers
    )
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            seed,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request),
            path="/",
        )
    return response


def render_error(
    request: Request,
    status: int,
    title: str,
    detail: str | None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        principal=principal,
        status_code=status,
        headers=headers,
    )
