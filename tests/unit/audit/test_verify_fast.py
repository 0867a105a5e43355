"""The fast paths of the audit log give the same answers as the plain ones.

* ``canonical_values`` is byte-identical to ``canonical_bytes`` on odd values
  (hypothesis): unicode, None, big ints, bools, floats, nested details, timestamps with
  and without microseconds;
* ``EventDecoder.fast_leaf`` (orjson, the JSON scanner, no processors) either declines or
  gives the leaf of the processors' values, on SQLite-like and PostgreSQL-like raw values
  (hypothesis, timestamps and details texts odd or malformed);
* ``EventDecoder`` on raw DBAPI rows gives the leaf ``canonical_bytes`` gives on the ORM
  object, on SQLite and PostgreSQL, and the sequencer stores exactly those leaves;
* ``verify_log`` with worker processes reports what one process reports, for an intact
  log and for each kind of tampering, the lowest bad position first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from faker import Faker
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
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


# --- fast_leaf against the processors ----------------------------------------------------

SQLITE = EventDecoder(sqlite.dialect())
POSTGRES = EventDecoder(postgresql.dialect())  # psycopg's dialect is the one in use; same types


_SQLITE_BIND = sqlite.DATETIME().bind_processor(sqlite.dialect())


def _sqlite_text(when: datetime) -> str:
    """A timestamp as SQLAlchemy writes it to SQLite (UTCDateTime: in UTC, then naive)."""
    assert _SQLITE_BIND is not None
    naive = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
    return str(_SQLITE_BIND(naive))


IN_UTC_TOO = st.datetimes(timezones=ZONES).filter(lambda d: 1 < d.year < 9999)  # any zone
STORED_TIMES = IN_UTC_TOO.map(_sqlite_text)
ODD_TIMES = st.one_of(
    STORED_TIMES,
    STORED_TIMES,
    st.datetimes(timezones=ZONES).map(lambda d: d.isoformat()),  # "T", offsets
    st.datetimes(timezones=ZONES).map(lambda d: d.isoformat(sep=" ", timespec="seconds")),
    st.sampled_from(
        [
            "2026-02-30 10:00:00.000000",  # no such day
            "2026-W10-1 10:00:00.000000",  # ISO week date, same length
            "2026-12-03 24:00:00.000000",
            " 2026-12-03 10:00:00.000000",
            "2026-12-03",
            "",
        ]
    ),
    ANY_TEXT,
)
PLAIN_DETAILS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | PLAIN_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PLAIN_TEXT, inner, max_size=4),
    max_leaves=10,
)


def _details_texts(value: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            json.dumps(value),  # what SQLAlchemy stores
            json.dumps(value, ensure_ascii=False),
            json.dumps(value, separators=(",", ":"), sort_keys=True),
            " " + json.dumps(value),
            json.dumps(value) + "\n",
            json.dumps(value)[:-1],  # cut short
            json.dumps(value) + "]",  # more after the value
            json.dumps(value) * 2,
        ]
    )


# Floats orjson writes unlike json.dumps (exponents), and a few it writes alike.
FLOATS = st.sampled_from([1e-05, 1e16, 1e22, 5e-324, -0.0, 2.5e-07, 0.1]) | st.floats()


DETAILS_TEXTS = st.one_of(
    PLAIN_DETAILS.flatmap(_details_texts),
    JSON_VALUES.flatmap(_details_texts),  # floats, NaN, big ints, lone surrogates
    st.dictionaries(PLAIN_TEXT, FLOATS | st.lists(FLOATS, max_size=2), min_size=1).flatmap(
        _details_texts
    ),
    ANY_TEXT,
)
SCALAR_FIELD = st.one_of(st.none(), PLAIN_TEXT, ANY_TEXT, st.integers(), st.floats(), st.booleans())


def _reference(decoder: EventDecoder, raw: list[Any], details_text: bool) -> Any:
    """The leaf the processors and canonical_bytes give, or the exception they raise."""

    def build() -> bytes:
        values = list(raw)
        if details_text:  # psycopg would have applied json.loads to the JSON column
            values[-1] = json.loads(values[-1])
        decoded = decoder.decode(values)
        return merkle.leaf_hash(canonical_bytes(SimpleNamespace(**decoded)))  # type: ignore[arg-type]

    return _outcome(build)


# Mostly what the application writes, with at most one odd value in a random column, so
# that the fast path is taken often enough for a wrong leaf to show.
PLAIN_ROWS = st.tuples(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.lists(st.one_of(st.none(), PLAIN_TEXT), min_size=9, max_size=9),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)
ODD_VALUE = st.one_of(st.none(), st.tuples(st.integers(0, 10), SCALAR_FIELD))


def _row(plain: tuple[int, list[Any], Any], when: Any, details: str, odd: Any) -> list[Any]:
    id_, texts, actor_id = plain
    raw = [id_, when, *texts[:3], actor_id, *texts[3:8], details]
    if odd is not None:
        column, value = odd
        raw[column if column != 1 else 11] = value
    return raw


@settings(max_examples=1000, deadline=None)
@given(plain=PLAIN_ROWS, when=ODD_TIMES, details=DETAILS_TEXTS, odd=ODD_VALUE)
def test_fast_leaf_on_sqlite_values_is_the_processors_leaf_or_declines(
    plain: tuple[int, list[Any], Any], when: str, details: str, odd: Any
) -> None:
    raw = _row(plain, when, details, odd)
    fast = SQLITE.fast_leaf(raw)
    if fast is not None:  # never a leaf the plain path would not give
        assert fast == _reference(SQLITE, raw, details_text=False)
        assert fast == SQLITE.text_leaf(raw)


PG_TIMES = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, ZoneInfo("Etc/UTC"), ZoneInfo("Europe/London")])),
    st.datetimes(timezones=ZONES),
    SCALAR_FIELD,
)


@settings(max_examples=600, deadline=None)
@given(plain=PLAIN_ROWS, when=PG_TIMES, details=DETAILS_TEXTS, odd=ODD_VALUE)
def test_fast_leaf_on_postgres_values_is_the_processors_leaf_or_declines(
    plain: tuple[int, list[Any], Any], when: Any, details: str, odd: Any
) -> None:
    raw = _row(plain, when, details, odd)
    fast = POSTGRES.fast_leaf(raw)
    if fast is not None:
        assert fast == _reference(POSTGRES, raw, details_text=True)
        assert fast == POSTGRES.text_leaf(raw)


@settings(max_examples=300, deadline=None)
@given(
    id_=st.integers(min_value=1, max_value=2**63 - 1),
    when=IN_UTC_TOO,
    texts=st.lists(st.one_of(st.none(), PLAIN_TEXT), min_size=8, max_size=8),
    actor_id=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    details=st.dictionaries(PLAIN_TEXT, PLAIN_DETAILS, max_size=5),
)
def test_fast_leaf_takes_the_values_the_application_writes(
    id_: int, when: datetime, texts: list[Any], actor_id: int | None, details: Any
) -> None:
    """Plain events (no floats, text without lone surrogates) go the fast way, both DBs."""
    action, outcome, actor_type, label, object_type, object_id, ip, request = texts
    rest = [action, outcome, actor_type, actor_id, label, object_type, object_id, ip, request]
    text = json.dumps(details)
    on_sqlite = [id_, _sqlite_text(when), *rest, text]
    on_postgres = [id_, when.astimezone(ZoneInfo("Etc/UTC")) if when.tzinfo else when, *rest, text]
    assert SQLITE.fast_leaf(on_sqlite) == _reference(SQLITE, on_sqlite, details_text=False)
    assert POSTGRES.fast_leaf(on_postgres) == _reference(POSTGRES, on_postgres, details_text=True)


def test_fast_leaf_declines_what_orjson_writes_differently() -> None:
    base = [7, "2026-12-03 09:00:00.000001", "a", "success", "user", None, None, None, None]
    base += [None, None]
    for details in ({"f": 1e-05}, {"n": [{"x": 0.5}]}, {"big": 2**64}, {"nan": math.nan}, 1.5):
        raw = [*base, json.dumps(details)]
        assert SQLITE.fast_leaf(raw) is None
        assert SQLITE.text_leaf(raw) == _reference(SQLITE, raw, details_text=False)
    assert SQLITE.fast_leaf([*base, '"\\ud800"']) is None  # a lone surrogate
    assert SQLITE.fast_leaf([*base[:5], 1.5, *base[6:], "{}"]) is None  # a float column
    assert SQLITE.fast_leaf([*base, "{}"]) == _reference(SQLITE, [*base, "{}"], False)


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
    # What verify_log reads: the fast leaf where the values allow it (no floats), else
    # text_leaf; both the ORM object's leaf.
    cursor = driver.cursor(binary=True) if binary else driver.cursor()
    cursor.execute(f"SELECT {decoder.fast_columns} FROM audit_events ORDER BY id")
    fast_rows = cursor.fetchall()
    cursor.close()
    taken = 0
    for row in fast_rows:
        event = db.get(AuditEvent, row[0])
        assert event is not None
        fast = decoder.fast_leaf(row)
        assert decoder.text_leaf(row) == event_leaf(event)
        if fast is not None:
            assert fast == event_leaf(event)
            taken += 1
        else:
            assert "f" in event.details  # ODD_DETAILS[1] holds the one float, 0.1
    assert taken == len(ids) - 3
    verify_log(db, Signer(keys).key)


def test_an_edit_the_fast_path_declines_is_still_reported(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    ids = _odd_events(db)
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings)
    verify_log(db, Signer(keys).key)  # floats in some details: verified the plain way
    db.execute(update(AuditEvent).where(AuditEvent.id == ids[5]).values(details={"f": 1e-05}))
    db.commit()
    with pytest.raises(Tampered, match=f"\\(event {ids[5]}\\): leaf does not match"):
        verify_log(db, Signer(keys).key)


def test_events_are_read_in_runs_of_close_ids(db: Session) -> None:
    """Late-committed events sit at positions far from their ids: each run is read."""
    ids = [e.id for e in (record_event(db, SYSTEM, AuditAction.USER_CREATED) for _ in range(6))]
    db.commit()
    conn = db.connection()
    decoder = EventDecoder(conn.dialect)
    driver = conn.connection.driver_connection
    assert driver is not None
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f'SELECT {decoder.fast_columns} FROM audit_events WHERE "id" >= {mark} AND "id" <= {mark}'
    cursor = driver.cursor()
    wanted = [ids[5], ids[0], ids[3], 10**15]  # out of order, and one that does not exist
    found = verify._events_of(cursor, sql, wanted, 1)  # runs of ids less than 2 apart
    cursor.close()
    assert sorted(found) == sorted(ids[i] for i in (0, 3, 5))
    assert all(found[i][0] == i for i in found)


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
