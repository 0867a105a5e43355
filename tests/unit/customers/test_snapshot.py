"""The EDM index snapshot: an exact, authenticated copy of the built index, refused when
edited, truncated, stale or made under another key, and the directory loader that uses
it (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from spillguard.core.errors import PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal, Role
from spillguard.customers.columns import map_columns
from spillguard.customers.edm import EdmIndex, EdmIndexBuilder
from spillguard.customers.services import CustomerImportService
from spillguard.customers.snapshot import (
    CachedDirectoryIndex,
    SnapshotRejected,
    directory_generation,
    load_snapshot,
    save_snapshot,
    snapshot_path,
)
from tests.factories.customers import HEADER, changed, people, to_csv

SYSTEM = Principal.system("tests")
CUSTOMERS = people(300, seed=77)
OTHER_KEY = KeyRing(bytes(range(100, 132)))  # not the test master key


def built(keys: KeyRing, rows=CUSTOMERS) -> EdmIndex:
    mapping = map_columns(HEADER, id_column="Customer ID")
    builder = EdmIndexBuilder(keys)
    for person in rows:
        builder.add(*mapping.read(person.row()))
    return builder.build()


def table(rows=CUSTOMERS) -> list[list[str]]:
    """Rows of name, upper-cased e-mail and postcode: a record match for each customer."""
    return [[p.name, p.email.upper(), p.postcode] for p in rows]


def same_index(a: EdmIndex, b: EdmIndex) -> bool:
    pa, pb = a.parts(), b.parts()
    return all(list(pa[k]) == list(pb[k]) for k in pa) and a.stats == b.stats


# --- the file ------------------------------------------------------------------------


def test_round_trip_is_exact_and_matches_the_same_customers(keys: KeyRing, tmp_path: Path):
    index = built(keys)
    path = save_snapshot(index, tmp_path / "cache", "7-300", keys)
    loaded = load_snapshot(tmp_path / "cache", "7-300", keys)
    assert same_index(index, loaded)
    assert loaded.match_rows(table()).customer_ids == index.match_rows(table()).customer_ids
    assert len(loaded.match_rows(table()).customer_ids) == 300
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = path.read_bytes()
    for person in CUSTOMERS[:20]:  # hashes and ids only: no value in the file
        assert person.email.encode() not in raw and person.last_name.encode() not in raw


def test_an_empty_index_round_trips(keys: KeyRing, tmp_path: Path):
    empty = EdmIndexBuilder(keys).build()
    save_snapshot(empty, tmp_path, "1-0", keys)
    assert len(load_snapshot(tmp_path, "1-0", keys)) == 0


def test_saving_a_new_generation_removes_the_old_one(keys: KeyRing, tmp_path: Path):
    save_snapshot(built(keys), tmp_path, "1-300", keys)
    save_snapshot(built(keys, CUSTOMERS[:10]), tmp_path, "2-10", keys)
    assert [p.name for p in tmp_path.iterdir()] == ["edm-index-2-10.bin"]
    with pytest.raises(SnapshotRejected, match="no snapshot"):
        load_snapshot(tmp_path, "1-300", keys)


def test_another_key_is_refused(keys: KeyRing, tmp_path: Path):
    save_snapshot(built(keys), tmp_path, "1-300", keys)
    with pytest.raises(SnapshotRejected, match="authentication failed"):
        load_snapshot(tmp_path, "1-300", OTHER_KEY)


def test_a_renamed_file_of_another_generation_is_refused(keys: KeyRing, tmp_path: Path):
    path = save_snapshot(built(keys), tmp_path, "1-300", keys)
    path.rename(snapshot_path(tmp_path, "2-300"))
    with pytest.raises(SnapshotRejected, match="another generation"):
        load_snapshot(tmp_path, "2-300", keys)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_edit_or_truncation_is_refused(tmp_path_factory, data):
    keys = KeyRing(bytes(range(32)))
    folder = tmp_path_factory.mktemp("snap")
    path = save_snapshot(built(keys, CUSTOMERS[:40]), folder, "3-40", keys)
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(raw) - 1), label="length")
        damaged = bytes(raw[:cut])
    else:
        at = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        damaged = bytes(raw)
    path.write_bytes(damaged)
    with pytest.raises(SnapshotRejected):
        load_snapshot(folder, "3-40", keys)


def test_generation_names_cannot_leave_the_directory(tmp_path: Path):
    for bad in ("", "../x", "1/2", "a-1"):
        with pytest.raises(ValueError):
            snapshot_path(tmp_path, bad)


# --- the directory loader (database) --------------------------------------------------


def do_import(db: Session, keys: KeyRing, rows) -> None:
    CustomerImportService(db, SYSTEM, keys).import_csv(
        io.BytesIO(to_csv(rows)), id_column="Customer ID", file_name="customers.csv"
    )
    db.commit()


def test_loader_builds_once_then_reads_the_snapshot_until_the_next_import(
    db: Session, keys: KeyRing, tmp_path: Path
):
    cache = CachedDirectoryIndex(tmp_path / "cache")
    first = cache.load(db, SYSTEM, keys)
    assert cache.last_source == "empty" and len(first) == 0
    assert directory_generation(db) is None

    do_import(db, keys, CUSTOMERS)
    from_db = cache.load(db, SYSTEM, keys)
    assert cache.last_source == "database"
    from_file = cache.load(db, SYSTEM, keys)
    assert cache.last_source == "snapshot"
    assert same_index(from_db, from_file)
    direct = built(keys)  # the same customers hashed in memory: the same answers
    assert sorted(from_file.parts()["ids"]) == sorted(direct.parts()["ids"])
    assert sorted(from_file.parts()["primary_keys"]) == sorted(direct.parts()["primary_keys"])
    assert len(from_file.match_rows(table()).customer_ids) == 300

    # A re-import with changes: a new generation, rebuilt from the database.
    moved = [changed(p, seed=5) for p in CUSTOMERS[:30]] + CUSTOMERS[30:250]
    do_import(db, keys, moved)
    again = cache.load(db, SYSTEM, keys)
    assert cache.last_source == "database" and len(again) == 250
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        f"edm-index-{directory_generation(db)}.bin"
    ]
    found = again.match_rows(table(moved)).customer_ids
    assert len(found) == 250
    assert again.match_rows(table(CUSTOMERS[250:])).customer_ids == []  # removed customers


def test_a_forged_snapshot_is_rebuilt_from_the_database(
    db: Session, keys: KeyRing, tmp_path: Path
):
    do_import(db, keys, CUSTOMERS)
    cache = CachedDirectoryIndex(tmp_path / "cache")
    cache.load(db, SYSTEM, keys)
    generation = directory_generation(db) or ""
    # Someone without the master key writes an empty index to hide customers from scans.
    save_snapshot(EdmIndexBuilder(keys).build(), tmp_path / "forger", generation, OTHER_KEY)
    forged = snapshot_path(tmp_path / "forger", generation).read_bytes()
    snapshot_path(tmp_path / "cache", generation).write_bytes(forged)
    index = cache.load(db, SYSTEM, keys)
    assert cache.last_source == "database" and len(index) == 300
    assert cache.load(db, SYSTEM, keys) and cache.last_source == "snapshot"  # rewritten


def test_an_unwritable_cache_only_costs_speed(db: Session, keys: KeyRing, tmp_path: Path):
    do_import(db, keys, CUSTOMERS[:50])
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    cache = CachedDirectoryIndex(blocker / "cache")
    assert len(cache.load(db, SYSTEM, keys)) == 50
    assert len(cache.load(db, SYSTEM, keys)) == 50 and cache.last_source == "database"


def test_the_directory_needs_the_view_permission(db: Session, keys: KeyRing, tmp_path: Path):
    do_import(db, keys, CUSTOMERS[:5])
    helpdesk = Principal("user", 1, "helpdesk@example.org", Role.HELPDESK)
    with pytest.raises(PermissionDenied):
        CachedDirectoryIndex(tmp_path).load(db, helpdesk, keys)
    assert not list(tmp_path.iterdir())
