"""Insider-risk detectors over the access-event stream (issue 7 §3).

Two halves:

- **the detectors**, pure functions over plain dataclasses (no database): each compares
  one actor's day (:class:`DayCounts`) with a baseline and returns a :class:`Finding`
  (score, severity, a plain-words explanation and the evidence: baseline, threshold,
  observed) or ``None``:

  1. ``volume``: records touched today against the actor's own baseline (median and
     median absolute deviation of their last active days);
  2. ``peer-group``: records touched today against the typical day of the actor's team;
  3. ``after-hours``: records touched outside the actor's working hours and days;
  4. ``mass-export``: records exported or printed, in one event or in the day;
  5. ``off-duty``: records of a type outside the actor's duties (HR data);
  6. ``departing``: an actor leaving soon (or gone) touching unusual volumes or exporting.

  Every threshold comes from :class:`Thresholds` (the ``insider_*`` settings).

- **the streaming glue** :func:`on_ingested`, called by the ingestion service in its
  transaction with each batch of new events: it adds the batch to the per-actor, per-day
  counters (``access_actor_days``; events arrive out of order, so each goes to the day
  it belongs to), evaluates the detectors for the touched (actor, day)s whose counters
  pass a detector's absolute floor, raises or updates alerts (one per detector, actor and
  day) and runs the honeytoken check. It costs a few queries per batch, never per event.

A score is 50 at a detector's threshold and grows with the excess (100 at four times
the threshold's distance from the baseline); it never falls when the observed figure rises.
"""

from __future__ import annotations

import functools
import importlib
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, Table, cast, func, select, text
from sqlalchemy.orm import Session

from spillguard.audit.models import AccessEvent, ActorDay, Alert, StaffMember
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer, HoneytokenCustomer

INT_MAX = 2**31 - 1
# Actor IN-lists are split into chunks this long (SQLite's bound-parameter limit).
CHUNK = 900
MAD_TO_SIGMA = 1.4826
EXPORT_ACTIONS = frozenset({"export", "print"})
COUNTERS = ("events", "records", "exported", "after_hours", "off_duty")


class Detector(StrEnum):
    VOLUME = "volume"
    PEER_GROUP = "peer-group"
    AFTER_HOURS = "after-hours"
    MASS_EXPORT = "mass-export"
    OFF_DUTY = "off-duty"
    DEPARTING = "departing"


# --- plain data -----------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Every tunable of the detectors (the ``insider_*`` settings, without the prefix)."""

    baseline_days: int = 20
    baseline_lookback_days: int = 60
    baseline_min_days: int = 5
    volume_mad_k: float = 8.0
    volume_min_ratio: float = 3.0
    volume_min_records: int = 200
    spread_floor: float = 10.0
    spread_floor_ratio: float = 0.25
    peer_mad_k: float = 10.0
    peer_min_ratio: float = 5.0
    peer_min_records: int = 300
    peer_min_size: int = 5
    after_hours_min_records: int = 100
    after_hours_mad_k: float = 8.0
    export_event_records: int = 1000
    export_day_records: int = 2000
    export_baseline_factor: float = 5.0
    off_duty_min_records: int = 50
    off_duty_mad_k: float = 8.0
    departing_days: int = 30
    departing_volume_ratio: float = 2.5
    departing_min_records: int = 100
    departing_export_records: int = 50
    default_timezone: str = "Europe/London"
    default_work_start: str = "07:00"
    default_work_end: str = "19:00"
    default_work_days: str = "12345"

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The thresholds the settings name (``insider_<field>``)."""
        values = {
            name: getattr(settings, f"insider_{name}")
            for name in cls.__dataclass_fields__
            if hasattr(settings, f"insider_{name}")
        }
        return cls(**values)


@dataclass(frozen=True)
class StaffProfile:
    """What the detectors know of an actor: HR's record, or the defaults (``known``
    False) for an actor HR has no record of."""

    actor: str
    known: bool
    team: str | None
    duties: frozenset[str]
    tz: tzinfo
    work_start: time
    work_end: time
    work_days: frozenset[int]
    leaving_on: date | None = None


@dataclass(frozen=True)
class DayCounts:
    """An actor's counters for one (local) day."""

    day: date
    events: int = 0
    records: int = 0
    exported: int = 0
    after_hours: int = 0
    off_duty: int = 0


