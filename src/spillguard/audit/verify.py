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

import hashlib
import itertools
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NoReturn

from sqlalchemy import exists, func, select
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
    EventDecoder,
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
from spillguard.core.audit import record_event
from spillguard.core.errors import InvalidInput
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal


class InvalidRange(InvalidInput):
    title = "Not a range of the log"
    slug = "audit-invalid-range"


class Tampered(Exception):
    """The log is not what its checkpoints and event rows say; the message says where."""


class VerifyAuditAction(StrEnum):
    # The checkpoint page (audit.browse) shows the latest of these.
    LOG_VERIFIED = "audit:log:verified"


def record_verification(
    session: Session,
    principal: Principal,
    *,
    start: int,
    end: int | None,
    result: VerifyResult | None,
    problem: str | None,
) -> None:
    """Record a verification run as an audit event (outcome ``success`` or ``failure``).

    Details are positions and counts, and on failure the one-line problem, which names
    positions and event ids, never an event's content.
    """
    details: dict[str, Any] = {"from": start, "to": end, "whole_log": start == 0 and end is None}
    if result is not None:
        details.update(
            entries=result.entries, checkpoints=result.checkpoints, witnessed=result.witnessed
        )
    if problem is not None:
        details["problem"] = problem
    record_event(
        session,
        principal,
        VerifyAuditAction.LOG_VERIFIED,
        object_type="audit_log",
        outcome="success" if problem is None else "failure",
        details=details,
    )


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


@dataclass(frozen=True)
class _Signed:
    """A stored checkpoint's size and root (what the consistency checks read)."""

    tree_size: int
    root_hash: bytes


PARALLEL_MIN_ENTRIES = 400_000
"""Below this many entries per worker, one process verifies faster than starting more."""


def default_workers() -> int:
    """Worker processes ``audit verify`` uses by default: one per CPU."""
    return max(1, os.cpu_count() or 1)


def verify_log(
    session: Session,
    key: LogKey,
    *,
    start: int = 0,
    end: int | None = None,
    against: list[ParsedCheckpoint] | None = None,
    workers: int = 1,
) -> VerifyResult:
    """Verify positions ``[start, end)`` (default: the whole log); raise :class:`Tampered`.

    With ``workers > 1`` and a large enough range (a file or server database), separate
    processes verify consecutive ranges at once, each starting from the stored subtrees
    at its first position; the lowest range that fails names the first bad position, as
    the one-process walk would.
    """
    state = get_state(session)
    size = session.scalar(select(func.count()).select_from(LogLeaf)) or 0
    whole = end is None
    stop = size if end is None else end
    if start < 0 or stop < start:
        if end is None:
            raise InvalidRange(f"--from {start} is beyond the log's {size} entries")
        raise InvalidRange(f"--from {start} --to {stop}: not a range of positions")
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

    signed = [_Signed(cp.tree_size, cp.root_hash) for cp in stored]
    chunks = _chunks(start, stop, workers, _database_url(session))
    if len(chunks) > 1:
        frontier = _verify_parallel(chunks, key, dict(claims), signed, workers)
    else:
        frontier = _verify_range(session, key, start, stop, dict(claims), signed, BATCH)

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
        if state.size != size or b"".join(frontier) != state.frontier:
            raise Tampered(
                f"the log's state says {state.size} entries, the leaves table has {size} "
                "(truncated or edited?)"
            )
        _check_all_sequenced(session, state.last_run_at)
    return VerifyResult(stop - start, len(stored), witnessed)


# --- one range, in this process -------------------------------------------------------


