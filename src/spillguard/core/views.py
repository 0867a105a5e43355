"""Console pages of the core: login, first-run setup, home, users, API tokens (the audit
pages are in ``spillguard.audit.views``).

Pages parse the form, call one service, and render.  Every state-changing form carries
the CSRF token (checked by ``csrf_protect``).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from spillguard.console.render import CSRF_COOKIE, csrf_token_for, render, secure_cookies
from spillguard.core.deps import (
    SESSION_COOKIE,
    AppSettings,
    ConsoleOffset,
    ConsolePrincipal,
    DbSession,
    DoneFlag,
    IdPath,
    Keys,
    anonymous,
)
from spillguard.core.errors import DomainError, InvalidInput, PermissionDenied, Throttled
from spillguard.core.roles import ROLE_DESCRIPTIONS, Permission, Principal, Role, mark_authz_checked
from spillguard.core.sessions import LoginService
from spillguard.core.status import StatusService
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService, parse_role

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MESSAGES = {
    "user-created": "User created.",
    "user-updated": "User updated.",
    "password-set": "Password changed.",
    "token-revoked": "Token revoked.",
    "setup-done": "Administrator created. Log in with the e-mail and password you chose.",
    "logged-out": "You are logged out.",
    "password-changed": "Password changed. Log in with the new password.",
}


class CsrfFailed(PermissionDenied):
    slug = "csrf-failed"
    title = "Form expired"


async def csrf_protect(request: Request) -> None:
    """Refuse a state-changing console request without the token bound to its CSRF cookie."""
    seed = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if (
        not seed
        or not sent
        or not hmac.compare_digest(
            sent.encode("utf-8", "surrogatepass"), csrf_token_for(request, seed).encode()
        )
    ):
        raise CsrfFailed(
            "This form is missing its security token or it has expired. "
            "Reload the page and submit it again."
        )


Csrf = Depends(csrf_protect)


def remember(request: Request, principal: Principal) -> Principal:
    request.state.principal = principal
    return principal


def safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def flash(done: str | None) -> str | None:
    return MESSAGES.get(done or "")


# Login, logout, setup ------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    principal: ConsolePrincipal,
    next: Annotated[str | None, Query(max_length=500)] = None,
    done: DoneFlag = None,
) -> Response:
    mark_authz_checked()
    if principal.authenticated:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "core/login.html", {"next": safe_next(next), "message": flash(done)})


@router.post("/login", response_class=HTMLResponse, dependencies=[Csrf])
def login_submit(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    svc = LoginService(db, anonymous(request), keys, settings)
    try:
        new = svc.login(email, password)
    except DomainError as exc:
        # Counted and audited all the same: the unit of work commits what login() recorded.
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return render(
            request,
            "core/login.html",
            {"next": safe_next(next), "error": exc.detail, "email": email[:320]},
            status_code=exc.status,
            headers=headers,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    secure = secure_cookies(request)
    max_age = int(settings.session_hours * 3600)
    response.set_cookie(
        SESSION_COOKIE,
        new.secret,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    # A fresh CSRF seed for the new session (no fixation of a pre-login token).
    response.set_cookie(
        CSRF_COOKIE, new.csrf_seed, httponly=True, samesite="lax", secure=secure, path="/"
    )
    return response


@router.post("/logout", dependencies=[Csrf])
def logout(
    request: Request, db: DbSession, keys: Keys, settings: AppSettings, principal: ConsolePrincipal
) -> Response:
    LoginService(db, principal, keys, settings).logout(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login?done=logged-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/setup", response_class=HTMLResponse)
def setup_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    key: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    LoginService(db, anonymous(request), keys, settings).check_setup_link(key)
    return render(request, "core/setup.html", {"key": key})


@router.post("/setup", response_class=HTMLResponse, dependencies=[Csrf])
def setup_submit(
    request: Request,
    db: DbSession,
    keys: Keys,
    settings: AppSettings,
    key: Annotated[str, Form(max_length=200)],
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    confirm: Annotated[str, Form(max_length=1024)],
) -> Response:
    svc = LoginService(db, anonymous(request), keys, settings)
    try:
        if password != confirm:
            raise InvalidInput("The two passwords differ.")
        svc.complete_setup(key, email, password)
    except InvalidInput as exc:
        return render(
            request,
            "core/setup.html",
            {"key": key, "error": exc.detail, "email": email},
            status_code=422,
        )
    return RedirectResponse("/login?done=setup-done", status_code=303)


# Home ----------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def home(
    request: Request, db: DbSession, settings: AppSettings, principal: ConsolePrincipal
) -> Response:
    status = StatusService(db, remember(request, principal), settings).status()
    panels = [
        panel
        for make_panel in request.app.state.home_panels
        if (panel := make_panel(db, principal, settings)) is not None
    ]
    return render(
        request, "core/home.html", {"status": status, "panels": panels}, principal=principal
    )


# Users ---------------------------------------------------------------------------------
@router.get("/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    rows, total = UserService(db, remember(request, principal)).list(limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "core/users.html",
        {
            "users": rows,
            "total": total,
            "limit": PAGE_SIZE,
            "offset": offset,
            "base_query": "",
            "roles": list(Role),
            "role_descriptions": ROLE_DESCRIPTIONS,
            "can_manage": principal.can(Permission.USERS_MANAGE),
            "message": flash(done),
        },
        principal=principal,
    )


@router.post("/users", dependencies=[Csrf])
def users_create(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    UserService(db, remember(request, principal)).create(email, parse_role(role), password)
    return RedirectResponse("/users?done=user-created", status_code=303)


@router.post("/users/{user_id}/role", dependencies=[Csrf])
def users_role(
    request: Request,
    user_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    role: Annotated[str, Form(max_length=32)],
) -> Response:
    UserService(db, remember(request, principal)).set_role(user_id, parse_role(role))
    return RedirectResponse("/users?done=user-updated", status_code=303)


@router.post("/users/{user_id}/disabled", dependencies=[Csrf])
def users_disable(
    request: Request,
    user_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    disabled: Annotated[bool, Form()],
) -> Response:
    UserService(db, remember(request, principal)).set_disabled(user_id, disabled)
    return RedirectResponse("/users?done=user-updated", status_code=303)


@router.post("/users/{user_id}/password", dependencies=[Csrf])
def users_password(
    request: Request,
    user_id: IdPath,
    db: DbSession,
    principal: ConsolePrincipal,
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    UserService(db, remember(request, principal)).set_password(user_id, password)
    target = "/users" if principal.can(Permission.USERS_VIEW) else "/tokens"
    return RedirectResponse(f"{target}?done=password-set", status_code=303)


# Own account ---------------------------------------------------------------------------
@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, db: DbSession, principal: ConsolePrincipal) -> Response:
    user = UserService(db, remember(request, principal)).me()
    return render(request, "core/account.html", {"user": user}, principal=principal)


@router.post("/account/password", response_class=HTMLResponse, dependencies=[Csrf])
def account_password(
    request: Request,
    db: DbSession,
    principal: ConsolePrincipal,
    current_password: Annotated[str, Form(max_length=1024)],
    password: Annotated[str, Form(max_length=1024)],
    confirm: Annotated[str, Form(max_length=1024)],
) -> Response:
    svc = UserService(db, remember(request, principal))
    user = svc.me()
    try:
        if password != confirm:
            raise InvalidInput("The two new passwords differ.")
        svc.set_password(user.id, password, current_password=current_password)
    except (InvalidInput, PermissionDenied) as exc:
        return render(
            request,
            "core/account.html",
            {"user": user, "error": exc.detail},
            principal=principal,
            status_code=exc.status,
        )
    # Every session of this user ended with the change, this one included.
    response = RedirectResponse("/login?done=password-changed", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# API tokens ----------------------------------------------------------------------------
def _tokens_context(
    db: DbSession, keys: Keys, principal: Principal, offset: int
) -> dict[str, object]:
    rows, total = TokenService(db, principal, keys).list(limit=PAGE_SIZE, offset=offset)
    return {
        "tokens": rows,
        "total": total,
        "limit": PAGE_SIZE,
        "offset": offset,
        "base_query": "",
        "roles": list(Role),
        "is_manager": principal.can(Permission.TOKENS_MANAGE),
    }


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(
    request: Request,
    db: DbSession,
    keys: Keys,
    principal: ConsolePrincipal,
    offset: ConsoleOffset = 0,
    done: DoneFlag = None,
) -> Response:
    ctx = _tokens_context(db, keys, remember(request, principal), offset)
    ctx["message"] = flash(done)
    return render(request, "core/tokens.html", ctx, principal=principal)


@router.post("/tokens", response_class=HTMLResponse, dependencies=[Csrf])
def tokens_create(
    request: Request,
    db: DbSession,
    keys: Keys,
    principal: ConsolePrincipal,
    name: Annotated[str, Form(max_length=100)],
    role: Annotated[str, Form(max_length=32)] = "",
    expires_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    remember(request, principal)
    svc = TokenService(db, principal, keys)
    days = _optional_int(expires_days, "expires_days")
    issued = svc.create_for(
        None, name=name, role=parse_role(role) if role else None, expires_days=days
    )
    ctx = _tokens_context(db, keys, principal, 0)
    ctx["issued"] = issued
    return render(request, "core/tokens.html", ctx, principal=principal, status_code=201)


@router.post("/tokens/{token_id}/revoke", dependencies=[Csrf])
def tokens_revoke(
    request: Request, token_id: IdPath, db: DbSession, keys: Keys, principal: ConsolePrincipal
) -> Response:
    TokenService(db, remember(request, principal), keys).revoke(token_id)
    return RedirectResponse("/tokens?done=token-revoked", status_code=303)


def _optional_int(value: str, field: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a whole number.", field=field) from None
