"""Read-only services behind the audit console: the audit-event browser and its export,
the checkpoint history with each checkpoint's verification status, an actor's HR facts,
and the geometry of the activity chart. (Access sources and events are read through
``audit.ingest.AccessLogService``, alerts and activity through ``audit.alerts``.)

Nothing here changes the log. The only write is the audit event that records an export
(``audit:events:exported``), added to the caller's transaction before the first byte of
the export is produced. Every method checks its permission first.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from spillguard.audit.alerts import ActivityDay
from spillguard.audit.checkpoints import (
    CheckpointError,
    LogKey,
    Signer,
    checkpoint_body,
    origin_for,
)
from spillguard.audit.detect import Thresholds, volume_threshold
from spillguard.audit.honeytokens import HoneytokenRedaction, redaction_for, redaction_of_all
from spillguard.audit.log import EVENT_COLUMNS, LogCorrupt, get_state, stored_proof, stored_root
from spillguard.audit.merkle import ProofError, consistency_proof_ranges, verify_consistency
from spillguard.audit.models import Checkpoint, StaffMember
from spillguard.audit.verify import VerifyAuditAction
from spillguard.core.audit import AuditFilter, AuditService, record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput
from spillguard.core.keys import KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.customers.honeytokens import CSV_HEADERS as HONEYTOKEN_CSV_HEADERS
from spillguard.customers.honeytokens import HoneytokenRecord

EXPORT_BATCH = 1000
CHUNK_EVENTS = 200  # events per chunk of a streamed export
MAX_KNOWN_ACTIONS = 500
EXPORT_FORMATS = ("csv", "json")
EXPORT_COLUMNS = EVENT_COLUMNS  # every column the log hashes, in the same order
# A cell starting with one of these is a formula to a spreadsheet; actor labels of
# ingested access events come from other systems, so a CSV cell never starts with one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Keys never shown from an event's details, whatever a writer put there: a query's text
# is never stored (only its keyed digest), and this keeps it so on screen.
HIDDEN_DETAIL_KEYS = frozenset({"query", "query_text"})


class AuditBrowseAction(StrEnum):
    """Audit events of the audit console."""

    EVENTS_EXPORTED = "audit:events:exported"


LOG_VERIFIED_ACTION = VerifyAuditAction.LOG_VERIFIED.value
"""The event every ``spillguard audit verify`` run records (``verify.record_verification``);
the checkpoint page shows the latest (outcome, when, what it said)."""


@dataclass(frozen=True)
class AuditExport:
    """A streamed export: its media type, file name and body (bytes, produced lazily)."""

    media_type: str
    filename: str
    body: Iterator[bytes]
    events: int


@dataclass(frozen=True)
class CheckpointStatus:
    """One checkpoint with what the console could verify about it from the database.

    ``signature_ok``: its Ed25519 signature verifies under the log's key (and it names that
    key). ``root_ok``: the stored tree of ``tree_size`` entries has this root.
    ``consistent``: the RFC 9162 consistency proof from the previous checkpoint to this
    one, built from the stored nodes, verifies (None for the first checkpoint).
    """

    checkpoint: Checkpoint
    signature_ok: bool
    signature_problem: str | None
    root_ok: bool
    previous_size: int | None
    consistent: bool | None
    consistency_problem: str | None

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.root_ok and self.consistent is not False

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.checkpoint.root_hash).decode()


@dataclass(frozen=True)
class VerificationRecord:
    """The latest recorded full ``spillguard audit verify`` run."""

    at: datetime
    outcome: str
    summary: str


@dataclass(frozen=True)
class CheckpointHistory:
    """A page of checkpoints (newest first) and what the page header shows."""

    items: list[CheckpointStatus]
    total: int
    log_size: int
    key: LogKey
    origin: str
    last_verify: VerificationRecord | None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text_value = str(value)
    if text_value.startswith(_FORMULA_STARTS):
        return "'" + text_value
    return text_value


def event_document(event: Any) -> dict[str, Any]:
    """An audit event (a model or a row of its table) as the JSON export writes it."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "source_ip": event.source_ip,
        "request_id": event.request_id,
        "details": event.details,
    }


def short_value(value: Any) -> str:
    """A detail's value as a table cell shows it: a list by its first items and length
    (an access event's customer ids can number 100,000), anything else cut at 200."""
    if isinstance(value, list):
        head = ", ".join(str(v) for v in value[:3])
        more = f" … ({len(value):,})" if len(value) > 3 else ""
        return f"[{head}{more}]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)[:200]
    return str(value)[:200]


