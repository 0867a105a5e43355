"""Roles, permissions, and the principal a request acts as.

Authorisation is checked in services by ``principal.require(Permission.X)``.  Each call
marks the request as checked; the authorisation backstop (see ``core.app``) flags any
non-public route that finished without one.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

from spillguard.core.errors import AuthenticationRequired, PermissionDenied


class Role(StrEnum):
    ADMIN = "admin"
    HELPDESK = "helpdesk"
    SECURITY = "security"
    DPO = "dpo"
    AUDITOR = "auditor"


ROLE_DESCRIPTIONS = {
    Role.ADMIN: "Administers users, tokens and the platform.",
    Role.HELPDESK: "Enrols phones and answers users; no access to customer data.",
    Role.SECURITY: "Runs inspection, exposure and incident response.",
    Role.DPO: "Data-protection officer: breach decisions, regulator and customer notices.",
    Role.AUDITOR: "Read-only: reads the audit trail and status, changes nothing.",
}


class Permission(StrEnum):
    STATUS_VIEW = "status:view"
    USERS_VIEW = "users:view"
    USERS_MANAGE = "users:manage"
    TOKENS_OWN = "tokens:own"
    TOKENS_MANAGE = "tokens:manage"
    AUDIT_VIEW = "audit:view"
    METRICS_VIEW = "metrics:view"
    DEVICES_VIEW = "devices:view"
    DEVICES_MANAGE = "devices:manage"
    DEVICES_COMMAND = "devices:command"
    DEVICES_WIPE = "devices:wipe"
    DEVICES_REPORT_LOST = "devices:report-lost"
    CUSTOMERS_VIEW = "customers:view"
    CUSTOMERS_IMPORT = "customers:import"
    CUSTOMERS_CONTACT_REVEAL = "customers:contact-reveal"
    INSPECTIONS_RUN = "inspections:run"
    INSPECTIONS_REVEAL = "inspections:reveal"
    EXPOSURE_VIEW = "exposure:view"
    EXPOSURE_RECORD = "exposure:record"
    QUARANTINE_MANAGE = "exposure:quarantine"
    EXPOSURE_DECIDE = "exposure:decide"
    INCIDENTS_VIEW = "incidents:view"
    INCIDENTS_MANAGE = "incidents:manage"
    # Breach decisions for the dpo: the regulator report, notice templates, sending notices.
    INCIDENTS_NOTIFY = "incidents:notify"
    # Access logs of the systems holding customer records, and insider-risk alerts (audit).
    ACCESS_INGEST = "access:ingest"
    ACCESS_VIEW = "access:view"
    ALERTS_VIEW = "alerts:view"
    ALERTS_TRIAGE = "alerts:triage"
    STAFF_MANAGE = "staff:manage"
    HONEYTOKENS_MANAGE = "honeytokens:manage"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.HELPDESK: frozenset(
        {
            Permission.STATUS_VIEW,
            Permission.TOKENS_OWN,
            Permission.DEVICES_VIEW,
            Permission.DEVICES_MANAGE,
            Permission.DEVICES_COMMAND,
            Permission.DEVICES_WIPE,
            Permission.DEVICES_REPORT_LOST,
        }
    ),
    Role.SECURITY: frozenset(
        {
            Permission.STATUS_VIEW,
            Permission.TOKENS_OWN,
            Permission.METRICS_VIEW,
            Permission.DEVICES_VIEW,
            Permission.DEVICES_REPORT_LOST,
            Permission.CUSTOMERS_VIEW,
            Permission.INSPECTIONS_RUN,
            Permission.EXPOSURE_VIEW,
            Permission.EXPOSURE_RECORD,
            Permission.QUARANTINE_MANAGE,
            Permission.EXPOSURE_DECIDE,
            Permission.INCIDENTS_VIEW,
            Permission.INCIDENTS_MANAGE,
            Permission.ACCESS_INGEST,
            Permission.ACCESS_VIEW,
            Permission.ALERTS_VIEW,
            Permission.ALERTS_TRIAGE,
            Permission.STAFF_MANAGE,
            Permission.HONEYTOKENS_MANAGE,
        }
    ),
    Role.DPO: frozenset(
        {
            Permission.STATUS_VIEW,
            Permission.TOKENS_OWN,
            Permission.DEVICES_VIEW,
            Permission.CUSTOMERS_VIEW,
            Permission.CUSTOMERS_IMPORT,
            Permission.CUSTOMERS_CONTACT_REVEAL,
            Permission.INSPECTIONS_RUN,
            Permission.INSPECTIONS_REVEAL,
            Permission.EXPOSURE_VIEW,
            Permission.QUARANTINE_MANAGE,
            Permission.INCIDENTS_VIEW,
            Permission.INCIDENTS_MANAGE,
            Permission.INCIDENTS_NOTIFY,
            Permission.ACCESS_VIEW,
            Permission.ALERTS_VIEW,
            Permission.ALERTS_TRIAGE,
            Permission.HONEYTOKENS_MANAGE,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.STATUS_VIEW,
            Permission.TOKENS_OWN,
            Permission.USERS_VIEW,
            Permission.AUDIT_VIEW,
            Permission.METRICS_VIEW,
            Permission.DEVICES_VIEW,
            Permission.CUSTOMERS_VIEW,
            Permission.EXPOSURE_VIEW,
            Permission.INCIDENTS_VIEW,
            Permission.ACCESS_VIEW,
            Permission.ALERTS_VIEW,
        }
    ),
}


class TokenScope(StrEnum):
    """A purpose an API token can be limited to: it then holds only these permissions
    (and only those its role holds), whatever else its role could do."""

    ACCESS_DECISIONS = "access-decisions"
    ACCESS_INGEST = "access-ingest"


SCOPE_PERMISSIONS: dict[TokenScope, frozenset[Permission]] = {
    TokenScope.ACCESS_DECISIONS: frozenset({Permission.EXPOSURE_DECIDE}),
    TokenScope.ACCESS_INGEST: frozenset({Permission.ACCESS_INGEST}),
}


def role_may_delegate(user_role: Role, token_role: Role) -> bool:
    """A token may carry a role only if it grants nothing its owner's role does not."""
    return ROLE_PERMISSIONS[token_role] <= ROLE_PERMISSIONS[user_role]


