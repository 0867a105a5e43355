"""HR data about the actors of the access logs (``audit_staff``): team, job role, duties,
working hours, leaving date. The insider-risk detectors read it (peer groups, hours,
duties, departing users); HR or security load it from a CSV export or the API.

An import or a batch is all or nothing: every row is checked first
(:func:`parse_staff_item`), and one bad row refuses the whole file with the first errors
named by line, so HR fixes the file and loads it again. A row updates only the fields
its file has columns for; an empty cell clears an optional field (an empty
``leaving_on`` means "not leaving") or restores a default (hours, days, time zone).
Each import is one audit event with the counts.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.models import StaffMember
from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput
from spillguard.core.roles import Permission, Principal

MAX_ACTOR = 320
MAX_DUTIES = 50
MAX_DUTY = 64
MAX_BATCH = 10_000
ERRORS_SHOWN = 5
DEFAULTS = {
    "timezone": "Europe/London",
    "work_start": "07:00",
    "work_end": "19:00",
    "work_days": "12345",
}
HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

# Header names (lower case, spaces and hyphens as underscores) each field is known by.
HEADERS: dict[str, tuple[str, ...]] = {
    "actor": ("actor", "user", "username", "user_name", "login", "user_id", "account", "email"),
    "display_name": ("name", "display_name", "full_name", "employee_name"),
    "team": ("team", "department", "group"),
    "job_role": ("role", "job_role", "job_title", "title", "position"),
    "duties": ("duties", "record_types", "duty"),
    "leaving_on": ("leaving_on", "leaving_date", "leaver_date", "end_date", "last_day"),
    "work_start": ("work_start", "start", "hours_start", "shift_start"),
    "work_end": ("work_end", "end", "hours_end", "shift_end"),
    "work_days": ("work_days", "days", "working_days"),
    "timezone": ("timezone", "time_zone", "tz"),
}


class StaffAuditAction(StrEnum):
    IMPORTED = "audit:staff:imported"


class StaffInvalid(InvalidInput):
    """A staff file or batch with bad rows; nothing of it was loaded."""

    slug = "staff-invalid"
    title = "Invalid staff data"


@dataclass(frozen=True)
class StaffRecord:
    """One checked row: the actor and the fields the source gave (others untouched)."""

    actor: str
    fields: dict[str, Any]


@dataclass
class StaffImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # header -> field

    @property
    def rows(self) -> int:
        return self.added + self.updated + self.unchanged


def _norm_header(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower().lstrip("\ufeff"))


def map_headers(headers: Sequence[str]) -> dict[str, str]:
    """{header as written: field} for the headers this import recognises; the actor
    column is required."""
    known = {alias: name for name, aliases in HEADERS.items() for alias in aliases}
    mapping: dict[str, str] = {}
    seen: set[str] = set()
    for header in headers:
        name = known.get(_norm_header(header))
        if name is None or name in seen:
            continue
        mapping[header] = name
        seen.add(name)
    if "actor" not in seen:
        raise StaffInvalid(
            "The file has no actor column (one of: " + ", ".join(HEADERS["actor"]) + ").",
            field="actor",
        )
    return mapping


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    value = value.strip()
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return value or None


def _duties(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(";")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise ValueError("duties must be text separated by ';' or a list of text")
    duties = list(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))
    if len(duties) > MAX_DUTIES:
        raise ValueError(f"at most {MAX_DUTIES} duties")
    if any(len(d) > MAX_DUTY for d in duties):
        raise ValueError(f"a duty is longer than {MAX_DUTY} characters")
    return duties


def _date(value: Any) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("leaving_on must be a date")
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError("leaving_on must be a date as YYYY-MM-DD or DD/MM/YYYY")


def _hhmm(value: Any, name: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULTS[name]
    if not isinstance(value, str) or not (match := HHMM.match(value.strip())):
        raise ValueError(f"{name} must be a time as HH:MM (24-hour)")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _days(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULTS["work_days"]
    if not isinstance(value, str):
        raise ValueError("work_days must be text such as 12345")
    digits = re.sub(r"[\s,;]", "", value)
    if not digits or not set(digits) <= set("1234567") or len(set(digits)) != len(digits):
        raise ValueError("work_days must be ISO weekday digits (1 = Monday) such as 12345")
    return "".join(sorted(digits))


def _zone(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULTS["timezone"]
    if not isinstance(value, str):
        raise ValueError("timezone must be an IANA name such as Europe/London")
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value.strip()[:64]!r}") from None
    return value.strip()


def parse_staff_item(item: Mapping[str, Any]) -> StaffRecord:
    """Check one row (fields named as in :data:`HEADERS`); raises ValueError naming the
    problem. Only the fields present in ``item`` are returned for update."""
    actor = _text(item.get("actor"), "actor", MAX_ACTOR)
    if not actor:
        raise ValueError("actor is required")
    parsers = {
        "display_name": lambda v: _text(v, "name", 200),
        "team": lambda v: _text(v, "team", 100),
        "job_role": lambda v: _text(v, "role", 100),
        "duties": _duties,
        "leaving_on": _date,
        "work_start": lambda v: _hhmm(v, "work_start"),
        "work_end": lambda v: _hhmm(v, "work_end"),
        "work_days": _days,
        "timezone": _zone,
    }
    fields = {name: parse(item[name]) for name, parse in parsers.items() if name in item}
    return StaffRecord(actor, fields)


def parse_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> list[StaffRecord]:
    """Check every ``(position, item)``; all good, or :class:`StaffInvalid` naming the
    first errors (and how many rows were bad)."""
    records: list[StaffRecord] = []
    errors: list[str] = []
    bad = 0
    first_seen: dict[str, str] = {}
    for position, item in rows:
        try:
            record = parse_staff_item(item)
        except ValueError as exc:
            bad += 1
            if len(errors) < ERRORS_SHOWN:
                errors.append(f"{position}: {exc}")
            continue
        if record.actor in first_seen:
            bad += 1
            if len(errors) < ERRORS_SHOWN:
                errors.append(f"{position}: actor repeats {first_seen[record.actor]}")
            continue
        first_seen[record.actor] = position
        records.append(record)
    if bad:
        more = f" (and {bad - len(errors)} more)" if bad > len(errors) else ""
        raise StaffInvalid(
            f"{bad} bad row(s), nothing loaded: " + "; ".join(errors) + more,
            errors=[{"field": e.split(":", 1)[0], "message": e} for e in errors],
        )
    return records


class StaffService:
    """Loads and lists HR data; loading needs staff:manage (admin, security), reading
    access:view."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def import_csv(self, source: Path | str | io.TextIOBase) -> StaffImportResult:
        """Load a CSV file (a header row; columns recognised by :data:`HEADERS`)."""
        self.principal.require(Permission.STAFF_MANAGE)
        if isinstance(source, Path):
            try:
                text = source.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError:
                raise StaffInvalid(f"{source.name} is not UTF-8 text.") from None
        elif isinstance(source, str):
            text = source
        else:
            text = source.read()
        try:
            reader = csv.reader(io.StringIO(text))
            headers = next(reader, None)
            if not headers:
                raise StaffInvalid("The file is empty; it needs a header row.")
            mapping = map_headers(headers)
            index = {name: headers.index(header) for header, name in mapping.items()}
            rows: list[tuple[str, dict[str, Any]]] = []
            for line in reader:
                if not any(cell.strip() for cell in line):
                    continue
                item = {name: (line[i] if i < len(line) else "") for name, i in index.items()}
                rows.append((f"line {reader.line_num}", item))
        except csv.Error as exc:
            raise StaffInvalid(f"The file is not valid CSV: {exc}.") from None
        result = self._apply(parse_rows(rows), "csv")
        result.columns = dict(mapping)
        return result

    def upsert(self, items: Sequence[Mapping[str, Any]]) -> StaffImportResult:
        """Load a batch of items (the API's ``PUT /api/v1/staff``)."""
        self.principal.require(Permission.STAFF_MANAGE)
        if len(items) > MAX_BATCH:
            raise StaffInvalid(f"At most {MAX_BATCH} staff members per request.")
        return self._apply(parse_rows((f"item {i}", item) for i, item in enumerate(items)), "api")

    def _apply(self, records: list[StaffRecord], channel: str) -> StaffImportResult:
        result = StaffImportResult()
        existing: dict[str, StaffMember] = {}
        actors = [r.actor for r in records]
        for start in range(0, len(actors), 900):
            for found in self.session.scalars(
                select(StaffMember).where(StaffMember.actor.in_(actors[start : start + 900]))
            ):
                existing[found.actor] = found
        now = utcnow()
        for record in records:
            row = existing.get(record.actor)
            if row is None:
                values = {**DEFAULTS, **record.fields}
                self.session.add(StaffMember(actor=record.actor, updated_at=now, **values))
                result.added += 1
                continue
            changed = False
            for name, value in record.fields.items():
                if getattr(row, name) != value:
                    setattr(row, name, value)
                    changed = True
            if changed:
                row.updated_at = now
                result.updated += 1
            else:
                result.unchanged += 1
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            StaffAuditAction.IMPORTED,
            object_type="staff",
            details={
                "channel": channel,
                "added": result.added,
                "updated": result.updated,
                "unchanged": result.unchanged,
            },
        )
        return result

    def list(
        self, *, team: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[StaffMember], int]:
        """A page of staff members by actor, optionally of one team."""
        self.principal.require(Permission.ACCESS_VIEW)
        base = select(StaffMember)
        if team:
            base = base.where(StaffMember.team == team)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(StaffMember.actor).limit(limit).offset(offset)
        ).all()
        return rows, total
