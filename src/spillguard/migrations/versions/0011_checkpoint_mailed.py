"""audit: when each checkpoint was mailed to the log's e-mail witnesses

``audit_checkpoints.mailed_at`` is null until the checkpoint has gone out to the
addresses in ``audit_witness_emails`` (``audit.witness``). It is not part of what the
checkpoint signs. Existing checkpoints start unmailed: the first run after the witnesses
are configured mails the history too.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spillguard.core.db import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailed_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("mailed_at")
