"""The log in the database: the sequencer, stored-node reads, checkpoints, witnessing.

The **sequencer** appends every committed audit event that is not yet in the log, in id
order as of the moment it runs, each exactly once, at dense positions 0..n-1. Event ids
come from a database sequence and transactions commit out of order, so an event with a
smaller id can become visible after a larger one was logged: each run therefore looks at
every event above the largest id logged *and* at recent events not yet logged (those that
occurred up to :data:`STRAGGLER_WINDOW` before the previous run), so a late committer is
appended by the next run, after the events that overtook it.

Two sequencers never both append: the scheduled job and ``spillguard audit sequence``
both hold the ``audit.sequencer`` lease of ``job_leases`` (core.jobs) while they run, and
as a backstop the state row is updated only if the size is still the one the run started
from, and positions and event ids are unique, so a racing run fails and rolls back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import structlog
from sqlalchemy import DateTime, and_, event, exists, select, text, update
from sqlalchemy.engine import processors
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.append import LogAppender
from spillguard.audit.checkpoints import (
    Signer,
    checkpoint_body,
    checkpoint_text,
    origin_for,
)
from spillguard.audit.merkle import (
    HASH_SIZE,
    CompactRange,
    Range,
    leaf_hash,
    perfect_subtrees,
    proof_from_ranges,
)
from spillguard.audit.models import STATE_ROW, Checkpoint, LogLeaf, LogState
from spillguard.core.audit import canonical_bytes
from spillguard.core.db import affected, transaction, utcnow
from spillguard.core.jobs import OWNER, Job, claim, finish
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

log = structlog.get_logger("spillguard.audit")

JOB_NAME = "audit.sequencer"
STRAGGLER_WINDOW = timedelta(hours=1)
"""How long before a sequencing run an event may have occurred and still be committed
after it: its transaction's longest plausible duration. ``audit verify`` reports an event
missing from the log that occurred earlier than this before the last run."""
BATCH = 5000
NEW_BATCH = 5000
"""Events read (and leaves and nodes written) per round trip above the largest logged id."""
LEASE_SECONDS = 600.0
WITNESS_FILE = "audit-checkpoints.txt"


class SequencerBusy(Exception):
    """Another process holds the sequencer lease."""


class ConcurrentAppend(Exception):
    """The log grew while this run was appending: another sequencer won; nothing was kept."""


class LogCorrupt(Exception):
    """A node a proof needs is missing from the store."""


# --- reading stored nodes ------------------------------------------------------------


def event_leaf(event: Any) -> bytes:
    """The leaf hash of an event row (an ``AuditEvent`` or a row with the same columns)."""
    return leaf_hash(canonical_bytes(cast(AuditEvent, event)))


# --- the fast path: raw DBAPI values to leaf hashes ----------------------------------------
#
# Appending and verifying read millions of event rows; going through SQLAlchemy's rows and
# ``canonical_bytes`` costs more than everything else together. The functions below give
# the same bytes from the same values, by construction:
#
# * :class:`EventDecoder` applies to each raw DBAPI value the very result processor
#   SQLAlchemy would (the ``UTCDateTime`` and ``JSON`` types of this dialect), so each
#   value is what ``AuditEvent`` or a Core row would hold;
# * :func:`canonical_values` writes the JSON object that ``canonical_bytes`` builds, with
#   its keys already in sorted order, and each value encoded by the function
#   ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` itself
#   applies to it: ``encode_basestring`` for a ``str``, the same encoder configuration for
#   anything else (``None``, ``int``, the details). ``tests/unit/audit/
#   test_verify_fast.py`` checks the equality on odd values with hypothesis.

EVENT_COLUMNS = (
    "id",
    "occurred_at",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "actor_label",
    "object_type",
    "object_id",
    "source_ip",
    "request_id",
    "details",
)
"""The columns of ``audit_events`` that ``canonical_bytes`` reads, in this order."""

_encode_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses
_encode_any = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_sha256 = hashlib.sha256


def _json(value: Any) -> str:
    """``value`` as ``json.dumps`` encodes it inside the canonical object."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return int.__repr__(value)  # what json's encoder calls for an int
    if value is None:
        return "null"
    return _encode_any(value)


