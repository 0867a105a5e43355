"""Migration 0004 on a database that holds consequence state the old way (a compliance
history row with cause "consequences"): the state moves into the device's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tests.conftest import migrate_to as migrate

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
BLOCKED_SINCE = NOW - timedelta(hours=3)
OLD_STATE: dict[str, Any] = {
    "version": 1,
    "checked_at": NOW.isoformat(),
    "first_seen": {"encryption": (NOW - timedelta(hours=5)).isoformat()},
    "applied": {"encryption": ["block_corporate_data"]},
    "blocked_for_corporate_data": True,
    "blocked_since": BLOCKED_SINCE.isoformat(),
    "blocked_by": ["encryption"],
}
WAITING_STATE: dict[str, Any] = {
    "version": 1,
    "checked_at": NOW.isoformat(),
    "first_seen": {"passcode": NOW.isoformat()},
    "applied": {},
    "blocked_for_corporate_data": False,
    "blocked_since": None,
    "blocked_by": [],
}


@pytest.fixture
def engine(unmigrated_engine: Engine) -> Engine:
    return unmigrated_engine


def tables(conn: Connection) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(conn, only=["users", "devices", "device_compliance_changes", "device_commands"])
    return dict(meta.tables)


def add_device(conn: Connection, t: dict[str, sa.Table], owner: int, name: str) -> int:
    result = conn.execute(
        t["devices"]
        .insert()
        .values(
            name=name,
            platform="android",
            owner_id=owner,
            credential_digest=name.ljust(64, "0"),
            state="active",
            enrolled_at=NOW,
            compliance_reasons=[],
        )
        .returning(t["devices"].c.id)
    )
    return int(result.scalar_one())


def add_change(
    conn: Connection, t: dict[str, sa.Table], device: int, cause: str, reasons: Any
) -> None:
    conn.execute(
        t["device_compliance_changes"]
        .insert()
        .values(device_id=device, at=NOW, compliant=False, reasons=reasons, cause=cause)
    )


def test_old_consequence_rows_become_device_columns(engine: Engine) -> None:
    migrate(engine, "0003")
    with engine.begin() as conn:
        t = tables(conn)
        assert "blocked_for_corporate_data" not in t["devices"].c
        owner = conn.execute(
            t["users"]
            .insert()
            .values(email="owner@example.co.uk", role="user", disabled=False, created_at=NOW)
            .returning(t["users"].c.id)
        ).scalar_one()
        blocked = add_device(conn, t, owner, "blocked")
        waiting = add_device(conn, t, owner, "waiting")
        untouched = add_device(conn, t, owner, "untouched")
        add_change(conn, t, blocked, "checkin", ["Storage is not encrypted"])
        add_change(conn, t, blocked, "consequences", OLD_STATE)
        add_change(conn, t, waiting, "consequences", WAITING_STATE)
        conn.execute(
            t["device_commands"]
            .insert()
            .values(
                device_id=waiting,
                type="lock",
                params={},
                status="queued",
                created_at=NOW,
                expires_at=NOW + timedelta(days=7),
                deliveries=0,
            )
        )

    migrate(engine, "0004")

    with engine.connect() as conn:
        t = tables(conn)
        devices = t["devices"]
        rows = {
            row.id: row
            for row in conn.execute(
                sa.select(
                    devices.c.id,
                    devices.c.consequence_state,
                    devices.c.blocked_for_corporate_data,
                    devices.c.blocked_since,
                    devices.c.commands_queued,
                    devices.c.commands_checked,
                    devices.c.compliance_basis,
                )
            )
        }
        commands = conn.execute(sa.select(sa.func.count()).select_from(t["device_commands"]))
        commands_left = commands.scalar_one()
        causes = list(
            conn.execute(
                sa.select(
                    t["device_compliance_changes"].c.device_id,
                    t["device_compliance_changes"].c.cause,
                )
            )
        )
    assert bool(rows[blocked].blocked_for_corporate_data) is True
    since = rows[blocked].blocked_since
    assert since is not None
    assert since.replace(tzinfo=since.tzinfo or UTC) == BLOCKED_SINCE
    assert rows[blocked].consequence_state == OLD_STATE
    assert not rows[waiting].blocked_for_corporate_data and rows[waiting].blocked_since is None
    assert rows[waiting].consequence_state == WAITING_STATE
    assert rows[untouched].consequence_state is None
    assert not rows[untouched].blocked_for_corporate_data
    # The device with a queued command looks for it at its next check-in; the others do not.
    assert (rows[waiting].commands_queued, rows[waiting].commands_checked) == (1, 0)
    assert rows[blocked].commands_queued == rows[blocked].commands_checked == 0
    assert all(row.compliance_basis is None for row in rows.values())
    # The state rows are gone; real history and the command queue stay (a SQLite "move and
    # copy" of the devices table would have cascaded to both).
    assert causes == [(blocked, "checkin")]
    assert commands_left == 1

    # And back: the state returns to the history table.
    migrate(engine, "0003", down=True)
    with engine.connect() as conn:
        t = tables(conn)
        changes = t["device_compliance_changes"]
        restored = {
            row.device_id: row.reasons
            for row in conn.execute(
                sa.select(changes.c.device_id, changes.c.reasons).where(
                    changes.c.cause == "consequences"
                )
            )
        }
    assert restored == {blocked: OLD_STATE, waiting: WAITING_STATE}