def _verify_range(
    session: Session,
    key: LogKey,
    start: int,
    stop: int,
    claims: dict[int, list[_Claim]],
    signed: list[_Signed],
    batch: int,
) -> tuple[bytes, ...]:
    """Walk positions ``[start, stop)`` in batches; return the frontier at ``stop`` or raise."""
    try:
        tree = frontier_at(session, start) if start else CompactRange()
    except LogCorrupt as exc:
        raise Tampered(f"cannot start at position {start}: {exc}") from None
    row = session.execute(
        select(Checkpoint.tree_size, Checkpoint.root_hash)
        .where(Checkpoint.tree_size <= start)
        .order_by(Checkpoint.tree_size.desc())
        .limit(1)
    ).first()
    previous = None if row is None else _Signed(row.tree_size, bytes(row.root_hash))
    by_size = {cp.tree_size: cp for cp in signed if start < cp.tree_size <= stop}
    marks = set(by_size) | {n for n in claims if start < n <= stop}

    conn = session.connection()
    dialect = conn.dialect
    decoder = EventDecoder(dialect)
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("no DBAPI connection to read the log from")
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    leaves, events = LogLeaf.__tablename__, AuditEvent.__tablename__
    # Raw DBAPI rows: SQLAlchemy's result rows cost more than the hashing. The leaves of a
    # batch and their events are read apart: the events of consecutive positions have
    # (nearly always) ascending ids close together, and one range scan of the events is
    # far cheaper for the server than a join's index probe per leaf.
    leaf_sql = (  # identifiers from the models, values bound
        f'SELECT "position", "event_id", "leaf_hash" FROM "{leaves}" '  # noqa: S608
        f'WHERE "position" >= {mark} AND "position" < {mark} ORDER BY "position"'
    )
    event_sql = (
        f'SELECT {decoder.fast_columns} FROM "{events}" '  # noqa: S608
        f'WHERE "id" >= {mark} AND "id" <= {mark}'
    )
    fast_leaf, text_leaf = decoder.fast_leaf, decoder.text_leaf
    sha256 = hashlib.sha256
    frontier = list(tree.frontier)
    position = start
    # psycopg: binary rows (bytea and timestamps need no text parsing); sqlite3: plain.
    cursor = driver.cursor(binary=True) if dialect.driver == "psycopg" else driver.cursor()
    try:
        while position < stop:
            batch_end = min(stop, position + batch)
            cursor.execute(leaf_sql, (position, batch_end))
            rows = cursor.fetchall()
            by_id = _events_of(cursor, event_sql, [row[1] for row in rows], batch)
            nodes = _stored_nodes(cursor, mark, position, batch_end)
            for number, event_id, stored in rows:
                if number != position:
                    raise Tampered(
                        f"position {position} is missing: the next entry is at {number} (deleted?)"
                    )
                raw = by_id.get(event_id)
                if raw is None:
                    raise Tampered(
                        f"position {number} (event {event_id}): the event row is missing (deleted?)"
                    )
                current = stored if type(stored) is bytes else bytes(stored)
                computed = fast_leaf(raw)
                if computed is None:  # outside the fast path's proven values
                    computed = text_leaf(raw)
                if computed != current and not _slow_leaf_matches(session, event_id, current):
                    raise Tampered(
                        f"position {number} (event {event_id}): leaf does not match the event "
                        "row (edited?)"
                    )
                # CompactRange.append, inlined, checking each completed node as it goes.
                level, carry = 0, position
                while carry & 1:
                    current = sha256(b"\x01" + frontier.pop() + current).digest()
                    carry >>= 1
                    level += 1
                    stored_hash = nodes.get((level, position >> level))
                    if stored_hash != current:
                        _bad_node(level, position >> level, stored_hash)
                frontier.append(current)
                position += 1
                if position in marks:
                    previous = _check_at(
                        session, key, position, frontier, claims, by_size, previous
                    )
            if position < batch_end:
                raise Tampered(f"position {position} is missing (deleted or truncated?)")
    finally:
        cursor.close()
    return tuple(frontier)


def _events_of(cursor: Any, event_sql: str, ids: list[Any], batch: int) -> dict[Any, Sequence[Any]]:
    """The raw event rows of ``ids`` by id: one id-range scan when they lie close together
    (the usual case), else a range per run of close ids (late-committed events)."""
    found: dict[Any, Sequence[Any]] = {}
    wanted = sorted(i for i in ids if type(i) is int)
    lo = 0
    while lo < len(wanted):
        hi = lo
        # extend the run while the id range stays within twice the batch
        while hi + 1 < len(wanted) and wanted[hi + 1] - wanted[lo] < 2 * batch:
            hi += 1
        cursor.execute(event_sql, (wanted[lo], wanted[hi]))
        for row in cursor.fetchall():
            found[row[0]] = row
        lo = hi + 1
    return found


def _slow_leaf_matches(session: Session, event_id: Any, stored: bytes) -> bool:
    """Recompute a mismatching leaf the plain way (the ORM row, ``canonical_bytes``)."""
    event = session.execute(select(AuditEvent).where(AuditEvent.id == event_id)).scalar()
    if event is None:
        return False
    try:
        return event_leaf(event) == stored
    finally:
        session.expunge(event)


