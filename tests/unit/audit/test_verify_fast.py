"""The fast paths of the audit log give the same answers as the plain ones.

* ``canonical_values`` is byte-identical to ``canonical_bytes`` on odd values
  (hypothesis): unicode, None, big ints, bools, floats, nested details, timestamps with
  and without microseconds;
* ``EventDecoder`` on raw DBAPI rows gives the leaf ``canonical_bytes`` gives on the ORM
  object, on SQLite and PostgreSQL, and the sequencer stores exactly those leaves;
* ``verify_log`` with worker processes reports what one process reports, for an intact
  log and for each kind of tampering, the lowest bad position first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from faker import Faker
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from spillguard.audit import merkle, verify
from spillguard.audit.checkpoints import Signer
from spillguard.audit.log import (
    EVENT_COLUMNS,
    EventDecoder,
    canonical_values,
    event_leaf,
    sequence,
)
from spillguard.audit.models import LogLeaf, LogNode
from spillguard.audit.verify import Tampered, verify_log
from spillguard.core.audit import AuditAction, canonical_bytes, record_event
from spillguard.core.db import transaction, utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

fake = Faker("en_GB")
SYSTEM = Principal.system("tests")

# --- canonical_values against canonical_bytes -------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)  # surrogates too
PLAIN_TEXT = st.text(max_size=30)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=15,
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), None])
TIMES = st.one_of(
    st.datetimes(timezones=ZONES),
    st.datetimes(timezones=ZONES).map(lambda d: d.replace(microsecond=0)),
)
FIELD = st.one_of(st.none(), PLAIN_TEXT, ANY_TEXT, st.integers(), st.booleans(), JSON_VALUES)


class _Text(str):
    """A str subclass: the fast path must not treat it as a plain str by accident."""


def _outcome(build: Callable[[], bytes]) -> bytes | type[BaseException]:
    try:
        return build()
    except Exception as exc:  # both must fail the same way (e.g. a lone surrogate)
        return type(exc)


@settings(max_examples=400, deadline=None)
@given(
    id_=st.one_of(st.integers(min_value=1, max_value=2**63), st.integers(), st.booleans()),
    occurred_at=TIMES,
    texts=st.lists(FIELD, min_size=9, max_size=9),
    actor_id=st.one_of(st.none(), st.integers(), st.integers(min_value=2**70)),
    details=st.one_of(JSON_VALUES, st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=6)),
    subclass=st.booleans(),
)
def test_canonical_values_equals_canonical_bytes_on_odd_values(
    id_: int,
    occurred_at: datetime,
    texts: list[Any],
    actor_id: int | None,
    details: Any,
    subclass: bool,
) -> None:
    if subclass:
        texts = [_Text(t) if type(t) is str else t for t in texts]
    action, outcome, actor_type, actor_label, object_type, object_id, ip, request, _ = texts
    values = [
        id_,
        occurred_at,
        action,
        outcome,
        actor_type,
        actor_id,
        actor_label,
        object_type,
        object_id,
        ip,
        request,
        details,
    ]
    event = SimpleNamespace(**dict(zip(EVENT_COLUMNS, values, strict=True)))
    slow = _outcome(lambda: canonical_bytes(event))  # type: ignore[arg-type]
    fast = _outcome(lambda: canonical_values(*values))
    assert fast == slow


def test_canonical_values_on_hand_picked_values() -> None:
    """A few values worth naming (hypothesis may not hit each every run)."""
    for details in (
        {},
        {"b": 1, "a": [1.5, None, True, "\u2603"], "é": {"z": {"y": -(2**80)}}},
        {"nan": math.nan, "inf": math.inf, "s": '"\\\n\t\x00\u2028𝄞'},
        [1, "x"],
        "a string",
        None,
        7,
    ):
        for when in (
            datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC),
            datetime(2026, 12, 3, 9, 0, 0, 1, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
        ):
            values = [
                2**62,
                when,
                "core:user:created",
                "success",
                "user",
                None,
                'Zoë "O\'Brien" \\ ☃',
                None,
                "",
                "::1",
                None,
                details,
            ]
            event = SimpleNamespace(**dict(zip(EVENT_COLUMNS, values, strict=True)))
            assert canonical_values(*values) == canonical_bytes(event)  # type: ignore[arg-type]


# --- raw rows on both databases ------------------------------------------------------


ODD_DETAILS: list[dict[str, Any]] = [
    {},
    {"note": 'Zoë ☃ 𝄞 "quoted" back\\slash\nnew line', "n": 2**53 + 1, "f": 0.1},
    {"nested": {"b": [1, {"z": None, "a": True}], "a": "x"}, "ünïcode-key": "\u2028"},
    {"big": -(10**18), "empty": [], "obj": {}},
]


def _odd_events(db: Session) -> list[int]:
    ids = []
    for n, details in enumerate(ODD_DETAILS * 3):
        event = record_event(
            db,
            SYSTEM,
            AuditAction.USER_CREATED,
            object_type=None if n % 2 else "user",
            object_id=None if n % 3 == 0 else f"{fake.random_int(1, 10**6)}-ø",
            details=details,
        )
        if n % 2:
            event.occurred_at = utcnow().replace(microsecond=0)
        elif n % 3 == 1:  # given in another zone: stored (and hashed) as UTC
            event.occurred_at = datetime.now(timezone(timedelta(hours=-7)))
        event.actor_label = None if n % 4 == 3 else fake.name() + " 𝄞"
        ids.append(event.id)
    db.commit()
    return ids


def test_raw_rows_give_the_orm_objects_leaves_and_the_sequencer_stores_them(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    ids = _odd_events(db)
    with transaction(app.state.session_factory) as session:
        assert sequence(session, keys, settings).appended == len(ids)
    conn = db.connection()
    decoder = EventDecoder(conn.dialect)
    driver = conn.connection.driver_connection
    assert driver is not None
    binary = conn.dialect.driver == "psycopg"  # as verify_log reads them
    cursor = driver.cursor(binary=True) if binary else driver.cursor()
    cursor.execute(f"SELECT {decoder.columns} FROM audit_events ORDER BY id")
    raw = cursor.fetchall()
    cursor.close()
    assert [r[0] for r in raw] == ids
    db.expire_all()
    for row in raw:
        event = db.get(AuditEvent, row[0])
        assert event is not None
        expected = merkle.leaf_hash(canonical_bytes(event))
        assert decoder.leaf(row) == expected
        assert decoder.decode(row) == {name: getattr(event, name) for name in EVENT_COLUMNS}
        stored = db.scalar(select(LogLeaf.leaf_hash).where(LogLeaf.event_id == row[0]))
        assert stored == expected == event_leaf(event)
    verify_log(db, Signer(keys).key)


# --- worker processes ------------------------------------------------------------------


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut a 40-entry log into parts of 4-8 entries (batches of 4) for the workers."""
    monkeypatch.setattr(verify, "BATCH", 4)
    monkeypatch.setattr(verify, "PARALLEL_MIN_ENTRIES", 4)


