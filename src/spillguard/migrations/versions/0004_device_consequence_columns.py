"""devices: consequence state and corporate-data block as columns; check-in bookkeeping

Moves the consequences job's per-device state out of the compliance history (one row per
device with cause = "consequences" whose JSON ``reasons`` held it) into columns of
``devices``: ``consequence_state`` (the same JSON), ``blocked_for_corporate_data`` and
``blocked_since`` (read by the exposure gateway).  Adds the check-in bookkeeping columns
``compliance_basis`` (skip re-evaluation when posture and policy are unchanged) and
``commands_queued`` / ``commands_checked`` (skip the pending-command query when nothing
was queued since the device last found its queue empty).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:20:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import spillguard.core.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATE_CAUSE = "consequences"
PENDING = ("queued", "sent")

devices = sa.table(
    "devices",
    sa.column("id", sa.BigInteger()),
    sa.column("compliant", sa.Boolean()),
    sa.column("compliance_policy_id", sa.BigInteger()),
    sa.column("consequence_state", sa.JSON(none_as_null=True)),
    sa.column("blocked_for_corporate_data", sa.Boolean()),
    sa.column("blocked_since", spillguard.core.db.UTCDateTime(timezone=True)),
    sa.column("commands_queued", sa.Integer()),
)
changes = sa.table(
    "device_compliance_changes",
    sa.column("id", sa.BigInteger()),
    sa.column("device_id", sa.BigInteger()),
    sa.column("at", spillguard.core.db.UTCDateTime(timezone=True)),
    sa.column("compliant", sa.Boolean()),
    sa.column("reasons", sa.JSON()),
    sa.column("policy_id", sa.BigInteger()),
    sa.column("cause", sa.String(32)),
)
commands = sa.table(
    "device_commands",
    sa.column("device_id", sa.BigInteger()),
    sa.column("status", sa.String(16)),
)


def _since(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite can, with constant defaults), not a batch "move and copy":
    # recreating ``devices`` on SQLite would drop the old table, and with foreign keys on
    # that cascades to every table referring to it (commands, history, locations).
    op.add_column("devices", sa.Column("compliance_basis", sa.String(length=64), nullable=True))
    op.add_column(
        "devices", sa.Column("commands_queued", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "devices", sa.Column("commands_checked", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("devices", sa.Column("consequence_state", sa.JSON(), nullable=True))
    op.add_column(
        "devices",
        sa.Column(
            "blocked_for_corporate_data", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )
    op.add_column(
        "devices",
        sa.Column("blocked_since", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_devices_blocked_for_corporate_data"),
        "devices",
        ["blocked_for_corporate_data"],
        unique=False,
    )

    bind = op.get_bind()
    # The state rows: the newest per device wins (there should only ever be one).
    rows = bind.execute(
        sa.select(changes.c.id, changes.c.device_id, changes.c.reasons)
        .where(changes.c.cause == STATE_CAUSE)
        .order_by(changes.c.id)
    ).all()
    state: dict[int, Any] = {row.device_id: row.reasons for row in rows}
    for device_id, data in state.items():
        if not isinstance(data, dict):
            continue
        blocked = bool(data.get("blocked_for_corporate_data"))
        bind.execute(
            devices.update()
            .where(devices.c.id == device_id)
            .values(
                consequence_state=data,
                blocked_for_corporate_data=blocked,
                blocked_since=_since(data.get("blocked_since")) if blocked else None,
            )
        )
    bind.execute(changes.delete().where(changes.c.cause == STATE_CAUSE))
    # A device with commands pending must look for them at its next check-in.
    pending = sa.select(commands.c.device_id).where(commands.c.status.in_(PENDING))
    bind.execute(devices.update().where(devices.c.id.in_(pending)).values(commands_queued=1))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            devices.c.id,
            devices.c.compliant,
            devices.c.compliance_policy_id,
            devices.c.consequence_state,
        ).where(devices.c.consequence_state.is_not(None))
    ).all()
    now = datetime.now(UTC)
    for row in rows:
        bind.execute(
            changes.insert().values(
                device_id=row.id,
                at=now,
                compliant=bool(row.compliant),
                reasons=row.consequence_state,
                policy_id=row.compliance_policy_id,
                cause=STATE_CAUSE,
            )
        )
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), again without recreating ``devices``.
    op.drop_index(op.f("ix_devices_blocked_for_corporate_data"), table_name="devices")
    for column in (
        "blocked_since",
        "blocked_for_corporate_data",
        "consequence_state",
        "commands_checked",
        "commands_queued",
        "compliance_basis",
    ):
        op.drop_column("devices", column)
