"""What the home page and /api/v1/status report about the running system."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard import __version__
from spillguard.core import db as dbmod
from spillguard.core.models import ApiToken, User
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings


@dataclass(frozen=True)
class SystemStatus:
    version: str
    database_kind: str
    migration_current: str | None
    migration_head: str | None
    users_total: int
    users_by_role: dict[str, int]
    active_tokens: int

    @property
    def migrations_at_head(self) -> bool:
        return self.migration_current == self.migration_head


class StatusService:
    def __init__(self, session: Session, principal: Principal, settings: Settings) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings

    def status(self) -> SystemStatus:
        self.principal.require(Permission.STATUS_VIEW)
        by_role = {r.value: 0 for r in Role}
        for role, count in self.session.execute(
            select(User.role, func.count()).where(User.disabled.is_(False)).group_by(User.role)
        ):
            by_role[role] = count
        active = (
            self.session.scalar(
                select(func.count())
                .select_from(ApiToken)
                .where(
                    ApiToken.revoked_at.is_(None),
                    (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > dbmod.utcnow()),
                )
            )
            or 0
        )
        conn = self.session.connection()
        from alembic.runtime.migration import MigrationContext

        current = MigrationContext.configure(conn).get_current_revision()
        return SystemStatus(
            version=__version__,
            database_kind=self.settings.database_kind,
            migration_current=current,
            migration_head=dbmod.migration_head(),
            users_total=sum(by_role.values()),
            users_by_role=by_role,
            active_tokens=active,
        )
