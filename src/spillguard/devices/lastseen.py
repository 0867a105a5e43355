"""Write-behind of "last seen" times: the only thing an unchanged check-in changes.

A check-in on the fast path (devices.protocol.FastCheckin: posture, verdict and policy as
before, nothing queued, device active) changes nothing about the device but when it was
last seen.  Instead of a transaction per check-in, :class:`LastSeenWriter` keeps the
newest time per device in memory and writes them all every ``interval`` seconds (50 ms by
default) in one transaction, from its own thread; a server that stops in an orderly way
writes what is left (:meth:`LastSeenWriter.close`, from the protocol router's lifespan).

The durability trade-off, precisely: a server process that crashes loses at most the last
``interval`` (plus one write) of these times — a device then looks as if it last checked
in up to that much earlier.  Nothing else is ever deferred: posture changes, verdict
changes, command deliveries and results, lost mode and every audit event go through the
ordinary check-in, committed before its answer is sent.

Each write only moves a time forward (a later check-in committed by the ordinary path, or
by another server process, is never overwritten by an older one), and it touches
``compliance_evaluated_at`` (the verdict was confirmed at that check-in) only while the
device's stored verdict still has the basis the fast path confirmed, so a re-evaluation
that happened meanwhile keeps its own time.  Rows are given in id order; should two
processes' writes still deadlock (PostgreSQL then fails one of them), the failed write's
times are kept and written in the next round, like after any other database error.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Final, cast

import structlog
from sqlalchemy import Engine, Table, and_, bindparam, case, or_
from sqlalchemy.exc import DBAPIError

from spillguard.core.db import UTCDateTime
from spillguard.devices.models import Device

log = structlog.get_logger("spillguard.devices")

FLUSH_INTERVAL_SECONDS: Final = 0.05

_DEVICES = cast(Table, Device.__table__)
_AT = bindparam("at", type_=UTCDateTime())
_SEEN = _DEVICES.c.last_checkin_at
_EVALUATED = _DEVICES.c.compliance_evaluated_at
# Built once; executed with one parameter set per device (SQLite).
_ADVANCE = (
    _DEVICES.update()
    .where(_DEVICES.c.id == bindparam("device_id"))
    .values(
        last_checkin_at=case((or_(_SEEN.is_(None), _SEEN < _AT), _AT), else_=_SEEN),
        compliance_evaluated_at=case(
            (
                and_(
                    _DEVICES.c.compliance_basis == bindparam("basis"),
                    or_(_EVALUATED.is_(None), _EVALUATED < _AT),
                ),
                _AT,
            ),
            else_=_EVALUATED,
        ),
    )
)


# PostgreSQL: the same in one statement over arrays (one parse, one plan, one round trip;
# psycopg would otherwise send the statement above once per device, pipelined).
_ADVANCE_POSTGRES = """
UPDATE devices AS d SET
    last_checkin_at = GREATEST(d.last_checkin_at, v.at),
    compliance_evaluated_at = CASE WHEN d.compliance_basis = v.basis
        THEN GREATEST(d.compliance_evaluated_at, v.at) ELSE d.compliance_evaluated_at END
FROM unnest(%(ids)s::bigint[], %(ats)s::timestamptz[], %(bases)s::text[]) AS v(id, at, basis)
WHERE d.id = v.id
"""


class LastSeenWriter:
    """Collects check-in times per device and writes them in batches from a thread.

    The thread starts with the first time recorded and runs until :meth:`stop` (which
    writes what is left; a later :meth:`record` starts it again) or :meth:`close` (the
    end: later times are refused).
    """

    def __init__(self, engine: Engine, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        self.engine = engine
        self.interval = interval
        self._pending: dict[int, tuple[datetime, str]] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def record(self, device_id: int, at: datetime, basis: str) -> bool:
        """Remember that the device checked in at ``at`` with its verdict's ``basis``.

        False once the writer is closed (the server is stopping): the caller then stores
        the check-in itself.
        """
        with self._lock:
            if self._closed:
                return False
            self._pending[device_id] = (at, basis)
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="spillguard-last-seen", daemon=True
                )
                self._thread.start()
        return True

    @property
    def pending(self) -> int:
        """How many devices' times wait to be written."""
        return len(self._pending)

    def flush(self) -> int:
        """Write every waiting time now, in one transaction; returns how many devices.

        On a database error the times are kept (unless a newer one arrived meanwhile) for
        the next attempt, and the error is raised.
        """
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            ordered = sorted(batch.items())
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        columns = {
                            "ids": [device_id for device_id, _ in ordered],
                            "ats": [at for _, (at, _) in ordered],
                            "bases": [basis for _, (_, basis) in ordered],
                        }
                        conn.exec_driver_sql(_ADVANCE_POSTGRES, columns)
                    else:
                        rows = [
                            {"device_id": device_id, "at": at, "basis": basis}
                            for device_id, (at, basis) in ordered
                        ]
                        conn.execute(_ADVANCE, rows)
            except BaseException:
                with self._lock:
                    for device_id, entry in batch.items():
                        newer = self._pending.get(device_id)
                        if newer is None or newer[0] < entry[0]:
                            self._pending[device_id] = entry
                raise
            return len(ordered)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            stop.wait(self.interval)
            try:
                self.flush()
            except Exception as exc:
                # Kept for the next round; the values themselves are never logged.
                log.warning("last_seen_write_failed", error=_error_name(exc))
                stop.wait(min(5.0, self.interval * 20))

    def stop(self) -> None:
        """Stop the thread and write what is left (a failure is logged, the times kept)."""
        with self._lock:
            thread, self._thread = self._thread, None
            stop = self._stop
        stop.set()
        if thread is not None:
            thread.join()
        try:
            self.flush()
        except Exception as exc:
            log.error(
                "last_seen_write_failed_at_stop", devices=self.pending, error=_error_name(exc)
            )

    def close(self) -> None:
        """The server's orderly shutdown: refuse further times, write what is left."""
        with self._lock:
            self._closed = True
        self.stop()


def _error_name(exc: Exception) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return type(orig or exc).__name__