def shown_details(details: dict[str, Any]) -> list[tuple[str, str]]:
    """An event's details as (key, short text) pairs; a query's text is never shown."""
    return [
        (key, short_value(value))
        for key, value in details.items()
        if key.lower() not in HIDDEN_DETAIL_KEYS
    ]


EXPLANATION_KEYS = ("explanation", "why", "summary")
FIGURE_KEYS = ("observed", "baseline", "threshold")


@dataclass(frozen=True)
class EvidenceView:
    """An alert's evidence for its page: the plain explanation, the three figures a
    reader compares (observed, baseline, threshold) and everything else."""

    explanation: str | None
    figures: list[tuple[str, str]]
    other: list[tuple[str, str]]


def _figure(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if not value.is_integer() else f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)[:200]


def evidence_view(evidence: dict[str, Any]) -> EvidenceView:
    """Split an alert's evidence into explanation, figures and the rest (pure)."""
    explanation = next(
        (str(evidence[k]) for k in EXPLANATION_KEYS if isinstance(evidence.get(k), str)), None
    )
    figures = [(k, _figure(evidence[k])) for k in FIGURE_KEYS if k in evidence]
    rest = {
        k: v
        for k, v in evidence.items()
        if k not in FIGURE_KEYS and not (k in EXPLANATION_KEYS and isinstance(v, str))
    }
    other = [
        (k, _figure(v) if isinstance(v, int | float) else short_value(v))
        for k, v in rest.items()
        if k.lower() not in HIDDEN_DETAIL_KEYS
    ]
    return EvidenceView(explanation, figures, other)


