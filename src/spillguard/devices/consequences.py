"""Consequences of non-compliance: notify, block corporate data, lock (once per episode).

Each failed rule of a device's verdict has a configured consequence and a grace period
(``devices.policy``).  The ``devices.consequences`` job (claimed once across processes,
every minute at most) re-judges each non-compliant device with the pure
:func:`~spillguard.devices.compliance.evaluate`, keeps when each failure was first seen
(:func:`~spillguard.devices.compliance.track_first_seen`), and applies the consequences
:func:`~spillguard.devices.compliance.schedule_consequences` finds due, **once per failure
episode** (an episode of a rule lasts from its first failure until it passes again):

- ``lock``: a lock command with a policy message, collapsed with a pending lock;
- ``block_corporate_data``: the device is marked blocked for corporate data (read by the
  exposure gateway through :func:`is_blocked_for_corporate_data` /
  :func:`blocked_device_ids`); lifted, and audited, once no rule that blocked it fails;
- ``notify``: an audit event ``devices:consequence:notify-due`` naming the device and the
  rules; e-mail delivery arrives with the outbox.

Each application is audited as ``devices:consequence:applied`` with the rule and the
consequence.

Where the state lives: in columns of ``devices`` (migration 0004):
``consequence_state`` holds :class:`ConsequenceState` as JSON, and
``blocked_for_corporate_data`` / ``blocked_since`` mirror its block so that the gateway
reads one indexed boolean.  Only this job writes them; it commits after every chunk of
devices, so it never holds many device rows locked while check-ins wait for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.jobs import Job
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.devices.compliance import (
    RuleFailure,
    Verdict,
    evaluate,
    schedule_consequences,
    track_first_seen,
)
from spillguard.devices.models import (
    CommandType,
    ComplianceChange,
    CompliancePolicyRecord,
    Device,
    DeviceState,
)
from spillguard.devices.policy import Consequence, Rule
from spillguard.devices.posture import Posture
from spillguard.devices.services import effective_policy, parsed_policy

JOB_NAME: Final = "devices.consequences"
MAX_INTERVAL_SECONDS: Final = 60.0
CHUNK: Final = 500
JOB_CHUNK: Final = 100
LOCK_MESSAGE_LIMIT: Final = 200
MANAGED = (DeviceState.ACTIVE.value, DeviceState.LOST.value)
_RULES = {rule.value for rule in Rule}
_CONSEQUENCES = {consequence.value for consequence in Consequence}


class ConsequenceAuditAction(StrEnum):
    APPLIED = "devices:consequence:applied"
    NOTIFY_DUE = "devices:consequence:notify-due"
    LIFTED = "devices:consequence:lifted"


@dataclass
class ConsequenceState:
    """What the job remembers about one device between runs (stored as JSON)."""

    checked_at: datetime | None = None
    first_seen: dict[Rule, datetime] = field(default_factory=dict)
    applied: dict[Rule, list[Consequence]] = field(default_factory=dict)
    blocked_for_corporate_data: bool = False
    blocked_since: datetime | None = None
    blocked_by: list[Rule] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.first_seen or self.applied or self.blocked_for_corporate_data)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "checked_at": _iso(self.checked_at),
            "first_seen": {rule.value: at.isoformat() for rule, at in self.first_seen.items()},
            "applied": {rule.value: [c.value for c in cs] for rule, cs in self.applied.items()},
            "blocked_for_corporate_data": self.blocked_for_corporate_data,
            "blocked_since": _iso(self.blocked_since),
            "blocked_by": [rule.value for rule in self.blocked_by],
        }

    @classmethod
    def from_json(cls, data: object) -> ConsequenceState:
        if not isinstance(data, dict):
            return cls()
        return cls(
            checked_at=_parse(data.get("checked_at")),
            first_seen={
                Rule(rule): at
                for rule, text in (data.get("first_seen") or {}).items()
                if rule in _RULES and (at := _parse(text)) is not None
            },
            applied={
                Rule(rule): [Consequence(c) for c in cs if c in _CONSEQUENCES]
                for rule, cs in (data.get("applied") or {}).items()
                if rule in _RULES
            },
            blocked_for_corporate_data=bool(data.get("blocked_for_corporate_data")),
            blocked_since=_parse(data.get("blocked_since")),
            blocked_by=[Rule(r) for r in data.get("blocked_by") or [] if r in _RULES],
        )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# --- reading (the exposure gateway, the API, the console) ----------------------------


def consequence_state(session: Session, device_id: int) -> ConsequenceState:
    data = session.scalar(select(Device.consequence_state).where(Device.id == device_id))
    return ConsequenceState.from_json(data)


def is_blocked_for_corporate_data(session: Session, device_id: int) -> bool:
    """Whether the device is blocked from corporate data by a non-compliance consequence."""
    return bool(
        session.scalar(select(Device.blocked_for_corporate_data).where(Device.id == device_id))
    )


def blocked_device_ids(session: Session, device_ids: Iterable[int]) -> set[int]:
    """Which of ``device_ids`` are blocked for corporate data (one query per 500 ids)."""
    ids = list(device_ids)
    blocked: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        blocked.update(
            session.scalars(
                select(Device.id).where(
                    Device.id.in_(ids[start : start + CHUNK]),
                    Device.blocked_for_corporate_data.is_(True),
                )
            )
        )
    return blocked


# --- the job -------------------------------------------------------------------------


@dataclass
class ConsequenceRun:
    devices: int = 0
    applied: int = 0
    lifted: int = 0
    locks_queued: int = 0

    def __str__(self) -> str:
        return (
            f"devices={self.devices} applied={self.applied} lifted={self.lifted}"
            f" locks={self.locks_queued}"
        )


def _episode_starts(session: Session, device_ids: Sequence[int]) -> dict[int, datetime]:
    """When each device's latest verdict (its current non-compliance) was recorded."""
    starts: dict[int, datetime] = {}
    for start in range(0, len(device_ids), CHUNK):
        chunk = device_ids[start : start + CHUNK]
        for device_id, at in session.execute(
            select(ComplianceChange.device_id, func.max(ComplianceChange.at))
            .where(ComplianceChange.device_id.in_(chunk))
            .group_by(ComplianceChange.device_id)
        ):
            starts[device_id] = at
    return starts


