"""Request and response bodies of the core API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from spillguard.core.roles import Role, TokenScope

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, the total count, and where the page starts."""

    items: list[T]
    total: int
    limit: int
    offset: int


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    role: Role
    password: str = Field(min_length=12, max_length=1024)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    # strict: JSON true/false only, not "yes", 1 or "true" (a wrong type is a 422).
    disabled: bool | None = Field(default=None, strict=True)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=12, max_length=1024)
    current_password: str | None = Field(
        default=None, max_length=1024, description="Required when changing your own password."
    )


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    role: Role
    scope: TokenScope | None = None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    user_id: int | None = Field(
        default=None, description="Owner; default the caller", ge=1, le=2**62, strict=True
    )
    role: Role | None = Field(default=None, description="Default: the owner's role")
    expires_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    scope: TokenScope | None = Field(
        default=None,
        description="Limit the token to one purpose (access-decisions: only "
        "POST /api/v1/access-decisions and the nginx auth_request endpoint).",
    )


class TokenIssued(TokenPublic):
    token: str = Field(description="The secret. Shown only in this response; store it now.")


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    action: str
    outcome: str
    actor_type: str
    actor_id: int | None
    actor_label: str | None
    object_type: str | None
    object_id: str | None
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]


class Me(BaseModel):
    user_id: int | None
    email: str | None
    role: Role | None
    via: str
    scope: TokenScope | None = Field(
        None, description="The token's purpose when it is limited to one (null: the whole role)."
    )
    permissions: list[str] = Field(description="What this credential may do.")


class StatusPublic(BaseModel):
    version: str
    database_kind: str
    migration_current: str | None
    migration_head: str | None
    migrations_at_head: bool
    users_total: int
    users_by_role: dict[str, int]
    active_tokens: int