@dataclass(frozen=True)
class Band:
    """A robust baseline: the median of ``days`` values, their spread (scaled MAD with
    floors), and the threshold median + k x spread."""

    median: float
    spread: float
    threshold: float
    days: int


@dataclass(frozen=True)
class Finding:
    """What one detector concluded about one actor's day."""

    detector: Detector
    actor: str
    day: date
    score: float
    severity: str
    title: str
    explanation: str
    evidence: dict[str, Any] = field(default_factory=dict)


# --- helpers ----------------------------------------------------------------------------


def _parse_hhmm(value: str | None, fallback: str) -> time:
    for candidate in (value, fallback, "00:00"):
        try:
            hours, minutes = (candidate or "").split(":")
            return time(int(hours), int(minutes))
        except (ValueError, TypeError):
            continue
    return time(0, 0)  # pragma: no cover


@functools.lru_cache(maxsize=256)
def _zone(name: str | None, fallback: str) -> tzinfo:
    for candidate in (name, fallback):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return UTC


def profile_from(
    actor: str,
    *,
    thresholds: Thresholds,
    known: bool = False,
    team: str | None = None,
    duties: Iterable[str] = (),
    timezone: str | None = None,
    work_start: str | None = None,
    work_end: str | None = None,
    work_days: str | None = None,
    leaving_on: date | None = None,
) -> StaffProfile:
    """A profile from HR's fields; a missing or unusable field takes the default."""
    days = frozenset(int(c) for c in (work_days or "") if c in "1234567")
    if not days:
        days = frozenset(int(c) for c in thresholds.default_work_days if c in "1234567")
    return StaffProfile(
        actor=actor,
        known=known,
        team=team or None,
        duties=frozenset(d.strip().lower() for d in duties if d and d.strip()),
        tz=_zone(timezone, thresholds.default_timezone),
        work_start=_parse_hhmm(work_start, thresholds.default_work_start),
        work_end=_parse_hhmm(work_end, thresholds.default_work_end),
        work_days=days,
        leaving_on=leaving_on,
    )


def local_day(profile: StaffProfile, at: datetime) -> date:
    """The day ``at`` falls on where the actor works."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(profile.tz).date()


def day_bounds(profile: StaffProfile, day: date) -> tuple[datetime, datetime]:
    """The UTC instants where the actor's local ``day`` starts and ends."""
    start = datetime.combine(day, time(0, 0), tzinfo=profile.tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=profile.tz).astimezone(UTC)
    return start, end


def is_after_hours(profile: StaffProfile, at: datetime) -> bool:
    """Outside the actor's working days, or outside their hours on a working day (a
    shift whose end is before its start runs over midnight)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return _after_hours_local(profile, at.astimezone(profile.tz))


def _after_hours_local(profile: StaffProfile, local: datetime) -> bool:
    if local.isoweekday() not in profile.work_days:
        return True
    now = local.time().replace(tzinfo=None)
    start, end = profile.work_start, profile.work_end
    if start == end:
        return False  # a 24-hour day
    if start < end:
        return not (start <= now < end)
    return not (now >= start or now < end)


def is_off_duty(profile: StaffProfile, record_type: str | None) -> bool:
    """A record type outside the actor's duties (only for actors HR lists duties for)."""
    if not profile.known or not profile.duties or not record_type:
        return False
    return record_type.strip().lower() not in profile.duties


def robust(values: Sequence[float]) -> tuple[float, float]:
    """(median, median absolute deviation) of the values; (0, 0) for none."""
    if not values:
        return 0.0, 0.0
    med = float(statistics.median(values))
    mad = float(statistics.median([abs(v - med) for v in values]))
    return med, mad


def band_of(values: Sequence[float], k: float, t: Thresholds) -> Band:
    """The band of a set of daily figures: median + k x spread, where the spread is the
    scaled MAD but never below ``spread_floor`` nor ``spread_floor_ratio`` x median (a
    very regular actor must not alert on a small wobble)."""
    med, mad = robust(values)
    spread = max(MAD_TO_SIGMA * mad, t.spread_floor_ratio * med, t.spread_floor)
    return Band(median=med, spread=spread, threshold=med + k * spread, days=len(values))


