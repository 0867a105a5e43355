"""Tables of the exposure ledger.

- ``exposure_contents``: one row per inspected piece of content (a file, a mail body, an
  attachment), keyed by its SHA-256: label, data-category counts, how many customers it
  names. The DESIGN's *Inspection* record, as far as the ledger needs it: no value.
- ``exposure_content_customers``: which directory customers (ids only) a content names.
  Stored once per content, however often it is delivered, so "which customers reached
  this phone" is a join of a few deliveries with their contents' customer lists.
- ``exposure_deliveries``: the ledger proper, append-only: content X reached destination
  Y (a device, a user, an external recipient, a third party) over a channel at a time.
  Rows are deleted only by retention (``exposure_retention_days``), never edited.

Device and user ids are plain columns, not foreign keys: the ledger is history and
outlives a device or account that is later deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from spillguard.core.db import Base, UTCDateTime, utcnow
from spillguard.core.models import BigId


class Channel(StrEnum):
    """How content reached its destination."""

    MAIL = "mail"
    GATEWAY = "gateway"
    DEVICE_INVENTORY = "device-inventory"
    API = "api"


class DestinationType(StrEnum):
    """What kind of destination a delivery names."""

    DEVICE = "device"
    USER = "user"
    RECIPIENT = "recipient"
    THIRD_PARTY = "third-party"


class InspectedContent(Base):
    """One inspected item, by content hash: what it holds, in counts and ids."""

    __tablename__ = "exposure_contents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    # "inspected" when every part was read; otherwise the status the report gave
    # ("uninspected", "unscannable"), which never counts as clean.
    status: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(16), index=True)
    categories: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    customer_count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    inspected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContentCustomer(Base):
    """Customer ``customer_id`` (directory id) is named in content ``content_id``."""

    __tablename__ = "exposure_content_customers"
    __table_args__ = (Index("ix_exposure_content_customers_customer", "customer_id", "content_id"),)

    content_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("exposure_contents.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )


class Delivery(Base):
    """A ledger entry: content reached a destination over a channel at a time."""

    __tablename__ = "exposure_deliveries"
    __table_args__ = (
        Index("ix_exposure_deliveries_device", "device_id", "occurred_at"),
        Index("ix_exposure_deliveries_user", "user_id", "occurred_at"),
        Index("ix_exposure_deliveries_domain", "domain", "occurred_at"),
        Index("ix_exposure_deliveries_content", "content_id"),
        Index("ix_exposure_deliveries_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(24))
    destination_type: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    recipient: Mapped[str | None] = mapped_column(String(320))
    domain: Mapped[str | None] = mapped_column(String(253))
    third_party: Mapped[str | None] = mapped_column(String(200))
    # An inspected content's id. Not a foreign key: checking and key-share locking the
    # content row of every appended delivery cost a fifth of ingestion's server time at
    # 10 million rows. The recorder looks the contents up in the same transaction, and a
    # trigger refuses to delete (or renumber) a content that has deliveries (migration
    # 0010), which is what ON DELETE RESTRICT protected.
    content_id: Mapped[int] = mapped_column(BigId)
    # Copied from the content at delivery time, so filters need no join.
    label: Mapped[str] = mapped_column(String(16))
    customer_count: Mapped[int] = mapped_column(Integer, default=0)
    source_system: Mapped[str] = mapped_column(String(100))
    # A digest of the sender's own id of this delivery (a message id and recipient, an API
    # client's source id): the same delivery reported twice is recorded once. 128 bits of
    # SHA-256 (``ledger.source_ref``), a native 16-byte uuid on PostgreSQL: its unique
    # index is a third of the 64-character hex one it replaced.
    source_ref: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)


class HeldDocument(Base):
    """A document the platform keeps for a while, encrypted: an attachment replaced by a
    gateway link, or a quarantined message.

    The bytes live in the document store (``exposure.store``) encrypted under a data key of
    their own; ``wrapped_key`` is that key wrapped by the master key's store key. Deleting
    the row (or clearing ``wrapped_key``) makes the stored bytes unreadable for good.
    ``name_sealed`` is the file name, encrypted under the same data key (a name can name a
    customer).
    """

    __tablename__ = "exposure_held_documents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("exposure_contents.id", ondelete="RESTRICT"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))  # "gateway" or "quarantine"
    media_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the bytes are deleted (crypto-erased): the row stays as a record.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GatewayLink(Base):
    """A link that serves a held document to its recipient's enrolled, compliant phone.

    Only a keyed digest of the link's secret is stored; the secret is in the URL sent to
    the recipient.
    """

    __tablename__ = "exposure_gateway_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    document_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("exposure_held_documents.id", ondelete="CASCADE"), index=True
    )
    # Who may fetch it: the internal recipient it was made for.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Why it exists (e.g. the message id and recipient): one link per delivery.
    source_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    downloads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_download_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuarantineStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"
    DELETED = "deleted"


class QuarantinedMessage(Base):
    """A message the mail filter held back, for ``security`` or ``dpo`` to release or
    delete. The raw message is a held document (encrypted); this row says why and for whom.
    """

    __tablename__ = "exposure_quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("exposure_held_documents.id", ondelete="RESTRICT"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(String(500))
    label: Mapped[str] = mapped_column(String(16))
    customer_count: Mapped[int] = mapped_column(Integer, default=0)
    # A digest of the message id and the held recipients: a retried message is held once.
    message_ref: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=QuarantineStatus.HELD.value, index=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(String(500))


class StoredBlob(Base):
    """The encrypted bytes of a held document, when the document store is the database
    (the default: nothing to share between server processes)."""

    __tablename__ = "exposure_blobs"

    document_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("exposure_held_documents.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class InventoryState(Base):
    """How far device-inventory matching has read: posture snapshots and contents above
    these ids are new to it (one row)."""

    __tablename__ = "exposure_inventory_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_snapshot_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_content_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
