"""`spillguard db upgrade|current` and `spillguard version` as real processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from sqlalchemy import inspect

from spillguard.core.db import make_engine, migration_head
from tests.conftest import BACKENDS, PG_ENV, TEST_MASTER_KEY
from tests.functional.live import run_spillguard, spillguard_env, throwaway_postgres_database


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'spillguard.db'}"
    else:
        with throwaway_postgres_database(os.environ[PG_ENV], "spillguard_clidb") as url:
            yield url


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_an_empty_database_then_it_is_at_head(
    tmp_path: Path, fresh_database_url: str
) -> None:
    env = spillguard_env(tmp_path / "home", fresh_database_url, master_key=TEST_MASTER_KEY)
    head = migration_head()
    assert head

    before = run_spillguard(["db", "current"], env)

    assert before.returncode == 3, before.stderr  # behind: scripts can tell
    assert "current: empty" in before.stdout
    assert "run `spillguard db upgrade`" in before.stdout
    assert "users" not in table_names(fresh_database_url)  # looking changed nothing

    first = run_spillguard(["db", "upgrade"], env)

    assert first.returncode == 0, first.stderr
    assert f"Database upgraded from empty to {head}." in first.stdout
    assert {"users", "api_tokens", "audit_events", "job_leases"} <= table_names(fresh_database_url)

    again = run_spillguard(["db", "upgrade"], env)

    assert again.returncode == 0, again.stderr
    assert f"Database already at head ({head})." in again.stdout

    after = run_spillguard(["db", "current"], env)

    assert after.returncode == 0, after.stderr
    lines = after.stdout.split("\n")
    assert f"current: {head}" in lines
    assert f"head:    {head}" in lines
    assert "state:   at head" in lines


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run_spillguard(["version"], spillguard_env(tmp_path / "home"))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"spillguard {installed_version('spillguard')}\n"
    assert not (tmp_path / "home").exists()  # printing the version touches no data


def test_the_migrations_build_exactly_the_models(tmp_path: Path, fresh_database_url: str) -> None:
    """After `db upgrade`, Alembic finds no difference between the database and the models:
    a model changed without a migration (or a migration that drifted) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import spillguard.audit.models
    import spillguard.customers.models
    import spillguard.devices.models
    import spillguard.exposure.models
    import spillguard.incidents.models  # noqa: F401  (every module's tables, as migrations/env.py)
    from spillguard.core.db import Base

    env = spillguard_env(tmp_path / "home", fresh_database_url, master_key=TEST_MASTER_KEY)
    assert run_spillguard(["db", "upgrade"], env).returncode == 0
    engine = make_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