def baseline_days(history: Iterable[DayCounts], day: date, t: Thresholds) -> list[DayCounts]:
    """The actor's last ``baseline_days`` active days before ``day`` (within the lookback)."""
    earliest = day - timedelta(days=t.baseline_lookback_days)
    prior = sorted(
        (h for h in history if earliest <= h.day < day and h.events > 0), key=lambda h: h.day
    )
    return prior[-t.baseline_days :]


def volume_band(history: Iterable[DayCounts], day: date, t: Thresholds) -> Band | None:
    """The band the volume detector allows on ``day``; None with too little history."""
    prior = baseline_days(history, day, t)
    if len(prior) < t.baseline_min_days:
        return None
    return band_of([h.records for h in prior], t.volume_mad_k, t)


def typical_day(history: Iterable[DayCounts], day: date, t: Thresholds) -> float | None:
    """An actor's typical records per active day before ``day`` (their median), or None."""
    prior = baseline_days(history, day, t)
    if len(prior) < t.baseline_min_days:
        return None
    return robust([h.records for h in prior])[0]


def score_of(observed: float, baseline: float, threshold: float) -> float:
    """50 at the threshold, 100 at four times the threshold's distance from the baseline;
    non-decreasing in ``observed``."""
    if not all(math.isfinite(x) for x in (observed, baseline, threshold)):
        return 100.0 if observed == math.inf else 0.0
    reach = threshold - baseline
    if reach <= 0:
        reach = max(threshold, 1.0)
        baseline = 0.0
    ratio = (observed - baseline) / reach
    score = 50.0 * ratio if ratio <= 1 else 50.0 + 50.0 * (ratio - 1) / 3
    return round(max(0.0, min(100.0, score)), 1)


def severity_of(score: float) -> str:
    """medium up to twice the threshold's reach, high beyond (score 66.7)."""
    return "high" if score >= 66.7 else "medium"


def _n(value: float) -> float | int:
    """A JSON-friendly number: integers stay integers, others are rounded."""
    if float(value).is_integer():
        return int(value)
    return round(float(value), 2)


def _who(profile: StaffProfile) -> str:
    return profile.actor


# --- the detectors ----------------------------------------------------------------------


def volume_threshold(band_threshold: float, median: float, t: Thresholds) -> float:
    """The records a day must reach for a volume alert: the band's threshold (median plus
    k spreads), but at least ``volume_min_ratio`` times the median and
    ``volume_min_records``. Pure; the console's activity chart draws the same line."""
    return max(float(band_threshold), median * t.volume_min_ratio, float(t.volume_min_records))


def detect_volume(
    profile: StaffProfile, today: DayCounts, history: Sequence[DayCounts], t: Thresholds
) -> Finding | None:
    """Records touched today far above the actor's own baseline."""
    band = volume_band(history, today.day, t)
    if band is None:
        return None
    threshold = volume_threshold(band.threshold, band.median, t)
    if today.records < threshold:
        return None
    score = score_of(today.records, band.median, threshold)
    return Finding(
        detector=Detector.VOLUME,
        actor=profile.actor,
        day=today.day,
        score=score,
        severity=severity_of(score),
        title=f"{_who(profile)} touched {today.records:,} records on {today.day}, "
        f"against a usual {band.median:,.0f} a day",
        explanation=(
            f"{_who(profile)} touched {today.records:,} customer records on {today.day}. "
            f"Their own baseline is {band.median:,.0f} a day (median of their last "
            f"{band.days} active days, spread {band.spread:,.0f}); the alert threshold is "
            f"{threshold:,.0f} (the baseline plus {t.volume_mad_k:g} spreads, at least "
            f"{t.volume_min_ratio:g} times the baseline and {t.volume_min_records:,} records)."
        ),
        evidence={
            "observed": today.records,
            "baseline": _n(band.median),
            "spread": _n(band.spread),
            "threshold": _n(threshold),
            "baseline_days": band.days,
        },
    )


