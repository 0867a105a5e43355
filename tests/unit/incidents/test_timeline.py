"""The timeline on SQLite and PostgreSQL: append-only, the devices hook is one query and a
no-op without an open incident; breach-clock reminders go once per point to the owner and
every dpo, through a MailSender."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.incidents import timeline
from spillguard.incidents.clock import send_reminders
from spillguard.incidents.mailer import MemoryMailSender, TemporaryMailError
from spillguard.incidents.models import (
    ClockReminder,
    Incident,
    IncidentType,
    Severity,
    TimelineEntry,
    TimelineKind,
)
from spillguard.incidents.services import IncidentService
from tests.factories.users import UserFactory


def open_incident(db: Session, settings: Settings, **fields: Any) -> Incident:
    svc = IncidentService(db, Principal.system("tests"), settings)
    incident = svc.create(
        type=IncidentType.OTHER, title="Test incident", severity=Severity.HIGH, **fields
    )
    db.commit()
    return incident


def test_entries_cannot_be_changed_or_deleted(db: Session, settings: Settings) -> None:
    incident = open_incident(db, settings)
    entry = timeline.entries(db, incident.id)[0]
    entry.summary = "rewritten history"
    with pytest.raises(timeline.TimelineIsAppendOnly):
        db.flush()
    db.rollback()
    db.delete(db.get(TimelineEntry, entry.id))
    with pytest.raises(timeline.TimelineIsAppendOnly):
        db.flush()
    db.rollback()
    assert db.get(TimelineEntry, entry.id).summary != "rewritten history"  # type: ignore[union-attr]


def test_device_event_is_one_query_and_a_no_op_without_an_open_incident(
    db: Session, settings: Settings
) -> None:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert timeline.device_event(db, 424242, TimelineKind.COMMAND, "lock queued") == 0
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")

    with_device = open_incident(db, settings)
    with_device.device_id = 424242
    closed = open_incident(db, settings)
    closed.device_id = 424242
    closed.status = "closed"
    db.commit()
    assert timeline.device_event(db, 424242, TimelineKind.COMMAND, "lock queued") == 1
    db.commit()
    summaries = [e.summary for e in timeline.entries(db, with_device.id)]
    assert summaries[-1] == "lock queued"
    assert "lock queued" not in [e.summary for e in timeline.entries(db, closed.id)]


def test_reminders_go_once_per_point_to_the_owner_and_every_dpo(
    db: Session, settings: Settings, users: UserFactory
) -> None:
    owner = users.create("security")
    dpo = users.create("dpo")
    users.create("auditor")
    incident = open_incident(
        db, settings, owner_id=owner.id, aware_at=utcnow() - timedelta(hours=50)
    )
    quiet = open_incident(db, settings, aware_at=utcnow() - timedelta(hours=1))
    sender = MemoryMailSender()

    assert send_reminders(db, settings, sender) == 1
    db.commit()
    (message,) = sender.sent
    assert sorted(a.strip() for a in message["To"].split(",")) == sorted([owner.email, dpo.email])
    assert f"Incident #{incident.id}" in message["Subject"]
    assert "left" in message["Subject"]
    sent_points = set(
        db.scalars(
            select(ClockReminder.hours_before).where(ClockReminder.incident_id == incident.id)
        )
    )
    assert sent_points == {48, 24}  # both passed: one mail covers them
    assert not db.scalars(select(ClockReminder).where(ClockReminder.incident_id == quiet.id)).all()
    assert timeline.entries(db, incident.id)[-1].kind == "notification"

    assert send_reminders(db, settings, sender) == 0  # nothing twice
    assert len(sender.sent) == 1


class Refusing:
    def send(self, message: Any, *, before_commit: Any = None) -> None:
        raise TemporaryMailError("421 try later")

    def close(self) -> None:
        return None


def test_a_reminder_that_could_not_be_sent_is_tried_again(
    db: Session, settings: Settings, users: UserFactory
) -> None:
    users.create("dpo")
    incident = open_incident(db, settings, aware_at=utcnow() - timedelta(hours=70))
    assert send_reminders(db, settings, Refusing()) == 0
    db.commit()
    assert not db.scalars(
        select(ClockReminder).where(ClockReminder.incident_id == incident.id)
    ).all()
    sender = MemoryMailSender()
    assert send_reminders(db, settings, sender) == 1
    assert len(sender.sent) == 1
