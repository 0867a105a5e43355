"""Two `spillguard serve` processes on one PostgreSQL database behave as one server.

Sessions, login throttling and scheduled work live in the database, so a load balancer
may send each request to either process.  These tests start two real server processes
(each with its own data directory, as on two machines, sharing only the database and the
master key) and show it.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from faker import Faker
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.db import (
    current_revision,
    make_engine,
    make_session_factory,
    migration_head,
    transaction,
    upgrade,
)
from spillguard.core.jobs import Job, claim
from spillguard.core.models import JobLease
from spillguard.core.roles import Principal, Role
from spillguard.core.users import UserService
from tests.conftest import PG_ENV, TEST_MASTER_KEY
from tests.functional.live import LiveServer, spillguard_env, throwaway_postgres_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get(PG_ENV),
        reason=f"scale-out needs PostgreSQL: {PG_ENV} is not set",
    ),
]

fake = Faker("en_GB")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"Accept": "text/html"}
HOUSEKEEPING = "core.housekeeping"
INTERVAL_SECONDS = 1.0
MAX_FAILURES = 3


@dataclass
class Cluster:
    """Two server processes on one database, and an engine on that database for checks."""

    url: str
    engine: Engine
    servers: dict[str, LiveServer] = field(default_factory=dict)

    @property
    def a(self) -> LiveServer:
        return self.servers["a"]

    @property
    def b(self) -> LiveServer:
        return self.servers["b"]

    def replace(self, name: str) -> None:
        """Stop one process and start a fresh one with the same environment and port."""
        old = self.servers[name]
        old.close()
        self.servers[name] = LiveServer(old.env, port=old.port).start()

    def factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with throwaway_postgres_database(os.environ[PG_ENV], "spillguard_scale") as url:
        servers = {
            name: LiveServer(
                spillguard_env(
                    tmp_path_factory.mktemp(f"machine-{name}"),
                    url,
                    master_key=TEST_MASTER_KEY,
                    login_max_failures_account=MAX_FAILURES,
                    housekeeping_interval_seconds=INTERVAL_SECONDS,
                )
            )
            for name in ("a", "b")
        }
        engine = make_engine(url)
        running = Cluster(url, engine, servers)
        try:
            # Both start at once on an empty database, as after `docker compose up --scale`.
            for server in servers.values():
                server.launch()
            for server in servers.values():
                server.wait_ready()
            yield running
        finally:
            for server in running.servers.values():
                server.close()
            engine.dispose()


def make_user(cluster: Cluster) -> tuple[str, str]:
    email, password = f"{fake.user_name()}.{uuid.uuid4().hex[:6]}@example.co.uk", fake.password(16)
    with transaction(cluster.factory()) as session:
        UserService(session, Principal.system("tests")).create(email, Role.HELPDESK, password)
    return email, password


def csrf_of(page: httpx2.Response) -> str:
    match = CSRF_FIELD.search(page.text)
    assert match, page.text
    return match.group(1)


def attempt_login(
    server: LiveServer, email: str, password: str
) -> tuple[httpx2.Response, dict[str, str]]:
    """A browser's login on one process: fetch the form (CSRF cookie and token), post it.

    Returns the answer to the post and the browser's cookies afterwards.
    """
    with httpx2.Client(base_url=server.url, headers=HTML, timeout=10) as browser:
        token = csrf_of(browser.get("/login"))
        answer = browser.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        return answer, dict(browser.cookies)


def migrate_at_the_same_time(url: str, barrier: Any, results: Any) -> None:
    """One of several processes migrating one database (run in a forked child)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # connected before the starting line
        barrier.wait(30)
        upgrade(engine)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def test_processes_starting_together_on_an_empty_database_all_come_up() -> None:
    """`serve` migrates at start: several processes must not trip over each other."""
    forked = multiprocessing.get_context("fork")
    for _ in range(3):  # the race, unguarded, is lost most of the time: three tries
        with throwaway_postgres_database(os.environ[PG_ENV], "spillguard_migrate") as url:
            barrier, results = forked.Barrier(3), forked.Queue()
            procs = [
                forked.Process(target=migrate_at_the_same_time, args=(url, barrier, results))
                for _ in range(3)
            ]
            try:
                for proc in procs:
                    proc.start()
                outcomes = [results.get(timeout=60) for _ in procs]
            finally:
                for proc in procs:
                    proc.join(10)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
            assert outcomes == ["ok", "ok", "ok"]
            engine = make_engine(url)
            try:
                assert current_revision(engine) == migration_head()
            finally:
                engine.dispose()


