"""Fixtures shared by the functional tests that run `spillguard` against a database.

``engine`` empties every table before and after the test (the CLI runs in its own
process, so the per-test rollback of ``db`` cannot apply); ``env`` is the environment
of a `spillguard` process on the test's database and data directory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core.db import make_engine, make_session_factory
from spillguard.core.settings import Settings
from tests.conftest import TEST_MASTER_KEY, empty_all_tables
from tests.functional.live import spillguard_env


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    empty_all_tables(eng)
    yield eng
    empty_all_tables(eng)
    eng.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def env(settings: Settings, database_url: str, engine: Engine) -> dict[str, str]:
    return spillguard_env(settings.home, database_url, master_key=TEST_MASTER_KEY)