def detect_peer_group(
    profile: StaffProfile, today: DayCounts, peers: Sequence[float], t: Thresholds
) -> Finding | None:
    """Records touched today far above the typical day of the actor's team (``peers``:
    each other member's median records per active day)."""
    if not profile.team or len(peers) < t.peer_min_size:
        return None
    band = band_of(list(peers), t.peer_mad_k, t)
    threshold = max(band.threshold, band.median * t.peer_min_ratio, float(t.peer_min_records))
    if today.records < threshold:
        return None
    score = score_of(today.records, band.median, threshold)
    return Finding(
        detector=Detector.PEER_GROUP,
        actor=profile.actor,
        day=today.day,
        score=score,
        severity=severity_of(score),
        title=f"{_who(profile)} touched {today.records:,} records on {today.day}; "
        f"their team '{profile.team}' typically touches {band.median:,.0f}",
        explanation=(
            f"{_who(profile)} touched {today.records:,} records on {today.day}. The "
            f"{band.days} other members of team '{profile.team}' typically touch "
            f"{band.median:,.0f} a day (median of their own medians, spread "
            f"{band.spread:,.0f}); the alert threshold is {threshold:,.0f}."
        ),
        evidence={
            "observed": today.records,
            "team": profile.team,
            "baseline": _n(band.median),
            "spread": _n(band.spread),
            "threshold": _n(threshold),
            "peers": band.days,
        },
    )


def detect_after_hours(
    profile: StaffProfile, today: DayCounts, history: Sequence[DayCounts], t: Thresholds
) -> Finding | None:
    """Many records touched outside the actor's working hours (more than they usually do)."""
    prior = baseline_days(history, today.day, t)
    band = band_of([h.after_hours for h in prior], t.after_hours_mad_k, t)
    threshold = float(t.after_hours_min_records)
    if len(prior) >= t.baseline_min_days:
        threshold = max(threshold, band.threshold)
    if today.after_hours < threshold:
        return None
    baseline = band.median if len(prior) >= t.baseline_min_days else 0.0
    score = score_of(today.after_hours, baseline, threshold)
    hours = f"{profile.work_start:%H:%M}-{profile.work_end:%H:%M}"
    days = "".join(str(d) for d in sorted(profile.work_days))
    source = "HR's record" if profile.known else "the default for actors HR does not list"
    return Finding(
        detector=Detector.AFTER_HOURS,
        actor=profile.actor,
        day=today.day,
        score=score,
        severity=severity_of(score),
        title=f"{_who(profile)} touched {today.after_hours:,} records outside working hours "
        f"on {today.day}",
        explanation=(
            f"{_who(profile)} touched {today.after_hours:,} records on {today.day} outside "
            f"their working hours ({hours} on ISO weekdays {days}, {profile.tz}; "
            f"{source}). Usually {baseline:,.0f} a day out of hours; the alert threshold "
            f"is {threshold:,.0f}."
        ),
        evidence={
            "observed": today.after_hours,
            "baseline": _n(baseline),
            "threshold": _n(threshold),
            "baseline_days": len(prior),
            "work_hours": hours,
            "work_days": days,
            "timezone": str(profile.tz),
            "hr_record": profile.known,
        },
    )


def detect_mass_export(
    profile: StaffProfile,
    today: DayCounts,
    history: Sequence[DayCounts],
    largest_event: int,
    t: Thresholds,
) -> Finding | None:
    """Many records exported or printed: one event at or above ``export_event_records``,
    or a day's total at or above ``export_day_records`` (and ``export_baseline_factor``
    times the actor's usual exports)."""
    prior = baseline_days(history, today.day, t)
    usual = robust([h.exported for h in prior])[0] if prior else 0.0
    day_threshold = max(float(t.export_day_records), usual * t.export_baseline_factor)
    event_threshold = float(t.export_event_records)
    by_event = largest_event >= event_threshold
    by_day = today.exported >= day_threshold
    if not (by_event or by_day):
        return None
    score = max(
        score_of(largest_event, 0.0, event_threshold),
        score_of(today.exported, usual, day_threshold),
    )
    return Finding(
        detector=Detector.MASS_EXPORT,
        actor=profile.actor,
        day=today.day,
        score=score,
        severity=severity_of(score),
        title=f"{_who(profile)} exported or printed {today.exported:,} records on {today.day}",
        explanation=(
            f"{_who(profile)} exported or printed {today.exported:,} records on {today.day} "
            f"(largest single export {largest_event:,}). Thresholds: {event_threshold:,.0f} "
            f"in one event, {day_threshold:,.0f} in a day (usually {usual:,.0f} a day)."
        ),
        evidence={
            "observed": today.exported,
            "largest_event": largest_event,
            "baseline": _n(usual),
            "threshold": _n(day_threshold),
            "event_threshold": _n(event_threshold),
        },
    )


