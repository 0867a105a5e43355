"""Ingestion of access events from the systems that hold customer records (issue 7 §2).

Every channel (REST batches, the file tailer, syslog) hands a batch of raw items to
:class:`AccessIngestService`, which

1. checks the caller may ingest and that the batch is within limits;
2. validates each item against the wire format (:class:`AccessEventIn`), turning every
   refusal into a reason that names the item and the field but never quotes the value
   (a value may be a customer id or a query);
3. drops duplicates (same source, same source event id), within the batch and against
   what is already stored;
4. writes, in the caller's transaction and in bulk (this is a hot path), one
   ``access_events`` row, its ``access_event_customers`` rows and one ``audit_events`` row
   per accepted event (so each access is in the tamper-evident log), the ``access_rejects``
   rows, and the source's counters;
5. hands the new events to the streaming detectors (``audit.detect.on_ingested``).

A query's text is never stored: only its HMAC-SHA256 under a key derived for this purpose.
Rate limiting is a token bucket per source held in this process (:class:`RateLimiter`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from ipaddress import ip_address
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from spillguard.audit.log import EVENT_COLUMNS
from spillguard.audit.models import AccessEvent, AccessEventCustomer, AccessReject, AccessSource
from spillguard.core.db import insert_rows, utcnow
from spillguard.core.errors import ContentTooLarge, InvalidInput, Throttled
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.customers.honeytokens import honeytoken_ids

ACCESS_QUERY_KEY_PURPOSE = "spillguard/v1/access-query"
MAX_BATCH = 5_000
MAX_CUSTOMER_IDS = 100_000
MAX_QUERY_CHARS = 100_000
MAX_RECORDS = 2**31 - 1
FUTURE_TOLERANCE = timedelta(minutes=5)
# A source's name: printable ASCII without spaces (syslog HOSTNAME/APP-NAME fit).
SOURCE_NAME = re.compile(r"^[!-~]{1,100}$")
# RFC 3339 date-time (section 5.6), with the offset required.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)
# Bound parameters per statement chunk (SQLite's default limit is 32,766).
_CHUNK = 900


class AccessAction(StrEnum):
    """What an actor did with customer records in the source system."""

    VIEW = "view"
    SEARCH = "search"
    EXPORT = "export"
    PRINT = "print"
    UPDATE = "update"


class AccessAuditAction(StrEnum):
    """The audit-event name of each ingested access (``audit:access:<action>``)."""

    VIEW = "audit:access:view"
    SEARCH = "audit:access:search"
    EXPORT = "audit:access:export"
    PRINT = "audit:access:print"
    UPDATE = "audit:access:update"


class Channel(StrEnum):
    """How events reached Spillguard (kept on each reject)."""

    REST = "rest"
    FILE = "file"
    SYSLOG = "syslog"


class BatchTooLarge(ContentTooLarge):
    title = "Batch too large"
    slug = "access-batch-too-large"


class InvalidSource(InvalidInput):
    title = "Invalid source name"
    slug = "access-invalid-source"


class IngestRateLimited(Throttled):
    """The source sent more events than its rate allows; nothing of the batch was taken."""

    title = "Too many events from this source"
    slug = "access-rate-limited"
    keep_changes = False


def _int_to_str(value: Any) -> Any:
    # Source systems often number their events and customers; bool is not a number here.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


SourceId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    BeforeValidator(_int_to_str),
]
CustomerRef = SourceId


@functools.lru_cache(maxsize=4096)
def canonical_ip(value: str) -> str | None:
    """The canonical text of an IP address, or None when it is not one. Cached: a source
    sends the same few addresses again and again, and parsing one costs more than the
    rest of an event's validation."""
    try:
        return str(ip_address(value))
    except ValueError:
        return None


