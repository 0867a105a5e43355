"""Held documents on SQLite and PostgreSQL, in the database and in a directory: encrypted
at rest, read back whole, refused when tampered with or read under another master key, and
unreadable for good once erased."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.exposure.gateway import ensure_link, find_link
from spillguard.exposure.models import GatewayLink, StoredBlob
from spillguard.exposure.store import (
    BlobStore,
    DatabaseBlobStore,
    DirectoryBlobStore,
    DocumentUnavailable,
    HeldDocuments,
)
from tests.factories.users import UserFactory

SECRET = b"Customer ID,Email\nC0000001,canary.person@example.com\n" * 50


@pytest.fixture(params=["database", "directory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "database":
        return DatabaseBlobStore()
    return DirectoryBlobStore(tmp_path / "held")


def stored_bytes(db: Session, store: BlobStore, document_id: int) -> bytes:
    data = store.get(db, document_id)
    assert data is not None
    return data


def test_round_trip_and_nothing_plain_at_rest(db: Session, keys: KeyRing, store: BlobStore) -> None:
    held = HeldDocuments(db, keys, store)
    doc = held.hold(
        SECRET, name="canary-list.csv", media_type="text/csv", purpose="gateway", content_id=None
    )
    assert held.read(doc) == ("canary-list.csv", SECRET)
    raw = stored_bytes(db, store, doc.id)
    assert b"canary" not in raw and b"canary" not in (doc.name_sealed or b"")
    assert doc.size == len(SECRET)
    if isinstance(store, DirectoryBlobStore):
        path = store.root / f"{doc.id:012d}.blob"
        assert (path.stat().st_mode & 0o777) == 0o600
        assert not list(store.root.glob("*.partial"))


def test_tampering_and_a_foreign_key_are_refused(
    db: Session, keys: KeyRing, store: BlobStore
) -> None:
    held = HeldDocuments(db, keys, store)
    doc = held.hold(SECRET, name="a.csv", media_type="text/csv", purpose="gateway", content_id=None)
    other = HeldDocuments(db, KeyRing(os.urandom(32)), store)
    with pytest.raises(DocumentUnavailable, match="master key"):
        other.read(doc)
    raw = bytearray(stored_bytes(db, store, doc.id))
    raw[20] ^= 1
    store.delete(db, doc.id)
    store.put(db, doc.id, bytes(raw))
    with pytest.raises(DocumentUnavailable):
        held.read(doc)


def test_erasure_destroys_key_and_bytes(db: Session, keys: KeyRing, store: BlobStore) -> None:
    held = HeldDocuments(db, keys, store)
    doc = held.hold(SECRET, name="a.csv", media_type="text/csv", purpose="gateway", content_id=None)
    held.erase(doc)
    assert doc.wrapped_key is None and doc.erased_at is not None
    assert store.get(db, doc.id) is None
    assert db.scalar(select(StoredBlob).where(StoredBlob.document_id == doc.id)) is None
    with pytest.raises(DocumentUnavailable, match="deleted"):
        held.read(doc)


def test_a_delivery_gets_one_link_however_often_it_is_retried(
    db: Session, keys: KeyRing, users: UserFactory
) -> None:
    user = users.create("helpdesk")
    held = HeldDocuments(db, keys, DatabaseBlobStore())
    calls: list[int] = []

    def hold():  # type: ignore[no-untyped-def]
        calls.append(1)
        return held.hold(
            SECRET, name="a.csv", media_type="text/csv", purpose="gateway", content_id=None
        )

    first = ensure_link(db, keys, user_id=user.id, days=7, hold=hold, source_ref="m1|to|a")
    again = ensure_link(db, keys, user_id=user.id, days=7, hold=hold, source_ref="m1|to|a")
    assert first.created and not again.created
    assert first.token == again.token and first.link.id == again.link.id
    assert len(calls) == 1
    other = ensure_link(db, keys, user_id=user.id, days=7, hold=hold, source_ref="m1|to|b")
    assert other.token != first.token
    assert find_link(db, keys, first.token) is first.link
    assert find_link(db, keys, first.token + "x") is None
    assert find_link(db, keys, "") is None
    # Only a digest of the secret is stored.
    stored = {row.token_digest for row in db.scalars(select(GatewayLink))}
    assert first.token not in stored and len(stored) == 2
    random_link = ensure_link(db, keys, user_id=user.id, days=7, hold=hold)
    assert random_link.created and random_link.token != first.token
