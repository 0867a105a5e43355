"""The incident timeline: append-only, and fed by every module that sees something happen.

Other modules call these helpers in their own transaction, so an event and its timeline
entry commit (or roll back) together:

- :func:`add` — an entry on one incident (the incidents services, the notices outbox,
  escalation, the regulator report);
- :func:`deliveries_reached_devices` — ledger facts: the exposure ledger reports each
  batch of deliveries to devices; every open incident of such a device gets an entry
  (one SELECT per batch, nothing else when no device has an open incident);
- :func:`device_event` — an entry on every open incident about a device (the devices
  module calls it when a command is queued, acknowledged or fails, and when the device's
  compliance verdict changes). It costs one indexed SELECT and is a no-op when the device
  has no open incident; it is called only on such *changes*, never from the unchanged
  check-in (the fast path never reaches it).

Entries are never updated or deleted: the ORM refuses both (:func:`_refuse_change`).
A summary is plain words for people and never carries a customer value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Mapper, Session

from spillguard.core.db import rows_among, utcnow
from spillguard.incidents.models import Incident, IncidentStatus, TimelineEntry, TimelineKind

MAX_SUMMARY = 500


def add(
    session: Session,
    incident_id: int,
    kind: TimelineKind | str,
    summary: str,
    *,
    actor_label: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> TimelineEntry:
    """Append an entry to an incident's timeline (in the caller's transaction)."""
    entry = TimelineEntry(
        incident_id=incident_id,
        at=at or utcnow(),
        kind=str(kind),
        actor_label=actor_label,
        summary=summary[:MAX_SUMMARY],
        data=dict(data or {}),
    )
    session.add(entry)
    session.flush()
    return entry


def open_incident_ids_of_device(session: Session, device_id: int) -> list[int]:
    """Ids of the incidents about this device that are not closed (one indexed query)."""
    return list(
        session.scalars(
            select(Incident.id).where(
                Incident.device_id == device_id, Incident.status != IncidentStatus.CLOSED.value
            )
        )
    )


def device_event(
    session: Session,
    device_id: int,
    kind: TimelineKind | str,
    summary: str,
    *,
    actor_label: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append an entry to each open incident of the device; returns how many (0: none).

    The light coupling the devices module uses: it imports this function only, passes
    plain values, and pays one indexed SELECT per call.
    """
    ids = open_incident_ids_of_device(session, device_id)
    for incident_id in ids:
        add(
            session,
            incident_id,
            kind,
            summary,
            actor_label=actor_label,
            data={"device_id": device_id, **(data or {})},
            at=at,
        )
    return len(ids)


def entries(session: Session, incident_id: int) -> list[TimelineEntry]:
    """An incident's timeline, oldest first."""
    return list(
        session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.incident_id == incident_id)
            .order_by(TimelineEntry.at, TimelineEntry.id)
        )
    )


class TimelineIsAppendOnly(RuntimeError):
    """Raised when code tries to change or delete a timeline entry."""


@event.listens_for(TimelineEntry, "before_update")
@event.listens_for(TimelineEntry, "before_delete")
def _refuse_change(_mapper: Mapper[Any], _connection: Any, target: TimelineEntry) -> None:
    raise TimelineIsAppendOnly(f"timeline entry {target.id} cannot be changed or deleted")


def deliveries_reached_devices(
    session: Session, per_device: Mapping[int, int], *, at: datetime | None = None
) -> int:
    """Ledger facts: ``per_device[device_id]`` new deliveries reached each device. Appends
    an entry to every open incident of those devices (one indexed SELECT for the batch;
    nothing when none of them has one). Called by the exposure ledger after it records a
    batch. Returns how many entries were added."""
    if not per_device:
        return 0
    open_ids = rows_among(
        session,
        select(Incident.id, Incident.device_id).where(
            Incident.status != IncidentStatus.CLOSED.value
        ),
        Incident.device_id,
        per_device,
    )
    for incident_id, device_id in open_ids:
        if device_id is None:  # not possible (the IN list), but the column is nullable
            continue
        count = per_device[device_id]
        add(
            session,
            incident_id,
            TimelineKind.LEDGER,
            f"The exposure ledger recorded {count} new deliver{'y' if count == 1 else 'ies'} "
            "of inspected content to the phone.",
            actor_label="exposure ledger",
            data={"device_id": device_id, "deliveries": count},
            at=at,
        )
    return len(open_ids)