class AccessEventIn(BaseModel):
    """One access event on the wire (JSON; CSV columns map to these names).

    Unknown fields are refused, not ignored: a misspelt ``customer_id`` would otherwise be
    accepted as an access touching no record, and the detectors would never see it.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=False)

    id: SourceId
    time: datetime
    actor: str = Field(min_length=1, max_length=320)
    action: AccessAction
    system: str = Field(min_length=1, max_length=100)
    record_type: str | None = Field(default=None, min_length=1, max_length=64)
    customer_ids: list[CustomerRef] | None = Field(default=None, max_length=MAX_CUSTOMER_IDS)
    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    result_count: int | None = Field(default=None, ge=0, le=MAX_RECORDS)
    source_address: str | None = Field(default=None, max_length=64)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000 (SQLite can): refused here, item by item,
        # so one such event never fails its batch on one database and not the other.
        if isinstance(value, str):
            texts: list[Any] = [value]
        elif isinstance(value, list):
            texts = value
        else:
            return value
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            raise ValueError("contains a NUL character, which cannot be stored")
        return value

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any, info: ValidationInfo) -> datetime:
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 date-time string")
        match = RFC3339.match(value.strip())
        if match is None:
            raise ValueError("not an RFC 3339 date-time")
        if match.group("offset") is None:
            raise ValueError("has no UTC offset (give Z or +hh:mm)")
        text = value.strip().replace("t", "T").replace("z", "Z")
        try:
            parsed = datetime.fromisoformat(text)
            parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise ValueError("not a valid date-time") from None
        now = (info.context or {}).get("now")
        if now is not None and parsed > now + FUTURE_TOLERANCE:
            raise ValueError("more than 5 minutes in the future")
        return parsed

    @field_validator("source_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normal = canonical_ip(value)
        if normal is None:
            raise ValueError("not an IP address")
        return normal

    @property
    def records(self) -> int:
        """Records the access touched: its customer ids, else the reported result count."""
        if self.customer_ids is not None:
            return len(self.customer_ids)
        return self.result_count or 0


@dataclass(frozen=True)
class Unparsed:
    """An item a channel could not even decode (bad JSON line, bad syslog message):
    handed to the service so its refusal is counted with the others."""

    reason: str
    raw: bytes | str = b""


@dataclass(frozen=True)
class IngestReject:
    """A refused item: where it was in the batch (index, line...) and why."""

    index: int
    position: str
    reason: str


@dataclass
class IngestResult:
    """What one batch did. ``events`` are the new ``AccessEvent`` rows, in the batch's
    order (with their ids; written in bulk, so not in the session); their customer ids
    are in ``access_event_customers`` and in ``customer_refs`` (event id -> ids)."""

    accepted: int = 0
    duplicates: int = 0
    rejects: list[IngestReject] = field(default_factory=list)
    events: list[AccessEvent] = field(default_factory=list)
    customer_refs: dict[int, list[str]] = field(default_factory=dict)


def item_digest(item: Any) -> str:
    """SHA-256 (hex) of a raw item as received, so a sender can find a refused item."""
    if isinstance(item, Unparsed):
        item = item.raw
    if isinstance(item, str):
        data = item.encode("utf-8", "surrogatepass")
    elif isinstance(item, bytes):
        data = item
    else:
        try:
            data = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str).encode(
                "utf-8", "surrogatepass"
            )
        except (TypeError, ValueError):
            data = repr(item).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    name = ".".join(parts) or "item"
    return name[:60]


def describe_errors(exc: ValidationError) -> str:
    """Reasons of a validation failure, one per field, naming the field and never the value."""
    reasons: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            reasons.append(f"unknown field {_field_name(loc)!r}")
            continue
        if kind == "missing":
            reasons.append(f"{_field_name(loc)}: missing")
            continue
        if kind == "model_type":
            reasons.append("not a JSON object")
            continue
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        # Pydantic messages describe the expectation, not the input; still cut them short.
        reasons.append(f"{_field_name(loc)}: {message[:120]}")
    return "; ".join(dict.fromkeys(reasons))


def normalise_query(query: str) -> str:
    """The form a query is digested in: whitespace collapsed, case folded, so the same
    search typed twice gives the same digest."""
    return " ".join(query.split()).casefold()


# --- rate limiting -------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per event.

    A batch larger than ``burst`` is let through when the bucket is full and leaves it in
    debt, so a big batch waits its turn instead of being refused forever.
    """

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self, n: int) -> float:
        """Take ``n`` tokens and return 0, or take nothing and return the seconds to wait."""
        with self.lock:
            self._refill()
            need = min(float(n), self.burst)
            if self.tokens >= need:
                self.tokens -= n
                return 0.0
            return (need - self.tokens) / self.rate

    def take_blocking(self, n: int, sleep: Any = time.sleep) -> float:
        """Wait until ``n`` tokens can be taken (back-pressure); return the seconds waited."""
        waited = 0.0
        while True:
            wait = self.try_take(n)
            if wait <= 0:
                return waited
            sleep(wait)
            waited += wait


