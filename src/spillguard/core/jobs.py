"""Scheduled work that runs once across any number of server processes.

Each job has a row in ``job_leases``.  A process runs a job only if its conditional
UPDATE of that row succeeds (the lease has lapsed and the interval has passed); the
database's row lock makes exactly one of several racing processes win, on SQLite and
PostgreSQL alike.  Nothing about schedules is held only in one process's memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.db import affected, transaction, utcnow
from spillguard.core.models import JobLease

log = structlog.get_logger("spillguard.jobs")

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Job:
    """A named piece of periodic work.  ``run`` gets a session inside its own transaction."""

    name: str
    interval_seconds: float
    run: Callable[[Session], object]
    lease_seconds: float = 600.0


def claim(session: Session, job: Job, owner: str = OWNER) -> bool:
    """Try to take the job for this run; True for exactly one claimant per interval."""
    now = utcnow()
    if session.get(JobLease, job.name) is None:
        try:
            with session.begin_nested():
                session.add(JobLease(name=job.name, runs=0))
        except IntegrityError:
            pass  # another process created it first
    result = session.execute(
        update(JobLease)
        .where(
            JobLease.name == job.name,
            or_(JobLease.leased_until.is_(None), JobLease.leased_until <= now),
            or_(
                JobLease.last_started_at.is_(None),
                JobLease.last_started_at <= now - timedelta(seconds=job.interval_seconds),
            ),
        )
        .values(
            owner=owner,
            leased_until=now + timedelta(seconds=job.lease_seconds),
            last_started_at=now,
            runs=JobLease.runs + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return affected(result) == 1


def finish(session: Session, job: Job, result: str, owner: str = OWNER) -> None:
    session.execute(
        update(JobLease)
        .where(JobLease.name == job.name, JobLease.owner == owner)
        .values(leased_until=None, last_finished_at=utcnow(), last_result=result[:2000])
        .execution_options(synchronize_session=False)
    )


def run_due(factory: sessionmaker[Session], jobs: list[Job], owner: str = OWNER) -> list[str]:
    """Run every job this process wins a claim on; returns the names that ran."""
    ran = []
    for job in jobs:
        with transaction(factory) as session:
            if not claim(session, job, owner):
                continue
        try:
            with transaction(factory) as session:
                outcome = job.run(session)
            result = f"ok {outcome}"
        except Exception as exc:  # a failed job must not stop the scheduler
            log.error("job_failed", job=job.name, error=type(exc).__name__)
            result = f"failed {type(exc).__name__}"
        with transaction(factory) as session:
            finish(session, job, result, owner)
        ran.append(job.name)
    return ran


def lease_of(session: Session, name: str) -> JobLease | None:
    return session.scalar(select(JobLease).where(JobLease.name == name))


async def scheduler_loop(
    factory: sessionmaker[Session], jobs: list[Job], tick_seconds: float
) -> None:
    """The background loop each server process runs; claims make the work run once."""
    while True:
        try:
            ran = await asyncio.to_thread(run_due, factory, jobs)
            if ran:
                log.info("jobs_ran", jobs=ran, owner=OWNER)
        except Exception as exc:  # database briefly away: try again next tick
            log.warning("scheduler_tick_failed", error=type(exc).__name__)
        await asyncio.sleep(tick_seconds)
