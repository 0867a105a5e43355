"""``spillguard audit ingest FILE``: read access events from a JSON-lines or CSV file, once
or following it like ``tail -F``.

The position reached (byte offset and line count) is kept in ``access_tail_positions`` and
committed in the same transaction as the events read up to it, so a tailer killed at any
moment resumes at the first line not committed: nothing is lost, nothing is read twice.
A file is recognised by the digest of its first line (JSON lines) or of its header and
first record (CSV, whose header is the same in every rotated file); when the file at the
path is another one (rotated, replaced) or shorter than the position, it is read from the
start.

Records are one per line (a CSV field may be quoted, but may not hold a line break). In
one-shot mode a last line without a line break is read; when following, a line is read
only once its line break has been written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.audit.ingest import (
    MAX_BATCH,
    AccessIngestService,
    Channel,
    IngestResult,
    Unparsed,
    source_bucket,
)
from spillguard.audit.models import AccessSource, AccessTailPosition
from spillguard.core.db import transaction, utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings

FIELDS = (
    "id",
    "time",
    "actor",
    "action",
    "system",
    "record_type",
    "customer_ids",
    "query",
    "result_count",
    "source_address",
)
REQUIRED = ("id", "time", "actor", "action", "system")
# Common header names of access-log exports, normalised (lower case, "_" for " " and "-").
HEADER_NAMES: dict[str, str] = {
    name: fieldname
    for fieldname, names in {
        "id": ("id", "event_id", "eventid", "log_id", "record_id", "entry_id", "uuid"),
        "time": (
            "time",
            "timestamp",
            "@timestamp",
            "datetime",
            "date_time",
            "event_time",
            "occurred_at",
            "logged_at",
        ),
        "actor": ("actor", "user", "username", "user_name", "user_id", "login", "employee"),
        "action": ("action", "operation", "activity", "event_type", "verb"),
        "system": ("system", "application", "app", "source_system"),
        "record_type": ("record_type", "recordtype", "object_type", "entity", "record_kind"),
        "customer_ids": (
            "customer_ids",
            "customer_id",
            "customer",
            "customers",
            "customer_ref",
            "account_id",
            "account",
        ),
        "query": ("query", "search", "search_terms", "search_query", "filter"),
        "result_count": ("result_count", "results", "result_rows", "rows", "records"),
        "source_address": (
            "source_address",
            "ip",
            "ip_address",
            "client_ip",
            "src_ip",
            "source_ip",
        ),
    }.items()
    for name in names
}
MAX_LINE_BYTES = 16 * 1024 * 1024


class TailError(Exception):
    """The file or the column mapping cannot be used; the message is one line."""


def normalise_header(name: str) -> str:
    return name.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class CsvLayout:
    """Which column holds which wire-format field."""

    columns: dict[int, str]
    list_separator: str

    def item(self, row: list[str]) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for index, name in self.columns.items():
            if index >= len(row):
                continue
            value = row[index].strip()
            if not value:
                continue
            if name == "customer_ids":
                item[name] = [v.strip() for v in value.split(self.list_separator) if v.strip()]
            else:
                item[name] = value
        return item


def csv_layout(header: list[str], mapping: dict[str, str], list_separator: str) -> CsvLayout:
    """Map header columns to fields: ``mapping`` (column -> field) first, then the common
    names. Raises :class:`TailError` naming what is wrong."""
    normalised = [normalise_header(h) for h in header]
    columns: dict[int, str] = {}
    for column, fieldname in mapping.items():
        if fieldname not in FIELDS:
            raise TailError(
                f"--map {column}={fieldname}: {fieldname!r} is not a field "
                f"(fields: {', '.join(FIELDS)})"
            )
        wanted = normalise_header(column)
        if wanted not in normalised:
            raise TailError(f"--map {column}={fieldname}: the header has no column {column!r}")
        columns[normalised.index(wanted)] = fieldname
    for index, name in enumerate(normalised):
        if index in columns:
            continue
        known = HEADER_NAMES.get(name)
        if known is not None and known not in columns.values():
            columns[index] = known
    missing = [f for f in REQUIRED if f not in columns.values()]
    if missing:
        raise TailError(
            f"the CSV header has no column for {', '.join(missing)}; "
            f"name one with --map COLUMN={missing[0]}"
        )
    return CsvLayout(columns, list_separator)


def parse_json_line(raw: bytes) -> dict[str, Any] | Unparsed:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Unparsed("not UTF-8", raw)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Unparsed("not valid JSON", raw)
    if not isinstance(value, dict):
        return Unparsed("not a JSON object", raw)
    return value


@dataclass
class TailOptions:
    """What to read and how."""

    source: str
    fmt: str = "jsonl"  # jsonl | csv
    mapping: dict[str, str] = field(default_factory=dict)
    list_separator: str = ";"
    batch: int = 1000
    follow: bool = False
    poll_seconds: float = 0.5


@dataclass
class TailSummary:
    """Totals over the run, and the first few reject reasons."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.rejected += len(result.rejects)
        for reject in result.rejects:
            if len(self.reasons) < 3:
                self.reasons.append(reject.reason)

    def line(self) -> str:
        text = f"accepted {self.accepted}, duplicates {self.duplicates}, rejected {self.rejected}"
        if self.reasons:
            more = ", ..." if self.rejected > len(self.reasons) else ""
            text += " (" + "; ".join(self.reasons) + more + ")"
        return text