class RateLimiter:
    """The buckets of every source, in this process only: with several server processes
    each enforces the rate on its own, so a source may send up to N times the rate."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, float, float], TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, source: str, rate: float, burst: float) -> TokenBucket | None:
        """The bucket of a source, or None when rate limiting is off (rate 0)."""
        if rate <= 0:
            return None
        key = (source, rate, burst)
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(rate, burst)
            return found


LIMITER = RateLimiter()


def source_bucket(settings: Settings, source: str) -> TokenBucket | None:
    """The process-wide bucket of ``source`` under the configured rate and burst."""
    return LIMITER.bucket(
        source, float(settings.access_ingest_rate), float(settings.access_ingest_burst)
    )


# --- the service ---------------------------------------------------------------------


class AccessIngestService:
    """Validates, deduplicates and stores batches of access events from one source.

    Flushes only: the caller commits (the request, the tailer with its file position,
    the syslog server per small batch), so an acknowledged batch is durable.
    """

    def __init__(
        self, session: Session, settings: Settings, keys: KeyRing, principal: Principal
    ) -> None:
        self.session = session
        self.settings = settings
        self.keys = keys
        self.principal = principal
        self._query_key: bytes | None = None

    def query_digest(self, query: str) -> bytes:
        """HMAC-SHA256 of a normalised query under the access-query key."""
        if self._query_key is None:
            self._query_key = self.keys.derive(ACCESS_QUERY_KEY_PURPOSE)
        return hmac.new(self._query_key, normalise_query(query).encode(), hashlib.sha256).digest()

    def ingest(
        self,
        source: str,
        items: Sequence[Any],
        channel: str,
        *,
        positions: Sequence[str] | None = None,
        rate_limit: str = "refuse",
        now: datetime | None = None,
    ) -> IngestResult:
        """Ingest one batch from ``source`` and return what was accepted and refused.

        ``positions`` names each item in reject reasons ("line 17"; default "item <i>").
        ``rate_limit``: "refuse" raises :class:`IngestRateLimited` (REST: 429) taking
        nothing; "wait" blocks until the source's bucket allows the batch (tailer, syslog
        over TCP); "off" skips the bucket (the caller already took the tokens).
        """
        self.principal.require(Permission.ACCESS_INGEST)
        if not isinstance(source, str) or not SOURCE_NAME.match(source):
            raise InvalidSource(
                "'source' must be 1-100 printable ASCII characters without spaces.",
                field="source",
            )
        if len(items) > MAX_BATCH:
            raise BatchTooLarge(
                f"A batch holds at most {MAX_BATCH} events; this one has {len(items)}."
            )
        if positions is not None and len(positions) != len(items):
            raise ValueError("positions must name every item")
        if items and rate_limit != "off":
            bucket = source_bucket(self.settings, source)
            if bucket is not None:
                if rate_limit == "wait":
                    bucket.take_blocking(len(items))
                else:
                    wait = bucket.try_take(len(items))
                    if wait > 0:
                        raise IngestRateLimited(
                            f"Source {source!r} is over its rate of "
                            f"{self.settings.access_ingest_rate:g} events/s; nothing of this "
                            "batch was ingested. Retry after the time given.",
                            retry_after=max(1, math.ceil(wait)),
                        )
        now = now or utcnow()
        source_id = self._source_id(source)
        result = IngestResult()
        valid: list[tuple[int, AccessEventIn]] = []
        seen: set[str] = set()
        reject_rows: list[dict[str, Any]] = []

        def refuse(index: int, reason: str, item: Any) -> None:
            position = positions[index] if positions is not None else f"item {index}"
            # A reason may quote an unknown field's name: never a NUL into the database.
            full = f"{position}: {reason}".replace("\x00", "\\0")[:500]
            result.rejects.append(IngestReject(index, position, full))
            reject_rows.append(
                {
                    "source_id": source_id,
                    "channel": str(channel)[:16],
                    "received_at": now,
                    "position": position[:100],
                    "reason": full,
                    "item_digest": item_digest(item),
                }
            )

        context = {"now": now}
        for index, item in enumerate(items):
            if isinstance(item, Unparsed):
                refuse(index, item.reason, item)
                continue
            if not isinstance(item, dict):
                refuse(index, "not a JSON object", item)
                continue
            try:
                event = AccessEventIn.model_validate(item, context=context)
            except ValidationError as exc:
                refuse(index, describe_errors(exc), item)
                continue
            if event.id in seen:
                result.duplicates += 1
                continue
            seen.add(event.id)
            valid.append((index, event))

        stored = self._stored_ids(source_id, [e.id for _, e in valid])
        fresh = [e for _, e in valid if e.id not in stored]
        result.duplicates += len(valid) - len(fresh)
        if fresh:
            self._write(source, source_id, fresh, now, result)
        conn = self.session.connection()
        insert_rows(conn, AccessReject.__table__, reject_rows)
        conn.execute(
            update(AccessSource)
            .where(AccessSource.id == source_id)
            .values(
                accepted=AccessSource.accepted + result.accepted,
                duplicates=AccessSource.duplicates + result.duplicates,
                rejected=AccessSource.rejected + len(result.rejects),
                **({"last_event_at": now} if result.accepted else {}),
                **({"last_reject_at": now} if result.rejects else {}),
            )
        )
        if result.events:
            from spillguard.audit.detect import on_ingested

            on_ingested(self.session, self.settings, result.events, now, result.customer_refs)
        return result

    def record_rejects(
        self, source: str | None, rejects: Sequence[tuple[str, str, Any]], channel: str
    ) -> None:
        """Count refusals a channel made itself (syslog: bad framing, a message that is not
        RFC 5424) as ``(position, reason, raw)``: they are visible like any other reject.
        ``source`` is None when the sender could not be named (no source counters then)."""
        self.principal.require(Permission.ACCESS_INGEST)
        if not rejects:
            return
        now = utcnow()
        source_id = self._source_id(source) if source is not None else None
        rows = [
            {
                "source_id": source_id,
                "channel": str(channel)[:16],
                "received_at": now,
                "position": position[:100],
                "reason": f"{position}: {reason}"[:500],
                "item_digest": item_digest(raw),
            }
            for position, reason, raw in rejects
        ]
        conn = self.session.connection()
        insert_rows(conn, AccessReject.__table__, rows)
        if source_id is not None:
            conn.execute(
                update(AccessSource)
                .where(AccessSource.id == source_id)
                .values(rejected=AccessSource.rejected + len(rows), last_reject_at=now)
            )

    # -- internals --

    def _source_id(self, name: str) -> int:
        """The source's id, creating it on first use; locks its row (PostgreSQL) so two
        batches of one source are stored one after the other (duplicates stay exact)."""
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        conn.execute(
            upsert(AccessSource)
            .values(name=name, accepted=0, duplicates=0, rejected=0, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        found = conn.execute(
            select(AccessSource.id).where(AccessSource.name == name).with_for_update()
        ).scalar_one()
        return int(found)

    def _stored_ids(self, source_id: int, ids: list[str]) -> set[str]:
        """Which of ``ids`` the source already sent. On PostgreSQL one statement with the
        ids as one array: an IN list of bound parameters, once prepared, gets a generic
        plan that compares every stored event of the source with every id (seconds per
        batch once the source has sent 100,000 events); joining the unnested array to the
        unique index costs one index probe per id whatever the plan."""
        if not ids:
            return set()
        if self.session.get_bind().dialect.name == "postgresql":
            rows = self.session.execute(
                text(
                    "SELECT e.source_event_id FROM unnest(CAST(:ids AS varchar[])) AS t(id) "
                    "JOIN access_events e ON e.source_id = :source AND e.source_event_id = t.id"
                ),
                {"ids": ids, "source": source_id},
            ).scalars()
            return set(rows)
        stored: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            stored.update(
                self.session.execute(
                    select(AccessEvent.source_event_id).where(
                        AccessEvent.source_id == source_id,
                        AccessEvent.source_event_id.in_(chunk),
                    )
                ).scalars()
            )
        return stored

    def _write(
        self,
        source: str,
        source_id: int,
        events: list[AccessEventIn],
        now: datetime,
        result: IngestResult,
    ) -> None:
        """Store the new events: their ``audit_events``, ``access_events`` and
        ``access_event_customers`` rows, each table in one bulk statement of rows already
        in the database's own form (see :class:`_BulkWriter`)."""
        conn = self.session.connection()
        writer = _BulkWriter(conn)
        request_id = self.principal.request_id
        audit_ids = writer.new_ids(AuditEvent.__table__, len(events))
        access_ids = writer.new_ids(AccessEvent.__table__, len(events))
        stamp = writer.time(now)
        audit_rows: list[tuple[Any, ...]] = []
        access_rows: list[tuple[Any, ...]] = []
        customer_rows: list[tuple[int, str]] = []
        new_instance = AccessEvent.__mapper__.class_manager.new_instance
        for event, audit_id, access_id in zip(events, audit_ids, access_ids, strict=True):
            digest = self.query_digest(event.query) if event.query is not None else None
            ids = event.customer_ids
            single = ids[0] if ids is not None and len(ids) == 1 and len(ids[0]) <= 64 else None
            action = event.action.value
            details = {
                "source": source,
                "source_event_id": event.id,
                "system": event.system,
                "action": action,
                "record_type": event.record_type,
                "time": event.time.isoformat(),
                "customer_ids": ids,
                "query_digest": digest.hex() if digest is not None else None,
                "result_count": event.result_count,
            }
            audit_rows.append(
                (
                    audit_id,
                    stamp,
                    _AUDIT_ACTION[action],
                    "success",
                    "external",
                    None,
                    event.actor,
                    "customer",
                    single,
                    event.source_address,
                    request_id,
                    writer.json(details),
                )
            )
            occurred = event.time.astimezone(UTC)
            records = event.records
            access_rows.append(
                (
                    access_id,
                    source_id,
                    event.id,
                    audit_id,
                    event.actor,
                    action,
                    event.system,
                    event.record_type,
                    writer.time(occurred),
                    stamp,
                    event.source_address,
                    digest,
                    records,
                )
            )
            refs = list(dict.fromkeys(ids)) if ids else []
            customer_rows.extend([(access_id, r) for r in refs])
            result.customer_refs[access_id] = refs
            # The detectors read these values; building ORM objects attribute by attribute
            # (or loading them back) costs more than writing them, so each object gets its
            # values directly, as the ORM's own loader does. They are not in the session.
            instance = new_instance()
            instance.__dict__.update(
                id=access_id,
                source_id=source_id,
                source_event_id=event.id,
                audit_event_id=audit_id,
                actor=event.actor,
                action=action,
                system=event.system,
                record_type=event.record_type,
                occurred_at=occurred,
                received_at=now,
                source_address=event.source_address,
                query_digest=digest,
                records=records,
            )
            result.events.append(instance)
        writer.insert(AuditEvent.__table__, _AUDIT_COLUMNS, audit_rows)
        writer.insert(AccessEvent.__table__, _ACCESS_COLUMNS, access_rows)
        writer.insert(AccessEventCustomer.__table__, ("event_id", "customer_ref"), customer_rows)
        result.accepted = len(events)


