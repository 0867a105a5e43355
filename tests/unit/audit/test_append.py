"""The sequencer's two passes (stragglers by anti-join, then new events through the raw
DBAPI path of ``audit.append``) give the log one "unlogged events by id" query would, with
leaves equal to ``canonical_bytes`` of the ORM object, on SQLite and PostgreSQL; and
migration 0009 (the delete guard that replaced the leaves' foreign key) goes down and up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from faker import Faker
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spillguard.audit import log as audit_log
from spillguard.audit import merkle
from spillguard.audit.log import sequence
from spillguard.audit.models import LogLeaf, LogNode, LogState
from spillguard.core.audit import canonical_bytes
from spillguard.core.db import transaction, utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.settings import Settings
from tests.conftest import migrate_to as migrate

fake = Faker("en_GB")


def odd_event(event_id: int, at: datetime) -> AuditEvent:
    """An event with the values the raw path must decode exactly as SQLAlchemy does."""
    return AuditEvent(
        id=event_id,
        occurred_at=at,
        action="core:user:created",
        outcome=fake.random_element(["success", "failure"]),
        actor_type="user",
        actor_id=fake.random_element([None, fake.random_int(1, 10**12)]),
        actor_label=fake.random_element([None, fake.name(), "Zoë Ñúñez \u2603 \U0001f600"]),
        object_type="customer",
        object_id=fake.random_element([None, str(fake.random_int(1, 10**6))]),
        source_ip=fake.random_element([None, fake.ipv4(), fake.ipv6()]),
        request_id=fake.random_element([None, fake.uuid4()]),
        details=fake.random_element(
            [
                {},
                {"email": fake.email(), "note": fake.sentence(), "n": fake.random_int()},
                {"z": [1, None, True, {"b": "\u00e9", "a": 1.5}], "a": 'line\nbreak "q"'},
            ]
        ),
    )


def leaves(db: Session) -> list[LogLeaf]:
    db.expire_all()
    return list(db.scalars(select(LogLeaf).order_by(LogLeaf.position)))


def check_log(db: Session, order: list[int]) -> None:
    """The leaves are ``order`` at dense positions, each hash that of the ORM object, and
    the stored nodes and state are those of a tree built from scratch."""
    rows = leaves(db)
    assert [r.event_id for r in rows] == order
    assert [r.position for r in rows] == list(range(len(order)))
    tree = merkle.CompactRange()
    made = 0
    for row in rows:
        event = db.get(AuditEvent, row.event_id)
        assert event is not None
        assert row.leaf_hash == merkle.leaf_hash(canonical_bytes(event))
        for node in tree.append(row.leaf_hash)[1:]:
            stored = db.get(LogNode, (node.level, node.index))
            assert stored is not None and stored.hash == node.hash
            made += 1
    assert db.scalar(select(sa.func.count()).select_from(LogNode)) == made
    state = db.get(LogState, 1)
    assert state is not None
    assert state.size == len(order) and state.frontier == b"".join(tree.frontier)
    assert state.max_event_id == max(order)


def run(app: FastAPI, keys: KeyRing, settings: Settings, **kw: object) -> tuple[int, int]:
    with transaction(app.state.session_factory) as session:
        result = sequence(session, keys, settings, **kw)  # type: ignore[arg-type]
    return result.appended, result.size


def test_stragglers_come_first_then_new_events_in_id_order_across_batches(
    app: FastAPI,
    db: Session,
    keys: KeyRing,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_log, "NEW_BATCH", 3)  # several raw batches per run
    now = utcnow()
    db.add_all(odd_event(i, now - timedelta(seconds=100 - i)) for i in range(1, 8))
    db.add(odd_event(20, now))
    db.commit()
    assert run(app, keys, settings) == (8, 8)
    # Committed after that run, below its largest id: 12 occurred within the straggler
    # window, 9 long before it (only a sweep finds it); 30-37 are new.
    db.add(odd_event(12, now - timedelta(minutes=5)))
    db.add(odd_event(9, now - audit_log.STRAGGLER_WINDOW - timedelta(hours=2)))
    db.add_all(odd_event(i, now) for i in range(37, 29, -1))
    db.commit()
    assert run(app, keys, settings, now=now + timedelta(minutes=1)) == (9, 17)
    first = [1, 2, 3, 4, 5, 6, 7, 20, 12, *range(30, 38)]
    check_log(db, first)
    assert run(app, keys, settings, now=now + timedelta(minutes=2)) == (0, 17)
    assert run(app, keys, settings, now=now + timedelta(minutes=3), sweep=True) == (1, 18)
    check_log(db, [*first, 9])


def test_the_raw_path_reads_what_the_orm_wrote_on_the_first_run_and_after(
    app: FastAPI,
    db: Session,
    keys: KeyRing,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audit_log, "NEW_BATCH", 4)
    whole = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)  # microsecond 0: isoformat drops it
    ids = list(range(1, 24))
    db.add_all(odd_event(i, whole if i % 3 else whole + timedelta(microseconds=i)) for i in ids)
    db.commit()
    assert run(app, keys, settings) == (23, 23)
    check_log(db, ids)


def test_a_racing_sequencer_that_logged_a_new_event_makes_the_run_fail(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    """The new-event pass trusts "above the largest logged id" to mean "not logged"; a
    leaf written behind the state's back still cannot make an event appear twice."""
    now = utcnow()
    db.add_all(odd_event(i, now) for i in (1, 2, 3))
    db.commit()
    assert run(app, keys, settings) == (3, 3)
    db.add(odd_event(4, now))
    db.add(LogLeaf(position=3, event_id=4, leaf_hash=bytes(32), sequenced_at=now))
    db.commit()
    with pytest.raises(IntegrityError):
        run(app, keys, settings)
    assert [r.event_id for r in leaves(db)] == [1, 2, 3, 4]  # the failed run kept nothing
    state = db.get(LogState, 1)
    assert state is not None and (state.size, state.max_event_id) == (3, 3)


