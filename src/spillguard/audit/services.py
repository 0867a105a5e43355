"""Read-only services over the log: checkpoints, proofs and the log's public key.

Every method checks ``AUDIT_VIEW`` first. Errors are domain errors, which the app turns
into RFC 9457 problems and the CLI into one ``error:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.checkpoints import LogKey, Signer, origin_for
from spillguard.audit.log import get_state, latest_checkpoint, stored_proof, stored_root, text_of
from spillguard.audit.merkle import consistency_proof_ranges, inclusion_proof_ranges
from spillguard.audit.models import Checkpoint, LogLeaf
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


@dataclass(frozen=True)
class InclusionProof:
    event_id: int
    entry: bytes
    leaf_index: int
    tree_size: int
    root_hash: bytes
    proof: list[bytes]
    checkpoint: str | None  # the signed checkpoint of tree_size, when there is one


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
        """
        self.principal.require(Permission.AUDIT_VIEW)
        event = self.session.get(AuditEvent, event_id)
        if event is None:
            raise AuditEventNotFound(f"There is no audit event {event_id}.")
        position = self.session.scalar(select(LogLeaf.position).where(LogLeaf.event_id == event_id))
        if position is None:
            raise NotYetLogged(
                f"Audit event {event_id} has not been added to the log yet; "
                "the sequencer adds new events within a minute."
            )
        if tree_size is None:
            checkpoint = latest_checkpoint(self.session)
            if checkpoint is None or checkpoint.tree_size <= position:
                raise NotYetLogged(
                    f"Audit event {event_id} is at position {position}, which no checkpoint "
                    "covers yet; try again after the next checkpoint."
                )
            tree_size = checkpoint.tree_size
        else:
            size = self._size()
            if not position < tree_size <= size:
                raise SizeOutOfRange(
                    f"tree_size must be above the event's position {position} and at most the "
                    f"log's size {size}.",
                    field="tree_size",
                )
            checkpoint = self.session.scalar(
                select(Checkpoint).where(Checkpoint.tree_size == tree_size)
            )
        proof = stored_proof(self.session, inclusion_proof_ranges(position, tree_size))
        root = checkpoint.root_hash if checkpoint else stored_root(self.session, tree_size)
        return InclusionProof(
            event_id=event_id,
            entry=canonical_bytes(event),
            leaf_index=position,
            tree_size=tree_size,
            root_hash=root,
            proof=proof,
            checkpoint=text_of(checkpoint, self.key) if checkpoint else None,
        )

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
        proof = stored_proof(self.session, consistency_proof_ranges(first, second))
        return ConsistencyProof(
            first,
            second,
            stored_root(self.session, first),
            stored_root(self.session, second),
            proof,
        )