_AUDIT_ACTION = {a.value: AccessAuditAction[a.name].value for a in AccessAction}
_AUDIT_COLUMNS = EVENT_COLUMNS
_ACCESS_COLUMNS = (
    "id",
    "source_id",
    "source_event_id",
    "audit_event_id",
    "actor",
    "action",
    "system",
    "record_type",
    "occurred_at",
    "received_at",
    "source_address",
    "query_digest",
    "records",
)


class _BulkWriter:
    """Writes many rows of one table in one statement, bypassing SQLAlchemy's per-row
    parameter processing (which cost more than the database's own work here): rows are
    tuples already in the form the driver stores, so the caller converts timestamps and
    JSON with :meth:`time` and :meth:`json`, the way the column types would.

    - PostgreSQL: ``COPY ... FROM STDIN`` (psycopg adapts datetimes and bytes; a JSON
      column takes its text); ids come from the table's sequence in one round trip.
    - SQLite: one ``executemany`` of a plain INSERT; timestamps in SQLAlchemy's SQLite
      storage format (UTC, microseconds), JSON as ``json.dumps`` gives it. Ids are the
      next ones after the largest, safe because the transaction already holds SQLite's
      single write lock (the ingestion service writes its source row first), so nobody
      else can insert meanwhile (INSERT ... RETURNING in row order would cost one statement
      per row on SQLite).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    def new_ids(self, table: Any, n: int) -> list[int]:
        """``n`` new primary keys of ``table``, ascending."""
        if n == 0:
            return []
        if self.postgres:
            return sorted(
                int(i)
                for i in self.conn.execute(
                    text(
                        "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"table": table.name, "n": n},
                ).scalars()
            )
        top = int(self.conn.execute(select(func.max(table.c.id))).scalar() or 0)
        return list(range(top + 1, top + 1 + n))

    def time(self, value: datetime) -> Any:
        """A timezone-aware timestamp as a ``UTCDateTime`` column stores it."""
        if self.postgres:
            return value
        v = value.astimezone(UTC)
        return (
            f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
            f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
        )

    def json(self, value: Any) -> str:
        """A value as a JSON column stores it."""
        if self.postgres:
            return json.dumps(value, ensure_ascii=False)
        return json.dumps(value)

    def insert(self, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (tuples in the order of ``columns``)."""
        if not rows:
            return
        names = ", ".join(f'"{c}"' for c in columns)
        if self.postgres:
            driver = self.conn.connection.driver_connection
            if driver is None:  # pragma: no cover
                raise RuntimeError("no DBAPI connection to COPY into")
            with (
                driver.cursor() as cursor,
                cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in columns)
        # Only this module's own table and column names are interpolated; values are bound.
        statement = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'  # noqa: S608
        self.conn.exec_driver_sql(statement, rows)