# --- migration 0009 -------------------------------------------------------------------


@pytest.fixture
def engine(unmigrated_engine: Engine) -> Engine:
    return unmigrated_engine


def test_migration_0009_swaps_the_foreign_key_for_the_guard_and_back(engine: Engine) -> None:
    migrate(engine, "0008")
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    meta = sa.MetaData()
    meta.reflect(engine, only=["audit_events", "audit_log_leaves"])
    events, leaf_table = meta.tables["audit_events"], meta.tables["audit_log_leaves"]
    with engine.begin() as conn:
        for i in (1, 2):
            conn.execute(
                events.insert().values(
                    id=i,
                    occurred_at=now,
                    action="core:user:created",
                    outcome="success",
                    actor_type="system",
                    details={},
                )
            )
        conn.execute(
            leaf_table.insert().values(
                position=0, event_id=1, leaf_hash=bytes(32), sequenced_at=now
            )
        )

    def foreign_keys() -> list[str | None]:
        return [fk["name"] for fk in sa.inspect(engine).get_foreign_keys("audit_log_leaves")]

    assert foreign_keys() == ["fk_audit_log_leaves_event_id_audit_events"]
    migrate(engine, "0009")
    assert foreign_keys() == []
    with engine.connect() as conn:
        assert conn.scalar(select(sa.func.count()).select_from(leaf_table)) == 1
        with pytest.raises(IntegrityError, match="is in the tamper-evident log"):
            conn.execute(events.delete().where(events.c.id == 1))
        conn.rollback()
        with pytest.raises(IntegrityError, match="is in the tamper-evident log"):
            conn.execute(events.update().where(events.c.id == 1).values(id=7))
        conn.rollback()
        conn.execute(events.delete().where(events.c.id == 2))  # not in the log
        conn.commit()
    migrate(engine, "0008", down=True)
    assert foreign_keys() == ["fk_audit_log_leaves_event_id_audit_events"]
    with engine.connect() as conn:
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            conn.execute(events.delete().where(events.c.id == 1))
        conn.rollback()
        names = (
            "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'audit_events_logged%'"
            if engine.dialect.name == "postgresql"
            else "SELECT name FROM sqlite_master WHERE name LIKE 'audit_events_logged%'"
        )
        assert list(conn.scalars(text(names))) == []
    migrate(engine, "head")
    assert foreign_keys() == []
