"""audit: a delete guard on logged events instead of the leaves' foreign key

The foreign key from ``audit_log_leaves.event_id`` to ``audit_events`` made PostgreSQL
check, and lock (``FOR KEY SHARE``), the event row of every leaf the sequencer appends:
about 8 µs of server time per event, a sixth of the append budget. What it protected is
kept by triggers on ``audit_events`` that refuse to delete an event that is in the log or
to change its id (the foreign key's ON DELETE RESTRICT); they run only on such a delete
or update, which the application never makes. The leaves' unique ``event_id`` stays.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 20:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_audit_log_leaves_event_id_audit_events"
GUARD = "audit_events_logged_guard"

# Literal SQL (no interpolation): the guard is named audit_events_logged_guard.
POSTGRES_UP = (
    """
    CREATE FUNCTION audit_events_logged_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
            RETURN NEW;
        END IF;
        IF EXISTS (SELECT 1 FROM audit_log_leaves WHERE event_id = OLD.id) THEN
            RAISE EXCEPTION 'audit event is in the tamper-evident log: it cannot be deleted or renumbered (event %)', OLD.id USING ERRCODE = 'restrict_violation';
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_events_logged_guard BEFORE DELETE OR UPDATE OF id ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_logged_guard()
    """,
)
SQLITE_UP = (
    """
    CREATE TRIGGER audit_events_logged_guard_delete BEFORE DELETE ON audit_events
    WHEN EXISTS (SELECT 1 FROM audit_log_leaves WHERE event_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'audit event is in the tamper-evident log: it cannot be deleted or renumbered'); END
    """,
    """
    CREATE TRIGGER audit_events_logged_guard_update BEFORE UPDATE OF id ON audit_events
    WHEN NEW.id IS NOT OLD.id
        AND EXISTS (SELECT 1 FROM audit_log_leaves WHERE event_id = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'audit event is in the tamper-evident log: it cannot be deleted or renumbered'); END
    """,
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log_leaves", schema=None) as batch_op:
        batch_op.drop_constraint(FK_NAME, type_="foreignkey")
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_UP if postgres else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {GUARD} ON audit_events")
        op.execute(f"DROP FUNCTION {GUARD}()")
    else:
        op.execute(f"DROP TRIGGER {GUARD}_delete")
        op.execute(f"DROP TRIGGER {GUARD}_update")
    with op.batch_alter_table("audit_log_leaves", schema=None) as batch_op:
        batch_op.create_foreign_key(
            FK_NAME, "audit_events", ["event_id"], ["id"], ondelete="RESTRICT"
        )
