"""The sequencer's bulk path: new events read and leaves and nodes written through the DBAPI.

Appending reads every new event row and writes a leaf and (about) one node per event;
SQLAlchemy's result rows and bind processing cost more per event than the hashing. This
module does the same reads and writes on the DBAPI connection of the caller's transaction
(so an append stays one transaction):

* :meth:`LogAppender.events_above` reads the events above an id, in id order, as raw
  values that ``EventDecoder.leaf`` (audit.log) turns into exactly the leaf
  ``event_leaf`` gives for the ORM object (``tests/unit/audit/test_append.py``);
* :meth:`LogAppender.write` inserts leaves and nodes: binary ``COPY`` on PostgreSQL,
  ``executemany`` on SQLite, each value bound as SQLAlchemy would bind it (the leaf's
  ``sequenced_at`` through the column type's own bind processor, once per run).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from spillguard.audit.models import LogLeaf, LogNode
from spillguard.core.models import AuditEvent

LEAF_COLUMNS = ("position", "event_id", "leaf_hash", "sequenced_at")
NODE_COLUMNS = ("level", "index", "hash")
# PostgreSQL types of the columns above, for binary COPY (the models' BigInteger, BigId,
# LargeBinary, UTCDateTime; Integer, BigInteger, LargeBinary).
_PG_LEAF_TYPES = ("int8", "int8", "bytea", "timestamptz")
_PG_NODE_TYPES = ("int4", "int8", "bytea")


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


class LogAppender:
    """Raw reads of new events and bulk writes of leaves and nodes, on ``conn``'s DBAPI
    connection, inside its transaction. ``event_columns`` is the select list to read, in
    the order ``EventDecoder`` expects (its ``fast_columns``)."""

    def __init__(self, conn: Connection, event_columns: str, now: datetime) -> None:
        driver = conn.connection.driver_connection
        if driver is None:
            raise RuntimeError("no DBAPI connection to append to the log with")
        self._driver: Any = driver
        dialect = conn.dialect
        self._errors: type[Exception] = dialect.loaded_dbapi.Error
        self.postgres = dialect.name == "postgresql"
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        events = AuditEvent.__tablename__
        self._select = (  # identifiers from the models, values bound
            f'SELECT {event_columns} FROM "{events}" '  # noqa: S608
            f'WHERE "id" > {self._mark} ORDER BY "id" LIMIT {self._mark}'
        )
        bind = LogLeaf.__table__.c.sequenced_at.type._cached_bind_processor(dialect)
        self.sequenced_at: Any = bind(now) if bind is not None else now
        leaves, nodes = LogLeaf.__tablename__, LogNode.__tablename__
        if self.postgres:
            self._leaf_sql = f'COPY "{leaves}" ({_quoted(LEAF_COLUMNS)}) FROM STDIN (FORMAT BINARY)'
            self._node_sql = f'COPY "{nodes}" ({_quoted(NODE_COLUMNS)}) FROM STDIN (FORMAT BINARY)'
        else:
            insert = 'INSERT INTO "{}" ({}) VALUES ({})'
            self._leaf_sql = insert.format(leaves, _quoted(LEAF_COLUMNS), "?, ?, ?, ?")
            self._node_sql = insert.format(nodes, _quoted(NODE_COLUMNS), "?, ?, ?")

    def events_above(self, after: int, batch: int) -> Iterator[list[Sequence[Any]]]:
        """Batches of raw event rows with ``id > after``, in id order, until none is left.

        Each batch is a fresh statement (on PostgreSQL a fresh snapshot), so a batch may
        hold events committed after the previous batch was read, with larger ids only.
        """
        # psycopg: binary rows (timestamps need no text parsing); sqlite3: plain.
        cursor = self._driver.cursor(binary=True) if self.postgres else self._driver.cursor()
        try:
            while True:
                try:
                    cursor.execute(self._select, (after, batch))
                    rows = cursor.fetchall()
                except self._errors as exc:
                    raise self._wrapped(self._select, exc) from exc
                if not rows:
                    return
                yield rows
                after = rows[-1][0]
        finally:
            cursor.close()

    def write(
        self, leaves: Sequence[tuple[int, int, bytes, Any]], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        """Insert ``(position, event_id, leaf_hash, sequenced_at)`` leaves and ``(level,
        index, hash)`` nodes; ``sequenced_at`` must be :attr:`sequenced_at`.

        A refused row (a position or event already in the log: a racing sequencer) raises
        SQLAlchemy's ``IntegrityError``, as the ORM path would."""
        try:
            self._write(leaves, nodes)
        except self._errors as exc:
            raise self._wrapped("COPY/INSERT of log leaves and nodes", exc) from exc

    def _wrapped(self, statement: str, exc: Exception) -> StatementError:
        """The SQLAlchemy exception (IntegrityError, OperationalError...) for a DBAPI one;
        no parameters, like the engines' ``hide_parameters``."""
        return DBAPIError.instance(statement, None, exc, self._errors, hide_parameters=True)

    def _write(
        self, leaves: Sequence[tuple[int, int, bytes, Any]], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        if self.postgres:
            with self._driver.cursor() as cursor:
                if leaves:
                    with cursor.copy(self._leaf_sql) as copy:
                        copy.set_types(_PG_LEAF_TYPES)
                        for row in leaves:
                            copy.write_row(row)
                if nodes:
                    with cursor.copy(self._node_sql) as copy:
                        copy.set_types(_PG_NODE_TYPES)
                        for node in nodes:
                            copy.write_row(node)
            return
        cursor = self._driver.cursor()
        try:
            if leaves:
                cursor.executemany(self._leaf_sql, leaves)
            if nodes:
                cursor.executemany(self._node_sql, nodes)
        finally:
            cursor.close()
