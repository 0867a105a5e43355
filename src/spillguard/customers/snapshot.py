"""A local, authenticated copy of the built EDM index, so a directory of millions loads in
about a second instead of being re-assembled from its hash rows on every scan.

The database keeps one row of packed digests per customer and field kind (nine or so
rows per customer): reading and grouping nine million rows in Python takes minutes for
a million customers. The finished index is four flat integer arrays and the customer
ids, so it is written once, after it was built from the database, to a file in the data
directory, and read back with ``array.frombytes``.

What the file holds is what the database holds: keyed digests (HMAC-SHA256 under the
EDM key, truncated) and customer ids, never a value. It is still protected:

* **integrity**: an HMAC-SHA256 tag over the whole file, under a key derived from the
  master key for this purpose only. A file that was edited, truncated, copied from
  another installation or written by another version is rejected and rebuilt from the
  database — a forged index could hide customers from every scan (fail closed);
* **confidentiality**: mode 0600 in a 0700 directory, like the master key, and written
  atomically (temporary file, fsync, rename);
* **freshness**: the file name carries a *generation* — the last finished import run
  and the directory's size — so a new import makes it stale; stale files are deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import tempfile
from array import array
from dataclasses import asdict
from pathlib import Path

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal
from spillguard.customers.edm import BuildStats, EdmIndex, EdmIndexBuilder, EdmSettings
from spillguard.customers.models import Customer, HoneytokenCustomer, ImportRun

log = structlog.get_logger(__name__)

MAGIC = b"SPILLGUARD-EDM-SNAPSHOT/1\n"
TAG_BYTES = 32
_ARRAYS = ("primary_keys", "primary_owners", "support", "offsets")
_TYPECODES = {"primary_keys": "Q", "primary_owners": "I", "support": "Q", "offsets": "Q"}
_PREFIX = "edm-index-"


class SnapshotRejected(Exception):
    """The snapshot file cannot be used (missing, stale, damaged or not ours)."""


def snapshot_path(directory: Path, generation: str) -> Path:
    """Where the snapshot of this generation lives (``generation`` is made of digits and -)."""
    if not generation or not all(c.isdigit() or c == "-" for c in generation):
        raise ValueError(f"bad snapshot generation {generation!r}")
    return directory / f"{_PREFIX}{generation}.bin"


def _mac_key(keys: KeyRing) -> bytes:
    return keys.derive(KeyPurpose.EDM_SNAPSHOT_MAC)


def save_snapshot(index: EdmIndex, directory: Path, generation: str, keys: KeyRing) -> Path:
    """Write ``index`` for ``generation`` atomically; remove older snapshots. Returns the path."""
    parts = index.parts()
    header = {
        "generation": generation,
        "byteorder": sys.byteorder,
        "lengths": {name: len(parts[name]) for name in _ARRAYS},
        "ids_bytes": 0,
        "stats": asdict(index.stats),
    }
    ids = "\n".join(parts["ids"]).encode("utf-8")
    header["ids_bytes"] = len(ids)
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    target = snapshot_path(directory, generation)
    mac = hmac.new(_mac_key(keys), digestmod=hashlib.sha256)
    fd, temporary = tempfile.mkstemp(prefix=".edm-", dir=directory)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            chunks: list[bytes | memoryview] = [MAGIC, len(head).to_bytes(8, "big"), head]
            chunks += [memoryview(parts[name]).cast("B") for name in _ARRAYS]
            chunks.append(ids)
            for chunk in chunks:
                mac.update(chunk)
                handle.write(chunk)
            handle.write(mac.digest())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for old in directory.glob(f"{_PREFIX}*.bin"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def load_snapshot(
    directory: Path, generation: str, keys: KeyRing, settings: EdmSettings | None = None
) -> EdmIndex:
    """The index saved for ``generation``; :class:`SnapshotRejected` if it is not usable."""
    path = snapshot_path(directory, generation)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotRejected("no snapshot for this generation") from None
    except OSError as exc:
        raise SnapshotRejected(f"unreadable: {exc.strerror or type(exc).__name__}") from None
    if len(data) < len(MAGIC) + 8 + TAG_BYTES or not data.startswith(MAGIC):
        raise SnapshotRejected("not a snapshot file")
    body, tag = memoryview(data)[:-TAG_BYTES], data[-TAG_BYTES:]
    expected = hmac.new(_mac_key(keys), body, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise SnapshotRejected("authentication failed (edited, damaged or another key)")
    at = len(MAGIC)
    size = int.from_bytes(body[at : at + 8], "big")
    at += 8
    try:
        header = json.loads(bytes(body[at : at + size]))
        at += size
        if header["generation"] != generation:
            raise SnapshotRejected("snapshot of another generation")
        arrays: dict[str, array[int]] = {}
        for name in _ARRAYS:
            values = array(_TYPECODES[name])
            length = int(header["lengths"][name]) * values.itemsize
            values.frombytes(body[at : at + length])
            at += length
            if header["byteorder"] != sys.byteorder:
                values.byteswap()
            arrays[name] = values
        ids_bytes = int(header["ids_bytes"])
        ids_text = bytes(body[at : at + ids_bytes]).decode("utf-8")
        at += ids_bytes
        stats = BuildStats(**header["stats"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotRejected(f"malformed snapshot: {type(exc).__name__}") from None
    if at != len(body):
        raise SnapshotRejected("malformed snapshot: trailing bytes")
    ids = ids_text.split("\n") if ids_text else []
    if len(arrays["offsets"]) != len(ids) + 1 or len(arrays["primary_keys"]) != len(
        arrays["primary_owners"]
    ):
        raise SnapshotRejected("malformed snapshot: inconsistent lengths")
    return EdmIndex.from_parts(
        keyring=keys, settings=settings or EdmSettings(), ids=ids, stats=stats, **arrays
    )


HONEYTOKEN_STATE_ACTIONS = ("customers:honeytokens:retired", "customers:honeytokens:reactivated")
"""Audit events of honeytokens leaving or re-entering exact data match
(``customers.honeytokens.HoneytokenAuditAction``, which imports this module's users)."""


def directory_generation(session: Session) -> str | None:
    """The directory's generation: ``<last finished import run>-<active customers>`` and,
    once customers were added or removed outside an import, ``-<all customers>``.

    None when no import has finished (an empty directory). A new finished run makes every
    older snapshot stale; between imports, honeytokens are created (rows added: both
    counts grow), retired (marked removed: the active count falls, the total stays) and
    reactivated (the active count grows back). Retiring and reactivating can bring the
    pair back to an earlier value with other honeytokens active (retire A, retire B,
    reactivate A), so once either happened the number of their audit events (append-only,
    so it only grows) is added as a fourth part. A few cheap queries.
    """
    last = session.scalar(
        select(func.max(ImportRun.id)).where(ImportRun.finished_at.is_not(None))
    )
    if last is None:
        return None
    active = session.scalar(
        select(func.count()).select_from(Customer).where(Customer.removed_at.is_(None))
    )
    generation = f"{int(last)}-{int(active or 0)}"
    if session.scalar(select(func.count()).select_from(HoneytokenCustomer)):
        total = session.scalar(select(func.count()).select_from(Customer))
        generation += f"-{int(total or 0)}"
        changes = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action.in_(HONEYTOKEN_STATE_ACTIONS))
        )
        if changes:
            generation += f"-{int(changes)}"
    return generation