class FileTailer:
    """Reads one file into the ingestion service, batch by batch, each batch committed
    together with the file position it reaches."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        keys: KeyRing,
        principal: Principal,
        path: Path,
        options: TailOptions,
    ) -> None:
        if options.fmt not in {"jsonl", "csv"}:
            raise TailError(f"unknown format {options.fmt!r}; use jsonl or csv")
        if not 1 <= options.batch <= MAX_BATCH:
            raise TailError(f"--batch must be between 1 and {MAX_BATCH}")
        if options.fmt == "jsonl" and options.mapping:
            raise TailError("--map applies to CSV files only")
        if len(options.list_separator) != 1:
            raise TailError("--list-separator must be one character")
        self.factory = factory
        self.settings = settings
        self.keys = keys
        self.principal = principal
        self.path = path
        self.key_path = str(path.resolve())
        self.options = options
        self.summary = TailSummary()

    # -- public --

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> TailSummary:
        """Read what is there (and, when following, what comes), until EOF or stopped."""
        if not self.options.follow:
            handle = self._open(must_exist=True)
            assert handle is not None
            with handle:
                self._drain(handle, final=True, should_stop=should_stop)
            return self.summary
        handle = None
        try:
            while not should_stop():
                if handle is None:
                    handle = self._open(must_exist=False)
                    if handle is None:
                        time.sleep(self.options.poll_seconds)
                        continue
                self._drain(handle, final=False, should_stop=should_stop)
                if self._replaced(handle):
                    handle.close()
                    handle = None
                    continue
                time.sleep(self.options.poll_seconds)
        finally:
            if handle is not None:
                handle.close()
        return self.summary

    # -- internals --

    def _open(self, *, must_exist: bool) -> IO[bytes] | None:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by run()
        except FileNotFoundError:
            if must_exist:
                raise TailError(f"{self.path}: no such file") from None
            return None
        except IsADirectoryError:
            raise TailError(f"{self.path} is a directory") from None
        except OSError as exc:
            raise TailError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return handle

    def _replaced(self, handle: IO[bytes]) -> bool:
        """True when the path now names another file, or the file was truncated."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated away, not yet re-created: keep the old one
        mine = os.fstat(handle.fileno())
        return (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev) or now.st_size < (
            handle.tell()
        )

    def _file_key(self, handle: IO[bytes], final: bool) -> tuple[str, list[bytes]] | None:
        """The file's identity and its leading lines (header for CSV), or None when the
        identifying lines are not complete yet."""
        handle.seek(0)
        wanted = 2 if self.options.fmt == "csv" else 1
        lines: list[bytes] = []
        for _ in range(wanted):
            line = handle.readline(MAX_LINE_BYTES)
            if not line:
                break
            if not line.endswith(b"\n") and not final:
                return None
            lines.append(line)
        if not lines or (len(lines) < wanted and not final):
            return None
        digest = hashlib.sha256(b"".join(lines)).hexdigest()
        return digest, lines

    def _drain(self, handle: IO[bytes], *, final: bool, should_stop: Callable[[], bool]) -> None:
        identity = self._file_key(handle, final)
        if identity is None:
            return
        key, lead = identity
        layout: CsvLayout | None = None
        header_end = 0
        if self.options.fmt == "csv":
            header = next(csv.reader([lead[0].decode("utf-8", "replace")]), [])
            layout = csv_layout(header, self.options.mapping, self.options.list_separator)
            header_end = len(lead[0])
        size = os.fstat(handle.fileno()).st_size
        with transaction(self.factory) as session:
            position = self._position(session)
            offset, lines = 0, 0
            if position is not None and position.file_key == key and position.offset <= size:
                offset, lines = position.offset, position.lines
        if offset < header_end:
            offset, lines = header_end, 1
        handle.seek(offset)
        for batch, end, end_lines in self._batches(handle, offset, lines, layout, final):
            if should_stop():
                return
            self._commit(batch, key, end, end_lines)

    def _batches(
        self,
        handle: IO[bytes],
        offset: int,
        lines: int,
        layout: CsvLayout | None,
        final: bool,
    ) -> Iterator[tuple[list[tuple[str, Any]], int, int]]:
        batch: list[tuple[str, Any]] = []
        start = offset
        while True:
            raw = handle.readline(MAX_LINE_BYTES)
            if not raw:
                break
            if not raw.endswith(b"\n") and not final and len(raw) < MAX_LINE_BYTES:
                handle.seek(offset)  # wait for the rest of the line
                break
            offset += len(raw)
            lines += 1
            stripped = raw.strip()
            if stripped:
                batch.append((f"line {lines}", self._item(stripped, layout)))
            if len(batch) >= self.options.batch:
                yield batch, offset, lines
                batch, start = [], offset
        if batch or offset != start:
            yield batch, offset, lines

    def _item(self, raw: bytes, layout: CsvLayout | None) -> Any:
        if len(raw) >= MAX_LINE_BYTES:
            return Unparsed(f"longer than {MAX_LINE_BYTES} bytes", raw[:1024])
        if layout is None:
            return parse_json_line(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Unparsed("not UTF-8", raw)
        try:
            row = next(csv.reader([text]), [])
        except csv.Error:
            return Unparsed("not a CSV record", raw)
        return layout.item(row)

    def _position(self, session: Session) -> AccessTailPosition | None:
        return session.scalar(
            select(AccessTailPosition)
            .join(AccessSource, AccessSource.id == AccessTailPosition.source_id)
            .where(AccessSource.name == self.options.source)
            .where(AccessTailPosition.path == self.key_path)
        )

    def _commit(self, batch: list[tuple[str, Any]], key: str, offset: int, lines: int) -> None:
        items = [item for _, item in batch]
        # Back-pressure: wait for the source's tokens before opening the transaction.
        bucket = source_bucket(self.settings, self.options.source)
        if bucket is not None and items:
            bucket.take_blocking(len(items))
        with transaction(self.factory) as session:
            service = AccessIngestService(session, self.settings, self.keys, self.principal)
            result = service.ingest(
                self.options.source,
                items,
                Channel.FILE,
                positions=[p for p, _ in batch],
                rate_limit="off",
            )
            position = self._position(session)
            if position is None:
                source_id = session.scalar(
                    select(AccessSource.id).where(AccessSource.name == self.options.source)
                )
                assert source_id is not None  # ingest() created it
                position = AccessTailPosition(source_id=source_id, path=self.key_path)
                session.add(position)
            position.file_key = key
            position.offset = offset
            position.lines = lines
            position.updated_at = utcnow()
        self.summary.add(result)
