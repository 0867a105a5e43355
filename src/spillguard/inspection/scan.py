"""Scanning: files, bytes and streams in, one :class:`InspectionReport` per item out.

:func:`scan` extracts an item (:func:`~spillguard.inspection.extract.extract`), scans
every part with the inspection engine and, given an EDM index, matches customers —
in running text within the proximity window (``match_text``), in tables within the same
row (``match_rows``) — and classifies the result (:func:`classify`).

:func:`scan_paths` walks files and directories (recursively) and scans them in order,
in one process or a pool of forked processes; :func:`scan_paths_dask` submits one task
per file to an existing Dask scheduler.  Both yield reports one at a time, so memory
stays bounded by the files in flight, not by the number of files.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import structlog

from spillguard.inspection.classify import (
    FindingLocation,
    InspectionReport,
    LabelRules,
    classify,
)
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.engine import Finding, InspectionEngine
from spillguard.inspection.extract import (
    ExtractedPart,
    ExtractLimits,
    PartKind,
    Source,
    extract,
    not_a_regular_file,
)

if TYPE_CHECKING:  # customers imports the detectors: import it lazily at run time
    from spillguard.customers.edm import EdmIndex, EdmSettings

__all__ = ["iter_files", "scan", "scan_paths", "scan_paths_dask"]

log = structlog.get_logger(__name__)

_HASH_CHUNK = 1024 * 1024

_ENGINES: dict[str, InspectionEngine] = {}


def default_engine(settings: DetectorSettings | None = None) -> InspectionEngine:
    """One engine per detector settings and process, built on first use."""
    settings = settings or DetectorSettings()
    key = settings.model_dump_json()
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = InspectionEngine(settings=settings)
    return engine


# --- one item -----------------------------------------------------------------------


def scan(
    source: Source,
    *,
    name: str | None = None,
    engine: InspectionEngine | None = None,
    edm_index: EdmIndex | None = None,
    limits: ExtractLimits | None = None,
    label_rules: LabelRules | None = None,
    max_findings: int = 1000,
) -> InspectionReport:
    """Inspect one item (bytes, a path or a binary stream) and classify it.

    ``name`` names the item in the report (default: the path as given, else
    ``<bytes>``/the stream's name).  Never raises for bad content or an unreadable path:
    those are reported as ``unscannable``; an engine timeout or failure as
    ``uninspected``.  Reports hold masked values only.
    """
    engine = engine or default_engine()
    digest: str | None = None
    size: int | None = None
    hashing: _HashingReader | None = None
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
        display = name or "<bytes>"
    elif isinstance(source, str | os.PathLike):
        display = name or os.fspath(source)
        digest, size = _hash_file(Path(source))
    else:
        display = name or str(getattr(source, "name", "") or "<stream>")
        if _seekable(source):
            digest, size = _hash_seekable(source)
        else:
            hashing = _HashingReader(source)
            source = cast(BinaryIO, hashing)
    extraction = extract(source, name, limits)
    if hashing is not None:
        digest, size = hashing.finish()
    found: list[tuple[Finding, FindingLocation]] = []
    records: list[Any] = []
    primary_only: list[Any] = []
    uninspected: list[tuple[str, str]] = []
    for part in extraction.parts:
        if part.kind is PartKind.TABLE and part.rows is not None:
            reason = _scan_table(engine, edm_index, part, found, records, primary_only)
        else:
            reason = _scan_text(engine, edm_index, part, found, records, primary_only)
        if reason is not None:
            uninspected.append((part.path, reason))
    return classify(
        display,
        sha256=digest,
        size=size,
        format=extraction.format,
        findings=found,
        records=records,
        primary_only=primary_only,
        unscannable=[(u.path, u.reason) for u in extraction.unscannable],
        uninspected=uninspected,
        parts=len(extraction.parts),
        rules=label_rules,
        max_findings=max_findings,
    )


def _scan_text(
    engine: InspectionEngine,
    edm_index: EdmIndex | None,
    part: ExtractedPart,
    found: list[tuple[Finding, FindingLocation]],
    records: list[Any],
    primary_only: list[Any],
) -> str | None:
    text = part.text
    result = engine.scan_text(text)
    if not result.inspected:
        return f"uninspected: {result.reason}"
    line, line_start, position = 1, 0, 0
    for finding in sorted(result.findings, key=lambda f: f.start):
        newlines = text.count("\n", position, finding.start)
        if newlines:
            line += newlines
            line_start = text.rindex("\n", position, finding.start) + 1
        position = finding.start
        column = finding.start - line_start
        location = FindingLocation(
            part.path,
            start=column,
            end=column + finding.end - finding.start,
            line=line,
            column=column + 1,
        )
        found.append((finding, location))
    if edm_index is not None and result.findings:
        try:
            matched = edm_index.match_text(text, result.findings)
        except Exception as exc:  # fail closed: never "no customers" on an EDM failure
            return f"uninspected: exact data match failed: {type(exc).__name__}"
        records.extend(matched.records)
        primary_only.extend(matched.primary_only)
    return None


def _scan_table(
    engine: InspectionEngine,
    edm_index: EdmIndex | None,
    part: ExtractedPart,
    found: list[tuple[Finding, FindingLocation]],
    records: list[Any],
    primary_only: list[Any],
) -> str | None:
    """One engine pass over the table, each row on its own line with its cells joined
    by tabs and each cell preceded by its column header (so a ``date_of_birth`` or
    ``sort_code`` header is context for every row); findings mapped back to cells."""
    rows = part.rows or []
    # The findings of scan_text(table_text(rows).text), read column by column; only the
    # offsets of the laid-out text are needed below (it is built only if a cell needed it).
    result = engine.scan_table(rows)
    table = result.table
    assert table is not None  # scan_table always lays the table out
    table.text = ""
    if not result.inspected:
        return f"uninspected: {result.reason}"
    in_cells: list[tuple[int, int, Finding]] = []
    for finding in result.findings:
        where = table.locate(finding.start)
        if where is None:  # inside a header label or a separator
            continue
        r, c, offset, length = where
        in_cells.append((r, c, finding))
        location = FindingLocation(
            part.path,
            start=offset,
            end=min(length, offset + finding.end - finding.start),
            row=r + 1,
            cell=c + 1,
        )
        found.append((finding, location))
    if edm_index is not None:
        try:
            matched = edm_index.match_rows(rows, in_cells)
        except Exception as exc:  # fail closed
            return f"uninspected: exact data match failed: {type(exc).__name__}"
        records.extend(matched.records)
        primary_only.extend(matched.primary_only)
    return None


# --- hashing ------------------------------------------------------------------------


def _hash_file(path: Path) -> tuple[str | None, int | None]:
    if not_a_regular_file(path) is not None:  # extract reports it; reading would hang
        return None, None
    try:
        with path.open("rb") as handle:
            return _hash_stream(handle)
    except OSError:
        return None, None


def _hash_stream(handle: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _hash_seekable(stream: BinaryIO) -> tuple[str | None, int | None]:
    try:
        stream.seek(0)
        result = _hash_stream(stream)
        stream.seek(0)
    except (OSError, ValueError):
        return None, None
    return result


class _HashingReader(io.RawIOBase):
    """A one-way stream that hashes what is read through it; :meth:`finish` reads the
    rest (in chunks, for the hash only) and returns the digest and size."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self._digest = hashlib.sha256()
        self._size = 0
        self._failed = False
        self.name = str(getattr(inner, "name", "") or "")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self._inner.read(-1 if size is None else size)
        except (OSError, ValueError):
            self._failed = True
            raise
        self._digest.update(data)
        self._size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> tuple[str | None, int | None]:
        try:
            while self.read(_HASH_CHUNK):
                pass
        except (OSError, ValueError):
            return None, None
        if self._failed:
            return None, None
        return self._digest.hexdigest(), self._size


# --- many files ---------------------------------------------------------------------


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Every file under ``paths``, directories walked recursively in name order.

    Symbolic links to directories are not followed.  A path that does not exist or
    cannot be listed is yielded as it is, so its report says ``unreadable``.
    """
    for given in paths:
        path = os.fspath(given)
        if not os.path.isdir(path):
            yield path
            continue
        failed: list[OSError] = []
        for root, dirs, files in os.walk(path, onerror=failed.append):
            dirs.sort()
            for file_name in sorted(files):
                yield os.path.join(root, file_name)
        for error in failed:
            if error.filename and error.filename != path:
                yield str(error.filename)
            elif error.filename == path:
                yield path


@dataclass(frozen=True)
class _Job:
    engine: InspectionEngine | None
    detector_settings: DetectorSettings | None
    edm_index: EdmIndex | None
    limits: ExtractLimits | None
    label_rules: LabelRules | None
    max_findings: int

    def run(self, path: str) -> InspectionReport:
        engine = self.engine or default_engine(self.detector_settings)
        return scan(
            path,
            engine=engine,
            edm_index=self.edm_index,
            limits=self.limits,
            label_rules=self.label_rules,
            max_findings=self.max_findings,
        )


_FORKED_JOB: _Job | None = None


def _run_forked(path: str) -> InspectionReport:
    if _FORKED_JOB is None:
        raise RuntimeError("scan worker started without a job")
    return _FORKED_JOB.run(path)


def scan_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int = 1,
    engine: InspectionEngine | None = None,
    detector_settings: DetectorSettings | None = None,
    edm_index: EdmIndex | None = None,
    limits: ExtractLimits | None = None,
    label_rules: LabelRules | None = None,
    max_findings: int = 1000,
) -> Iterator[InspectionReport]:
    """Scan every file under ``paths`` (recursively), yielding reports in file order.

    ``workers`` > 1 scans in that many forked processes; the engine and the EDM index
    are inherited by the fork (the key never goes through a pipe), each worker holds one
    file at a time, and reports come back in order.  Where ``fork`` is unavailable the
    scan runs in this process.
    """
    job = _Job(engine, detector_settings, edm_index, limits, label_rules, max_findings)
    files = iter_files(paths)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for path in files:
            yield job.run(path)
        return
    if job.engine is None:  # build once in the parent, shared by every fork
        job = _Job(
            default_engine(detector_settings),
            None,
            edm_index,
            limits,
            label_rules,
            max_findings,
        )
    global _FORKED_JOB
    _FORKED_JOB = job
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, maxtasksperchild=1000) as pool:
            yield from pool.imap(_run_forked, files, chunksize=1)
    finally:
        _FORKED_JOB = None


# --- Dask ---------------------------------------------------------------------------


class _EdmKey:
    """Stands in for the key ring on a Dask worker: it can give the EDM field-hash key
    only (derived from the master key), never the master key itself."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def derive(self, purpose: str, length: int = 32) -> bytes:
        from spillguard.customers.edm import EDM_KEY_PURPOSE

        if purpose != EDM_KEY_PURPOSE or length != len(self._key):
            raise PermissionError("only the EDM field-hash key travels to scan workers")
        return self._key


@dataclass(frozen=True)
class _PortableIndex:
    """An EDM index as plain data for a Dask worker: hash arrays, ids and the EDM key."""

    token: str
    key: bytes
    settings: EdmSettings
    ids: list[str]
    primary_keys: Any
    primary_owners: Any
    support: Any
    offsets: Any

    @classmethod
    def of(cls, index: EdmIndex, keyring: Any) -> _PortableIndex:
        from spillguard.customers.edm import EDM_KEY_PURPOSE

        return cls(
            token=uuid.uuid4().hex,
            key=keyring.derive(EDM_KEY_PURPOSE),
            settings=index.settings,
            ids=index._ids,
            primary_keys=index._primary_keys,
            primary_owners=index._primary_owners,
            support=index._support,
            offsets=index._offsets,
        )

    def rebuild(self) -> EdmIndex:
        from spillguard.customers.edm import BuildStats, EdmIndex

        return EdmIndex(
            keyring=_EdmKey(self.key),  # type: ignore[arg-type]
            settings=self.settings,
            ids=self.ids,
            primary_keys=self.primary_keys,
            primary_owners=self.primary_owners,
            support=self.support,
            offsets=self.offsets,
            stats=BuildStats(customers=len(self.ids)),
        )


_DASK_INDEXES: dict[str, EdmIndex] = {}


def _dask_scan(
    path: str,
    portable: _PortableIndex | None,
    detector_settings: DetectorSettings | None,
    limits: ExtractLimits | None,
    label_rules: LabelRules | None,
    max_findings: int,
) -> InspectionReport:
    index = None
    if portable is not None:
        index = _DASK_INDEXES.get(portable.token)
        if index is None:
            index = _DASK_INDEXES[portable.token] = portable.rebuild()
    job = _Job(None, detector_settings, index, limits, label_rules, max_findings)
    return job.run(path)


def scan_paths_dask(
    paths: Iterable[str | os.PathLike[str]],
    address: str | Any,
    *,
    detector_settings: DetectorSettings | None = None,
    edm_index: EdmIndex | None = None,
    edm_keyring: Any = None,
    limits: ExtractLimits | None = None,
    label_rules: LabelRules | None = None,
    max_findings: int = 1000,
    in_flight: int | None = None,
) -> Iterator[InspectionReport]:
    """Scan every file under ``paths`` on an existing Dask cluster, one task per file.

    ``address`` is the scheduler address (``tcp://host:8786``) or a connected
    ``distributed.Client``.  Workers read the files themselves: the paths must be
    readable by them at the same place (a shared file system).  With an EDM index,
    ``edm_keyring`` (the :class:`~spillguard.core.keys.KeyRing` it was built with) is
    needed: the index's hash arrays and the EDM field-hash key derived from the master
    key (never the master key) are sent to every worker once — run the cluster over TLS
    on a trusted network.  At most ``in_flight`` tasks (default: 4 per worker thread)
    are outstanding; reports are yielded in file order.
    """
    from distributed import Client

    if edm_index is not None and edm_keyring is None:
        raise ValueError("scan_paths_dask with an EDM index needs edm_keyring")
    own = not isinstance(address, Client)
    client: Any = Client(address, set_as_default=False) if own else address
    try:
        portable = None
        if edm_index is not None:
            shared = _PortableIndex.of(edm_index, edm_keyring)
            portable = client.scatter(shared, broadcast=True, hash=False)
        if in_flight is None:
            threads = sum(client.nthreads().values()) or 1
            in_flight = 4 * threads
        pending: list[Any] = []
        args = (portable, detector_settings, limits, label_rules, max_findings)

        def submit(path: str) -> None:
            pending.append(
                client.submit(_dask_scan, path, *args, pure=False, key=f"scan-{uuid.uuid4().hex}")
            )

        files = iter_files(paths)
        for path in files:
            submit(path)
            if len(pending) >= in_flight:
                break
        while pending:
            future = pending.pop(0)
            report: InspectionReport = future.result()
            future.release()
            nxt = next(files, None)
            if nxt is not None:
                submit(nxt)
            yield report
    finally:
        if own:
            client.close()


def files_of(paths: Sequence[str]) -> list[str]:
    """Every file under ``paths`` as a list (for a progress total); paths only."""
    return list(iter_files(paths))
