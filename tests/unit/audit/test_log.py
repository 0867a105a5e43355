"""The audit log in the database, on SQLite and PostgreSQL: the sequencer appends every
committed event once at dense positions (also under concurrent runs), checkpoints are
signed and spaced by the interval, proofs served from stored nodes verify, and
``verify_log`` finds the first tampered position."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from faker import Faker
from fastapi import FastAPI
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spillguard.audit import merkle
from spillguard.audit.checkpoints import (
    CheckpointError,
    Signer,
    parse_checkpoint,
    parse_checkpoints,
)
from spillguard.audit.log import (
    JOB_NAME,
    STRAGGLER_WINDOW,
    SequencerBusy,
    run_sequencer,
    sequence,
    stored_proof,
    text_of,
)
from spillguard.audit.models import Checkpoint, LogLeaf, LogNode, LogState
from spillguard.audit.services import AuditLogService, NotYetLogged, SizeOutOfRange
from spillguard.audit.verify import Tampered, verify_log
from spillguard.core.audit import AuditAction, canonical_bytes, record_event
from spillguard.core.db import transaction, utcnow
from spillguard.core.jobs import run_due
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

fake = Faker("en_GB")
SYSTEM = Principal.system("tests")


def add_events(db: Session, n: int) -> list[int]:
    ids = []
    for _ in range(n):
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
    return ids


def run(app: FastAPI, keys: KeyRing, settings: Settings, **kw: object) -> object:
    return run_sequencer(app.state.session_factory, keys, settings, **kw)  # type: ignore[arg-type]


def leaves(db: Session) -> list[LogLeaf]:
    db.expire_all()
    return list(db.scalars(select(LogLeaf).order_by(LogLeaf.position)))


def check_log(db: Session, events: set[int]) -> None:
    rows = leaves(db)
    assert [r.position for r in rows] == list(range(len(rows)))
    assert sorted(r.event_id for r in rows) == sorted(events)
    for row in rows:
        event = db.get(AuditEvent, row.event_id)
        assert event is not None
        assert row.leaf_hash == merkle.leaf_hash(canonical_bytes(event))


def test_sequencer_appends_each_committed_event_once_at_dense_positions(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    first = add_events(db, 7)
    result = run(app, keys, settings)
    assert (result.appended, result.size) == (7, 7)  # type: ignore[attr-defined]
    assert [r.event_id for r in leaves(db)] == first  # in id order
    again = run(app, keys, settings)
    assert again.appended == 0  # type: ignore[attr-defined]
    second = add_events(db, 5)
    run(app, keys, settings)
    check_log(db, set(first + second))
    state = db.get(LogState, 1)
    assert state is not None and state.size == 12
    hashes = [r.leaf_hash for r in leaves(db)]
    assert (
        merkle.root_hash(hashes)
        == merkle.CompactRange(
            12, [state.frontier[i : i + 32] for i in range(0, len(state.frontier), 32)]
        ).root()
    )


def test_an_event_committed_late_with_a_smaller_id_is_appended_by_the_next_run(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    ids = add_events(db, 3)
    # A concurrent transaction took id top+5 first but commits only after the run.
    top = ids[-1]
    db.add(AuditEvent(id=top + 10, action="core:user:created", actor_type="system"))
    db.commit()
    run(app, keys, settings)
    db.add(AuditEvent(id=top + 5, action="core:user:created", actor_type="system"))
    db.commit()
    run(app, keys, settings)
    assert [r.event_id for r in leaves(db)] == [*ids, top + 10, top + 5]
    check_log(db, {*ids, top + 5, top + 10})


def test_the_scheduled_job_sequences_and_checkpoints(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    jobs = [j for j in app.state.jobs if j.name == JOB_NAME]
    assert len(jobs) == 1
    ids = add_events(db, 4)
    assert run_due(app.state.session_factory, jobs) == [JOB_NAME]
    check_log(db, set(ids))
    assert db.scalar(select(func.count()).select_from(Checkpoint)) == 1
    # Within its interval the job does not run again.
    assert run_due(app.state.session_factory, jobs) == []


def test_concurrent_sequencers_append_each_event_exactly_once(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    ids = set(add_events(db, 120))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker(owner: str) -> None:
        barrier.wait()
        try:
            run_sequencer(app.state.session_factory, keys, settings, owner=owner)
            outcomes.append("ran")
        except SequencerBusy:
            outcomes.append("busy")

    threads = [threading.Thread(target=worker, args=(f"owner-{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) in (["busy", "ran"], ["ran", "ran"])
    check_log(db, ids)


def test_without_the_lease_a_racing_sequencer_fails_instead_of_appending_twice(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    """The backstop: two runs that skip the lease cannot both append the same events."""
    ids = set(add_events(db, 60))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with transaction(app.state.session_factory) as session:
                session.get(LogState, 1)  # both read the state before either writes
                barrier.wait()
                sequence(session, keys, settings)
        except Exception as exc:
            errors.append(exc)

    # The state row exists before the race (created on first use).
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings)
    more = set(add_events(db, 60))
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) <= 1, errors
    check_log(db, ids | more)
    verify_log(db, Signer(keys).key)


# --- checkpoints ---------------------------------------------------------------------


def test_checkpoints_are_signed_by_the_published_key_and_spaced_by_the_interval(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    add_events(db, 5)
    now = utcnow()
    with transaction(app.state.session_factory) as session:
        first = sequence(session, keys, settings, now=now)
    assert first.checkpoint is not None and first.checkpoint.tree_size == 5
    add_events(db, 3)
    with transaction(app.state.session_factory) as session:
        soon = sequence(session, keys, settings, now=now + timedelta(seconds=30))
    assert soon.appended == 3 and soon.checkpoint is None
    with transaction(app.state.session_factory) as session:
        later = sequence(session, keys, settings, now=now + timedelta(seconds=61))
    assert later.appended == 0 and later.checkpoint is not None
    assert later.checkpoint.tree_size == 8

    key, origin = AuditLogService(db, SYSTEM, keys, settings).log_key()
    assert origin == "spillguard"
    for cp in db.scalars(select(Checkpoint)):
        parsed = parse_checkpoint(text_of(cp, key))
        parsed.verify(key)
        assert (parsed.size, parsed.root, parsed.origin) == (cp.tree_size, cp.root_hash, origin)
        assert cp.key_id == key.key_id == Signer(keys).key.key_id
    hashes = [r.leaf_hash for r in leaves(db)]
    assert later.checkpoint.root_hash == merkle.root_hash(hashes)
    # Another master key does not verify these checkpoints.
    other = Signer(KeyRing(bytes(32))).key
    with pytest.raises(CheckpointError, match="different key"):
        parse_checkpoint(text_of(later.checkpoint, key)).verify(other)


def test_witness_dir_receives_each_new_checkpoint_after_commit(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings, tmp_path
) -> None:
    witness = tmp_path / "witness"
    add_events(db, 2)
    run(app, keys, settings, witness_dir=witness)
    with pytest.raises(RuntimeError), transaction(app.state.session_factory) as session:
        add_events(session, 1)
        sequence(session, keys, settings, witness_dir=witness, now=utcnow() + timedelta(1))
        raise RuntimeError("rolled back")
    notes = (witness / "audit-checkpoints.txt").read_text()
    assert notes.count("\u2014 spillguard ") == 1  # the rolled-back one was never written


# --- proofs --------------------------------------------------------------------------


def test_proofs_from_stored_nodes_verify_and_match_the_reference(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings
) -> None:
    ids = add_events(db, 21)
    now = utcnow()
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings, now=now)
    hashes = [r.leaf_hash for r in leaves(db)]
    svc = AuditLogService(db, SYSTEM, keys, settings)
    for size in (1, 2, 7, 8, 13, 21):
        root = merkle.root_hash(hashes[:size])
        for index in range(size):
            proof = stored_proof(db, merkle.inclusion_proof_ranges(index, size))
            assert proof == merkle.inclusion_proof(hashes[:size], index)
            merkle.verify_inclusion(index, size, hashes[index], proof, root)
        for old in range(1, size + 1):
            got = svc.consistency(old, size)
            assert got.proof == merkle.consistency_proof(hashes[:size], old)
            merkle.verify_consistency(old, size, got.first_root, got.second_root, got.proof)
    proof = svc.inclusion(ids[4])
    assert proof.checkpoint is not None and proof.tree_size == 21
    merkle.verify_inclusion(
        proof.leaf_index,
        proof.tree_size,
        merkle.leaf_hash(proof.entry),
        proof.proof,
        parse_checkpoint(proof.checkpoint).root,
    )
    with pytest.raises(SizeOutOfRange):
        svc.inclusion(ids[4], tree_size=22)
    with pytest.raises(SizeOutOfRange):
        svc.inclusion(ids[4], tree_size=4)
    with pytest.raises(SizeOutOfRange):
        svc.consistency(5, 22)
    late = add_events(db, 1)[0]
    with pytest.raises(NotYetLogged, match="not been added"):
        svc.inclusion(late)
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings, now=now + timedelta(seconds=1))
    with pytest.raises(NotYetLogged, match="no checkpoint"):
        svc.inclusion(late)
    assert svc.inclusion(late, tree_size=22).checkpoint is None


# --- verification and tampering ------------------------------------------------------


@pytest.fixture
def logged(app: FastAPI, db: Session, keys: KeyRing, settings: Settings) -> list[int]:
    """A log of 40 events with checkpoints at 10, 25 and 40."""
    ids: list[int] = []
    now = utcnow() - timedelta(hours=3)
    for n, count in enumerate((10, 15, 15)):
        batch = add_events(db, count)
        at = now + timedelta(minutes=5 * n)
        db.execute(
            update(AuditEvent)
            .where(AuditEvent.id.in_(batch))
            .values(occurred_at=at - timedelta(minutes=1))
        )
        db.commit()
        with transaction(app.state.session_factory) as session:
            sequence(session, keys, settings, now=at)
        ids += batch
    return ids


def position_of(db: Session, event_id: int) -> int:
    pos = db.scalar(select(LogLeaf.position).where(LogLeaf.event_id == event_id))
    assert pos is not None
    return pos


def test_an_untouched_log_verifies_whole_and_in_ranges(
    db: Session, keys: KeyRing, logged: list[int]
) -> None:
    key = Signer(keys).key
    result = verify_log(db, key)
    assert (result.entries, result.checkpoints) == (40, 3)
    assert verify_log(db, key, start=10, end=25).checkpoints == 1
    assert verify_log(db, key, start=3, end=33).entries == 30


def test_an_edited_event_row_is_found_at_its_position(
    db: Session, keys: KeyRing, logged: list[int]
) -> None:
    victim = logged[17]
    later = logged[30]
    for event_id in (later, victim):  # edit two; the first position is reported
        db.execute(
            update(AuditEvent).where(AuditEvent.id == event_id).values(actor_label="someone else")
        )
    db.commit()
    pos = position_of(db, victim)
    with pytest.raises(Tampered) as caught:
        verify_log(db, Signer(keys).key)
    assert str(caught.value) == (
        f"position {pos} (event {victim}): leaf does not match the event row (edited?)"
    )
    # A range that does not include it still verifies.
    verify_log(db, Signer(keys).key, start=0, end=pos)


def test_an_edit_with_a_recomputed_leaf_is_caught_by_the_nodes_and_checkpoints(
    db: Session, keys: KeyRing, logged: list[int]
) -> None:
    victim = logged[12]
    db.execute(update(AuditEvent).where(AuditEvent.id == victim).values(outcome="failure"))
    db.flush()
    event = db.get(AuditEvent, victim)
    assert event is not None
    db.refresh(event)
    new_leaf = merkle.leaf_hash(canonical_bytes(event))
    db.execute(update(LogLeaf).where(LogLeaf.event_id == victim).values(leaf_hash=new_leaf))
    db.commit()
    assert position_of(db, victim) == 12
    with pytest.raises(Tampered, match=r"^positions 12-13: stored node \(level 1, index 6\)"):
        verify_log(db, Signer(keys).key)
    # Even with every node recomputed, the signed checkpoint at 25 no longer matches.
    hashes = [r.leaf_hash for r in leaves(db)]
    db.execute(delete(LogNode))
    tree = merkle.CompactRange()
    for h in hashes:
        for node in tree.append(h)[1:]:
            db.add(LogNode(level=node.level, index=node.index, hash=node.hash))
    db.commit()
    with pytest.raises(Tampered, match="checkpoint at size 25: root hash does not match"):
        verify_log(db, Signer(keys).key)


GUARD = "audit_events_logged_guard"


def drop_delete_guard(db: Session) -> list[str]:
    """What an attacker with database access does first: the guard refuses the delete.
    Returns what restores it."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text(f"ALTER TABLE audit_events DISABLE TRIGGER {GUARD}"))
        return [f"ALTER TABLE audit_events ENABLE TRIGGER {GUARD}"]
    saved = list(
        db.scalars(
            text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE :n"),
            {"n": f"{GUARD}%"},
        )
    )
    assert len(saved) == 2  # the delete and the update triggers of migration 0009
    for name in (f"{GUARD}_delete", f"{GUARD}_update"):
        db.execute(text(f"DROP TRIGGER {name}"))
    return saved


def restore_delete_guard(db: Session, restore: list[str]) -> None:
    """Put the guard back for the tests that share this database."""
    db.rollback()
    for statement in restore:
        db.execute(text(statement))
    db.commit()


def test_a_logged_event_cannot_be_deleted_or_renumbered(db: Session, logged: list[int]) -> None:
    victim = logged[21]
    with pytest.raises(IntegrityError, match="is in the tamper-evident log"):
        db.execute(delete(AuditEvent).where(AuditEvent.id == victim))
    db.rollback()
    with pytest.raises(IntegrityError, match="is in the tamper-evident log"):
        db.execute(update(AuditEvent).where(AuditEvent.id == victim).values(id=victim + 10**6))
    db.rollback()
    # Other columns of a logged event are not the guard's business (verify catches edits),
    # and an event not (yet) in the log can go.
    db.execute(update(AuditEvent).where(AuditEvent.id == victim).values(outcome="failure"))
    db.rollback()
    unlogged = AuditEvent(action="core:user:created", actor_type="system")
    db.add(unlogged)
    db.commit()
    db.execute(delete(AuditEvent).where(AuditEvent.id == unlogged.id))
    db.commit()
    assert db.get(AuditEvent, victim) is not None


def test_a_deleted_event_row_is_found(db: Session, keys: KeyRing, logged: list[int]) -> None:
    victim = logged[21]
    with pytest.raises(IntegrityError, match="is in the tamper-evident log"):
        db.execute(delete(AuditEvent).where(AuditEvent.id == victim))
    db.rollback()
    restore = drop_delete_guard(db)
    try:
        db.execute(delete(AuditEvent).where(AuditEvent.id == victim))
        db.commit()
        with pytest.raises(Tampered) as caught:
            verify_log(db, Signer(keys).key)
        assert str(caught.value) == (
            f"position 21 (event {victim}): the event row is missing (deleted?)"
        )
    finally:
        restore_delete_guard(db, restore)


def test_a_truncated_log_is_found(
    db: Session, keys: KeyRing, settings: Settings, logged: list[int]
) -> None:
    key = Signer(keys).key
    svc = AuditLogService(db, SYSTEM, keys, settings)
    exported = "".join(v.text + "\n" for v in svc.all_checkpoints())
    db.execute(delete(LogLeaf).where(LogLeaf.position >= 30))
    db.commit()
    with pytest.raises(Tampered, match="checkpoint at size 40 is beyond the log's 30 entries"):
        verify_log(db, key)
    db.execute(delete(Checkpoint).where(Checkpoint.tree_size > 30))
    db.commit()
    with pytest.raises(Tampered, match="the log's state says 40 entries, the leaves table has 30"):
        verify_log(db, key)
    # The attacker also rewrites the state: only a checkpoint kept elsewhere shows it.
    tree = merkle.CompactRange()
    for row in leaves(db):
        tree.append(row.leaf_hash)
    state = db.get(LogState, 1)
    assert state is not None
    state.size, state.frontier = 30, b"".join(tree.frontier)
    db.commit()
    assert verify_log(db, key).entries == 30
    witnessed = parse_checkpoints(exported)
    with pytest.raises(
        Tampered, match="witnessed checkpoint at size 40 is beyond the log's 30 entries"
    ):
        verify_log(db, key, against=witnessed)
    assert verify_log(db, key, against=witnessed[:2]).witnessed == 2


def test_a_deleted_middle_leaf_is_found(db: Session, keys: KeyRing, logged: list[int]) -> None:
    db.execute(delete(LogLeaf).where(LogLeaf.position == 6))
    db.commit()
    with pytest.raises(Tampered, match="position 6 is missing: the next entry is at 7"):
        verify_log(db, Signer(keys).key)


def test_a_forged_checkpoint_signature_is_found(
    db: Session, keys: KeyRing, logged: list[int]
) -> None:
    cp = db.scalar(select(Checkpoint).where(Checkpoint.tree_size == 25))
    assert cp is not None
    cp.signature = bytes(64 - 1) + b"\x01"
    db.commit()
    with pytest.raises(Tampered, match="checkpoint at size 25: the signature does not verify"):
        verify_log(db, Signer(keys).key)
    # Re-signed with another key (a forger without the master key): refused as well.
    forger = Signer(KeyRing(bytes(range(1, 33))))
    cp.key_id = forger.key.key_id
    db.commit()
    with pytest.raises(Tampered, match="checkpoint at size 25: signed by key"):
        verify_log(db, Signer(keys).key)


def test_an_unsequenced_old_event_is_found(
    app: FastAPI, db: Session, keys: KeyRing, settings: Settings, logged: list[int]
) -> None:
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings)  # last run: now
    db.add(
        AuditEvent(
            action="core:user:created",
            actor_type="system",
            occurred_at=utcnow() - STRAGGLER_WINDOW - timedelta(minutes=5),
        )
    )
    db.commit()
    with pytest.raises(Tampered, match="is not in the log, though the sequencer has run since"):
        verify_log(db, Signer(keys).key)
    # A recent event not yet sequenced is normal.
    with transaction(app.state.session_factory) as session:
        sequence(session, keys, settings)
    add_events(db, 1)
    verify_log(db, Signer(keys).key)
