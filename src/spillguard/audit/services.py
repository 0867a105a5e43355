"""Read-only services over the log: checkpoints, proofs and the log's public key.

Every method checks ``AUDIT_VIEW`` first. Errors are domain errors, which the app turns
into RFC 9457 problems and the CLI into one ``error:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.orm import Session

from spillguard.audit.checkpoints import LogKey, Signer, origin_for
from spillguard.audit.honeytokens import redaction_for
from spillguard.audit.log import (
    EVENT_COLUMNS,
    get_state,
    latest_checkpoint,
    stored_proof,
    text_of,
)
from spillguard.audit.merkle import consistency_proof_ranges, inclusion_proof_ranges
from spillguard.audit.models import STATE_ROW, Checkpoint, LogLeaf, LogState
from spillguard.core.audit import canonical_bytes
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings


class AuditEventNotFound(NotFound):
    title = "Unknown audit event"
    slug = "audit-event-not-found"


class NotYetLogged(Conflict):
    title = "Not yet in the log"
    slug = "audit-event-not-yet-logged"


class NoCheckpoint(NotFound):
    title = "No checkpoint yet"
    slug = "audit-no-checkpoint"


class SizeOutOfRange(InvalidInput):
    title = "Tree size out of range"
    slug = "audit-size-out-of-range"


WITHHELD_HONEYTOKEN = (
    "The entry names a honeytoken customer, which only honeytokens:manage may see; "
    "its leaf hash is given instead, and the proof verifies from it."
)


@dataclass(frozen=True)
class InclusionProof:
    event_id: int
    entry: bytes | None  # None: withheld from this reader (``withheld`` says why)
    leaf_hash: bytes  # RFC 9162 leaf hash of the entry: H(0x00 || entry)
    leaf_index: int
    tree_size: int
    root_hash: bytes
    proof: list[bytes]
    checkpoint: str | None  # the signed checkpoint of tree_size, when there is one
    withheld: str | None = None


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class CheckpointView:
    checkpoint: Checkpoint
    text: str


def _inclusion_head(checkpoint_on: ColumnElement[bool], *, with_size: bool) -> Select[Any]:
    """One row for an inclusion proof: the event (the columns ``canonical_bytes`` reads),
    its log position (null: not logged yet) and the checkpoint matching ``checkpoint_on``
    (nulls: none), and with ``with_size`` the log's size; no row for an unknown event.
    Each part is a primary-key or unique-index lookup."""
    events, leaves, checkpoints = AuditEvent.__table__, LogLeaf.__table__, Checkpoint.__table__
    state = LogState.__table__
    joined = events.outerjoin(leaves, leaves.c.event_id == events.c.id).outerjoin(
        checkpoints, checkpoint_on
    )
    columns = [
        *(events.c[name] for name in EVENT_COLUMNS),
        leaves.c.position,
        leaves.c.leaf_hash,
        *(checkpoints.c[name] for name in _CHECKPOINT_COLUMNS),
    ]
    if with_size:
        joined = joined.outerjoin(state, state.c.id == STATE_ROW)
        columns.append(state.c.size)
    return select(*columns).select_from(joined).where(events.c.id == bindparam("event_id"))


_CHECKPOINT_COLUMNS = ("tree_size", "root_hash", "created_at", "origin", "signature")
"""What ``text_of`` reads of a checkpoint."""
_tree_size = Checkpoint.__table__.c.tree_size
_AT_LATEST = _inclusion_head(
    _tree_size == select(_tree_size).order_by(_tree_size.desc()).limit(1).scalar_subquery(),
    with_size=False,
)
_AT_SIZE = _inclusion_head(_tree_size == bindparam("tree_size"), with_size=True)


class AuditLogService:
    """Checkpoints and proofs for the people allowed to read the audit trail."""

    def __init__(
        self, session: Session, principal: Principal, keys: KeyRing, settings: Settings
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self._signer = Signer(keys)

    @property
    def key(self) -> LogKey:
        return self._signer.key

    def log_key(self) -> tuple[LogKey, str]:
        """The log's public key and its origin (the signed-note key name)."""
        self.principal.require(Permission.AUDIT_VIEW)
        return self.key, origin_for(self.settings.installation)

    def _view(self, checkpoint: Checkpoint) -> CheckpointView:
        return CheckpointView(checkpoint, text_of(checkpoint, self.key))

    def latest(self) -> CheckpointView:
        self.principal.require(Permission.AUDIT_VIEW)
        checkpoint = latest_checkpoint(self.session)
        if checkpoint is None:
            raise NoCheckpoint("The audit log has no checkpoint yet.")
        return self._view(checkpoint)

    def checkpoints(self, *, limit: int, offset: int) -> tuple[list[CheckpointView], int]:
        """Checkpoints, newest first."""
        self.principal.require(Permission.AUDIT_VIEW)
        total = self.session.scalar(select(func.count()).select_from(Checkpoint)) or 0
        rows = self.session.scalars(
            select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(limit).offset(offset)
        ).all()
        return [self._view(c) for c in rows], total

    def all_checkpoints(self) -> list[CheckpointView]:
        """Every checkpoint, oldest first (for export)."""
        self.principal.require(Permission.AUDIT_VIEW)
        rows = self.session.scalars(select(Checkpoint).order_by(Checkpoint.tree_size)).all()
        return [self._view(c) for c in rows]

    def _size(self) -> int:
        return get_state(self.session).size

    def inclusion(self, event_id: int, tree_size: int | None = None) -> InclusionProof:
        """The proof that event ``event_id`` is in the tree of ``tree_size`` entries.

        Without ``tree_size``, the latest checkpoint's size, and its text with the proof.
        Two queries: the event with its position and checkpoint (:func:`_inclusion_head`),
        then every stored hash the proof (and, with no checkpoint, the root) needs.
        """
        self.principal.require(Permission.AUDIT_VIEW)
        conn = self.session.connection()
        if tree_size is None:
            head = conn.execute(_AT_LATEST, {"event_id": event_id}).first()
        else:
            head = conn.execute(_AT_SIZE, {"event_id": event_id, "tree_size": tree_size}).first()
        if head is None:
            raise AuditEventNotFound(f"There is no audit event {event_id}.")
        position = head.position
        if position is None:
            raise NotYetLogged(
                f"Audit event {event_id} has not been added to the log yet; "
                "the sequencer adds new events every few seconds."
            )
        checkpoint = head if head.tree_size is not None else None
        if tree_size is None:
            if checkpoint is None or checkpoint.tree_size <= position:
                raise NotYetLogged(
                    f"Audit event {event_id} is at position {position}, which no checkpoint "
                    "covers yet; try again after the next checkpoint."
                )
            tree_size = checkpoint.tree_size
        else:
            size = head.size or 0  # no state row yet: an empty log
            if not position < tree_size <= size:
                raise SizeOutOfRange(
                    f"tree_size must be above the event's position {position} and at most the "
                    f"log's size {size}.",
                    field="tree_size",
                )
        ranges = inclusion_proof_ranges(position, tree_size)
        if checkpoint is not None:
            proof, root = stored_proof(self.session, ranges), checkpoint.root_hash
        else:  # the root from the stored nodes, read with the proof's
            *proof, root = stored_proof(self.session, [*ranges, (0, tree_size)])
        entry: bytes | None = canonical_bytes(cast(AuditEvent, head))
        withheld = None
        if self._names_a_honeytoken(head):
            entry, withheld = None, WITHHELD_HONEYTOKEN
        return InclusionProof(
            event_id=event_id,
            entry=entry,
            leaf_hash=bytes(head.leaf_hash),
            leaf_index=position,
            tree_size=tree_size,
            root_hash=root,
            proof=proof,
            checkpoint=text_of(cast(Checkpoint, checkpoint), self.key) if checkpoint else None,
            withheld=withheld,
        )

    def _names_a_honeytoken(self, event: Any) -> bool:
        """Whether the logged entry would show this reader a honeytoken id (in its details
        or object id). The entry cannot be redacted (its bytes are what the leaf hashes),
        so a reader without ``honeytokens:manage`` gets it withheld, as the event list
        shows the marker in its place. No query for a honeytoken manager."""
        if self.principal.can(Permission.HONEYTOKENS_MANAGE):
            return False
        refs = [str(event.object_id)] if event.object_id is not None else []
        details = event.details if isinstance(event.details, dict) else None
        redaction = redaction_for(self.session, self.principal, evidence=[details], refs=refs)
        return bool(redaction.hidden)

    def consistency(self, first: int, second: int) -> ConsistencyProof:
        """The RFC 9162 proof that the tree of ``first`` entries is a prefix of ``second``."""
        self.principal.require(Permission.AUDIT_VIEW)
        size = self._size()
        if not 1 <= first <= second <= size:
            raise SizeOutOfRange(
                f"need 1 <= first <= second <= {size} (the log's size); "
                f"got first={first}, second={second}.",
                field="second" if second > size else "first",
            )
        # the proof and both roots, from one read of the stored hashes
        *proof, first_root, second_root = stored_proof(
            self.session, [*consistency_proof_ranges(first, second), (0, first), (0, second)]
        )
        return ConsistencyProof(first, second, first_root, second_root, proof)
