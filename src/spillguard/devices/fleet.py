"""The fleet at a glance, for the console: the compliance overview (home page and device
list) and the device list's filters, including "stale" and the owner's e-mail address.

A device is **stale** when it is managed (active or lost) and has not checked in within
three check-in intervals (``device_checkin_interval_seconds``; default 15 minutes, so 45
minutes), counting from its enrollment if it never checked in.  This is the console's
operational signal; a compliance policy's "maximum time since last check-in" rule is
separate and makes the device non-compliant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.devices.models import Device, DeviceState
from spillguard.devices.services import DeviceFilter

MANAGED = (DeviceState.ACTIVE.value, DeviceState.LOST.value)
STALE_INTERVALS = 3


def stale_cutoff(settings: Settings, now: datetime) -> datetime:
    """Managed devices silent since before this moment are stale."""
    return now - timedelta(seconds=STALE_INTERVALS * settings.device_checkin_interval_seconds)


@dataclass(frozen=True)
class FleetOverview:
    """Counts of managed devices (active or lost) by compliance, staleness and loss."""

    total: int
    compliant: int
    non_compliant: int
    stale: int
    lost: int
    stale_after: timedelta


@dataclass(frozen=True)
class FleetFilter:
    """The console's device list filters (all optional, combined with AND)."""

    base: DeviceFilter = field(default_factory=DeviceFilter)
    stale: bool = False
    owner_email: str | None = None


class FleetService:
    """Read-only views of the whole fleet; needs ``devices:view``."""

    def __init__(self, session: Session, principal: Principal, settings: Settings) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings

    def _stale(self, now: datetime) -> Any:
        cutoff = stale_cutoff(self.settings, now)
        return Device.state.in_(MANAGED) & or_(
            Device.last_checkin_at < cutoff,
            Device.last_checkin_at.is_(None) & (Device.enrolled_at < cutoff),
        )

    def overview(self, now: datetime | None = None) -> FleetOverview:
        self.principal.require(Permission.DEVICES_VIEW)
        now = now or utcnow()
        managed = Device.state.in_(MANAGED)
        row = self.session.execute(
            select(
                func.count(),
                func.count().filter(Device.compliant.is_(True)),
                func.count().filter(Device.compliant.is_(False)),
                func.count().filter(self._stale(now)),
                func.count().filter(Device.state == DeviceState.LOST.value),
            ).where(managed)
        ).one()
        total, compliant, non_compliant, stale, lost = (int(n or 0) for n in row)
        return FleetOverview(
            total,
            compliant,
            non_compliant,
            stale,
            lost,
            now - stale_cutoff(self.settings, now),
        )

    def query(self, flt: FleetFilter, now: datetime) -> Select[Any]:
        query = flt.base.apply(select(Device))
        if flt.stale:
            query = query.where(self._stale(now))
        if flt.owner_email:
            owners = select(User.id).where(
                func.lower(User.email).contains(flt.owner_email.lower(), autoescape=True)
            )
            query = query.where(Device.owner_id.in_(owners))
        return query

    def listing(
        self, flt: FleetFilter, *, limit: int, offset: int, now: datetime | None = None
    ) -> tuple[list[Device], int]:
        """Devices matching the filter, newest enrollment first, and how many match."""
        self.principal.require(Permission.DEVICES_VIEW)
        base = self.query(flt, now or utcnow())
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(base.order_by(Device.id.desc()).limit(limit).offset(offset))
        return list(rows), total

    def is_stale(self, device: Device, now: datetime | None = None) -> bool:
        if device.state not in MANAGED:
            return False
        seen = device.last_checkin_at or device.enrolled_at
        return seen < stale_cutoff(self.settings, now or utcnow())

    def user_id_for_email(self, email: str) -> int:
        """The id of the person an enrollment is for, found by e-mail address (the
        enrollment form asks for the address: helpdesk staff may not list users)."""
        self.principal.require(Permission.DEVICES_MANAGE)
        address = email.strip().lower()
        user_id = self.session.scalar(select(User.id).where(func.lower(User.email) == address))
        if user_id is None:
            raise InvalidInput(f"No user has the e-mail address {email.strip()!r}.", field="email")
        return user_id