def detect_off_duty(
    profile: StaffProfile, today: DayCounts, history: Sequence[DayCounts], t: Thresholds
) -> Finding | None:
    """Records of types outside the actor's duties (HR's list), more than they usually
    open."""
    if not profile.known or not profile.duties:
        return None
    prior = baseline_days(history, today.day, t)
    threshold = float(t.off_duty_min_records)
    baseline = 0.0
    if len(prior) >= t.baseline_min_days:
        band = band_of([h.off_duty for h in prior], t.off_duty_mad_k, t)
        threshold = max(threshold, band.threshold)
        baseline = band.median
    if today.off_duty < threshold:
        return None
    score = score_of(today.off_duty, baseline, threshold)
    duties = ", ".join(sorted(profile.duties))
    return Finding(
        detector=Detector.OFF_DUTY,
        actor=profile.actor,
        day=today.day,
        score=score,
        severity=severity_of(score),
        title=f"{_who(profile)} opened {today.off_duty:,} records outside their duties "
        f"on {today.day}",
        explanation=(
            f"{_who(profile)} opened {today.off_duty:,} records on {today.day} of types "
            f"outside their duties ({duties}). Usually {baseline:,.0f} a day; the alert "
            f"threshold is {threshold:,.0f}."
        ),
        evidence={
            "observed": today.off_duty,
            "baseline": _n(baseline),
            "threshold": _n(threshold),
            "duties": sorted(profile.duties),
            "baseline_days": len(prior),
        },
    )


def detect_departing(
    profile: StaffProfile, today: DayCounts, history: Sequence[DayCounts], t: Thresholds
) -> Finding | None:
    """An actor leaving within ``departing_days`` (or already gone) who touches more than
    ``departing_volume_ratio`` x their usual day, or exports or prints records."""
    if profile.leaving_on is None:
        return None
    until = (profile.leaving_on - today.day).days
    if until > t.departing_days:
        return None
    prior = baseline_days(history, today.day, t)
    usual = robust([h.records for h in prior])[0] if prior else 0.0
    volume_threshold = max(float(t.departing_min_records), usual * t.departing_volume_ratio)
    export_threshold = float(t.departing_export_records)
    by_volume = today.records >= volume_threshold
    by_export = today.exported >= export_threshold
    if not (by_volume or by_export):
        return None
    score = max(
        score_of(today.records, usual, volume_threshold) if by_volume else 0.0,
        score_of(today.exported, 0.0, export_threshold) if by_export else 0.0,
    )
    gone = until < 0
    severity = "critical" if gone or (by_volume and by_export) else "high"
    when = (
        f"left on {profile.leaving_on} ({-until} days before)"
        if gone
        else f"leaves on {profile.leaving_on} (in {until} days)"
    )
    return Finding(
        detector=Detector.DEPARTING,
        actor=profile.actor,
        day=today.day,
        score=max(score, 50.0),
        severity=severity,
        title=f"{_who(profile)}, who {when.split(' (')[0]}, touched {today.records:,} records "
        f"on {today.day}",
        explanation=(
            f"{_who(profile)} {when}. On {today.day} they touched {today.records:,} records "
            f"(usually {usual:,.0f}; threshold {volume_threshold:,.0f}) and exported or "
            f"printed {today.exported:,} (threshold {export_threshold:,.0f})."
        ),
        evidence={
            "observed": today.records,
            "exported": today.exported,
            "baseline": _n(usual),
            "threshold": _n(volume_threshold),
            "export_threshold": _n(export_threshold),
            "leaving_on": profile.leaving_on.isoformat(),
            "days_to_leaving": until,
        },
    )


def evaluate(
    profile: StaffProfile,
    today: DayCounts,
    history: Sequence[DayCounts],
    peers: Sequence[float],
    largest_export_event: int,
    t: Thresholds,
) -> list[Finding]:
    """Every detector's finding for one actor's day."""
    found = [
        detect_volume(profile, today, history, t),
        detect_peer_group(profile, today, peers, t),
        detect_after_hours(profile, today, history, t),
        detect_mass_export(profile, today, history, largest_export_event, t),
        detect_off_duty(profile, today, history, t),
        detect_departing(profile, today, history, t),
    ]
    return [f for f in found if f is not None]


