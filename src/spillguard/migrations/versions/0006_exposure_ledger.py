"""exposure ledger, held documents, gateway links, quarantine; API token scopes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 07:04:25.630933
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spillguard.core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exposure_contents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("customer_count", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("inspected_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_contents")),
        sa.UniqueConstraint("sha256", name=op.f("uq_exposure_contents_sha256")),
    )
    op.create_index(
        op.f("ix_exposure_contents_label"), "exposure_contents", ["label"], unique=False
    )

    op.create_table(
        "exposure_content_customers",
        sa.Column(
            "content_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["exposure_contents.id"],
            name=op.f("fk_exposure_content_customers_content_id_exposure_contents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_exposure_content_customers_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "content_id", "customer_id", name=op.f("pk_exposure_content_customers")
        ),
    )
    op.create_index(
        "ix_exposure_content_customers_customer",
        "exposure_content_customers",
        ["customer_id", "content_id"],
        unique=False,
    )

    op.create_table(
        "exposure_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=24), nullable=False),
        sa.Column("destination_type", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("third_party", sa.String(length=200), nullable=True),
        sa.Column(
            "content_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("customer_count", sa.Integer(), nullable=False),
        sa.Column("source_system", sa.String(length=100), nullable=False),
        sa.Column("source_ref", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["exposure_contents.id"],
            name=op.f("fk_exposure_deliveries_content_id_exposure_contents"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_deliveries")),
        sa.UniqueConstraint("source_ref", name=op.f("uq_exposure_deliveries_source_ref")),
    )
    op.create_index(
        "ix_exposure_deliveries_content", "exposure_deliveries", ["content_id"], unique=False
    )
    op.create_index(
        "ix_exposure_deliveries_device",
        "exposure_deliveries",
        ["device_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_exposure_deliveries_domain",
        "exposure_deliveries",
        ["domain", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_exposure_deliveries_occurred_at", "exposure_deliveries", ["occurred_at"], unique=False
    )
    op.create_index(
        "ix_exposure_deliveries_user",
        "exposure_deliveries",
        ["user_id", "occurred_at"],
        unique=False,
    )

    op.create_table(
        "exposure_held_documents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "content_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("name_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("erased_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["content_id"],
            ["exposure_contents.id"],
            name=op.f("fk_exposure_held_documents_content_id_exposure_contents"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_held_documents")),
    )
    op.create_index(
        op.f("ix_exposure_held_documents_content_id"),
        "exposure_held_documents",
        ["content_id"],
        unique=False,
    )

    op.create_table(
        "exposure_gateway_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column(
            "document_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_ref", sa.String(length=64), nullable=True),
        sa.Column("created_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "revoked_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("downloads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_download_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["exposure_held_documents.id"],
            name=op.f("fk_exposure_gateway_links_document_id_exposure_held_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["users.id"],
            name=op.f("fk_exposure_gateway_links_revoked_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_exposure_gateway_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_gateway_links")),
        sa.UniqueConstraint("source_ref", name=op.f("uq_exposure_gateway_links_source_ref")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_exposure_gateway_links_token_digest")),
    )
    op.create_index(
        op.f("ix_exposure_gateway_links_document_id"),
        "exposure_gateway_links",
        ["document_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_exposure_gateway_links_expires_at"),
        "exposure_gateway_links",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_exposure_gateway_links_user_id"),
        "exposure_gateway_links",
        ["user_id"],
        unique=False,
    )

    op.create_table(
        "exposure_quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "document_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("received_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("customer_count", sa.Integer(), nullable=False),
        sa.Column("message_ref", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "decided_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("decided_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_exposure_quarantine_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["exposure_held_documents.id"],
            name=op.f("fk_exposure_quarantine_document_id_exposure_held_documents"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_quarantine")),
        sa.UniqueConstraint("message_ref", name=op.f("uq_exposure_quarantine_message_ref")),
    )
    op.create_index(
        op.f("ix_exposure_quarantine_document_id"),
        "exposure_quarantine",
        ["document_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_exposure_quarantine_received_at"),
        "exposure_quarantine",
        ["received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_exposure_quarantine_status"), "exposure_quarantine", ["status"], unique=False
    )
    op.create_table(
        "exposure_blobs",
        sa.Column(
            "document_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["exposure_held_documents.id"],
            name=op.f("fk_exposure_blobs_document_id_exposure_held_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_exposure_blobs")),
    )
    op.create_table(
        "exposure_inventory_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_snapshot_id", sa.BigInteger(), nullable=False),
        sa.Column("last_content_id", sa.BigInteger(), nullable=False),
        sa.Column("last_run_at", spillguard.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_inventory_state")),
    )
    # A token may be limited to one purpose (core.roles.TokenScope).
    op.add_column("api_tokens", sa.Column("scope", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_column("scope")
    op.drop_table("exposure_inventory_state")
    op.drop_table("exposure_blobs")
    op.drop_index(op.f("ix_exposure_quarantine_status"), table_name="exposure_quarantine")
    op.drop_index(op.f("ix_exposure_quarantine_received_at"), table_name="exposure_quarantine")
    op.drop_index(op.f("ix_exposure_quarantine_document_id"), table_name="exposure_quarantine")

    op.drop_table("exposure_quarantine")
    op.drop_index(op.f("ix_exposure_gateway_links_user_id"), table_name="exposure_gateway_links")
    op.drop_index(op.f("ix_exposure_gateway_links_expires_at"), table_name="exposure_gateway_links")
    op.drop_index(
        op.f("ix_exposure_gateway_links_document_id"), table_name="exposure_gateway_links"
    )

    op.drop_table("exposure_gateway_links")
    op.drop_index(
        op.f("ix_exposure_held_documents_content_id"), table_name="exposure_held_documents"
    )

    op.drop_table("exposure_held_documents")
    op.drop_index("ix_exposure_deliveries_user", table_name="exposure_deliveries")
    op.drop_index("ix_exposure_deliveries_occurred_at", table_name="exposure_deliveries")
    op.drop_index("ix_exposure_deliveries_domain", table_name="exposure_deliveries")
    op.drop_index("ix_exposure_deliveries_device", table_name="exposure_deliveries")
    op.drop_index("ix_exposure_deliveries_content", table_name="exposure_deliveries")

    op.drop_table("exposure_deliveries")
    op.drop_index("ix_exposure_content_customers_customer", table_name="exposure_content_customers")

    op.drop_table("exposure_content_customers")
    op.drop_index(op.f("ix_exposure_contents_label"), table_name="exposure_contents")

    op.drop_table("exposure_contents")