def canonical_values(
    id_: Any,
    occurred_at: datetime,
    action: Any,
    outcome: Any,
    actor_type: Any,
    actor_id: Any,
    actor_label: Any,
    object_type: Any,
    object_id: Any,
    source_ip: Any,
    request_id: Any,
    details: Any,
) -> bytes:
    """``canonical_bytes`` of an event given its decoded values (in :data:`EVENT_COLUMNS`)."""
    s, j = _encode_str, _json  # the common types inline, anything else through _json
    return (
        f'{{"action":{s(action) if type(action) is str else j(action)},'
        f'"actor_id":{j(actor_id)},'
        f'"actor_label":{s(actor_label) if type(actor_label) is str else j(actor_label)},'
        f'"actor_type":{s(actor_type) if type(actor_type) is str else j(actor_type)},'
        f'"details":{j(details)},"id":{j(id_)},'
        f'"object_id":{s(object_id) if type(object_id) is str else j(object_id)},'
        f'"object_type":{s(object_type) if type(object_type) is str else j(object_type)},'
        f'"occurred_at":{s(occurred_at.isoformat())},'
        f'"outcome":{s(outcome) if type(outcome) is str else j(outcome)},'
        f'"request_id":{s(request_id) if type(request_id) is str else j(request_id)},'
        f'"source_ip":{s(source_ip) if type(source_ip) is str else j(source_ip)}}}'
    ).encode()


class EventDecoder:
    """Raw DBAPI values of :data:`EVENT_COLUMNS` to the values SQLAlchemy would return."""

    def __init__(self, dialect: Dialect) -> None:
        table = AuditEvent.__table__
        processors_ = [
            table.c[name].type._cached_result_processor(dialect, None) for name in EVENT_COLUMNS
        ]
        self._processors = [(i, p) for i, p in enumerate(processors_) if p is not None]
        self.columns = ", ".join(f'"{name}"' for name in EVENT_COLUMNS)
        # The fast path (fast_leaf) repeats what these processors do, so it is used only
        # where they are the ones it was written for: SQLite's text timestamps parsed by
        # datetime.fromisoformat or psycopg's own datetimes, and json.loads for details.
        # On PostgreSQL the details are read as text (``fast_columns``) and json.loads
        # is what psycopg would apply to the same UTF-8 text.
        impl = DateTime(timezone=True)._cached_result_processor(dialect, None)
        self._text_times = impl is processors.str_to_datetime
        self.fast = (
            getattr(dialect, "_json_deserializer", None) is None
            and (self._text_times or impl is None)
            and dialect.name in {"sqlite", "postgresql"}
        )
        self._details_text = dialect.name == "postgresql"
        self.fast_columns = ", ".join(
            '"details"::text' if name == "details" and self._details_text else f'"{name}"'
            for name in EVENT_COLUMNS
        )
        self._scalars = frozenset((str, int, type(None), str if self._text_times else datetime))

    def leaf(self, raw: Sequence[Any]) -> bytes:
        """The leaf hash of one event from its raw values."""
        values = list(raw)
        for i, process in self._processors:
            values[i] = process(values[i])
        return _sha256(b"\x00" + canonical_values(*values)).digest()

    def decode(self, raw: Sequence[Any]) -> dict[str, Any]:
        """The decoded values by column name (for the slow path and error messages)."""
        values = list(raw)
        for i, process in self._processors:
            values[i] = process(values[i])
        return dict(zip(EVENT_COLUMNS, values, strict=True))

    def fast_leaf(self, raw: Sequence[Any]) -> bytes | None:
        """The leaf hash of one event from values read with :attr:`fast_columns`, or None.

        None means the values are outside what this path is proven (and tested) to
        encode exactly as ``canonical_bytes`` does: a float anywhere (orjson writes some
        differently), a type other than str/int/None, an int beyond 64 bits, a lone
        surrogate, a timestamp or details text the standard parsers reject. The caller
        then takes :meth:`text_leaf`, the processors' way.
        """
        if not self.fast or not self._scalars.issuperset(map(type, raw)):
            return None
        (id_, when, action, outcome, actor_type, actor_id, actor_label) = raw[:7]
        (object_type, object_id, source_ip, request_id, details) = raw[7:]
        try:
            if self._text_times:
                if type(when) is not str:
                    return None
                when = _fromisoformat(when)  # = SQLAlchemy's str_to_datetime
            elif type(when) is not datetime:
                return None
            if type(details) is not str:
                return None
            # json.loads(details) without its Python wrappers: the same C scanner from
            # the first character, and all of the text consumed (else let json.loads
            # decide: leading or trailing white space, or an error)
            value, end = _scan(details, 0)
            if end != len(details):
                return None
            # = UTCDateTime.process_result_value, then isoformat as canonical_bytes does
            # (a naive time made UTC prints as itself plus "+00:00")
            if when.tzinfo is None:
                occurred_at = when.isoformat() + "+00:00"
            else:
                occurred_at = when.astimezone(UTC).isoformat()
        except (ValueError, StopIteration, OverflowError):  # the processors raise too
            return None
        if type(value) is dict:
            if not _JSON_SCALARS.issuperset(map(type, value.values())) and not _plain_json(value):
                return None
        elif not _plain_json(value):
            return None
        body = {  # the keys of canonical_bytes, already in order; orjson sorts details
            "action": action,
            "actor_id": actor_id,
            "actor_label": actor_label,
            "actor_type": actor_type,
            "details": value,
            "id": id_,
            "object_id": object_id,
            "object_type": object_type,
            "occurred_at": occurred_at,
            "outcome": outcome,
            "request_id": request_id,
            "source_ip": source_ip,
        }
        try:
            data = _dumps(body, option=_SORT_KEYS)
        except orjson.JSONEncodeError:  # an int beyond 64 bits, a lone surrogate
            return None
        return _sha256(b"\x00" + data).digest()

    def text_leaf(self, raw: Sequence[Any]) -> bytes:
        """The leaf from values read with :attr:`fast_columns`, through the processors."""
        if self._details_text:
            values = list(raw)
            values[-1] = None if raw[-1] is None else json.loads(raw[-1])
            return self.leaf(values)
        return self.leaf(raw)