def worth_evaluating(
    profile: StaffProfile, today: DayCounts, largest_export_event: int, t: Thresholds
) -> bool:
    """Whether any detector could fire on this day: each has an absolute floor, so most
    actor-days need no history at all (the streaming glue's cheap pre-filter)."""
    departing = (
        profile.leaving_on is not None
        and (profile.leaving_on - today.day).days <= t.departing_days
        and (
            today.records >= t.departing_min_records or today.exported >= t.departing_export_records
        )
    )
    return (
        departing
        or today.records >= min(t.volume_min_records, t.peer_min_records)
        or today.after_hours >= t.after_hours_min_records
        or today.exported >= t.export_day_records
        or largest_export_event >= t.export_event_records
        or (profile.known and bool(profile.duties) and today.off_duty >= t.off_duty_min_records)
    )


def event_is_evidence(detector: Detector, profile: StaffProfile, event: AccessEvent) -> bool:
    """Which of an actor's events of the day back a detector's finding."""
    if detector is Detector.AFTER_HOURS:
        return is_after_hours(profile, event.occurred_at)
    if detector is Detector.MASS_EXPORT:
        return event.action in EXPORT_ACTIONS
    if detector is Detector.OFF_DUTY:
        return is_off_duty(profile, event.record_type)
    return True


# --- the streaming glue -------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _profile(row: StaffMember | None, actor: str, t: Thresholds) -> StaffProfile:
    if row is None:
        return profile_from(actor, thresholds=t)
    return profile_from(
        actor,
        thresholds=t,
        known=True,
        team=row.team,
        duties=row.duties or (),
        timezone=row.timezone,
        work_start=row.work_start,
        work_end=row.work_end,
        work_days=row.work_days,
        leaving_on=row.leaving_on,
    )


def _upsert_days(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, date], DayCounts]:
    """Add the deltas to ``access_actor_days`` (insert, or add on conflict) and return the
    rows' new totals (``RETURNING``, so no read-back). Rows go in a fixed order so two
    concurrent batches lock them in the same order."""
    if not rows:
        return {}
    table: Table = ActorDay.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    ordered = sorted(rows, key=lambda r: (r["actor"], r["day"]))
    found: dict[tuple[str, date], DayCounts] = {}
    if dialect == "postgresql":
        # One statement over arrays (one parameter per column): an executemany with
        # RETURNING is split into multi-row statements that psycopg must parse, costing
        # more than the upsert itself. WITH ORDINALITY keeps the locking order.
        statement = text(
            "INSERT INTO access_actor_days (actor, day, events, records, exported, after_hours, "
            "off_duty) SELECT actor, day, events, records, exported, after_hours, off_duty FROM "
            "unnest(CAST(:actor AS varchar[]), CAST(:day AS date[]), CAST(:events AS integer[]), "
            "CAST(:records AS integer[]), CAST(:exported AS integer[]), "
            "CAST(:after_hours AS integer[]), CAST(:off_duty AS integer[])) WITH ORDINALITY AS "
            "t(actor, day, events, records, exported, after_hours, off_duty, n) ORDER BY n "
            "ON CONFLICT (actor, day) DO UPDATE SET "
            "events = LEAST(CAST(access_actor_days.events AS bigint) + EXCLUDED.events, :cap), "
            "records = LEAST(CAST(access_actor_days.records AS bigint) + EXCLUDED.records, :cap), "
            "exported = LEAST(CAST(access_actor_days.exported AS bigint) + EXCLUDED.exported, "
            ":cap), after_hours = LEAST(CAST(access_actor_days.after_hours AS bigint) + "
            "EXCLUDED.after_hours, :cap), off_duty = LEAST(CAST(access_actor_days.off_duty AS "
            "bigint) + EXCLUDED.off_duty, :cap) "
            "RETURNING actor, day, events, records, exported, after_hours, off_duty"
        )
        params: dict[str, Any] = {
            name: [r[name] for r in ordered] for name in ("actor", "day", *COUNTERS)
        }
        params["cap"] = INT_MAX
        for row in session.connection().execute(statement, params):
            found[(row[0], row[1])] = DayCounts(*row[1:])
        return found
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    stmt: Any = sqlite_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["actor", "day"],
        set_={
            name: func.min(cast(table.c[name], BigInteger) + stmt.excluded[name], INT_MAX)
            for name in COUNTERS
        },
    ).returning(table.c.actor, *(table.c[name] for name in ("day", *COUNTERS)))
    for row in session.connection().execute(stmt, ordered):
        found[(row[0], row[1])] = DayCounts(*row[1:])
    return found