def _bad_node(level: int, index: int, stored_hash: bytes | None) -> NoReturn:
    lo, hi = index << level, (index + 1) << level
    what = "is missing" if stored_hash is None else "does not match the leaves"
    raise Tampered(
        f"positions {lo}-{hi - 1}: stored node (level {level}, index {index}) {what} "
        "(a leaf hash or the node edited?)"
    )


def _check_at(
    session: Session,
    key: LogKey,
    position: int,
    frontier: list[bytes],
    claims: dict[int, list[_Claim]],
    by_size: dict[int, _Signed],
    previous: _Signed | None,
) -> _Signed | None:
    """The checkpoints at size ``position``: signature, root, consistency with the last."""
    for claim in claims.get(position, ()):
        _check_signature(claim, key)
        if claim.root != CompactRange(position, frontier).root():
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
        return current
    return previous


def _stored_nodes(cursor: Any, mark: str, lo: int, hi: int) -> dict[tuple[int, int], bytes]:
    """Stored nodes (level >= 1) completed by appending positions ``[lo, hi)``."""
    conditions, params = [], []
    for level in range(1, max(hi, 1).bit_length() + 1):
        first, last = lo >> level, (hi >> level) - 1
        if last >= first:
            conditions.append(f'("level" = {mark} AND "index" >= {mark} AND "index" <= {mark})')
            params += [level, first, last]
    if not conditions:
        return {}
    cursor.execute(
        f'SELECT "level", "index", "hash" FROM "{LogNode.__tablename__}" '  # noqa: S608
        f"WHERE {' OR '.join(conditions)}",
        params,
    )
    return {(level, index): bytes(h) for level, index, h in cursor.fetchall()}


# --- ranges in parallel processes -----------------------------------------------------


def _database_url(session: Session) -> str | None:
    """The session's database URL, if other processes can open it (not in-memory SQLite)."""
    bind = session.get_bind()
    url = bind.engine.url
    if url.get_backend_name() == "sqlite" and (not url.database or ":memory:" in url.database):
        return None
    return url.render_as_string(hide_password=False)


def _chunks(start: int, stop: int, workers: int, url: str | None) -> list[tuple[str, int, int]]:
    """Split ``[start, stop)`` for ``workers`` processes, at the one-process batch edges."""
    if url is None or workers < 2 or stop - start < 2 * PARALLEL_MIN_ENTRIES:
        return [("", start, stop)]
    parts = min(workers * 4, max(2, (stop - start) // PARALLEL_MIN_ENTRIES))
    batches = -(-(stop - start) // BATCH)
    edges = [start + BATCH * (batches * k // parts) for k in range(parts)] + [stop]
    return [(url, lo, hi) for lo, hi in itertools.pairwise(edges) if lo < hi]


def _verify_parallel(
    chunks: list[tuple[str, int, int]],
    key: LogKey,
    claims: dict[int, list[_Claim]],
    signed: list[_Signed],
    workers: int,
) -> tuple[bytes, ...]:
    context = multiprocessing.get_context("spawn")
    frontier: tuple[bytes, ...] = ()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            pool.submit(
                _verify_chunk,
                url,
                key,
                lo,
                hi,
                {n: c for n, c in claims.items() if lo < n <= hi},
                [cp for cp in signed if lo < cp.tree_size <= hi],
                BATCH,  # the same batch edges as one process: the same messages
            )
            for url, lo, hi in chunks
        ]
        try:
            for future in futures:  # in position order: the lowest failing range wins
                frontier = future.result()
        finally:
            for future in futures:
                future.cancel()
    return frontier


def _verify_chunk(
    url: str,
    key: LogKey,
    start: int,
    stop: int,
    claims: dict[int, list[_Claim]],
    signed: list[_Signed],
    batch: int,
) -> tuple[bytes, ...]:
    """One worker process's range, on its own connection."""
    from spillguard.core.db import make_engine, make_session_factory

    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with make_session_factory(engine)() as session:
            return _verify_range(session, key, start, stop, claims, signed, batch)
    finally:
        engine.dispose()


def _check_consistency(session: Session, old: _Signed, new: _Signed) -> None:
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