class AuditBrowseService:
    """The audit-event browser's extras over ``core.audit.AuditService``: the actions
    that occur in the trail, the export, and the checkpoint history. Needs ``audit:view``."""

    def __init__(
        self, session: Session, principal: Principal, keys: KeyRing, settings: Settings
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.settings = settings

    def list_events(
        self, flt: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[AuditEvent], int]:
        """A page of events, newest first (core's query, which checks the filter)."""
        return AuditService(self.session, self.principal).list_events(
            flt, limit=limit, offset=offset
        )

    def shown_events(
        self, flt: AuditFilter, *, limit: int, offset: int
    ) -> tuple[list[ShownEvent], int]:
        """A page of events as this principal may see them: see :func:`shown_events`."""
        return shown_events(self.session, self.principal, flt, limit=limit, offset=offset)

    def known_actions(self) -> list[str]:
        """Every distinct action in the trail (at most 500), for the filter's suggestions.

        A recursive "next larger action" walk over the action index: one index probe per
        distinct action, not a scan of millions of events.
        """
        self.principal.require(Permission.AUDIT_VIEW)
        walk = text(
            "WITH RECURSIVE acts(a, n) AS ("
            " SELECT (SELECT MIN(action) FROM audit_events), 1"
            " UNION ALL"
            " SELECT (SELECT MIN(action) FROM audit_events WHERE action > acts.a), n + 1"
            " FROM acts WHERE acts.a IS NOT NULL AND n < :cap"
            ") SELECT a FROM acts WHERE a IS NOT NULL"
        )
        return [row[0] for row in self.session.execute(walk, {"cap": MAX_KNOWN_ACTIONS})]

    def export(
        self, flt: AuditFilter, fmt: str, session_factory: Callable[[], Session]
    ) -> AuditExport:
        """Record the export, then stream the matching events, oldest first, as CSV or JSON.

        The export covers the events that match when it starts (up to the newest matching
        id), so rows committed while it streams, and the export's own event, are not in it.
        The body reads through its own session (the request's has committed by then).
        """
        self.principal.require(Permission.AUDIT_VIEW)
        if fmt not in EXPORT_FORMATS:
            raise InvalidInput("format must be csv or json.", field="format")
        # Every honeytoken id is hidden from a reader without honeytokens:manage (the
        # set is small; the events stream in batches, never all in memory).
        redaction = redaction_of_all(self.session, self.principal)
        newest, total = self.list_events(flt, limit=1, offset=0)
        upper = newest[0].id if newest else 0
        if redaction.hides(flt.object_id):  # as for an id no event names
            upper = total = 0
        record_event(
            self.session,
            self.principal,
            AuditBrowseAction.EVENTS_EXPORTED,
            object_type="audit-events",
            details={
                "format": fmt,
                "events": total,
                "through_event_id": upper,
                "filter": {
                    name: (value.isoformat() if isinstance(value, datetime) else value)
                    for name, value in vars(flt).items()
                    if value is not None
                },
            },
        )
        rows = _matching(session_factory, flt, upper, redaction)
        stamp = f"{utcnow():%Y%m%dT%H%M%SZ}"
        if fmt == "csv":
            return AuditExport(
                "text/csv; charset=utf-8", f"audit-events-{stamp}.csv", _csv_body(rows), total
            )
        return AuditExport(
            "application/json", f"audit-events-{stamp}.json", _json_body(rows), total
        )

    # --- checkpoints ------------------------------------------------------------------

    def checkpoint_history(self, *, limit: int, offset: int) -> CheckpointHistory:
        """Checkpoints newest first, each with its signature, root and consistency checked."""
        self.principal.require(Permission.AUDIT_VIEW)
        key = Signer(self.keys).key
        total = self.session.scalar(select(func.count()).select_from(Checkpoint)) or 0
        # One more than the page: the oldest on the page is checked against the one before.
        rows = list(
            self.session.scalars(
                select(Checkpoint)
                .order_by(Checkpoint.tree_size.desc())
                .limit(limit + 1)
                .offset(offset)
            )
        )
        items = [
            self._status(cp, rows[n + 1] if n + 1 < len(rows) else None, key)
            for n, cp in enumerate(rows[:limit])
        ]
        return CheckpointHistory(
            items=items,
            total=total,
            log_size=get_state(self.session).size,
            key=key,
            origin=origin_for(self.settings.installation),
            last_verify=self._last_verify(),
        )

    def _status(self, cp: Checkpoint, previous: Checkpoint | None, key: LogKey) -> CheckpointStatus:
        signature_problem = None
        try:
            if cp.key_id != key.key_id:
                raise CheckpointError(f"signed by key {cp.key_id}, not the log's {key.key_id}")
            body = checkpoint_body(cp.origin, cp.tree_size, cp.root_hash, cp.created_at)
            key.verify(body.encode(), cp.signature)
        except CheckpointError as exc:
            signature_problem = str(exc)
        try:
            root_ok = stored_root(self.session, cp.tree_size) == cp.root_hash
        except LogCorrupt:
            root_ok = False
        consistent: bool | None = None
        consistency_problem = None
        if previous is not None:
            try:
                proof = stored_proof(
                    self.session, consistency_proof_ranges(previous.tree_size, cp.tree_size)
                )
                verify_consistency(
                    previous.tree_size, cp.tree_size, previous.root_hash, cp.root_hash, proof
                )
                consistent = True
            except (ProofError, LogCorrupt) as exc:
                consistent = False
                consistency_problem = str(exc)
        return CheckpointStatus(
            checkpoint=cp,
            signature_ok=signature_problem is None,
            signature_problem=signature_problem,
            root_ok=root_ok,
            previous_size=None if previous is None else previous.tree_size,
            consistent=consistent,
            consistency_problem=consistency_problem,
        )

    def _last_verify(self) -> VerificationRecord | None:
        event = self.session.scalar(
            select(AuditEvent)
            .where(AuditEvent.action == LOG_VERIFIED_ACTION)
            .order_by(AuditEvent.id.desc())
            .limit(1)
        )
        if event is None:
            return None
        summary = ", ".join(f"{k} {v}" for k, v in shown_details(event.details))
        return VerificationRecord(event.occurred_at, event.outcome, summary)


def _matching(
    session_factory: Callable[[], Session],
    flt: AuditFilter,
    upper: int,
    redaction: HoneytokenRedaction,
) -> Iterator[Any]:
    """Rows of the events matching ``flt`` with ids up to ``upper``, oldest first, read in
    batches as plain rows (the ORM's identity map adds nothing to a one-way export), with
    honeytoken ids redacted as ``redaction`` says."""
    after = 0
    columns = select(*AuditEvent.__table__.c)
    with session_factory() as session:
        while after < upper:
            batch = session.execute(
                flt.apply(columns)
                .where(AuditEvent.id > after, AuditEvent.id <= upper)
                .order_by(AuditEvent.id)
                .limit(EXPORT_BATCH)
            ).all()
            if not batch:
                return
            if redaction.restricted and redaction.hidden:
                yield from (_redacted_row(row, redaction) for row in batch)
            else:
                yield from batch
            after = batch[-1].id


def _redacted_row(row: Any, redaction: HoneytokenRedaction) -> Any:
    """A row of the export with its details and object id as a restricted reader sees
    them (the row itself is immutable; a namespace with the same attributes stands in)."""
    values = dict(row._mapping)
    values["details"] = redaction.evidence(values["details"]) if values["details"] else None
    values["object_id"] = redaction.value(values["object_id"])
    return SimpleNamespace(**values)


@dataclass(frozen=True)
class ShownEvent:
    """An audit event as one reader may see it: its details and object id with honeytoken
    ids replaced by the marker for a reader without ``honeytokens:manage``."""

    event: AuditEvent
    details: dict[str, Any]
    object_id: str | None

    def document(self) -> dict[str, Any]:
        """As the API lists it (the fields of ``core.schemas.AuditEventPublic``)."""
        return {
            **{c: getattr(self.event, c) for c in EVENT_COLUMNS},
            "details": self.details,
            "object_id": self.object_id,
        }


def shown_events(
    session: Session, principal: Principal, flt: AuditFilter, *, limit: int, offset: int
) -> tuple[list[ShownEvent], int]:
    """A page of audit events (newest first) as ``principal`` may see them: for a reader
    without ``honeytokens:manage`` every honeytoken id in an event's details or object id
    reads as the marker, and a filter by a honeytoken's id (``object_id``) answers as for
    an id no event names: nothing. Used by the console browser and ``GET
    /api/v1/audit-events``."""
    service = AuditService(session, principal)
    if flt.object_id and not principal.can(Permission.HONEYTOKENS_MANAGE):
        service.list_events(flt, limit=0, offset=0)  # authorises and checks the filter
        if redaction_for(session, principal, refs=[flt.object_id]).hides(flt.object_id):
            return [], 0
    rows, total = service.list_events(flt, limit=limit, offset=offset)
    shown = redaction_for(
        session,
        principal,
        evidence=[e.details for e in rows],
        refs=[e.object_id for e in rows if e.object_id],
    )
    return [ShownEvent(e, shown.evidence(e.details), shown.value(e.object_id)) for e in rows], total


def _csv_body(rows: Iterator[Any]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for count, event in enumerate(rows, 1):
        writer.writerow([_cell(getattr(event, column)) for column in EXPORT_COLUMNS])
        if count % CHUNK_EVENTS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _json_body(rows: Iterator[Any]) -> Iterator[bytes]:
    # Chunks of many events: each chunk is a hop to the thread pool and a send.
    parts = ["["]
    for count, event in enumerate(rows):
        chunk = json.dumps(event_document(event), ensure_ascii=False, separators=(",", ":"))
        parts.append(("\n" if count == 0 else ",\n") + chunk)
        if len(parts) >= CHUNK_EVENTS:
            yield "".join(parts).encode()
            parts = []
    parts.append("\n]\n")
    yield "".join(parts).encode()


# --- access sources ----------------------------------------------------------------------


class StaffFactsService:
    """What HR told Spillguard about an actor, for the activity page. Read-only; needs
    ``access:view``."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def staff(self, actor: str) -> StaffMember | None:
        """What HR told us about an actor (team, role, duties, hours, leaving date)."""
        self.principal.require(Permission.ACCESS_VIEW)
        return self.session.scalar(select(StaffMember).where(StaffMember.actor == actor))


def honeytokens_csv(records: Sequence[HoneytokenRecord]) -> bytes:
    """Honeytoken customers as the CSV a CRM import wizard maps without help."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HONEYTOKEN_CSV_HEADERS)
    writer.writerows(record.row() for record in records)
    return buffer.getvalue().encode()


# --- the activity chart ------------------------------------------------------------------


class ChartDay(Protocol):
    """What the chart needs of a day (``alerts.ActivityDay`` has it)."""

    @property
    def day(self) -> date: ...
    @property
    def records(self) -> int: ...
    @property
    def baseline(self) -> float | None: ...
    @property
    def threshold(self) -> float | None: ...


def volume_alert_threshold(
    baseline: float | None, band_threshold: float | None, t: Thresholds
) -> float | None:
    """The records at which the volume detector alerts on a day, given that day's band
    (its median ``baseline`` and ``median + k x spread``): the band's threshold, but at
    least ``volume_min_ratio`` times the baseline and ``volume_min_records`` — the rule of
    :func:`spillguard.audit.detect.detect_volume`, with its tunables. None without a band
    (too little history: the detector does not judge that day). Pure."""
    if band_threshold is None or baseline is None:
        return None
    return volume_threshold(band_threshold, baseline, t)


def with_alert_thresholds(days: Sequence[ActivityDay], t: Thresholds) -> list[ActivityDay]:
    """The days with ``threshold`` set to the one the volume detector alerts at
    (:func:`volume_alert_threshold`), so a bar reaching the drawn line is a day that
    alerted, and one below it a day that did not. Pure."""
    return [replace(d, threshold=volume_alert_threshold(d.baseline, d.threshold, t)) for d in days]


@dataclass(frozen=True)
class ChartBar:
    """One day's column: the records bar, and the baseline band when there is one."""

    day: date
    records: int
    slot_x: float  # the day's whole column (the band fills it)
    slot_width: float
    x: float  # the bar, narrower, centred in the column
    width: float
    y: float
    height: float
    over: bool  # at or above the day's threshold: the volume detector alerts
    band_y: float | None  # top of the band (the threshold)
    band_height: float | None  # down to the baseline (median)
    baseline_y: float | None
    baseline: float | None
    threshold: float | None


@dataclass(frozen=True)
class ActivityChart:
    """The geometry of the server-rendered SVG chart of an actor's daily records."""

    width: int
    height: int
    left: int
    top: int
    plot_height: float
    y_max: int
    bars: list[ChartBar]
    ticks: list[tuple[float, str, str]]  # (x, label, text-anchor) under the axis


def activity_chart(
    days: Sequence[ChartDay], *, width: int = 720, height: int = 240
) -> ActivityChart:
    """Lay out records per day as bars over the band from the baseline (median of the
    actor's own history) to the threshold each day carries — give the days through
    :func:`with_alert_thresholds` so that is the volume detector's own. A bar is ``over``
    when it reaches the threshold (the detector alerts at ``records >= threshold``).
    Pure: no database."""
    left, top, bottom, right = 48, 12, 28, 8
    plot_w = width - left - right
    plot_h = float(height - top - bottom)
    peak = max(
        [1.0]
        + [float(d.records) for d in days]
        + [float(d.threshold) for d in days if d.threshold is not None]
    )
    y_max = _nice_ceiling(peak * 1.05)
    slot = plot_w / max(1, len(days))

    def y_of(value: float) -> float:
        return round(top + plot_h - plot_h * min(value, y_max) / y_max, 2)

    bars: list[ChartBar] = []
    for n, d in enumerate(days):
        x = left + n * slot
        bar_h = round(plot_h * min(d.records, y_max) / y_max, 2)
        band_y = band_h = base_y = None
        if d.threshold is not None:
            band_y = y_of(d.threshold)
            low = y_of(d.baseline if d.baseline is not None else 0.0)
            band_h = round(max(low - band_y, 0.5), 2)
            base_y = low if d.baseline is not None else None
        bars.append(
            ChartBar(
                day=d.day,
                records=d.records,
                slot_x=round(x, 2),
                slot_width=round(slot, 2),
                x=round(x + slot * 0.15, 2),
                width=round(max(slot * 0.7, 1.0), 2),
                y=round(top + plot_h - bar_h, 2),
                height=bar_h,
                over=d.threshold is not None and d.records >= d.threshold,
                band_y=band_y,
                band_height=band_h,
                baseline_y=base_y,
                baseline=d.baseline,
                threshold=d.threshold,
            )
        )
    picks = sorted({0, len(days) // 2, len(days) - 1}) if days else []
    ticks = [
        (
            float(left)
            if i == 0
            else float(width - right)
            if i == len(days) - 1
            else round(left + (i + 0.5) * slot, 2),
            days[i].day.isoformat(),
            "start" if i == 0 else "end" if i == len(days) - 1 else "middle",
        )
        for i in picks
    ]
    return ActivityChart(width, height, left, top, plot_h, y_max, bars, ticks)


def _nice_ceiling(value: float) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value``."""
    power = 1
    while True:
        for step in (1, 2, 5, 10):
            if step * power >= value:
                return step * power
        power *= 10


__all__ = [
    "AuditBrowseAction",
    "AuditBrowseService",
    "AuditExport",
    "CheckpointHistory",
    "CheckpointStatus",
    "StaffFactsService",
]