def _load_staff(session: Session, actors: Sequence[str]) -> dict[str, StaffMember]:
    found: dict[str, StaffMember] = {}
    for chunk in _chunks(actors):
        for row in session.scalars(select(StaffMember).where(StaffMember.actor.in_(chunk))):
            found[row.actor] = row
    return found


def _load_days(
    session: Session, actors: Sequence[str], first: date, last: date
) -> dict[str, list[DayCounts]]:
    found: dict[str, list[DayCounts]] = defaultdict(list)
    for chunk in _chunks(sorted(set(actors))):
        for row in session.execute(
            select(
                ActorDay.actor,
                ActorDay.day,
                ActorDay.events,
                ActorDay.records,
                ActorDay.exported,
                ActorDay.after_hours,
                ActorDay.off_duty,
            ).where(ActorDay.actor.in_(chunk), ActorDay.day >= first, ActorDay.day <= last)
        ):
            found[row[0]].append(DayCounts(*row[1:]))
    return found


def _day_event_ids(
    session: Session, profile: StaffProfile, day: date, detector: Detector
) -> list[int]:
    """Every event of the actor's day that backs the detector (for a new alert, so it
    carries the events of the batches before the one that crossed the threshold)."""
    start, end = day_bounds(profile, day)
    rows = session.execute(
        select(
            AccessEvent.id, AccessEvent.action, AccessEvent.record_type, AccessEvent.occurred_at
        ).where(
            AccessEvent.actor == profile.actor,
            AccessEvent.occurred_at >= start,
            AccessEvent.occurred_at < end,
        )
    ).all()
    return [
        r[0]
        for r in rows
        if event_is_evidence(
            detector,
            profile,
            AccessEvent(id=r[0], action=r[1], record_type=r[2], occurred_at=r[3]),
        )
    ]


