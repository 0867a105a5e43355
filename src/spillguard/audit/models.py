"""Tables of the tamper-evident audit log.

- ``audit_log_leaves``: one row per log entry, at a dense ``position`` 0..n-1, naming the
  audit event it holds and the RFC 9162 leaf hash of that event's canonical bytes.
- ``audit_log_nodes``: the hash of every completed perfect subtree above the leaves
  (level >= 1; level 0 is the leaf table), so any proof takes a few indexed reads.
- ``audit_log_state``: one row, the log's size and compact-range frontier (the right edge
  of the tree) and when the sequencer last ran; its conditional update is what makes two
  racing sequencers unable to both append.
- ``audit_checkpoints``: signed tree heads (size, root hash, time, Ed25519 signature).

Rows are only ever inserted (the state row is updated in place); nothing here is deleted
by the application.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from spillguard.core.db import Base, UTCDateTime, utcnow
from spillguard.core.models import BigId

STATE_ROW = 1


class LogLeaf(Base):
    """Entry ``position`` of the log: the event it holds and its leaf hash."""

    __tablename__ = "audit_log_leaves"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # RESTRICT: the database refuses to delete a logged event while this row exists; an
    # attacker who gets round that (drops the constraint) is caught by `audit verify`.
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("audit_events.id", ondelete="RESTRICT"), unique=True
    )
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sequenced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LogNode(Base):
    """The hash of the perfect subtree of leaves ``[index << level, (index + 1) << level)``."""

    __tablename__ = "audit_log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogState(Base):
    """The single row describing the log as the last sequencing run left it."""

    __tablename__ = "audit_log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # The frontier hashes (one per set bit of size, largest subtree first), concatenated.
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    # The largest event id in the log: events above it are new to the sequencer.
    max_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Checkpoint(Base):
    """A signed tree head: the log had ``tree_size`` entries with root ``root_hash``."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    origin: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
