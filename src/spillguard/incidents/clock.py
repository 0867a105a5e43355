"""The breach clock: how long is left to tell the regulator, and the reminders.

GDPR Art 33(1): notify the supervisory authority "without undue delay and, where
feasible, not later than 72 hours after having become aware" of a personal-data breach;
a later notification carries the reasons for the delay. PECR regulation 5A(2): a provider
of a public electronic communications service has 24 hours. The clock starts at the
*awareness* time (when the organisation became aware, not when a report was filed).

:func:`breach_clock` and :func:`due_reminders` are pure; :func:`send_reminders` is the
scheduled job's body: it e-mails the owner and every ``dpo`` through a
:class:`~spillguard.incidents.mailer.MailSender` at the configured points before the
deadline (``breach_clock_reminders_hours``), once per incident and point
(``incident_clock_reminders``), and puts each reminder on the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.jobs import Job
from spillguard.core.models import User
from spillguard.core.roles import Role
from spillguard.core.settings import Settings
from spillguard.incidents import timeline
from spillguard.incidents.models import ClockReminder, Incident, IncidentStatus, TimelineKind

if TYPE_CHECKING:
    from spillguard.incidents.mailer import MailSender

log = structlog.get_logger("spillguard.incidents.clock")

GDPR_HOURS = 72
PECR_HOURS = 24


@dataclass(frozen=True)
class BreachClock:
    """Where an incident stands against the regulator deadline at ``now``."""

    aware_at: datetime
    deadline: datetime
    hours: int
    basis: str
    now: datetime
    notified_at: datetime | None

    @property
    def remaining(self) -> timedelta:
        """Time left before the deadline (negative once past it)."""
        return self.deadline - self.now

    @property
    def overdue(self) -> bool:
        """Past the deadline with the regulator not yet notified."""
        return self.notified_at is None and self.now > self.deadline

    @property
    def stopped(self) -> bool:
        """The regulator was notified: the clock no longer runs."""
        return self.notified_at is not None

    @property
    def notified_late(self) -> bool:
        return self.notified_at is not None and self.notified_at > self.deadline

    def remaining_text(self) -> str:
        """ "41 h 12 min left", "3 h 5 min overdue", or how the notification went."""
        if self.notified_at is not None:
            return "regulator notified late" if self.notified_late else "regulator notified"
        seconds = int(self.remaining.total_seconds())
        span = abs(seconds)
        text = f"{span // 3600} h {span % 3600 // 60:02d} min"
        return f"{text} left" if seconds >= 0 else f"{text} overdue"


def deadline_hours(communications_provider: bool) -> tuple[int, str]:
    """The deadline's length in hours and the rule that sets it."""
    if communications_provider:
        return PECR_HOURS, "PECR regulation 5A (communications provider): 24 hours"
    return GDPR_HOURS, "GDPR Article 33(1): 72 hours"


def breach_clock(
    aware_at: datetime,
    *,
    communications_provider: bool,
    now: datetime,
    notified_at: datetime | None = None,
) -> BreachClock:
    """The clock of a breach the organisation became aware of at ``aware_at``."""
    hours, basis = deadline_hours(communications_provider)
    return BreachClock(
        aware_at=aware_at,
        deadline=aware_at + timedelta(hours=hours),
        hours=hours,
        basis=basis,
        now=now,
        notified_at=notified_at,
    )


def reminder_points(points: Iterable[int], clock_hours: int) -> list[int]:
    """The configured points that make sense for this clock, largest first: positive, and
    shorter than the clock itself (a 48 h point on a 24 h clock would fire at once)."""
    return sorted({p for p in points if 0 < p < clock_hours}, reverse=True)


def due_reminders(clock: BreachClock, points: Iterable[int], sent: Iterable[int]) -> list[int]:
    """Points (hours before the deadline) whose time has come and which were not sent yet.

    None once the regulator has been notified. Several points may be due at once (the
    server was down): the caller sends one reminder and records them all.
    """
    if clock.stopped:
        return []
    done = set(sent)
    return [
        p
        for p in reminder_points(points, clock.hours)
        if p not in done and clock.now >= clock.deadline - timedelta(hours=p)
    ]