def on_ingested(
    session: Session,
    settings: Settings,
    events: Sequence[AccessEvent],
    now: datetime,
    customer_refs: Mapping[int, Sequence[str]] | None = None,
) -> list[Alert]:
    """Fold a batch of new access events into the detectors; returns the alerts raised
    or updated (including the honeytoken check's).

    Runs in the ingestion transaction. Queries per batch: the actors' HR records, the
    counters' upsert and read-back, and, only for actor-days past a detector's absolute
    floor, their history, their team's, the existing alerts and a day's events per new
    alert.
    """
    from spillguard.audit.alerts import dedup_key_for, raise_alert

    if not events:
        return []
    t = Thresholds.from_settings(settings)
    actors = sorted({e.actor for e in events})
    staff = _load_staff(session, actors)
    profiles = {a: _profile(staff.get(a), a, t) for a in actors}

    deltas: dict[tuple[str, date], list[int]] = {}
    batch_events: dict[tuple[str, date], list[AccessEvent]] = defaultdict(list)
    largest_export: dict[tuple[str, date], int] = defaultdict(int)
    for event in events:
        profile = profiles[event.actor]
        occurred = event.occurred_at
        local = (occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)).astimezone(
            profile.tz
        )
        key = (event.actor, local.date())
        records = max(0, min(int(event.records or 0), INT_MAX))
        d = deltas.setdefault(key, [0, 0, 0, 0, 0])
        d[0] += 1
        d[1] += records
        if event.action in EXPORT_ACTIONS:
            d[2] += records
            largest_export[key] = max(largest_export[key], records)
        if _after_hours_local(profile, local):
            d[3] += records
        if is_off_duty(profile, event.record_type):
            d[4] += records
        batch_events[key].append(event)
    totals = _upsert_days(
        session,
        [
            {
                "actor": actor,
                "day": day,
                "events": min(v[0], INT_MAX),
                "records": min(v[1], INT_MAX),
                "exported": min(v[2], INT_MAX),
                "after_hours": min(v[3], INT_MAX),
                "off_duty": min(v[4], INT_MAX),
            }
            for (actor, day), v in deltas.items()
        ],
    )
    candidates = [
        key
        for key, today in sorted(totals.items())
        if worth_evaluating(profiles[key[0]], today, largest_export[key], t)
    ]
    alerts: list[Alert] = []
    if candidates:
        first = min(day for _, day in candidates) - timedelta(days=t.baseline_lookback_days)
        last = max(day for _, day in candidates)
        teams = sorted({t_ for a, _ in candidates if (t_ := profiles[a].team)})
        members: dict[str, list[str]] = defaultdict(list)
        for chunk in _chunks(teams):
            for actor, team in session.execute(
                select(StaffMember.actor, StaffMember.team).where(StaffMember.team.in_(chunk))
            ):
                if team:
                    members[team].append(actor)
        wanted = {a for a, _ in candidates} | {m for ms in members.values() for m in ms}
        history = _load_days(session, sorted(wanted), first, last)
        peer_cache: dict[tuple[str, date], list[tuple[str, float | None]]] = {}
        findings: list[tuple[Finding, StaffProfile]] = []
        for key in candidates:
            actor, day = key
            profile = profiles[actor]
            peers: list[float] = []
            if profile.team:
                cache_key = (profile.team, day)
                if cache_key not in peer_cache:
                    peer_cache[cache_key] = [
                        (m, typical_day(history.get(m, []), day, t))
                        for m in members.get(profile.team, [])
                    ]
                peers = [v for m, v in peer_cache[cache_key] if m != actor and v is not None]
            own = [h for h in history.get(actor, []) if h.day < day]
            for finding in evaluate(profile, totals[key], own, peers, largest_export[key], t):
                findings.append((finding, profile))
        if findings:
            keyed = [
                (dedup_key_for(f.detector.value, f.actor, f.day.isoformat()), f, p)
                for f, p in findings
            ]
            existing = set(
                session.scalars(
                    select(Alert.dedup_key).where(Alert.dedup_key.in_([k for k, _, _ in keyed]))
                )
            )
            for dedup, finding, profile in keyed:
                if dedup in existing:
                    ids = [
                        e.id
                        for e in batch_events[(finding.actor, finding.day)]
                        if event_is_evidence(finding.detector, profile, e)
                    ]
                else:
                    ids = _day_event_ids(session, profile, finding.day, finding.detector)
                evidence = {
                    **finding.evidence,
                    "day": finding.day.isoformat(),
                    "explanation": finding.explanation,
                }
                alerts.append(
                    raise_alert(
                        session,
                        detector=finding.detector.value,
                        dedup_key=dedup,
                        severity=finding.severity,
                        score=finding.score,
                        title=finding.title,
                        evidence=evidence,
                        actor=finding.actor,
                        event_ids=ids,
                        now=now,
                    )
                )
    alerts.extend(_honeytokens(session, events, now, customer_refs))
    return alerts


def _honeytokens(
    session: Session,
    events: Sequence[AccessEvent],
    now: datetime,
    customer_refs: Mapping[int, Sequence[str]] | None,
) -> list[Alert]:
    """The honeytoken check (audit.honeytokens, written separately), imported lazily.

    With the events' customer ids at hand (``customer_refs``, event id -> ids, as the
    ingestion service gives them), only the events that touched an active honeytoken are
    handed over: one query for the honeytokens' ids instead of one per 500 events."""
    try:
        honeytokens = importlib.import_module("spillguard.audit.honeytokens")
    except ModuleNotFoundError as exc:
        if exc.name != "spillguard.audit.honeytokens":
            raise
        return []
    if customer_refs is not None:
        traps = set(
            session.scalars(
                select(Customer.external_id)
                .join(HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id)
                .where(HoneytokenCustomer.retired_at.is_(None))
            )
        )
        events = [e for e in events if not traps.isdisjoint(customer_refs.get(e.id, ()))]
        if not events:
            return []
    raised = honeytokens.check_access_events(session, events, now)
    return list(raised or [])