class CachedDirectoryIndex:
    """Loads the directory's EDM index through a snapshot file in ``directory``.

    ``load`` checks the permission, asks the database for the generation, reads the
    snapshot of that generation when it is there and authentic, and otherwise builds
    the index from the hash rows (:class:`~spillguard.customers.services.EdmIndexLoader`)
    and saves the snapshot for the next caller. A snapshot that cannot be written (a
    read-only data directory) only costs speed: the index is still returned.
    """

    def __init__(self, directory: Path, settings: EdmSettings | None = None) -> None:
        self.directory = directory
        self.settings = settings or EdmSettings()
        self.last_source = ""  # "snapshot", "database" or "empty": for messages and tests

    @classmethod
    def in_home(cls, home: Path, settings: EdmSettings | None = None) -> CachedDirectoryIndex:
        """The cache kept in the data directory (``<home>/cache``)."""
        return cls(home / "cache", settings)

    def load(self, session: Session, principal: Principal, keys: KeyRing) -> EdmIndex:
        from spillguard.customers.services import EdmIndexLoader

        principal.require(Permission.CUSTOMERS_VIEW)
        generation = directory_generation(session)
        if generation is None:
            self.last_source = "empty"
            return EdmIndexBuilder(keys, self.settings).build()
        try:
            index = load_snapshot(self.directory, generation, keys, self.settings)
        except SnapshotRejected as exc:
            log.info("edm_snapshot_rebuild", generation=generation, reason=str(exc))
        else:
            self.last_source = "snapshot"
            return index
        index = EdmIndexLoader(session, principal, keys, self.settings).load()
        self.last_source = "database"
        try:
            save_snapshot(index, self.directory, generation, keys)
        except OSError as exc:
            log.warning(
                "edm_snapshot_not_saved", reason=exc.strerror or type(exc).__name__
            )
        return index
