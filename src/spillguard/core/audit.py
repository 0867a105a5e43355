"""The audit-event helper every module uses, and the query service behind the audit pages.

``record_event`` adds the event to the caller's session, so it commits or rolls back with
the change it describes.  Event names are a typed enum ``domain:subject:action``.
``canonical_bytes`` is the stable byte form the tamper-evident log will hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from spillguard.core.errors import InvalidInput
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal


class AuditAction(StrEnum):
    LOGIN_SUCCEEDED = "core:login:succeeded"
    LOGIN_FAILED = "core:login:failed"
    LOGIN_THROTTLED = "core:login:throttled"
    LOGOUT = "core:login:logout"
    USER_CREATED = "core:user:created"
    USER_DISABLED = "core:user:disabled"
    USER_ENABLED = "core:user:enabled"
    USER_ROLE_CHANGED = "core:user:role-changed"
    USER_PASSWORD_CHANGED = "core:user:password-changed"
    TOKEN_CREATED = "core:token:created"
    TOKEN_REVOKED = "core:token:revoked"
    SETUP_LINK_CREATED = "core:setup:link-created"
    SETUP_COMPLETED = "core:setup:completed"
    DATABASE_UPGRADED = "core:database:upgraded"


# Keys that must never be written into an event's details, whatever a caller passes.
_FORBIDDEN_DETAIL_KEYS = {"password", "token", "secret", "cookie", "authorization"}


def record_event(
    session: Session,
    principal: Principal,
    action: StrEnum,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction (it commits with the change).

    ``action`` is any module's StrEnum of ``domain:subject:action`` names (core's is
    ``AuditAction``; a module such as devices defines its own).
    """
    clean = dict(details or {})
    for key in list(clean):
        if key.lower() in _FORBIDDEN_DETAIL_KEYS:
            raise ValueError(f"audit details must not carry {key!r}")
    event = AuditEvent(
        action=action.value,
        outcome=outcome,
        actor_type=principal.kind,
        actor_id=principal.user_id,
        actor_label=principal.label,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        source_ip=principal.source_ip,
        request_id=principal.request_id,
        details=clean,
    )
    session.add(event)
    session.flush()
    return event


def canonical_bytes(event: AuditEvent) -> bytes:
    """Deterministic JSON of an event: what the Merkle log (audit module) will hash."""
    body = {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "source_ip": event.source_ip,
        "request_id": event.request_id,
        "details": event.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class AuditFilter:
    """Filters of the audit pages and API.  Every field is optional."""

    action: str | None = None
    actor: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.action:
            # A prefix such as "core:login" selects every login event.
            query = query.where(AuditEvent.action.startswith(self.action, autoescape=True))
        if self.actor:
            query = query.where(AuditEvent.actor_label == self.actor)
        if self.object_type:
            query = query.where(AuditEvent.object_type == self.object_type)
        if self.object_id:
            query = query.where(AuditEvent.object_id == self.object_id)
        if self.outcome:
            query = query.where(AuditEvent.outcome == self.outcome)
        if self.since:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


class AuditService:
    """Reads audit events for the people allowed to (admin, auditor)."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def list_events(
        self, flt: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        self.principal.require(Permission.AUDIT_VIEW)
        for name, value in (("since", flt.since), ("until", flt.until)):
            try:
                if value is not None:
                    value.astimezone(UTC)
            except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
                raise InvalidInput(f"'{name}' is out of range.", field=name) from None
        if flt.since and flt.until and flt.since >= flt.until:
            raise InvalidInput("'since' must be before 'until'.")
        base = flt.apply(select(AuditEvent))
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
        ).all()
        return list(rows), total

    def actions(self) -> list[str]:
        self.principal.require(Permission.AUDIT_VIEW)
        return [a.value for a in AuditAction]
