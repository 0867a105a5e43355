"""Customer-directory tables: customers, their keyed field hashes, their encrypted
contact details, the wrapped data keys that encrypt those, and import runs.

No table holds a customer value in clear text except ``customers.external_id``, the
customer's own id in the business's systems: an opaque business key, stored as given
(a scan reports it) and never logged.  Field values are kept only as keyed hashes
(HMAC-SHA256 under the EDM key, truncated to 64 bits, as ``customers.edm`` computes
them); name, e-mail and postal address, needed to notify a customer, are AES-256-GCM
ciphertexts under a data key that is itself wrapped by a key derived from the master key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from spillguard.core.db import Base, UTCDateTime, utcnow
from spillguard.core.models import BigId

MAX_EXTERNAL_ID = 200


class Customer(Base):
    """One customer of the business.  ``removed_at`` is set when an import drops them
    (their hashes and contact details are deleted then; the row keeps the id known)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(MAX_EXTERNAL_ID), unique=True)
    # Keyed digest (hex) of the customer's field hashes and contact details: an import
    # compares it to tell "unchanged" from "changed" without decrypting anything.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class CustomerFieldHash(Base):
    """The keyed hashes of one kind of one customer's normalised values.

    ``digests`` packs the 8-byte digests (big-endian unsigned, sorted) of every value of
    that kind: one row per customer and kind, so an index of a million customers loads
    from a few million short rows.  ``kind`` is a ``FieldKind`` value; whether it is a
    primary or supporting kind follows from ``customers.fields.PRIMARY``.
    """

    __tablename__ = "customer_field_hashes"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    digests: Mapped[bytes] = mapped_column(LargeBinary)


class CustomerDataKey(Base):
    """A data key of the contact store, wrapped (AES-256-GCM) by the key derived from
    the master key for ``KeyPurpose.CUSTOMER_CONTACT_KEY_WRAP``.  Destroying the row
    makes every contact encrypted under it unreadable (crypto-erasure)."""

    __tablename__ = "customer_data_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)  # nonce ‖ ciphertext ‖ tag
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerContact(Base):
    """What is needed to notify a customer, encrypted field by field.

    Each of ``name``, ``email`` and ``postal_address`` is ``nonce ‖ ciphertext ‖ tag``
    (AES-256-GCM, a fresh 96-bit nonce per field) under the data key ``data_key_id``;
    the associated data names the customer row and the field, so a ciphertext moved to
    another row or another column fails authentication.
    """

    __tablename__ = "customer_contacts"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    data_key_id: Mapped[int] = mapped_column(
        ForeignKey("customer_data_keys.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[bytes | None] = mapped_column(LargeBinary)
    email: Mapped[bytes | None] = mapped_column(LargeBinary)
    postal_address: Mapped[bytes | None] = mapped_column(LargeBinary)


class ImportRun(Base):
    """One customer-list import: who, when, which file (name and SHA-256), and counts."""

    __tablename__ = "customer_import_runs"
    __table_args__ = (Index("ix_customer_import_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    actor_label: Mapped[str | None] = mapped_column(String(320))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    encoding: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    invalid_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Invalid values per field kind ({"email": 3, "phone": 1}); headers → kinds used.
    invalid: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HoneytokenCustomer(Base):
    """A synthetic customer planted in the directory and the CRM to catch misuse.

    It is an ordinary directory entry (hashes, encrypted contact details) as well, so EDM
    finds its values in inspected content; this row marks it. ``email_digest`` is the keyed
    hash of its e-mail address (as EDM computes it), so the mail filter can tell mail
    addressed to it without decrypting anything.
    """

    __tablename__ = "honeytoken_customers"

    customer_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("customers.id", ondelete="RESTRICT"), primary_key=True
    )
    email_digest: Mapped[bytes | None] = mapped_column(LargeBinary, index=True)
    batch: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_label: Mapped[str | None] = mapped_column(String(320))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