# --- reading what was ingested -------------------------------------------------------


@dataclass(frozen=True)
class AccessEventFilter:
    """Filters of the access-event list; every field optional. ``customer`` is a source
    system's customer id."""

    actor: str | None = None
    action: str | None = None
    system: str | None = None
    source: str | None = None
    customer: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AccessLogService:
    """Reads sources, rejects and ingested events for the people allowed to (access:view)."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def sources(self) -> list[AccessSource]:
        """Every source with its counters, by name."""
        self.principal.require(Permission.ACCESS_VIEW)
        return list(self.session.scalars(select(AccessSource).order_by(AccessSource.name)))

    def rejects(
        self, *, source: str | None, limit: int, offset: int
    ) -> tuple[list[tuple[AccessReject, str | None]], int]:
        """Refused events, newest first, with their source's name."""
        self.principal.require(Permission.ACCESS_VIEW)
        query = select(AccessReject, AccessSource.name).outerjoin(
            AccessSource, AccessSource.id == AccessReject.source_id
        )
        if source is not None:
            query = query.where(AccessSource.name == source)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.execute(
            query.order_by(AccessReject.id.desc()).limit(limit).offset(offset)
        ).all()
        return [(r[0], r[1]) for r in rows], total

    def _hidden_honeytoken(self, customer: str) -> bool:
        """Whether ``customer`` is a honeytoken's id this principal may not learn of."""
        if self.principal.can(Permission.HONEYTOKENS_MANAGE):
            return False
        return bool(honeytoken_ids(self.session, [customer]))

    def events(
        self, flt: AccessEventFilter, *, limit: int, offset: int
    ) -> tuple[list[tuple[AccessEvent, str]], int]:
        """Ingested events matching the filter, latest source time first."""
        self.principal.require(Permission.ACCESS_VIEW)
        for name, value in (("since", flt.since), ("until", flt.until)):
            if value is None:
                continue
            if value.tzinfo is None:
                raise InvalidInput(f"'{name}' needs a UTC offset.", field=name)
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise InvalidInput(f"'{name}' is out of range.", field=name) from None
        if flt.since and flt.until and flt.since >= flt.until:
            raise InvalidInput("'since' must be before 'until'.")
        if flt.customer and self._hidden_honeytoken(flt.customer):
            # Which ids are honeytokens is for honeytokens:manage only: for anyone else a
            # honeytoken's id answers as an id no event names (an empty page), so querying
            # candidate ids cannot tell which one an alert's marker stands for.
            return [], 0
        query = select(AccessEvent, AccessSource.name).join(
            AccessSource, AccessSource.id == AccessEvent.source_id
        )
        if flt.actor:
            query = query.where(AccessEvent.actor == flt.actor)
        if flt.action:
            query = query.where(AccessEvent.action == flt.action)
        if flt.system:
            query = query.where(AccessEvent.system == flt.system)
        if flt.source:
            query = query.where(AccessSource.name == flt.source)
        if flt.since:
            query = query.where(AccessEvent.occurred_at >= flt.since)
        if flt.until:
            query = query.where(AccessEvent.occurred_at < flt.until)
        if flt.customer:
            query = query.where(
                AccessEvent.id.in_(
                    select(AccessEventCustomer.event_id).where(
                        AccessEventCustomer.customer_ref == flt.customer
                    )
                )
            )
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.execute(
            query.order_by(AccessEvent.occurred_at.desc(), AccessEvent.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return [(r[0], r[1]) for r in rows], total
