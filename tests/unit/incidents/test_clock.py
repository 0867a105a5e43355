"""The breach clock (pure): 72 h under GDPR, 24 h for a communications provider (PECR),
overdue and late notifications, and which reminders are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spillguard.incidents.clock import breach_clock, due_reminders, reminder_points

AWARE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_gdpr_gives_72_hours_from_awareness() -> None:
    clock = breach_clock(AWARE, communications_provider=False, now=AWARE + timedelta(hours=30))
    assert clock.deadline == AWARE + timedelta(hours=72)
    assert clock.remaining == timedelta(hours=42)
    assert not clock.overdue and not clock.stopped
    assert clock.remaining_text() == "42 h 00 min left"
    assert "Article 33" in clock.basis


def test_a_communications_provider_has_24_hours() -> None:
    clock = breach_clock(AWARE, communications_provider=True, now=AWARE + timedelta(hours=25))
    assert clock.deadline == AWARE + timedelta(hours=24)
    assert clock.overdue
    assert clock.remaining_text() == "1 h 00 min overdue"
    assert "PECR" in clock.basis


def test_notifying_stops_the_clock_and_says_whether_it_was_late() -> None:
    on_time = breach_clock(
        AWARE,
        communications_provider=False,
        now=AWARE + timedelta(hours=100),
        notified_at=AWARE + timedelta(hours=70),
    )
    assert on_time.stopped and not on_time.overdue and not on_time.notified_late
    late = breach_clock(
        AWARE,
        communications_provider=False,
        now=AWARE + timedelta(hours=100),
        notified_at=AWARE + timedelta(hours=73),
    )
    assert late.notified_late and late.remaining_text() == "regulator notified late"


def test_reminder_points_longer_than_the_clock_are_skipped() -> None:
    assert reminder_points([48, 24, 6], 72) == [48, 24, 6]
    assert reminder_points([48, 24, 6, 0, -3], 24) == [6]


def test_due_reminders_come_once_each_and_stop_when_notified() -> None:
    points = [48, 24, 6]

    def at(hours: float, sent: list[int], notified: bool = False) -> list[int]:
        now = AWARE + timedelta(hours=hours)
        clock = breach_clock(
            AWARE, communications_provider=False, now=now, notified_at=now if notified else None
        )
        return due_reminders(clock, points, sent)

    assert at(23.9, []) == []
    assert at(24, []) == [48]
    assert at(30, [48]) == []
    assert at(50, [48]) == [24]
    assert at(70, []) == [48, 24, 6]  # the server was down: all are due, one mail covers them
    assert at(80, [48, 24, 6]) == []
    assert at(70, [], notified=True) == []
