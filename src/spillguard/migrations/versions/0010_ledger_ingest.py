"""exposure ledger: source refs as 16-byte uuids, no foreign key from deliveries to contents

Ingesting into a 10-million-row ledger was bound by the pages a batch touches. Two of
the costs go:

- ``exposure_deliveries.source_ref`` (the idempotency key, random by nature) was 64 hex
  characters: its unique index was about 1.2 GB at 10 million rows and each batch of
  10,000 read and dirtied some 9,000 of its leaves. It is now the first 128 bits of the
  same SHA-256 as a native ``uuid`` on PostgreSQL (``CHAR(32)`` hex on SQLite), an index
  a third the size. Existing refs keep their first 32 hex digits, which is exactly what
  ``ledger.source_ref`` now computes, so a replay of an older delivery is still
  recognised.
- The foreign key from ``exposure_deliveries.content_id`` to ``exposure_contents``
  checked and key-share locked (so dirtied and WAL-logged) the content row of every
  appended delivery. What it protected is kept by a trigger on ``exposure_contents`` that
  refuses to delete a content that has deliveries or to change its id; it runs only on
  such a delete or update, which the application never makes.

Downgrade restores the foreign key and the text column; the refs stay 32 hex digits, so
after a downgrade a replay of a delivery recorded before it is recorded again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_exposure_deliveries_content_id_exposure_contents"
GUARD = "exposure_contents_delivered_guard"

# Literal SQL (no interpolation): the guard is named exposure_contents_delivered_guard.
POSTGRES_UP = (
    """
    CREATE FUNCTION exposure_contents_delivered_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
            RETURN NEW;
        END IF;
        IF EXISTS (SELECT 1 FROM exposure_deliveries WHERE content_id = OLD.id) THEN
            RAISE EXCEPTION 'content % has ledger deliveries: it cannot be deleted or renumbered', OLD.id USING ERRCODE = 'restrict_violation';
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER exposure_contents_delivered_guard BEFORE DELETE OR UPDATE OF id
    ON exposure_contents FOR EACH ROW EXECUTE FUNCTION exposure_contents_delivered_guard()
    """,
)
SQLITE_UP = (
    """
    CREATE TRIGGER exposure_contents_delivered_guard_delete BEFORE DELETE ON exposure_contents
    WHEN EXISTS (SELECT 1 FROM exposure_deliveries WHERE content_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'content has ledger deliveries: it cannot be deleted or renumbered'); END
    """,
    """
    CREATE TRIGGER exposure_contents_delivered_guard_update BEFORE UPDATE OF id ON exposure_contents
    WHEN NEW.id IS NOT OLD.id
        AND EXISTS (SELECT 1 FROM exposure_deliveries WHERE content_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'content has ledger deliveries: it cannot be deleted or renumbered'); END
    """,
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.drop_constraint(FK_NAME, "exposure_deliveries", type_="foreignkey")
        op.execute(
            "ALTER TABLE exposure_deliveries ALTER COLUMN source_ref TYPE uuid "
            "USING CAST(left(source_ref, 32) AS uuid)"
        )
    else:
        op.execute(
            "UPDATE exposure_deliveries SET source_ref = substr(source_ref, 1, 32) "
            "WHERE source_ref IS NOT NULL"
        )
        with op.batch_alter_table("exposure_deliveries", schema=None) as batch_op:
            batch_op.drop_constraint(FK_NAME, type_="foreignkey")
            batch_op.alter_column("source_ref", existing_type=sa.String(length=64), type_=sa.Uuid())
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(f"DROP TRIGGER {GUARD} ON exposure_contents")
        op.execute(f"DROP FUNCTION {GUARD}()")
        op.execute(
            "ALTER TABLE exposure_deliveries ALTER COLUMN source_ref TYPE varchar(64) "
            "USING replace(CAST(source_ref AS text), '-', '')"
        )
        op.create_foreign_key(
            FK_NAME,
            "exposure_deliveries",
            "exposure_contents",
            ["content_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        return
    op.execute(f"DROP TRIGGER {GUARD}_delete")
    op.execute(f"DROP TRIGGER {GUARD}_update")
    with op.batch_alter_table("exposure_deliveries", schema=None) as batch_op:
        batch_op.alter_column("source_ref", existing_type=sa.Uuid(), type_=sa.String(length=64))
        batch_op.create_foreign_key(
            FK_NAME, "exposure_contents", ["content_id"], ["id"], ondelete="RESTRICT"
        )