def test_a_session_opened_on_one_process_works_and_ends_on_the_other(cluster: Cluster) -> None:
    email, password = make_user(cluster)

    login, cookies = attempt_login(cluster.a, email, password)

    assert login.status_code == 303, login.text
    assert "sg_session" in cookies
    with httpx2.Client(base_url=cluster.b.url, headers=HTML, cookies=cookies, timeout=10) as on_b:
        page = on_b.get("/")
        assert page.status_code == 200, page.headers.get("location")
        assert email in page.text
        with httpx2.Client(
            base_url=cluster.a.url, headers=HTML, cookies=cookies, timeout=10
        ) as on_a:
            assert on_a.get("/").status_code == 200

            logout = on_b.post("/logout", data={"csrf_token": csrf_of(page)})

            assert logout.status_code == 303
            assert logout.headers["location"] == "/login?done=logged-out"
            after = on_a.get("/")
            assert after.status_code == 303
            assert after.headers["location"].startswith("/login")


def test_failed_logins_on_both_processes_are_counted_together(cluster: Cluster) -> None:
    email, password = make_user(cluster)
    wrong = password + "x"

    # Each process alone has seen fewer failures than the limit.
    for server in (cluster.a, cluster.a, cluster.b):
        assert attempt_login(server, email, wrong)[0].status_code == 401

    # The right password now changes nothing, on either process.
    for server in (cluster.a, cluster.b):
        answer, cookies = attempt_login(server, email, password)
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert "Too many failed logins" in answer.text
        assert "sg_session" not in cookies


def lease(cluster: Cluster) -> JobLease | None:
    with transaction(cluster.factory()) as session:
        return session.scalar(select(JobLease).where(JobLease.name == HOUSEKEEPING))


def watch_housekeeping(cluster: Cluster, seconds: float) -> tuple[int, float, set[int]]:
    """Runs started over about ``seconds``, the exact time watched, and the pids that ran."""
    first = lease(cluster)
    start = time.monotonic()
    runners: set[int] = set()
    while time.monotonic() - start < seconds:
        row = lease(cluster)
        if row is not None and row.owner:
            runners.add(int(row.owner.split(":")[1]))
        time.sleep(0.1)
    last = lease(cluster)
    elapsed = time.monotonic() - start
    assert last is not None, "housekeeping never ran"
    return last.runs - (first.runs if first else 0), elapsed, runners


def test_housekeeping_runs_once_per_interval_across_both_processes(cluster: Cluster) -> None:
    runs, elapsed, runners = watch_housekeeping(cluster, 4.0)

    assert runs >= 2, f"{runs} runs in {elapsed:.1f} s"
    assert runs <= elapsed / INTERVAL_SECONDS + 1, f"{runs} runs in {elapsed:.1f} s: doubled"
    assert runners <= {cluster.a.pid, cluster.b.pid}

    # The other process was not idle, only losing the claim: stop the last winner and
    # the other one carries on alone, still once per interval.
    last = lease(cluster)
    assert last is not None and last.owner
    winner = "a" if int(last.owner.split(":")[1]) == cluster.a.pid else "b"
    other = cluster.servers["b" if winner == "a" else "a"]
    cluster.servers[winner].stop()
    try:
        runs, elapsed, runners = watch_housekeeping(cluster, 2.5)
        assert runs >= 1
        assert runs <= elapsed / INTERVAL_SECONDS + 1
        assert other.pid in runners
    finally:
        cluster.replace(winner)


def test_exactly_one_of_two_racing_claimants_wins_each_interval(cluster: Cluster) -> None:
    job = Job(f"tests.race.{uuid.uuid4().hex[:8]}", 60.0, lambda session: None)
    engines = [make_engine(cluster.url), make_engine(cluster.url)]
    factories = [make_session_factory(e) for e in engines]

    def race() -> list[bool]:
        barrier = threading.Barrier(2)
        won = [False, False]
        errors: list[BaseException] = []

        def attempt(i: int) -> None:
            try:
                with transaction(factories[i]) as session:
                    barrier.wait(timeout=10)
                    won[i] = claim(session, job, owner=f"claimant-{i}")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        return won

    def interval_passes() -> None:
        with transaction(factories[0]) as session:
            row = session.get(JobLease, job.name)
            assert row is not None and row.last_started_at is not None
            row.leased_until = None
            row.last_started_at -= timedelta(seconds=job.interval_seconds + 1)

    try:
        winners = []
        for round_no in range(8):
            if round_no:  # round 0 also races to create the job's row
                interval_passes()
            first = race()
            assert first.count(True) == 1, f"round {round_no}: {first}"
            winners.append(first.index(True))
            assert race() == [False, False], "a second run inside the same interval"
        with transaction(factories[0]) as session:
            row = session.get(JobLease, job.name)
            assert row is not None
            assert row.runs == 8
            assert row.owner == f"claimant-{winners[-1]}"
    finally:
        for e in engines:
            e.dispose()
