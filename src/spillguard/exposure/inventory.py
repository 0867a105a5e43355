"""Device inventory: documents the agents report on phones, matched against inspected
content, so a document that reached a phone by any route is still in the ledger.

Agents report each managed document's SHA-256 at check-in; the devices module keeps a
posture snapshot whenever a posture changes. This job reads:

1. posture snapshots it has not read yet: each reported hash that is inspected content
   becomes a ``device-inventory`` delivery to that device (at the snapshot's time);
2. contents inspected since its last run: each is looked for on every managed phone's
   current posture (a document may have been on phones before anyone inspected it).

A document on a device is recorded once (its source ref is the device and the hash), so
re-reading is harmless. Hashes that match no inspected content are not stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.jobs import Job
from spillguard.core.settings import Settings
from spillguard.devices.models import Device, DeviceState, PostureSnapshot
from spillguard.exposure.ledger import Destination, NewDelivery
from spillguard.exposure.models import Channel, InspectedContent, InventoryState
from spillguard.exposure.services import CHUNK, record_deliveries

JOB_NAME = "exposure.inventory"
SOURCE_SYSTEM = "device-inventory"
STATE_ROW = 1
BATCH = 2000


@dataclass(frozen=True)
class InventoryRun:
    snapshots: int
    contents: int
    recorded: int


def reported_hashes(posture: dict[str, Any] | None) -> set[str]:
    """The SHA-256 values of the managed documents in a reported posture."""
    found: set[str] = set()
    for doc in (posture or {}).get("managed_documents") or []:
        value = doc.get("sha256") if isinstance(doc, dict) else None
        if isinstance(value, str) and len(value) == 64:
            found.add(value.lower())
    return found


def _state(session: Session) -> InventoryState:
    state = session.get(InventoryState, STATE_ROW)
    if state is None:
        try:
            with session.begin_nested():
                session.add(InventoryState(id=STATE_ROW, last_snapshot_id=0, last_content_id=0))
        except IntegrityError:
            pass
        state = session.get(InventoryState, STATE_ROW)
        assert state is not None
    return state


def _contents_by_hash(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(hashes))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        for sha, content_id in session.execute(
            select(InspectedContent.sha256, InspectedContent.id).where(
                InspectedContent.sha256.in_(wanted[start : start + CHUNK])
            )
        ):
            found[sha] = content_id
    return found


def _delivery(
    content_id: int, sha: str, device_id: int, owner_id: int, at: datetime
) -> NewDelivery:
    return NewDelivery(
        content_id,
        Destination.device(device_id, owner_id),
        Channel.DEVICE_INVENTORY,
        at,
        SOURCE_SYSTEM,
        source_id=f"{device_id}:{sha}",
    )


def match_inventory(session: Session, *, now: datetime | None = None) -> InventoryRun:
    """One pass over new snapshots and new contents (see the module docstring)."""
    now = now or utcnow()
    state = _state(session)
    recorded = 0

    # 1. New posture snapshots.
    snapshots = 0
    last_snapshot = state.last_snapshot_id
    while True:
        rows = session.execute(
            select(
                PostureSnapshot.id,
                PostureSnapshot.device_id,
                PostureSnapshot.received_at,
                PostureSnapshot.posture,
                Device.owner_id,
            )
            .join(Device, Device.id == PostureSnapshot.device_id)
            .where(PostureSnapshot.id > last_snapshot)
            .order_by(PostureSnapshot.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        per_row = [(row, reported_hashes(row.posture)) for row in rows]
        known = _contents_by_hash(session, (h for _, hashes in per_row for h in hashes))
        deliveries = [
            _delivery(known[sha], sha, row.device_id, row.owner_id, row.received_at)
            for row, hashes in per_row
            for sha in sorted(hashes)
            if sha in known
        ]
        recorded += record_deliveries(session, deliveries, now=now).recorded
        snapshots += len(rows)
        last_snapshot = rows[-1].id

    # 2. Contents inspected since the last run, looked for on every managed phone.
    newest_content = session.scalar(select(func.max(InspectedContent.id))) or 0
    new_contents = {
        sha: cid
        for sha, cid in session.execute(
            select(InspectedContent.sha256, InspectedContent.id).where(
                InspectedContent.id > state.last_content_id,
                InspectedContent.id <= newest_content,
            )
        )
    }
    if new_contents:
        after = 0
        while True:
            devices = session.execute(
                select(Device.id, Device.owner_id, Device.posture)
                .where(
                    Device.id > after,
                    Device.state.in_([DeviceState.ACTIVE.value, DeviceState.LOST.value]),
                )
                .order_by(Device.id)
                .limit(BATCH)
            ).all()
            if not devices:
                break
            deliveries = [
                _delivery(new_contents[sha], sha, device.id, device.owner_id, now)
                for device in devices
                for sha in sorted(reported_hashes(device.posture) & new_contents.keys())
            ]
            recorded += record_deliveries(session, deliveries, now=now).recorded
            after = devices[-1].id

    state.last_snapshot_id = last_snapshot
    state.last_content_id = max(state.last_content_id, newest_content)
    state.last_run_at = now
    session.flush()
    return InventoryRun(snapshots, len(new_contents), recorded)


def inventory_job(settings: Settings) -> Job:
    return Job(
        JOB_NAME,
        settings.exposure_inventory_interval_seconds,
        lambda session: match_inventory(session),
    )
