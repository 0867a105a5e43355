"""incidents: incidents, tasks, notes, attachments, timeline, assessments, clock reminders;
regulator reports, notice templates, the notices outbox, the escalation roster

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:36:58.942498
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spillguard.core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_contacts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role_title", sa.String(length=100), nullable=False),
        sa.Column("min_severity", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_contacts")),
    )
    op.create_table(
        "notice_templates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by_label", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_notice_templates_name")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("opened_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "opened_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("opened_by_label", sa.String(length=320), nullable=True),
        sa.Column("aware_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "status_changed_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("contained_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("assessed_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notifying_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "regulator_notified_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("late_reason", sa.Text(), nullable=True),
        sa.Column("scope", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("updated_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["opened_by_id"],
            ["users.id"],
            name=op.f("fk_incidents_opened_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_incidents_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("ix_incidents_device_status", ["device_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_incidents_status_opened", ["status", "opened_at"], unique=False)

    op.create_table(
        "incident_assessments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("computed_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("computed_by_label", sa.String(length=320), nullable=True),
        sa.Column("risk", sa.String(length=8), nullable=False),
        sa.Column("notify_regulator", sa.Boolean(), nullable=False),
        sa.Column("notify_individuals", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("customer_count", sa.Integer(), nullable=False),
        sa.Column("customer_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_assessments_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_assessments")),
        sa.UniqueConstraint(
            "incident_id", "version", name=op.f("uq_incident_assessments_incident_id")
        ),
    )
    with op.batch_alter_table("incident_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_assessments_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_attachments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "document_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("media_type", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("name_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by_label", sa.String(length=320), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["exposure_held_documents.id"],
            name=op.f("fk_incident_attachments_document_id_exposure_held_documents"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_attachments_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_attachments")),
    )
    with op.batch_alter_table("incident_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_attachments_document_id"), ["document_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_incident_attachments_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_clock_reminders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("hours_before", sa.Integer(), nullable=False),
        sa.Column("sent_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_clock_reminders_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_clock_reminders")),
        sa.UniqueConstraint(
            "incident_id", "hours_before", name=op.f("uq_incident_clock_reminders_incident_id")
        ),
    )
    op.create_table(
        "incident_escalations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("notified_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ack_token_digest", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["escalation_contacts.id"],
            name=op.f("fk_incident_escalations_contact_id_escalation_contacts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_escalations_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_escalations")),
        sa.UniqueConstraint(
            "ack_token_digest", name=op.f("uq_incident_escalations_ack_token_digest")
        ),
        sa.UniqueConstraint(
            "incident_id", "contact_id", name=op.f("uq_incident_escalations_incident_id")
        ),
    )
    with op.batch_alter_table("incident_escalations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_escalations_contact_id"), ["contact_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_incident_escalations_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("author_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("author_label", sa.String(length=320), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_incident_notes_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_notes_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_notes")),
    )
    with op.batch_alter_table("incident_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_notes_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_notices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "template_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("sent_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_notices_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["notice_templates.id"],
            name=op.f("fk_incident_notices_template_id_notice_templates"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_notices")),
        sa.UniqueConstraint(
            "incident_id", "customer_id", name=op.f("uq_incident_notices_incident_id")
        ),
    )
    with op.batch_alter_table("incident_notices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_notices_status_next", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "incident_regulator_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column(
            "created_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_by_label", sa.String(length=320), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_incident_regulator_reports_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_regulator_reports_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_regulator_reports")),
        sa.UniqueConstraint(
            "incident_id", "version", name=op.f("uq_incident_regulator_reports_incident_id")
        ),
    )
    with op.batch_alter_table("incident_regulator_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_regulator_reports_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("due_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_by_label", sa.String(length=320), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_label", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_incident_tasks_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_tasks_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_tasks")),
    )
    with op.batch_alter_table("incident_tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_tasks_assignee_id"), ["assignee_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_incident_tasks_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_label", sa.String(length=320), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_timeline_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_timeline")),
    )
    with op.batch_alter_table("incident_timeline", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_timeline_incident_at", ["incident_id", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("incident_timeline", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_timeline_incident_at")

    op.drop_table("incident_timeline")
    with op.batch_alter_table("incident_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_tasks_incident_id"))
        batch_op.drop_index(batch_op.f("ix_incident_tasks_assignee_id"))

    op.drop_table("incident_tasks")
    with op.batch_alter_table("incident_regulator_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_regulator_reports_incident_id"))

    op.drop_table("incident_regulator_reports")
    with op.batch_alter_table("incident_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_notices_status_next")

    op.drop_table("incident_notices")
    with op.batch_alter_table("incident_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_notes_incident_id"))

    op.drop_table("incident_notes")
    with op.batch_alter_table("incident_escalations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_escalations_incident_id"))
        batch_op.drop_index(batch_op.f("ix_incident_escalations_contact_id"))

    op.drop_table("incident_escalations")
    op.drop_table("incident_clock_reminders")
    with op.batch_alter_table("incident_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_attachments_incident_id"))
        batch_op.drop_index(batch_op.f("ix_incident_attachments_document_id"))

    op.drop_table("incident_attachments")
    with op.batch_alter_table("incident_assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_assessments_incident_id"))

    op.drop_table("incident_assessments")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_status_opened")
        batch_op.drop_index(batch_op.f("ix_incidents_owner_id"))
        batch_op.drop_index("ix_incidents_device_status")

    op.drop_table("incidents")
    op.drop_table("notice_templates")
    op.drop_table("escalation_contacts")
