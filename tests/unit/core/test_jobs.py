"""Scheduled jobs run once per interval across any number of processes (row-lock claims)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.audit import AuditAction, record_event
from spillguard.core.db import transaction, utcnow
from spillguard.core.jobs import Job, claim, finish, lease_of, run_due
from spillguard.core.models import AuditEvent, JobLease
from spillguard.core.roles import Principal


@pytest.fixture
def factory(app: FastAPI) -> sessionmaker[Session]:
    return app.state.session_factory  # type: ignore[no-any-return]


def _noop(session: Session) -> str:
    return "done"


def _claim(factory: sessionmaker[Session], job: Job, owner: str) -> bool:
    with transaction(factory) as session:
        return claim(session, job, owner)


def _lease(factory: sessionmaker[Session], name: str) -> JobLease:
    with transaction(factory) as session:
        lease = lease_of(session, name)
        assert lease is not None
        return lease


def test_first_claim_wins_and_creates_the_lease(factory: sessionmaker[Session]) -> None:
    job = Job("tests.first", interval_seconds=3600, run=_noop)
    assert _claim(factory, job, "proc-a") is True
    lease = _lease(factory, job.name)
    assert lease.owner == "proc-a"
    assert lease.runs == 1
    assert lease.leased_until is not None and lease.leased_until > utcnow()
    assert lease.last_started_at is not None


def test_no_second_claim_while_the_lease_is_held(factory: sessionmaker[Session]) -> None:
    job = Job("tests.held", interval_seconds=0, run=_noop, lease_seconds=600)
    assert _claim(factory, job, "proc-a") is True
    assert _claim(factory, job, "proc-b") is False
    assert _claim(factory, job, "proc-a") is False  # not even the holder runs it twice
    with transaction(factory) as session:
        finish(session, job, "ok", "proc-a")
    assert _claim(factory, job, "proc-b") is True
    assert _lease(factory, job.name).runs == 2


def test_no_second_claim_before_the_interval_has_passed(factory: sessionmaker[Session]) -> None:
    job = Job("tests.interval", interval_seconds=3600, run=_noop)
    assert _claim(factory, job, "proc-a") is True
    with transaction(factory) as session:
        finish(session, job, "ok", "proc-a")
    assert _lease(factory, job.name).leased_until is None
    assert _claim(factory, job, "proc-b") is False
    # An hour later (moved back in the database) it is due again.
    with transaction(factory) as session:
        lease = session.get(JobLease, job.name)
        assert lease is not None
        lease.last_started_at = utcnow() - timedelta(seconds=3601)
    assert _claim(factory, job, "proc-b") is True


def test_a_lapsed_lease_of_a_crashed_process_is_taken_over(
    factory: sessionmaker[Session],
) -> None:
    job = Job("tests.crashed", interval_seconds=60, run=_noop, lease_seconds=600)
    assert _claim(factory, job, "crashed") is True
    with transaction(factory) as session:
        lease = session.get(JobLease, job.name)
        assert lease is not None
        lease.leased_until = utcnow() - timedelta(seconds=1)
        lease.last_started_at = utcnow() - timedelta(seconds=601)
    assert _claim(factory, job, "survivor") is True
    assert _lease(factory, job.name).owner == "survivor"


def test_finish_by_another_owner_does_not_release(factory: sessionmaker[Session]) -> None:
    job = Job("tests.owner", interval_seconds=0, run=_noop)
    assert _claim(factory, job, "proc-a") is True
    with transaction(factory) as session:
        finish(session, job, "ok impostor", "proc-b")
    lease = _lease(factory, job.name)
    assert lease.leased_until is not None
    assert lease.last_result is None


def test_run_due_runs_a_due_job_and_records_its_result(factory: sessionmaker[Session]) -> None:
    calls: list[int] = []

    def work(session: Session) -> dict[str, int]:
        calls.append(1)
        record_event(session, Principal.system("scheduler"), AuditAction.DATABASE_UPGRADED)
        return {"purged": 3}

    job = Job("tests.work", interval_seconds=3600, run=work)
    assert run_due(factory, [job], owner="proc-a") == ["tests.work"]
    assert calls == [1]
    lease = _lease(factory, job.name)
    assert lease.last_result == "ok {'purged': 3}"
    assert lease.leased_until is None
    assert lease.last_finished_at is not None
    with transaction(factory) as session:  # the job's own work was committed
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
    # Not due again within the interval, in this process or another.
    assert run_due(factory, [job], owner="proc-a") == []
    assert run_due(factory, [job], owner="proc-b") == []
    assert calls == [1]


def test_a_failing_job_records_failure_rolls_back_and_releases(
    factory: sessionmaker[Session],
) -> None:
    def broken(session: Session) -> None:
        record_event(session, Principal.system("scheduler"), AuditAction.DATABASE_UPGRADED)
        raise RuntimeError("disk on fire")

    healthy_calls: list[int] = []
    failing = Job("tests.broken", interval_seconds=0, run=broken)
    healthy = Job("tests.healthy", interval_seconds=0, run=lambda s: healthy_calls.append(1))
    # A failing job does not stop the ones after it.
    assert run_due(factory, [failing, healthy], owner="proc-a") == [
        "tests.broken",
        "tests.healthy",
    ]
    assert healthy_calls == [1]
    lease = _lease(factory, failing.name)
    assert lease.last_result is not None
    assert lease.last_result.startswith("failed")
    assert "RuntimeError" in lease.last_result
    assert lease.leased_until is None  # released, so the next tick may retry
    with transaction(factory) as session:  # the failed job's writes were rolled back
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    assert run_due(factory, [failing], owner="proc-b") == ["tests.broken"]
    assert _lease(factory, failing.name).runs == 2


def _race(factory: sessionmaker[Session], job: Job, contenders: int) -> list[bool]:
    barrier = threading.Barrier(contenders)
    results: list[bool] = []
    errors: list[BaseException] = []

    def contend(index: int) -> None:
        session = factory()
        try:
            barrier.wait()
            won = claim(session, job, f"proc-{index}")
            session.commit()
            results.append(won)
        except BaseException as exc:
            session.rollback()
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return results


def test_racing_claims_on_a_new_job_have_exactly_one_winner(
    factory: sessionmaker[Session],
) -> None:
    for round_ in range(5):
        job = Job(f"tests.race-new-{round_}", interval_seconds=3600, run=_noop)
        results = _race(factory, job, contenders=4)
        assert sorted(results) == [False, False, False, True]
        assert _lease(factory, job.name).runs == 1


def test_racing_claims_on_a_due_job_have_exactly_one_winner(
    factory: sessionmaker[Session],
) -> None:
    job = Job("tests.race-due", interval_seconds=0, run=_noop)
    for round_ in range(5):
        results = _race(factory, job, contenders=4)
        assert sorted(results) == [False, False, False, True]
        winner = _lease(factory, job.name)
        assert winner.runs == round_ + 1
        with transaction(factory) as session:
            finish(session, job, "ok", winner.owner or "")
