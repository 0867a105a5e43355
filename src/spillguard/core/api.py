"""Core REST API under /api/v1: identity, status, users, tokens, audit events.

Each route parses input, makes one service call and returns a schema.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime

from spillguard.core.audit import AuditFilter
from spillguard.core.deps import ApiPrincipal, AppSettings, DbSession, IdPath, Keys, Paging
from spillguard.core.roles import ROLE_PERMISSIONS
from spillguard.core.schemas import (
    AuditEventPublic,
    Me,
    Page,
    PasswordChange,
    StatusPublic,
    TokenCreate,
    TokenIssued,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from spillguard.core.status import StatusService
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService

router = APIRouter(prefix="/api/v1")


@router.get("/me", response_model=Me, tags=["identity"], summary="Who the token belongs to")
def me(principal: ApiPrincipal) -> Me:
    principal.require_authenticated()
    # What this credential may do: a scoped token holds its role's permissions within its
    # scope only (Principal.can), not everything the role could do.
    role = ROLE_PERMISSIONS[principal.role] if principal.role else frozenset()
    perms = sorted(p.value for p in role if principal.can(p))
    return Me(
        user_id=principal.user_id,
        email=principal.label,
        role=principal.role,
        via=principal.kind,
        scope=principal.scope,
        permissions=perms,
    )


@router.get("/status", response_model=StatusPublic, tags=["system"], summary="System status")
def system_status(db: DbSession, principal: ApiPrincipal, settings: AppSettings) -> StatusPublic:
    s = StatusService(db, principal, settings).status()
    return StatusPublic(**{**s.__dict__, "migrations_at_head": s.migrations_at_head})


@router.get("/users", response_model=Page[UserPublic], tags=["users"])
def list_users(db: DbSession, principal: ApiPrincipal, paging: Paging) -> Page[UserPublic]:
    rows, total = UserService(db, principal).list(limit=paging.limit, offset=paging.offset)
    return Page(
        items=[UserPublic.model_validate(u) for u in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED, tags=["users"]
)
def create_user(body: UserCreate, db: DbSession, principal: ApiPrincipal) -> UserPublic:
    user = UserService(db, principal).create(body.email, body.role, body.password)
    return UserPublic.model_validate(user)


@router.get("/users/{user_id}", response_model=UserPublic, tags=["users"])
def get_user(user_id: IdPath, db: DbSession, principal: ApiPrincipal) -> UserPublic:
    return UserPublic.model_validate(UserService(db, principal).get(user_id))


@router.patch("/users/{user_id}", response_model=UserPublic, tags=["users"])
def update_user(
    user_id: IdPath, body: UserUpdate, db: DbSession, principal: ApiPrincipal
) -> UserPublic:
    svc = UserService(db, principal)
    user = svc.update(user_id, role=body.role, disabled=body.disabled)
    return UserPublic.model_validate(user)


@router.put("/users/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT, tags=["users"])
def set_password(
    user_id: IdPath, body: PasswordChange, db: DbSession, principal: ApiPrincipal
) -> None:
    UserService(db, principal).set_password(
        user_id, body.password, current_password=body.current_password
    )


@router.get(
    "/tokens",
    response_model=Page[TokenPublic],
    tags=["tokens"],
    summary="Your tokens (every token for admins)",
)
def list_tokens(
    db: DbSession, principal: ApiPrincipal, keys: Keys, paging: Paging
) -> Page[TokenPublic]:
    rows, total = TokenService(db, principal, keys).list(limit=paging.limit, offset=paging.offset)
    return Page(
        items=[TokenPublic.model_validate(t) for t in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/tokens",
    response_model=TokenIssued,
    status_code=status.HTTP_201_CREATED,
    tags=["tokens"],
    summary="Issue a token; the secret is in this response only",
)
def create_token(
    body: TokenCreate, db: DbSession, principal: ApiPrincipal, keys: Keys
) -> TokenIssued:
    issued = TokenService(db, principal, keys).create_for(
        body.user_id,
        name=body.name,
        role=body.role,
        expires_days=body.expires_days,
        scope=body.scope,
    )
    return TokenIssued(**TokenPublic.model_validate(issued.token).model_dump(), token=issued.secret)


@router.delete(
    "/tokens/{token_id}", response_model=TokenPublic, tags=["tokens"], summary="Revoke a token"
)
def revoke_token(
    token_id: IdPath, db: DbSession, principal: ApiPrincipal, keys: Keys
) -> TokenPublic:
    return TokenPublic.model_validate(TokenService(db, principal, keys).revoke(token_id))


@router.get("/audit-events", response_model=Page[AuditEventPublic], tags=["audit"])
def list_audit_events(
    db: DbSession,
    principal: ApiPrincipal,
    paging: Paging,
    action: Annotated[str | None, Query(max_length=100, description="Name or prefix")] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|failure)$")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[AuditEventPublic]:
    # Honeytoken ids in details read as the marker without honeytokens:manage (audit.browse).
    from spillguard.audit.browse import shown_events

    flt = AuditFilter(action, actor, object_type, object_id, outcome, since, until)
    rows, total = shown_events(db, principal, flt, limit=paging.limit, offset=paging.offset)
    return Page(
        items=[AuditEventPublic.model_validate(e.document()) for e in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )
