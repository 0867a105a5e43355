"""Proofs served from the store, on SQLite and PostgreSQL, against the reference: every
inclusion proof ``AuditLogService.inclusion`` builds from its two queries (the event with
its position and checkpoint, then the stored hashes) is exactly what ``merkle`` computes
from all the leaf hashes, at checkpointed sizes and at sizes between checkpoints; so are
consistency proofs and their roots, and the hashes ``read_nodes`` returns."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from faker import Faker
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from spillguard.audit import merkle
from spillguard.audit.log import LogCorrupt, read_nodes, sequence, text_of
from spillguard.audit.models import Checkpoint, LogLeaf, LogNode
from spillguard.audit.services import (
    AuditEventNotFound,
    AuditLogService,
    NotYetLogged,
    SizeOutOfRange,
)
from spillguard.core.audit import AuditAction, canonical_bytes, record_event
from spillguard.core.db import transaction, utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

fake = Faker("en_GB")
SYSTEM = Principal.system("tests")
BATCHES = (1, 6, 25, 32, 41, 45)
"""Events per sequencing run, each run checkpointed: sizes 1, 7, 32, 64, 105 and 150."""


def add_events(db: Session, n: int) -> None:
    for _ in range(n):
        record_event(
            db,
            SYSTEM,
            AuditAction.USER_CREATED,
            object_type="user",
            object_id=fake.random_int(1, 10**6),
            details={"email": fake.email(), "name": fake.name(), "note": fake.sentence()},
        )
    db.commit()


@pytest.fixture
def log(app: FastAPI, db: Session, keys: KeyRing, settings: Settings) -> list[LogLeaf]:
    """A log of 150 events, checkpointed after each batch; its leaves by position."""
    start = utcnow() - timedelta(days=1)
    for n, count in enumerate(BATCHES):
        add_events(db, count)
        with transaction(app.state.session_factory) as session:
            made = sequence(session, keys, settings, now=start + timedelta(hours=n))
            assert made.checkpoint is not None
    db.expire_all()
    return list(db.scalars(select(LogLeaf).order_by(LogLeaf.position)))


def pairs(size_limit: int, rng: random.Random) -> list[tuple[int, int]]:
    """(index, size): every pair up to 40 leaves, then 400 random ones up to ``size_limit``."""
    every = [(i, size) for size in range(1, 41) for i in range(size)]
    some = []
    for _ in range(400):
        size = rng.randint(41, size_limit)
        some.append((rng.randrange(size), size))
    return every + some


def test_inclusion_proofs_are_the_reference_ones_at_every_size(
    db: Session, keys: KeyRing, settings: Settings, log: list[LogLeaf]
) -> None:
    hashes = [leaf.leaf_hash for leaf in log]
    assert len(hashes) == sum(BATCHES)
    checkpoints = {c.tree_size: c for c in db.scalars(select(Checkpoint))}
    assert sorted(checkpoints) == [1, 7, 32, 64, 105, 150]
    svc = AuditLogService(db, SYSTEM, keys, settings)
    rng = random.Random(7)
    for index, size in pairs(len(hashes), rng):
        leaf = log[index]
        got = svc.inclusion(leaf.event_id, tree_size=size)
        assert got.proof == merkle.inclusion_proof(hashes[:size], index), (index, size)
        assert got.root_hash == merkle.root_hash(hashes[:size])
        assert (got.event_id, got.leaf_index, got.tree_size) == (leaf.event_id, index, size)
        event = db.get(AuditEvent, leaf.event_id)
        assert event is not None and got.entry == canonical_bytes(event)
        assert merkle.leaf_hash(got.entry) == leaf.leaf_hash
        checkpoint = checkpoints.get(size)
        want = text_of(checkpoint, svc.key) if checkpoint is not None else None
        assert got.checkpoint == want


def test_without_a_size_the_proof_is_at_the_latest_checkpoint(
    db: Session, keys: KeyRing, settings: Settings, log: list[LogLeaf]
) -> None:
    hashes = [leaf.leaf_hash for leaf in log]
    latest = db.scalar(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1))
    assert latest is not None and latest.tree_size == len(hashes)
    svc = AuditLogService(db, SYSTEM, keys, settings)
    for index in [*random.Random(3).sample(range(len(hashes)), 60), 0, len(hashes) - 1]:
        got = svc.inclusion(log[index].event_id)
        assert got.tree_size == len(hashes) and got.leaf_index == index
        assert got.proof == merkle.inclusion_proof(hashes, index)
        assert got.root_hash == latest.root_hash == merkle.root_hash(hashes)
        assert got.checkpoint == text_of(latest, svc.key)
        merkle.verify_inclusion(index, len(hashes), hashes[index], got.proof, got.root_hash)


def test_consistency_proofs_and_roots_are_the_reference_ones(
    db: Session, keys: KeyRing, settings: Settings, log: list[LogLeaf]
) -> None:
    hashes = [leaf.leaf_hash for leaf in log]
    svc = AuditLogService(db, SYSTEM, keys, settings)
    rng = random.Random(11)
    sizes = [(first, second) for second in range(1, 25) for first in range(1, second + 1)]
    for _ in range(200):
        second = rng.randint(25, len(hashes))
        sizes.append((rng.randint(1, second), second))
    for first, second in sizes:
        got = svc.consistency(first, second)
        assert got.proof == merkle.consistency_proof(hashes[:second], first), (first, second)
        assert got.first_root == merkle.root_hash(hashes[:first])
        assert got.second_root == merkle.root_hash(hashes[:second])


def test_read_nodes_returns_exactly_the_stored_hashes_asked_for(
    db: Session, log: list[LogLeaf]
) -> None:
    hashes = [leaf.leaf_hash for leaf in log]
    reference = merkle.leaf_reader(hashes)
    stored = [(n.level, n.index) for n in db.scalars(select(LogNode))]
    rng = random.Random(5)
    for _ in range(50):
        wanted = rng.sample(stored, 12) + [(0, rng.randrange(len(hashes))) for _ in range(5)]
        absent = [(0, len(hashes) + 3), (7, 5), (1, 10**6)]  # beyond the log: not stored
        got = read_nodes(db, wanted + absent)
        assert got == {node: reference(*node) for node in wanted}
    assert read_nodes(db, []) == {}


def test_errors_are_unchanged(
    db: Session, keys: KeyRing, settings: Settings, log: list[LogLeaf]
) -> None:
    svc = AuditLogService(db, SYSTEM, keys, settings)
    largest = db.scalar(select(func.max(AuditEvent.id)))
    assert largest is not None
    with pytest.raises(AuditEventNotFound, match=f"no audit event {largest + 1000}"):
        svc.inclusion(largest + 1000)
    with pytest.raises(AuditEventNotFound):
        svc.inclusion(largest + 1000, tree_size=3)
    add_events(db, 1)  # not sequenced
    with pytest.raises(NotYetLogged, match="not been added"):
        svc.inclusion(largest + 1)
    with pytest.raises(NotYetLogged, match="not been added"):
        svc.inclusion(largest + 1, tree_size=150)
    last = log[-1]
    for size in (0, 149, 151):
        with pytest.raises(SizeOutOfRange, match="above the event's position 149"):
            svc.inclusion(last.event_id, tree_size=size)
    # a node the proof needs has gone: said, not a wrong proof
    db.execute(delete(LogNode).where(LogNode.level == 5, LogNode.index == 0))
    with pytest.raises(LogCorrupt, match=r"\(level 5, index 0\) is missing"):
        svc.inclusion(log[40].event_id)
    with pytest.raises(LogCorrupt, match=r"\(level 5, index 0\) is missing"):
        svc.inclusion(log[40].event_id, tree_size=100)  # the root needs it too
    db.rollback()
