"""API tokens: random bearer secrets, shown once, stored as a keyed digest.

A token is ``sgt_`` followed by 32 random bytes (256 bits) in base64url.  Requests look it
up by HMAC-SHA256 digest, so each request costs one hash, not an argon2 verification.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import AuditAction, record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import ApiToken, User
from spillguard.core.roles import (
    ROLE_PERMISSIONS,
    SCOPE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    TokenScope,
    role_may_delegate,
)

TOKEN_PREFIX = "sgt_"
MAX_EXPIRY_DAYS = 3650


class TokenNotFound(NotFound):
    pass


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its secret; the secret exists only in this object."""

    token: ApiToken
    secret: str


class TokenService:
    """Issue, list and revoke API tokens, and authenticate requests that carry one."""

    def __init__(self, session: Session, principal: Principal, keys: KeyRing) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys

    def create_for(
        self,
        user_id: int | None,
        *,
        name: str,
        role: Role | None = None,
        expires_days: int | None = None,
        scope: TokenScope | None = None,
    ) -> IssuedToken:
        """Issue a token for a user, or for the caller when no user is named."""
        self.principal.require_authenticated()
        owner = user_id if user_id is not None else self.principal.user_id
        if owner is None:
            raise InvalidInput("Name the user the token is for.", field="user_id")
        return self.create(owner, name=name, role=role, expires_days=expires_days, scope=scope)

    def create(
        self,
        user_id: int,
        *,
        name: str,
        role: Role | None = None,
        expires_days: int | None = None,
        scope: TokenScope | None = None,
    ) -> IssuedToken:
        if user_id == self.principal.user_id:
            self.principal.require(Permission.TOKENS_OWN)
        else:
            self.principal.require(Permission.TOKENS_MANAGE)
        user = self.session.get(User, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}.")
        if user.disabled:
            raise InvalidInput("That user is disabled; enable it before issuing tokens.")
        user_role = Role(user.role)
        token_role = role or user_role
        if not role_may_delegate(user_role, token_role):
            raise PermissionDenied(
                f"A {user_role.value} may not hold a token with the {token_role.value} role."
            )
        # A token never grants more than the person (or token) issuing it holds.
        if self.principal.role is not None and not role_may_delegate(
            self.principal.role, token_role
        ):
            raise PermissionDenied(f"You may not issue a token with the {token_role.value} role.")
        if scope is not None and not SCOPE_PERMISSIONS[scope] <= ROLE_PERMISSIONS[token_role]:
            raise InvalidInput(
                f"A token with the {token_role.value} role cannot be limited to {scope.value}: "
                "the role does not hold what that purpose needs.",
                field="scope",
            )
        clean_name = name.strip()
        if not clean_name or len(clean_name) > 100 or not clean_name.isprintable():
            raise InvalidInput("Token name must be 1 to 100 printable characters.", field="name")
        if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
            raise InvalidInput(
                f"Expiry must be between 1 and {MAX_EXPIRY_DAYS} days.", field="expires_days"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            user_id=user.id,
            name=clean_name,
            role=token_role.value,
            scope=scope.value if scope else None,
            digest=self.keys.digest(KeyPurpose.API_TOKEN_DIGEST, secret),
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
        )
        self.session.add(token)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            AuditAction.TOKEN_CREATED,
            object_type="api_token",
            object_id=token.id,
            details={
                "owner": user.email,
                "role": token_role.value,
                "scope": scope.value if scope else None,
                "name": clean_name,
                "expires_days": expires_days,
            },
        )
        return IssuedToken(token, secret)

    def list(self, *, limit: int = 100, offset: int = 0) -> tuple[list[ApiToken], int]:
        """All tokens for token managers; otherwise the caller's own."""
        self.principal.require_authenticated()
        query = select(ApiToken)
        if not self.principal.can(Permission.TOKENS_MANAGE):
            self.principal.require(Permission.TOKENS_OWN)
            query = query.where(ApiToken.user_id == self.principal.user_id)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(query.order_by(ApiToken.id.desc()).limit(limit).offset(offset))
        return list(rows), total

    def revoke(self, token_id: int) -> ApiToken:
        self.principal.require_authenticated()
        token = self.session.get(ApiToken, token_id)
        own = token is not None and token.user_id == self.principal.user_id
        self.principal.require(Permission.TOKENS_OWN if own else Permission.TOKENS_MANAGE)
        if token is None:
            raise TokenNotFound(f"No API token with id {token_id}.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            record_event(
                self.session,
                self.principal,
                AuditAction.TOKEN_REVOKED,
                object_type="api_token",
                object_id=token.id,
                details={"owner": token.user.email, "name": token.name},
            )
        return token

    def authenticate(self, secret: str) -> Principal:
        """The principal a bearer secret stands for; AuthenticationRequired if none."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise AuthenticationRequired("The API token is malformed.")
        digest = self.keys.digest(KeyPurpose.API_TOKEN_DIGEST, secret)
        token = self.session.scalar(select(ApiToken).where(ApiToken.digest == digest))
        now = utcnow()
        reason = None
        if token is None:
            reason = "unknown"
        elif token.revoked_at is not None:
            reason = "revoked"
        elif token.expires_at is not None and token.expires_at <= now:
            reason = "expired"
        elif token.user.disabled:
            reason = "user disabled"
        elif not role_may_delegate(Role(token.user.role), Role(token.role)):
            # The owner was demoted after the token was issued: it must not keep the old powers.
            reason = "no longer covered by its owner's role"
        if reason is not None or token is None:
            raise AuthenticationRequired(f"The API token is {reason or 'unknown'}.")
        # Write last use at most once a minute so a busy client does not turn reads into writes.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            token.last_used_at = now
        return Principal(
            kind="token",
            user_id=token.user_id,
            label=token.user.email,
            role=Role(token.role),
            token_id=token.id,
            scope=TokenScope(token.scope) if token.scope else None,
            source_ip=self.principal.source_ip,
            request_id=self.principal.request_id,
        )
