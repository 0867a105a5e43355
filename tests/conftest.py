"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL runs when SPILLGUARD_TEST_POSTGRES_URL is set (``.ci/run`` sets it); each
xdist worker gets its own database on that server.  The schema is created once per
worker by the real Alembic migrations; after each test every table is emptied.
"""

from __future__ import annotations

import base64
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from spillguard.core import db as dbmod
from spillguard.core import passwords as passwords_module
from spillguard.core.app import create_app
from spillguard.core.keys import KeyRing
from spillguard.core.settings import Settings
from tests.factories.users import UserFactory

# Property tests judge the code, not the machine: on a loaded CI machine generating
# examples or running one can take longer than Hypothesis's defaults (200 ms deadline,
# the too_slow health check), which would fail a test for the load, not for a bug.
hypothesis_settings.register_profile(
    "spillguard", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("spillguard")

PG_ENV = "SPILLGUARD_TEST_POSTGRES_URL"
TEST_MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            not os.environ.get(PG_ENV),
            reason=f"{PG_ENV} is not set, so the PostgreSQL variant cannot run here",
        ),
    ),
]


def _worker() -> str:
    """Unique per worker and per run, so concurrent runs never share a database."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{run}"


def _postgres_database(base_url: str, name: str) -> str:
    """Create (afresh) a database for this worker and return its URL."""
    url = make_url(base_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(base_url: str, name: str) -> None:
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database per backend and per worker."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'spillguard.db'}"
    else:
        url = _postgres_database(os.environ[PG_ENV], f"spillguard_test_{_worker()}")
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    engine.dispose()
    yield url
    if request.param == "postgresql":
        _drop_postgres_database(os.environ[PG_ENV], make_url(url).database or "")


@pytest.fixture(params=BACKENDS)
def unmigrated_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database of the test's own, empty and unmigrated (not the shared, fully migrated
    one): for migration tests, which take it to a revision with :func:`migrate_to`."""
    name = f"spillguard_mig_{_worker()}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'unmigrated.db'}"
    else:
        url = _postgres_database(os.environ[PG_ENV], name)
    made = dbmod.make_engine(url)
    yield made
    made.dispose()
    if request.param == "postgresql":
        _drop_postgres_database(os.environ[PG_ENV], name)


def migrate_to(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Upgrade (or, with ``down``, downgrade) ``engine``'s database to ``revision``."""
    cfg = dbmod.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def empty_all_tables(engine: Engine) -> None:
    tables = list(reversed(dbmod.Base.metadata.sorted_tables))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture(autouse=True)
def unfrozen_heap() -> Iterator[None]:
    """``spillguard scan`` and ``mail-filter`` freeze the heap once loaded
    (core.heap.settle), which suits their own processes, not a test process running them
    in-process: the next test starts with an ordinary collector again."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture(autouse=True)
def quick_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its smallest cost for in-process tests, which create many users; the
    tests marked ``real_argon2`` (test_passwords) check the production parameters."""
    if request.node.get_closest_marker("real_argon2"):
        return
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords_module, "_hasher", quick)
    monkeypatch.setattr(passwords_module, "_DUMMY_HASH", quick.hash("spillguard-timing"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        master_key=TEST_MASTER_KEY,  # type: ignore[arg-type]
        scheduler_enabled=False,
        authz_backstop_strict=True,
        log_level="WARNING",
    )


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing(base64.b64decode(TEST_MASTER_KEY))


@pytest.fixture
def app(settings: Settings, keys: KeyRing) -> Iterator[FastAPI]:
    application = create_app(settings, keys)
    yield application
    empty_all_tables(application.state.engine)
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    """A session on the app's database; commit explicitly to make rows visible to requests."""
    session: Session = app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def users(db: Session, keys: KeyRing) -> UserFactory:
    return UserFactory(db, keys)