_fromisoformat = datetime.fromisoformat
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # = json.loads
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_JSON_SCALARS = frozenset((str, int, bool, type(None)))


def _plain_json(value: Any) -> bool:
    """Whether a json.loads value holds only dicts, lists, str, int, bool and None.

    orjson writes those exactly as ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` does (tests/unit/audit/test_verify_fast.py); not floats.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is dict:
        return all(_plain_json(v) for v in value.values())
    if kind is list:
        return all(_plain_json(v) for v in value)
    return False


# One round trip for any set of stored hashes: the leaves by position and the nodes by
# (level, index), the wanted pairs bound as arrays (PostgreSQL) or a JSON array (SQLite)
# so the statement text never changes. Both are joined to the primary key: PostgreSQL
# probes it once per wanted pair (the array's length is known to the planner), SQLite
# loops over json_each and looks each pair up (a row-value IN would scan the table).
_READ_NODES_PG = text(
    'SELECT 0, "position", "leaf_hash" FROM "audit_log_leaves" '
    'WHERE "position" = ANY(CAST(:positions AS BIGINT[])) '
    'UNION ALL SELECT n."level", n."index", n."hash" '
    'FROM unnest(CAST(:levels AS INTEGER[]), CAST(:indexes AS BIGINT[])) AS w("level", "index") '
    'JOIN "audit_log_nodes" AS n ON n."level" = w."level" AND n."index" = w."index"'
)
_READ_NODES_SQLITE = text(
    'SELECT 0, "position", "leaf_hash" FROM "audit_log_leaves" '
    'WHERE "position" IN (SELECT "value" FROM json_each(:positions)) '
    'UNION ALL SELECT n."level", n."index", n."hash" FROM json_each(:nodes) AS w '
    'JOIN "audit_log_nodes" AS n ON n."level" = w."value" ->> 0 AND n."index" = w."value" ->> 1'
)


def read_nodes(session: Session, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Fetch stored perfect-subtree hashes, in one query: level 0 from the leaves, above
    from the nodes. Pairs that are not stored are absent from the result."""
    pairs = set(wanted)
    positions = [i for level, i in pairs if level == 0]
    nodes = [(level, i) for level, i in pairs if level > 0]
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            _READ_NODES_PG,
            {
                "positions": positions,
                "levels": [level for level, _ in nodes],
                "indexes": [i for _, i in nodes],
            },
        )
    else:
        rows = conn.execute(
            _READ_NODES_SQLITE,
            {"positions": json.dumps(positions), "nodes": json.dumps(nodes)},
        )
    return {(level, index): bytes(h) for level, index, h in rows}


def stored_proof(session: Session, ranges: list[Range]) -> list[bytes]:
    """The proof nodes for ``ranges`` (from merkle's *_ranges functions), from the store."""
    wanted = [node for lo, hi in ranges for node in perfect_subtrees(lo, hi)]
    found = read_nodes(session, wanted)

    def read(level: int, index: int) -> bytes:
        try:
            return found[(level, index)]
        except KeyError:
            raise LogCorrupt(f"stored node (level {level}, index {index}) is missing") from None

    return proof_from_ranges(ranges, read)


