"""`spillguard audit verify`: recompute the log from the event rows and check every claim.

Walks the leaves in position order, in batches, and for each position checks that it
exists (positions are dense), that its event row exists and that the leaf hash is the
hash of the row's canonical bytes now; rebuilds the tree and checks every stored interior
node against it; at each checkpoint's size checks the signature and the root; checks
that consecutive checkpoints are consistent (RFC 9162 proof from the stored nodes);
finally that no checkpoint (stored, or from a witness file) is beyond the log's end and
that no event older than the last sequencing run is missing from the log.

The first problem found, in position order, stops the walk: :class:`Tampered` names the
position, the event and why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from spillguard.audit.checkpoints import (
    CheckpointError,
    LogKey,
    ParsedCheckpoint,
    checkpoint_body,
)
from spillguard.audit.log import (
    BATCH,
    STRAGGLER_WINDOW,
    LogCorrupt,
    event_leaf,
    frontier_at,
    get_state,
    stored_proof,
)
from spillguard.audit.merkle import (
    CompactRange,
    ProofError,
    consistency_proof_ranges,
    verify_consistency,
)
from spillguard.audit.models import Checkpoint, LogLeaf, LogNode
from spillguard.core.models import AuditEvent


class Tampered(Exception):
    """The log is not what its checkpoints and event rows say; the message says where."""


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    checkpoints: int
    witnessed: int


@dataclass(frozen=True)
class _Claim:
    """A (size, root) the log must reproduce: a stored checkpoint or a witnessed one."""

    size: int
    root: bytes
    label: str
    body: str
    signature: bytes
    key_id: str | None = None  # stored checkpoints
    parsed: ParsedCheckpoint | None = None  # witnessed ones


def _check_signature(claim: _Claim, key: LogKey) -> None:
    try:
        if claim.parsed is not None:
            claim.parsed.verify(key)
        else:
            if claim.key_id != key.key_id:
                raise CheckpointError(f"signed by key {claim.key_id}, not the log's {key.key_id}")
            key.verify(claim.body.encode(), claim.signature)
    except CheckpointError as exc:
        raise Tampered(f"{claim.label}: {exc} (forged?)") from None


def verify_log(
    session: Session,
    key: LogKey,
    *,
    start: int = 0,
    end: int | None = None,
    against: list[ParsedCheckpoint] | None = None,
) -> VerifyResult:
    """Verify positions ``[start, end)`` (default: the whole log); raise :class:`Tampered`."""
    state = get_state(session)
    size = session.scalar(select(func.count()).select_from(LogLeaf)) or 0
    whole = end is None
    stop = size if end is None else end
    if start < 0 or stop < start:
        raise ValueError(f"--from {start} --to {stop}: not a range of positions")
    if stop > size:
        raise Tampered(f"the log has {size} entries, fewer than --to {stop}")

    claims: dict[int, list[_Claim]] = defaultdict(list)
    stored = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.tree_size > start, Checkpoint.tree_size <= stop)
        .order_by(Checkpoint.tree_size)
    ).all()
    for cp in stored:
        body = checkpoint_body(cp.origin, cp.tree_size, cp.root_hash, cp.created_at)
        label = f"checkpoint at size {cp.tree_size}"
        claims[cp.tree_size].append(
            _Claim(cp.tree_size, cp.root_hash, label, body, cp.signature, key_id=cp.key_id)
        )
    witnessed = 0
    for parsed in against or ():
        label = f"witnessed checkpoint at size {parsed.size}"
        _check_signature(
            _Claim(parsed.size, parsed.root, label, parsed.body, parsed.signature, parsed=parsed),
            key,
        )
        if parsed.size > size:
            raise Tampered(f"{label} is beyond the log's {size} entries (truncated?)")
        if start < parsed.size <= stop:
            claims[parsed.size].append(
                _Claim(
                    parsed.size, parsed.root, label, parsed.body, parsed.signature, parsed=parsed
                )
            )
            witnessed += 1

    try:
        tree = frontier_at(session, start) if start else CompactRange()
    except LogCorrupt as exc:
        raise Tampered(f"cannot start at position {start}: {exc}") from None
    previous: Checkpoint | None = session.scalar(
        select(Checkpoint)
        .where(Checkpoint.tree_size <= start)
        .order_by(Checkpoint.tree_size.desc())
        .limit(1)
    )
    by_size = {cp.tree_size: cp for cp in stored}
    events = AuditEvent.__table__
    conn = session.connection()
    position = start
    while position < stop:
        batch_end = min(stop, position + BATCH)
        # Core rows straight from the connection: the ORM layer adds nothing here.
        rows = conn.execute(
            select(LogLeaf.position, LogLeaf.event_id, LogLeaf.leaf_hash, events)
            .outerjoin(events, events.c.id == LogLeaf.event_id)
            .where(LogLeaf.position >= position, LogLeaf.position < batch_end)
            .order_by(LogLeaf.position)
        ).all()
        nodes = _stored_nodes(session, position, batch_end)
        for row in rows:
            where = f"position {row.position} (event {row.event_id})"
            if row.position != position:
                raise Tampered(
                    f"position {position} is missing: the next entry is at {row.position} "
                    "(deleted?)"
                )
            if row.id is None:
                raise Tampered(f"{where}: the event row is missing (deleted?)")
            if event_leaf(row) != bytes(row.leaf_hash):
                raise Tampered(f"{where}: leaf does not match the event row (edited?)")
            for node in tree.append(bytes(row.leaf_hash))[1:]:
                stored_hash = nodes.get((node.level, node.index))
                if stored_hash != node.hash:
                    lo, hi = node.index << node.level, (node.index + 1) << node.level
                    what = "is missing" if stored_hash is None else "does not match the leaves"
                    raise Tampered(
                        f"positions {lo}-{hi - 1}: stored node (level {node.level}, index "
                        f"{node.index}) {what} (a leaf hash or the node edited?)"
                    )
            position += 1
            for claim in claims.get(position, ()):
                _check_signature(claim, key)
                if claim.root != tree.root():
                    low = previous.tree_size if previous is not None else 0
                    raise Tampered(
                        f"{claim.label}: root hash does not match the log; an entry between "
                        f"positions {low} and {position - 1} differs from what was signed "
                        "(rewritten?)"
                    )
            current = by_size.get(position)
            if current is not None:
                if previous is not None:
                    _check_consistency(session, previous, current)
                previous = current
        if position < batch_end:
            raise Tampered(f"position {position} is missing (deleted or truncated?)")

    if whole:
        beyond = session.scalar(
            select(Checkpoint.tree_size)
            .where(Checkpoint.tree_size > size)
            .order_by(Checkpoint.tree_size)
            .limit(1)
        )
        if beyond is not None:
            raise Tampered(
                f"checkpoint at size {beyond} is beyond the log's {size} entries (truncated?)"
            )
        if state.size != size or b"".join(tree.frontier) != state.frontier:
            raise Tampered(
                f"the log's state says {state.size} entries, the leaves table has {size} "
                "(truncated or edited?)"
            )
        _check_all_sequenced(session, state.last_run_at)
    return VerifyResult(stop - start, len(stored), witnessed)


def _stored_nodes(session: Session, lo: int, hi: int) -> dict[tuple[int, int], bytes]:
    """Stored nodes (level >= 1) completed by appending positions ``[lo, hi)``."""
    conditions = []
    for level in range(1, max(hi, 1).bit_length() + 1):
        first, last = lo >> level, (hi >> level) - 1
        if last >= first:
            conditions.append(
                and_(LogNode.level == level, LogNode.index >= first, LogNode.index <= last)
            )
    if not conditions:
        return {}
    return {
        (level, index): bytes(h)
        for level, index, h in session.execute(
            select(LogNode.level, LogNode.index, LogNode.hash).where(or_(*conditions))
        )
    }


def _check_consistency(session: Session, old: Checkpoint, new: Checkpoint) -> None:
    try:
        proof = stored_proof(session, consistency_proof_ranges(old.tree_size, new.tree_size))
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    except (ProofError, LogCorrupt) as exc:
        raise Tampered(
            f"checkpoints at sizes {old.tree_size} and {new.tree_size} are not consistent: {exc}"
        ) from None


def _check_all_sequenced(session: Session, last_run_at: datetime | None) -> None:
    """No event that occurred well before the last sequencing run may be missing."""
    if last_run_at is None:
        return
    events = AuditEvent.__table__
    missing = session.execute(
        select(events.c.id, events.c.occurred_at)
        .where(
            events.c.occurred_at < last_run_at - STRAGGLER_WINDOW,
            ~exists(select(LogLeaf.position).where(LogLeaf.event_id == events.c.id)),
        )
        .order_by(events.c.id)
        .limit(1)
    ).first()
    if missing is not None:
        raise Tampered(
            f"event {missing.id} (occurred {missing.occurred_at:%Y-%m-%d %H:%M:%S} UTC) is not "
            "in the log, though the sequencer has run since (inserted afterwards, or its leaf "
            "deleted?)"
        )