@pytest.fixture
def log40(app: FastAPI, db: Session, keys: KeyRing, settings: Settings) -> list[int]:
    """40 events with checkpoints at 10, 25 and 40."""
    ids: list[int] = []
    base = utcnow()
    for n, count in enumerate((10, 15, 15)):
        for _ in range(count):
            event = record_event(
                db,
                SYSTEM,
                AuditAction.USER_CREATED,
                object_type="user",
                object_id=fake.random_int(1, 10**6),
                details={"email": fake.email(), "note": fake.sentence()},
            )
            ids.append(event.id)
        db.commit()
        with transaction(app.state.session_factory) as session:
            sequence(session, keys, settings, now=base + timedelta(hours=n))
    return ids


def _message(
    db: Session, keys: KeyRing, workers: int, start: int = 0, end: int | None = None
) -> str:
    db.commit()
    try:
        result = verify_log(db, Signer(keys).key, start=start, end=end, workers=workers)
    except Tampered as exc:
        return str(exc)
    return f"ok {result}"


def _position(db: Session, event_id: int) -> int:
    pos = db.scalar(select(LogLeaf.position).where(LogLeaf.event_id == event_id))
    assert pos is not None
    return pos


def test_the_range_splits_at_batch_edges(small_parts: None) -> None:
    chunks = verify._chunks(0, 40, 2, "sqlite:///x.db")
    assert [(lo, hi) for _, lo, hi in chunks] == [
        (0, 4),
        (4, 8),
        (8, 12),
        (12, 20),
        (20, 24),
        (24, 28),
        (28, 32),
        (32, 40),
    ]
    assert verify._chunks(0, 40, 1, "sqlite:///x.db") == [("", 0, 40)]
    assert verify._chunks(0, 40, 2, None) == [("", 0, 40)]