def stored_root(session: Session, size: int) -> bytes:
    """The root hash of the first ``size`` entries, from stored nodes."""
    if size == 0:
        return CompactRange().root()
    return stored_proof(session, [(0, size)])[0]


def frontier_at(session: Session, size: int) -> CompactRange:
    """A compact range of the first ``size`` entries, from stored nodes."""
    nodes = perfect_subtrees(0, size)
    found = read_nodes(session, nodes)
    missing = [n for n in nodes if n not in found]
    if missing:
        level, index = missing[0]
        raise LogCorrupt(f"stored node (level {level}, index {index}) is missing")
    return CompactRange(size, [found[n] for n in nodes])


# --- state ---------------------------------------------------------------------------


def get_state(session: Session) -> LogState:
    """The log's state row, created empty on first use."""
    state = session.get(LogState, STATE_ROW)
    if state is None:
        try:
            with session.begin_nested():
                session.add(LogState(id=STATE_ROW, size=0, frontier=b"", max_event_id=0))
        except IntegrityError:
            pass  # another process created it first
        state = session.get(LogState, STATE_ROW)
        assert state is not None
    return state


def split_frontier(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


# --- sequencing ----------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceResult:
    appended: int
    size: int
    checkpoint: Checkpoint | None
    # Filled after the commit if the new checkpoint could not be written to the witness
    # file (the checkpoint itself stands; the CLI reports it, the server logs it).
    witness_errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        made = f", checkpoint at {self.checkpoint.tree_size}" if self.checkpoint else ""
        return f"appended {self.appended}, size {self.size}{made}"


def append_pending(session: Session, *, now: datetime, sweep: bool = False) -> tuple[int, int]:
    """Append every committed event not yet in the log; return (appended, new size).

    ``sweep`` considers every event, however old (``spillguard audit sequence --sweep``);
    otherwise only events above the largest logged id and those that occurred up to
    :data:`STRAGGLER_WINDOW` before the previous run.

    Two passes, in id order: first the stragglers, events at or below the largest logged
    id (``max_event_id``) that are not in the log, found with an anti-join on the leaves;
    then every event above ``max_event_id``, none of which can be in the log, read
    without one (audit.append, raw DBAPI rows). Every straggler's id is below every new
    event's, so the order is the one a single "unlogged, by id" query gives.
    """
    state = get_state(session)
    start_size = state.size
    tree = CompactRange(state.size, split_frontier(state.frontier))
    max_id = state.max_event_id
    events = AuditEvent.__table__
    conn = session.connection()  # Core rows, raw DBAPI rows: the ORM layer adds nothing here
    decoder = EventDecoder(conn.dialect)
    appender = LogAppender(conn, decoder.fast_columns, now)
    sequenced_at = appender.sequenced_at
    sha256 = _sha256
    appended = 0

    def extend(ids_and_leaves: Iterable[tuple[int, bytes]]) -> None:
        nonlocal appended
        leaves: list[tuple[int, int, bytes, Any]] = []
        nodes: list[tuple[int, int, bytes]] = []
        extend_one = tree.extend_one
        for event_id, h in ids_and_leaves:
            leaves.append((tree.size, event_id, h, sequenced_at))
            nodes += extend_one(h)
        appender.write(leaves, nodes)
        appended += len(leaves)

    if max_id > 0:
        unlogged = ~exists(select(LogLeaf.position).where(LogLeaf.event_id == events.c.id))
        if sweep or state.last_run_at is None:
            window = events.c.id <= max_id
        else:
            window = and_(
                events.c.id <= max_id,
                events.c.occurred_at >= state.last_run_at - STRAGGLER_WINDOW,
            )
        after = 0
        while True:
            rows = conn.execute(
                select(*(events.c[name] for name in EVENT_COLUMNS))
                .where(window, unlogged, events.c.id > after)
                .order_by(events.c.id)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            # = event_leaf(row): the same values, canonical_values instead of the dict
            extend((row[0], sha256(b"\x00" + canonical_values(*row)).digest()) for row in rows)
            after = rows[-1][0]

    # The leaf as verify computes it: the proven fast path, else the processors' way.
    fast_leaf, text_leaf = decoder.fast_leaf, decoder.text_leaf
    for raw in appender.events_above(max_id, NEW_BATCH):
        extend((row[0], fast_leaf(row) or text_leaf(row)) for row in raw)
        max_id = raw[-1][0]  # ids ascend
    done = session.execute(
        update(LogState)
        .where(LogState.id == STATE_ROW, LogState.size == start_size)
        .values(
            size=tree.size,
            frontier=b"".join(tree.frontier),
            max_event_id=max_id,
            last_run_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if affected(done) != 1:
        raise ConcurrentAppend("another sequencer appended to the log during this run")
    session.expire(state)
    return appended, tree.size


def latest_checkpoint(session: Session) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1))


def make_checkpoint(
    session: Session, signer: Signer, settings: Settings, *, now: datetime, force: bool = False
) -> Checkpoint | None:
    """Sign the log's current size and root if it grew and the interval has passed."""
    state = get_state(session)
    latest = latest_checkpoint(session)
    if state.size == 0 or (latest is not None and latest.tree_size >= state.size):
        return None
    interval = timedelta(seconds=settings.audit_checkpoint_interval_seconds)
    if not force and latest is not None and latest.created_at > now - interval:
        return None
    root = CompactRange(state.size, split_frontier(state.frontier)).root()
    origin = origin_for(settings.installation)
    created = now.replace(microsecond=0)
    body = checkpoint_body(origin, state.size, root, created)
    checkpoint = Checkpoint(
        tree_size=state.size,
        root_hash=root,
        created_at=created,
        origin=origin,
        key_id=signer.key.key_id,
        signature=signer.sign(body.encode()),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def text_of(checkpoint: Checkpoint, signer_key: Any) -> str:
    """The signed-note text of a stored checkpoint."""
    body = checkpoint_body(
        checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash, checkpoint.created_at
    )
    return checkpoint_text(body, signer_key, checkpoint.origin, checkpoint.signature)


def witness_path(directory: Path) -> Path:
    return directory / WITNESS_FILE


def write_witness(directory: Path, text: str) -> None:
    """Append one checkpoint to the witness file (created 0600), flushed to disk."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(witness_path(directory), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def sequence(
    session: Session,
    keys: KeyRing,
    settings: Settings,
    *,
    now: datetime | None = None,
    sweep: bool = False,
    witness_dir: Path | None = None,
) -> SequenceResult:
    """One sequencing run inside the caller's transaction: append, then maybe checkpoint.

    A new checkpoint is written to the witness directory only after the transaction
    commits, so a witness never holds a checkpoint the database rolled back.
    """
    now = now or utcnow()
    appended, size = append_pending(session, now=now, sweep=sweep)
    signer = Signer(keys)
    checkpoint = make_checkpoint(session, signer, settings, now=now)
    directory = witness_dir or settings.audit_witness_dir
    if checkpoint is not None and directory is not None:
        text = text_of(checkpoint, signer.key)

        result = SequenceResult(appended, size, checkpoint)

        def witness(_session: Session) -> None:
            try:
                write_witness(directory, text)
            except OSError as exc:
                log.error("audit_witness_failed", directory=str(directory), error=str(exc))
                result.witness_errors.append(f"{witness_path(directory)}: {exc.strerror or exc}")

        event.listen(session, "after_commit", witness, once=True)
        return result
    return SequenceResult(appended, size, checkpoint)


def sequencer_job(settings: Settings, keys: KeyRing) -> Job:
    """The scheduled sequencer; core.jobs' lease makes it run in one process at a time."""
    return Job(
        JOB_NAME,
        settings.audit_sequence_interval_seconds,
        lambda session: sequence(session, keys, settings),
        lease_seconds=LEASE_SECONDS,
    )


def run_sequencer(
    factory: sessionmaker[Session],
    keys: KeyRing,
    settings: Settings,
    *,
    sweep: bool = False,
    witness_dir: Path | None = None,
    owner: str = OWNER,
    run: Callable[..., SequenceResult] = sequence,
) -> SequenceResult:
    """Run the sequencer now (CLI, tests) under the same lease as the scheduled job.

    Raises :class:`SequencerBusy` when another process holds the lease.
    """
    job = Job(JOB_NAME, 0, lambda _s: None, lease_seconds=LEASE_SECONDS)
    with transaction(factory) as session:
        if not claim(session, job, owner):
            raise SequencerBusy("another process is sequencing the audit log; try again")
    outcome = "failed"
    try:
        with transaction(factory) as session:
            result = run(session, keys, settings, sweep=sweep, witness_dir=witness_dir)
        outcome = f"ok {result}"
        return result
    finally:
        with transaction(factory) as session:
            finish(session, job, outcome, owner)


def checkpoint_root_b64(checkpoint: Checkpoint) -> str:
    return base64.b64encode(checkpoint.root_hash).decode()