class _Policies:
    """The verdict of each device under its effective policy (parsed once per version)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def verdict(self, device: Device, now: datetime) -> tuple[Verdict, int | None]:
        record: CompliancePolicyRecord | None = effective_policy(self.session, device)
        if record is None or device.state not in MANAGED:
            return Verdict(failures=()), None
        policy = parsed_policy(record)
        posture = Posture.model_validate(device.posture) if device.posture is not None else None
        verdict = evaluate(posture, policy, last_checkin_at=device.last_checkin_at, now=now)
        return verdict, record.id


def _lock_message(failure: RuleFailure) -> str:
    text = f"Locked: this device does not meet the company security policy. {failure.reason}"
    return text if len(text) <= LOCK_MESSAGE_LIMIT else text[: LOCK_MESSAGE_LIMIT - 1] + "…"


def apply_consequences(
    session: Session, settings: Settings, now: datetime | None = None
) -> ConsequenceRun:
    """Apply every due consequence once, and lift blocks whose cause has gone."""
    now = now or utcnow()
    system = Principal.system(JOB_NAME)
    run = ConsequenceRun()
    candidates = set(
        session.scalars(
            select(Device.id).where(Device.state.in_(MANAGED), Device.compliant.is_(False))
        )
    )
    candidates |= set(
        session.scalars(select(Device.id).where(Device.consequence_state.is_not(None)))
    )
    ids = sorted(candidates)
    policies = _Policies(session)
    for start in range(0, len(ids), JOB_CHUNK):
        chunk = ids[start : start + JOB_CHUNK]
        devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_(chunk)))}
        episodes = _episode_starts(session, chunk)
        for device_id in chunk:
            device = devices.get(device_id)
            if device is None:
                continue
            run.devices += 1
            _apply_one(session, settings, system, device, episodes, policies, now, run)
        # Release the rows written (and locked) for this chunk: check-ins of these devices
        # wait for them, so they are never held for the whole fleet.
        session.commit()
    return run


def _apply_one(
    session: Session,
    settings: Settings,
    system: Principal,
    device: Device,
    episodes: dict[int, datetime],
    policies: _Policies,
    now: datetime,
    run: ConsequenceRun,
) -> None:
    from spillguard.devices.commands import CommandService

    state = ConsequenceState.from_json(device.consequence_state)
    verdict, policy_id = policies.verdict(device, now)
    # A failure the job has not seen before started when the device's current verdict was
    # recorded, if that happened since the job last looked; otherwise (a rule that began
    # failing later in the same episode) it is counted from now, so grace is never cut short.
    episode = episodes.get(device.id)
    if episode is not None and (state.checked_at is None or episode > state.checked_at):
        new_since = min(episode, now)
    else:
        new_since = now
    first_seen = track_first_seen(state.first_seen, verdict, new_since)
    applied = {rule: list(cs) for rule, cs in state.applied.items() if rule in first_seen}
    schedule = schedule_consequences(verdict.failures, first_seen, now)
    failures = {f.rule: f for f in verdict.failures}

    to_apply = [item for item in schedule.due if item.consequence not in applied.get(item.rule, [])]
    blocked_by = [
        rule
        for rule in state.blocked_by
        if rule in first_seen and Consequence.BLOCK_CORPORATE_DATA in applied.get(rule, [])
    ]
    if to_apply:
        # Serialise with queueing and other writers of this device (PostgreSQL row lock).
        session.scalar(select(Device).where(Device.id == device.id).with_for_update())
    notify_rules: list[Rule] = []
    for item in to_apply:
        failure = failures[item.rule]
        details: dict[str, Any] = {
            "rule": item.rule.value,
            "consequence": item.consequence.value,
            "reason": failure.reason,
            "first_seen": first_seen[item.rule].isoformat(),
            "grace_seconds": failure.grace_seconds,
            "policy_id": policy_id,
        }
        if item.consequence is Consequence.LOCK:
            queued = CommandService(session, system, settings)._queue(
                device, CommandType.LOCK, {"message": _lock_message(failure)}
            )
            details["command_id"] = queued.command.id
            details["collapsed"] = queued.collapsed
            run.locks_queued += 0 if queued.collapsed else 1
        elif item.consequence is Consequence.BLOCK_CORPORATE_DATA:
            if not blocked_by:
                state.blocked_since = now
            blocked_by.append(item.rule)
        else:
            notify_rules.append(item.rule)
        applied.setdefault(item.rule, []).append(item.consequence)
        record_event(
            session,
            system,
            ConsequenceAuditAction.APPLIED,
            object_type="device",
            object_id=device.id,
            details=details,
        )
        run.applied += 1
    if notify_rules:
        record_event(
            session,
            system,
            ConsequenceAuditAction.NOTIFY_DUE,
            object_type="device",
            object_id=device.id,
            details={
                "device_id": device.id,
                "owner_id": device.owner_id,
                "rules": [rule.value for rule in notify_rules],
                "reasons": [failures[rule].reason for rule in notify_rules],
                "delivery": "pending: e-mail delivery arrives with the outbox",
            },
        )
    if state.blocked_for_corporate_data and not blocked_by:
        record_event(
            session,
            system,
            ConsequenceAuditAction.LIFTED,
            object_type="device",
            object_id=device.id,
            details={
                "consequence": Consequence.BLOCK_CORPORATE_DATA.value,
                "rules": [rule.value for rule in state.blocked_by],
                "blocked_since": _iso(state.blocked_since),
                "why": _lift_reason(device, verdict),
                "compliant": verdict.compliant,
            },
        )
        run.lifted += 1
    new_state = ConsequenceState(
        checked_at=now,
        first_seen=first_seen,
        applied=applied,
        blocked_for_corporate_data=bool(blocked_by),
        blocked_since=state.blocked_since if blocked_by else None,
        blocked_by=blocked_by,
    )
    _store(device, new_state)


def _lift_reason(device: Device, verdict: Verdict) -> str:
    if device.state not in MANAGED:
        return f"device {device.state}"
    return "compliant again" if verdict.compliant else "the rules that blocked it pass"


def _store(device: Device, state: ConsequenceState) -> None:
    """Write the state to the device's columns, only when more than ``checked_at`` changed,
    so an idle fleet costs the job reads, not writes (``checked_at`` matters only for
    failures the job has not seen before)."""
    if state.empty:
        if device.consequence_state is not None or device.blocked_for_corporate_data:
            device.consequence_state = None
            device.blocked_for_corporate_data = False
            device.blocked_since = None
        return
    data = state.to_json()
    previous = ConsequenceState.from_json(device.consequence_state)
    previous.checked_at = state.checked_at
    if device.consequence_state is None or previous.to_json() != data:
        device.consequence_state = data
        device.blocked_for_corporate_data = state.blocked_for_corporate_data
        device.blocked_since = state.blocked_since


def consequences_job(settings: Settings) -> Job:
    return Job(
        JOB_NAME,
        min(MAX_INTERVAL_SECONDS, settings.device_maintenance_interval_seconds),
        lambda session: apply_consequences(session, settings),
    )
