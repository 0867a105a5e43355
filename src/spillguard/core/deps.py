"""FastAPI dependencies: the unit of work, the caller's principal, pagination, services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from spillguard.core.errors import AuthenticationRequired, DomainError
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

log = structlog.get_logger("spillguard.auth")

SESSION_COOKIE = "sg_session"
CSRF_COOKIE = "sg_csrf"


# The small dependencies are coroutines: a plain function would cost a thread-pool hop each.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_keys(request: Request) -> KeyRing:
    return request.app.state.keys  # type: ignore[no-any-return]


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: commit on success, roll back on error.

    A domain error that says ``keep_changes`` (a failed login, a throttled attempt) still
    commits, so the failure is counted and audited.

    Opening a session does no I/O, so it happens on the event loop; committing or rolling
    back does, so it runs in the thread pool, unless the handler committed already (the
    device protocol's routes do, in their own thread) and there is nothing left to do.
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except DomainError as exc:
        await run_in_threadpool(session.commit if exc.keep_changes else session.rollback)
        raise
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


@contextmanager
def unit_of_work(session_factory: Callable[[], Session]) -> Iterator[Session]:
    """``get_db``'s rules for a route that does all its database work in one worker thread
    (the device check-in): commit on success, keep a ``keep_changes`` error's changes,
    roll back anything else, close."""
    session = session_factory()
    try:
        yield session
        if session.in_transaction():
            session.commit()
    except DomainError as exc:
        if exc.keep_changes:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        if session.in_transaction():
            session.rollback()
        raise
    finally:
        session.close()


# scope="function": commit (or roll back) before the response is sent, so a client is never
# told a change succeeded when its commit failed (FastAPI's default for yield dependencies
# is to finish them after the response has gone out).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]
Keys = Annotated[KeyRing, Depends(get_keys)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def anonymous(request: Request) -> Principal:
    return Principal.anonymous(client_ip(request), getattr(request.state, "request_id", None))


def api_principal(request: Request, db: DbSession, keys: Keys) -> Principal:
    """The caller of an API route: the holder of the bearer token.

    Every route using this needs a token, so a request without one is refused here, before
    its input is validated: an anonymous caller learns nothing but "authenticate".
    """
    from spillguard.core.tokens import TokenService

    header = request.headers.get("authorization")
    base = anonymous(request)
    if not header:
        raise AuthenticationRequired("Send an API token as 'Authorization: Bearer <token>'.")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationRequired("Send the API token as 'Authorization: Bearer <token>'.")
    try:
        return TokenService(db, base, keys).authenticate(secret.strip())
    except AuthenticationRequired as exc:
        log.warning("api_token_rejected", reason=exc.detail)
        raise


def console_principal(
    request: Request, db: DbSession, keys: Keys, settings: AppSettings
) -> Principal:
    """The person behind a console session cookie, or anonymous."""
    from spillguard.core.sessions import LoginService

    base = anonymous(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return base
    return LoginService(db, base, keys, settings).resolve(secret) or base


ApiPrincipal = Annotated[Principal, Depends(api_principal)]
ConsolePrincipal = Annotated[Principal, Depends(console_principal)]


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


Paging = Annotated[PageParams, Depends(page_params)]


MAX_ID = 2**62
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="Numeric id")]

# Console pages: the list offset of a paginated page, and the flash key after a redirect.
ConsoleOffset = Annotated[int, Query(ge=0, le=10_000_000)]
DoneFlag = Annotated[str | None, Query(max_length=40)]