def test_workers_verify_an_intact_log_like_one_process(
    db: Session, keys: KeyRing, log40: list[int], small_parts: None
) -> None:
    one = _message(db, keys, 1)
    assert one == "ok VerifyResult(entries=40, checkpoints=3, witnessed=0)"
    assert _message(db, keys, 2) == one
    assert _message(db, keys, 2, start=3, end=33) == _message(db, keys, 1, start=3, end=33)


def test_workers_report_the_lowest_tampering_as_one_process_does(
    db: Session, keys: KeyRing, log40: list[int], small_parts: None
) -> None:
    # Edited rows in two parts: the lower position wins, whichever worker ends first.
    for event_id in (log40[33], log40[17]):
        db.execute(update(AuditEvent).where(AuditEvent.id == event_id).values(outcome="x"))
    one = _message(db, keys, 1)
    assert one.startswith(f"position {_position(db, log40[17])} (event {log40[17]}): leaf")
    assert _message(db, keys, 2) == one

    # A leaf rewritten to match the edit: caught by the node above it.
    event = db.get(AuditEvent, log40[17])
    assert event is not None
    db.refresh(event)
    db.execute(
        update(LogLeaf)
        .where(LogLeaf.event_id == log40[17])
        .values(leaf_hash=merkle.leaf_hash(canonical_bytes(event)))
    )
    one = _message(db, keys, 1)
    assert "stored node (level 1" in one
    assert _message(db, keys, 2) == one


@pytest.mark.parametrize("missing", [3, 6, 15, 19])
def test_workers_report_a_deleted_leaf_as_one_process_does(
    db: Session, keys: KeyRing, log40: list[int], small_parts: None, missing: int
) -> None:
    db.execute(delete(LogLeaf).where(LogLeaf.position == missing))
    one = _message(db, keys, 1)
    assert one.startswith(f"position {missing} is missing")
    assert _message(db, keys, 2) == one


def test_workers_report_a_deleted_node_as_one_process_does(
    db: Session, keys: KeyRing, log40: list[int], small_parts: None
) -> None:
    # (level 2, index 2) covers 8-11: the part from 12 starts from it (and cannot), the
    # part 8-11 checks it; the lower one is reported.
    db.execute(delete(LogNode).where(LogNode.level == 2, LogNode.index == 2))
    one = _message(db, keys, 1)
    assert one.startswith("positions 8-11: stored node (level 2, index 2) is missing")
    assert _message(db, keys, 2) == one


def test_extend_one_reports_what_append_reports_above_the_leaf() -> None:
    bulk, plain = merkle.CompactRange(), merkle.CompactRange()
    for n in range(300):
        leaf = merkle.leaf_hash(str(n).encode())
        nodes = plain.append(leaf)
        assert bulk.extend_one(leaf) == [(x.level, x.index, x.hash) for x in nodes[1:]]
        assert bulk.frontier == plain.frontier and bulk.root() == plain.root()
    with pytest.raises(merkle.ProofError, match="leaf hash must be 32 bytes"):
        bulk.extend_one(b"short")
