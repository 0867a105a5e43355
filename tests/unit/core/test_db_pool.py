"""Pooled connections: one that sat idle is pinged before use and replaced if it is gone;
a busy one is used without the extra round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from spillguard.core import db as dbmod


@pytest.fixture
def engine(database_url: str) -> Engine:
    made = dbmod.make_engine(database_url, pool_size=1, max_overflow=0)
    yield made  # type: ignore[misc]
    made.dispose()


def break_pooled_connection(engine: Engine) -> None:
    """Use the pool's one connection, return it, then close it under the pool's feet (as a
    database restart or an idle timeout would)."""
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
        raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.close()


def test_an_idle_connection_that_is_gone_is_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "PING_IDLE_SECONDS", 0.0)
    break_pooled_connection(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 2")).scalar_one() == 2


def test_a_recently_used_connection_is_not_pinged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "PING_IDLE_SECONDS", 3600.0)
    break_pooled_connection(engine)
    with pytest.raises(DBAPIError), engine.connect() as conn:
        conn.execute(text("SELECT 2"))
