"""One check-in cycle, and the periodic loop around it.

A cycle: collect posture → check in (carrying results not yet delivered) → carry out
each returned command through the backend → report each result at once (a result that
cannot be delivered is kept in ``pending-results.json`` and rides on the next check-in).

Location is sent only while the **server** says the device is lost (the check-in answer's
``state`` is ``lost``) and the backend is in lost mode: a fix in a ``locate`` or
``lost_mode_on`` result, and otherwise one fix per check-in through ``/location``.  A fix
the backend produced while the server does not say ``lost`` is dropped, never sent.

The loop checks in every ``next_checkin_seconds`` (or ``--interval``) with ±10 % jitter;
after a failure it backs off exponentially (doubling from ``min(interval, 30 s)``, capped
at one hour) or waits the server's ``Retry-After`` if that is longer.  A refused or
revoked credential stops the loop: retrying cannot fix it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from spillguard.devices.agent.backends.base import Backend, Command, CommandResult
from spillguard.devices.agent.client import (
    AgentError,
    CredentialRejected,
    DeviceClient,
    ProtocolError,
    RequestRefused,
    ServerFault,
    ServerUnreachable,
)
from spillguard.devices.agent.state import AgentState

MAX_BACKOFF: Final = 3600.0
JITTER: Final = 0.10
# A result the server will never accept again: drop it instead of re-sending forever.
_STALE_RESULT_SLUGS: Final = frozenset({"command-finished", "command-not-found"})
LOCATION_COMMANDS: Final = frozenset({"locate", "lost_mode_on"})


@dataclass
class Executed:
    command: Command
    result: CommandResult
    delivered: bool


@dataclass
class CycleReport:
    """What one check-in cycle did."""

    state: str
    compliant: bool
    reasons: list[str]
    next_checkin_seconds: int
    executed: list[Executed] = field(default_factory=list)
    location_sent: bool = False
    forgot_credential: bool = False
    dropped_results: int = 0

    def lines(self) -> list[str]:
        verdict = "compliant" if self.compliant else "NOT compliant"
        out = [f"checked in: state {self.state}, {verdict}"]
        out += [f"  - {reason}" for reason in self.reasons if not self.compliant]
        for item in self.executed:
            outcome: str = item.result.status
            if item.result.reason:
                outcome += f" ({item.result.reason})"
            if item.result.location is not None:
                outcome += ", location sent"
            if not item.delivered:
                outcome += ", result kept to send at the next check-in"
            out.append(f"command {item.command.id} {item.command.type}: {outcome}")
        if self.location_sent:
            out.append("lost mode: location reported")
        if self.forgot_credential:
            out.append("retired: the device credential was deleted; this agent is unmanaged")
        for item in self.executed:
            if item.command.type == "wipe" and item.result.status == "acknowledged":
                out.append("wiped: the server revokes this device's credential")
        return out


class Agent:
    """An enrolled agent: its state directory, backend and protocol client."""

    def __init__(self, state: AgentState, backend: Backend, client: DeviceClient) -> None:
        self.state = state
        self.backend = backend
        self.client = client

    def _checkin(self, posture: dict[str, Any]) -> dict[str, Any]:
        pending = self.state.pending_results()
        try:
            answer = self.client.checkin(posture, pending)
        except RequestRefused as exc:
            if not pending or exc.slug not in _STALE_RESULT_SLUGS:
                raise
            # A kept result the server no longer takes (the command expired, was
            # cancelled or finished meanwhile) must not block every later check-in.
            answer = self.client.checkin(posture, [])
        self.state.save_pending_results([])
        return answer

    def run_once(self) -> CycleReport:
        """One check-in and every command it returns; raises on a failed check-in."""
        answer = self._checkin(self.backend.collect_posture())
        self.state.record_checkin(answer)
        compliance = answer.get("compliance") or {}
        report = CycleReport(
            state=str(answer.get("state")),
            compliant=bool(compliance.get("compliant")),
            reasons=[str(r) for r in compliance.get("reasons", [])],
            next_checkin_seconds=int(answer.get("next_checkin_seconds") or 900),
        )
        server_says_lost = report.state == "lost"
        undelivered: list[dict[str, Any]] = []
        for raw in answer.get("commands", []):
            command = Command.from_json(raw)
            result = self.backend.execute(command)
            if result.location is not None and not server_says_lost:
                result = replace(result, location=None)
            delivered = self._deliver(command, result, undelivered, report)
            report.executed.append(Executed(command, result, delivered))
            if result.forget_credential and delivered:
                report.forgot_credential = self.state.forget_credential()
        self.state.save_pending_results(undelivered)
        sent_in_result = any(
            e.result.location is not None and e.command.type in LOCATION_COMMANDS
            for e in report.executed
        )
        if server_says_lost and not sent_in_result and not report.forgot_credential:
            report.location_sent = self._send_location()
        return report

    def _deliver(
        self,
        command: Command,
        result: CommandResult,
        undelivered: list[dict[str, Any]],
        report: CycleReport,
    ) -> bool:
        body = result.to_json()
        try:
            self.client.report_result(command.id, body)
        except (ServerUnreachable, ServerFault):
            undelivered.append({"command_id": command.id, **body})
            return False
        except RequestRefused as exc:
            if exc.slug in _STALE_RESULT_SLUGS:
                report.dropped_results += 1
                return False
            raise
        return True

    def _send_location(self) -> bool:
        if not self.backend.in_lost_mode():
            return False
        fix = self.backend.current_location()
        if fix is None:
            return False
        try:
            self.client.report_location(fix)
        except RequestRefused as exc:
            if exc.slug == "device-not-lost":
                return False  # lost mode ended between the answer and now
            raise
        return True


def jittered(seconds: float, rng: random.Random) -> float:
    """``seconds`` ± 10 %."""
    return max(1.0, seconds * rng.uniform(1 - JITTER, 1 + JITTER))


def backoff(failures: int, interval: float, retry_after: float | None = None) -> float:
    """Seconds to wait after ``failures`` failed cycles in a row."""
    base = max(1.0, min(interval, 30.0))
    wait = min(MAX_BACKOFF, base * 2**failures)
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_BACKOFF))
    return wait


def run_forever(
    agent: Agent,
    *,
    interval: float | None,
    log: Callable[[str], None],
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
) -> None:
    """Check in periodically until ``stop`` is set or the credential stops working."""
    stop = stop or threading.Event()
    rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
    failures = 0
    period = interval or 900.0
    while not stop.is_set():
        try:
            report = agent.run_once()
        except CredentialRejected:
            raise
        except (ServerUnreachable, ProtocolError) as exc:
            failures += 1
            after = exc.retry_after if isinstance(exc, ProtocolError) else None
            wait = backoff(failures, period, after)
            log(f"check-in failed ({exc}); retrying in {wait:.0f} s")
        except AgentError:
            raise
        else:
            failures = 0
            for line in report.lines():
                log(line)
            if report.forgot_credential:
                return
            period = interval or float(report.next_checkin_seconds)
            wait = jittered(period, rng)
        stop.wait(wait)
