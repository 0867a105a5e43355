"""Database plumbing: declarative base, engine and session factories, migrations.

Engines are built from settings by the app factory and the CLI; nothing connects at
import time.  Services flush; the request (or CLI command) commits or rolls back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from spillguard.core.settings import ConfigError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# PostgreSQL advisory lock key serialising migrations ("spillgrd" as a 64-bit integer).
MIGRATION_LOCK = int.from_bytes(b"spillgrd", "big") & 0x7FFF_FFFF_FFFF_FFFF


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used; the message is one line for the operator."""


def utcnow() -> datetime:
    """Timezone-aware now in UTC; the one clock every module uses."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base class of every Spillguard model."""

    metadata = MetaData(naming_convention=NAMING)


def affected(result: object) -> int:
    """Rows an UPDATE or DELETE touched (typed access to CursorResult.rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


# Sync routes and their unit of work run in AnyIO's thread pool (40 threads by default). If
# the connection pool were smaller, every connection could be held by a request waiting for a
# thread while every thread waits for a connection: a deadlock under load. So the pool may
# grow past the thread pool; idle connections above POOL_SIZE are closed again.
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 45


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs (SQLite: WAL, foreign keys, waits)."""
    if ":memory:" not in url and url not in {"sqlite://", "sqlite+pysqlite://"}:
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_MAX_OVERFLOW)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        _ping_idle_connections(engine)
        return engine
    # hide_parameters: a database error logged by the server must not carry the values
    # (e-mail addresses, digests, later customer data) that were bound to the statement.
    engine = create_engine(url, hide_parameters=True, **kwargs)
    _ping_idle_connections(engine)
    return engine


# A pooled connection that sat idle this long is pinged before use (a server restart or an
# idle timeout may have closed it).  A busy server reuses connections within milliseconds, so
# pinging each checkout (pool_pre_ping) would add a round trip to every request for nothing;
# a connection that breaks while in use is invalidated by SQLAlchemy's disconnect handling.
PING_IDLE_SECONDS = 10.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
            return
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another one.
            raise DisconnectionError("idle connection is gone") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migration_head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(describe_db_error(engine, exc)) from exc


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (the same scripts on SQLite and PostgreSQL)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several processes may start at once on one database: one migrates, the
                # others wait here and then find it at head (held until this commits).
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise DatabaseUnavailable(describe_db_error(engine, exc)) from exc
    except CommandError as exc:
        # Typically the database was migrated by a newer Spillguard than this one.
        raise DatabaseUnavailable(
            f"cannot migrate the database: {exc}; was it upgraded by a newer version of "
            "Spillguard? Run that version, or restore the backup taken before the upgrade."
        ) from exc


def describe_db_error(engine: Engine, exc: Exception) -> str:
    """One line naming the database (without password) and the driver's first line."""
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    return f"database {engine.url.render_as_string(hide_password=True)} is unavailable: {first}"


def check_sqlite_location(url: str) -> None:
    """Make sure a SQLite file's directory exists and is writable before connecting."""
    if not url.startswith("sqlite") or ":memory:" in url or url.endswith("://"):
        return
    path = Path(url.split("///", 1)[1])
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"data directory {path.parent} cannot be created: {exc.strerror}"
        ) from exc
    probe = path.parent / ".spillguard-write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data directory {path.parent} is not writable: {exc.strerror}") from exc


def insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert many rows fast: COPY on PostgreSQL (psycopg's executemany sends one statement
    per row), executemany on SQLite (fast there). Every row has the same keys."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    names = list(rows[0])
    columns = ", ".join(f'"{n}"' for n in names)
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("no DBAPI connection to COPY into")
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[n] for n in names])


def rows_among(
    session: Session, query: Any, column: Any, values: Iterable[Any], *, chunk: int = 500
) -> list[Any]:
    """The rows of ``query`` whose ``column`` is one of ``values``.

    PostgreSQL gets the values as one array parameter (``= ANY(…)``): an ``IN`` list of
    thousands of placeholders costs more to render and parse than the query itself
    (about 20 µs a value, most of a 10,000-delivery batch's lookups). SQLite gets ``IN``
    lists of ``chunk`` values.
    """
    wanted = sorted(set(values))
    if not wanted:
        return []
    if session.get_bind().dialect.name == "postgresql":
        among = bindparam("among", wanted, type_=ARRAY(column.type))
        return list(session.execute(query.where(column == any_(among))))
    found: list[Any] = []
    for start in range(0, len(wanted), chunk):
        found.extend(session.execute(query.where(column.in_(wanted[start : start + chunk]))))
    return found