def clock_of(incident: Incident, settings: Settings, now: datetime | None = None) -> BreachClock:
    return breach_clock(
        incident.aware_at,
        communications_provider=settings.organisation_is_communications_provider,
        now=now or utcnow(),
        notified_at=incident.regulator_notified_at,
    )


def reminder_message(
    incident: Incident, clock: BreachClock, recipients: list[str], settings: Settings
) -> EmailMessage:
    """The reminder e-mail: the incident's number, type, deadline and time left. It
    names no customer (the console has the details)."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = (
        f"[Spillguard] Incident #{incident.id}: regulator deadline in {clock.remaining_text()}"
    )
    message.set_content(
        f"Incident #{incident.id} ({incident.type}, severity {incident.severity}, "
        f"status {incident.status}) has not been reported to the regulator yet.\n\n"
        f"Became aware: {clock.aware_at:%Y-%m-%d %H:%M} UTC\n"
        f"Deadline:     {clock.deadline:%Y-%m-%d %H:%M} UTC ({clock.basis})\n"
        f"Time:         {clock.remaining_text()}\n\n"
        f"Open it in the console: {settings.base_url}/incidents/{incident.id}\n"
        "A notification after the deadline must give the reasons for the delay.\n"
    )
    return message


def send_reminders(
    session: Session, settings: Settings, sender: MailSender, now: datetime | None = None
) -> int:
    """Send the breach-clock reminders that are due; returns how many were sent."""
    from spillguard.incidents.mailer import MailError

    now = now or utcnow()
    open_incidents = list(
        session.scalars(
            select(Incident).where(
                Incident.status != IncidentStatus.CLOSED.value,
                Incident.regulator_notified_at.is_(None),
            )
        )
    )
    if not open_incidents:
        return 0
    dpo_emails = list(
        session.scalars(
            select(User.email).where(User.role == Role.DPO.value, User.disabled.is_(False))
        )
    )
    sent_count = 0
    for incident in open_incidents:
        clock = clock_of(incident, settings, now)
        already = session.scalars(
            select(ClockReminder.hours_before).where(ClockReminder.incident_id == incident.id)
        )
        due = due_reminders(clock, settings.breach_clock_reminders_hours, already)
        if not due:
            continue
        owner = session.get(User, incident.owner_id) if incident.owner_id else None
        recipients = sorted({*dpo_emails, *([owner.email] if owner and not owner.disabled else [])})
        if not recipients:
            log.warning("breach_clock_reminder_no_recipient", incident_id=incident.id)
            continue
        try:
            sender.send(reminder_message(incident, clock, recipients, settings))
        except MailError as exc:
            # Not recorded as sent: the next run tries again.
            log.warning("breach_clock_reminder_failed", incident_id=incident.id, error=exc.reply)
            continue
        for point in due:
            session.add(
                ClockReminder(
                    incident_id=incident.id,
                    hours_before=point,
                    sent_at=now,
                    recipients=len(recipients),
                )
            )
        timeline.add(
            session,
            incident.id,
            TimelineKind.NOTIFICATION,
            f"Breach-clock reminder sent to {len(recipients)} people ({clock.remaining_text()}).",
            actor_label="system",
            data={"hours_before": min(due), "recipients": len(recipients)},
            at=now,
        )
        sent_count += 1
    session.flush()
    return sent_count


def reminders_job(settings: Settings, sender: Callable[[], MailSender] | None = None) -> Job:
    """The scheduled job (core.jobs) that sends due breach-clock reminders."""

    def run(session: Session) -> int:
        from spillguard.incidents.mailer import mail_sender_from_settings

        mail = sender() if sender is not None else mail_sender_from_settings(settings)
        try:
            return send_reminders(session, settings, mail)
        finally:
            mail.close()

    return Job("incidents.breach_clock", settings.breach_clock_interval_seconds, run)