@dataclass
class RequestContext:
    """Per-request facts shared with worker threads (the object is shared, not copied)."""

    request_id: str
    authz_checked: bool = False


_request_ctx: ContextVar[RequestContext | None] = ContextVar("spillguard_request", default=None)


def begin_request(request_id: str) -> RequestContext:
    ctx = RequestContext(request_id)
    _request_ctx.set(ctx)
    return ctx


def current_request() -> RequestContext | None:
    return _request_ctx.get()


def mark_authz_checked() -> None:
    """Record that this request's authorisation was decided (allowed, refused or public)."""
    ctx = _request_ctx.get()
    if ctx is not None:
        ctx.authz_checked = True


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user through a console session or an API token, or nobody."""

    kind: str  # "user" (console session), "token", "system", "anonymous"
    user_id: int | None
    label: str | None  # the user's e-mail, or "system"
    role: Role | None
    token_id: int | None = None
    source_ip: str | None = None
    request_id: str | None = None
    # A token limited to one purpose (TokenScope): None means everything its role holds.
    scope: TokenScope | None = None

    @property
    def authenticated(self) -> bool:
        return self.role is not None

    def can(self, permission: Permission) -> bool:
        return (
            self.role is not None
            and permission in ROLE_PERMISSIONS[self.role]
            and (self.scope is None or permission in SCOPE_PERMISSIONS[self.scope])
        )

    def require(self, permission: Permission) -> None:
        """Raise unless this principal holds the permission.  Marks the request as checked."""
        mark_authz_checked()
        if self.role is None:
            raise AuthenticationRequired("Log in or send an API token to do this.")
        if permission not in ROLE_PERMISSIONS[self.role]:
            raise PermissionDenied(
                f"The {self.role.value} role may not do this ({permission.value})."
            )
        if self.scope is not None and permission not in SCOPE_PERMISSIONS[self.scope]:
            raise PermissionDenied(
                f"This token is limited to {self.scope.value}; it may not do this "
                f"({permission.value})."
            )

    def require_authenticated(self) -> None:
        mark_authz_checked()
        if self.role is None:
            raise AuthenticationRequired("Log in or send an API token to do this.")

    @classmethod
    def anonymous(cls, source_ip: str | None = None, request_id: str | None = None) -> Principal:
        return cls("anonymous", None, None, None, source_ip=source_ip, request_id=request_id)

    @classmethod
    def system(cls, label: str = "system") -> Principal:
        return cls("system", None, label, Role.ADMIN)
