"""The common check-in in one indexed read, without ORM, transaction or worker thread.

Most check-ins of a fleet change nothing: the same posture, judged by the same version of
the same policy, nothing queued, device active.  Such a check-in is answered here from one
``SELECT`` (the device by its credential digest, with its effective policy's id and
version), and the only thing it changes, the time the device was last seen, is handed to
the write-behind :class:`~spillguard.devices.lastseen.LastSeenWriter`.

Anything else makes :meth:`FastCheckin.answer` return ``None`` and the route runs the
ordinary check-in (``ProtocolService.checkin`` in a worker thread, committed before it
answers), which therefore owns every error answer, every audit event, posture and verdict
changes, command delivery and results, and lost mode:

- a header, credential or body the ordinary path would refuse (it gives the 401 and 422
  problem documents, and audits what is a security event);
- a device that is not active (lost, wiped, retired), or whose credential is revoked;
- command results in the body, or commands queued since a check-in last found none
  (``commands_queued != commands_checked``);
- a posture whose digest differs from the stored one, or a verdict basis (posture digest,
  effective policy id and version: ``devices.services.compliance_basis``) that differs
  from the stored verdict's, which also covers a verdict with a failed "stale" rule (it
  keeps no basis);
- a database error (the connection is dropped and opened again later).

The answer is the one the ordinary path would give: the stored verdict (its basis proves
a re-evaluation would reach it), no commands.  What differs is only what is stored: the
device's stored posture keeps the ``reported_at`` of the check-in that last changed it,
and ``last_checkin_at`` / ``compliance_evaluated_at`` reach the database up to
``lastseen.FLUSH_INTERVAL_SECONDS`` later (see :mod:`spillguard.devices.lastseen`).

It runs on the server's event loop, on one database connection of its own (autocommit, no
``BEGIN``/``COMMIT``, a prepared statement on PostgreSQL): the read is one round trip on a
primary-key-like index and never waits for a row lock; a statement timeout bounds how long
an exclusive table lock (a migration) could hold the loop, after which the ordinary path
takes over.  A thread-pool hop and the ORM cost more CPU than the whole of this.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final, cast

import structlog
from pydantic import ValidationError
from sqlalchemy import Engine, Table, and_, bindparam, event, func, select

from spillguard.core.db import utcnow
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.settings import Settings
from spillguard.devices.enrollment import CREDENTIAL_PREFIX
from spillguard.devices.lastseen import LastSeenWriter
from spillguard.devices.models import CompliancePolicyRecord, Device, DeviceGroup, DeviceState
from spillguard.devices.protocol import DEVICE_HEADER, posture_digest
from spillguard.devices.schemas import CheckinRequest, CheckinResponse, ComplianceOut
from spillguard.devices.services import compliance_basis_of

log = structlog.get_logger("spillguard.devices")

# How long the read may take before the ordinary path is used instead (it only waits on
# an exclusive lock of the whole table, which migrations take).
STATEMENT_TIMEOUT_MS: Final = 1000
# After a failed connection attempt, the ordinary path is used for this long.
RECONNECT_AFTER_SECONDS: Final = 1.0

_D = cast(Table, Device.__table__)
_G = cast(Table, DeviceGroup.__table__)
_P = cast(Table, CompliancePolicyRecord.__table__)
_COLUMNS = (
    _D.c.id,
    _D.c.state,
    _D.c.credential_revoked_at,
    _D.c.posture_digest,
    _D.c.compliance_basis,
    _D.c.compliant,
    _D.c.compliance_reasons,
    _D.c.commands_queued,
    _D.c.commands_checked,
    _P.c.id,
    _P.c.updated_at,
)
# The effective policy as devices.services.effective_policy finds it: the device's own,
# else its group's.
_READ = (
    select(*_COLUMNS)
    .select_from(
        _D.outerjoin(_G, and_(_D.c.policy_id.is_(None), _G.c.id == _D.c.group_id)).outerjoin(
            _P, _P.c.id == func.coalesce(_D.c.policy_id, _G.c.policy_id)
        )
    )
    .where(_D.c.credential_digest == bindparam("digest"))
)


class FastCheckin:
    """Answers unchanged check-ins of one server process (see the module's docstring)."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        settings: Settings,
        writer: LastSeenWriter | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer or LastSeenWriter(engine)
        self.interval = settings.device_checkin_interval_seconds
        self.skew = timedelta(seconds=settings.device_clock_skew_seconds)
        self._key = keys.derive(KeyPurpose.DEVICE_CREDENTIAL_DIGEST)
        dialect = engine.dialect
        compiled = _READ.compile(dialect=dialect)
        self._sql = str(compiled)
        self._positional = dialect.positional
        self._postgres = dialect.name == "postgresql"
        self._convert: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in _COLUMNS
        ]
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        self._lock = threading.Lock()
        self._connection: Any = None
        self._cursor: Any = None
        self._retry_at = 0.0
        self._closed = False
        event.listen(engine, "engine_disposed", lambda _engine: self.release())

    # --- the check-in ----------------------------------------------------------------

    def answer(self, authorization: str | None, raw: bytes) -> bytes | None:
        """The JSON answer to an unchanged check-in, or None for the ordinary path."""
        match = DEVICE_HEADER.match((authorization or "").strip())
        if match is None or not match.group(2).startswith(CREDENTIAL_PREFIX):
            return None
        try:
            body = CheckinRequest.model_validate_json(raw)
        except ValidationError:
            return None
        now = utcnow()
        if body.results or body.posture.reported_at - now > self.skew:
            return None
        secret = match.group(2).encode()
        row = self._read(hmac.new(self._key, secret, hashlib.sha256).hexdigest())
        if row is None:
            return None
        (
            device_id,
            state,
            revoked_at,
            stored_digest,
            basis,
            compliant,
            reasons,
            queued,
            checked,
            policy_id,
            policy_version,
        ) = row
        if (
            device_id != int(match.group(1))
            or revoked_at is not None
            or state != DeviceState.ACTIVE.value
            or queued != checked
            or basis is None
            or compliant is None
        ):
            return None
        digest = posture_digest(body.posture.model_dump(mode="json"))
        if digest != stored_digest or basis != compliance_basis_of(
            digest, policy_id, policy_version
        ):
            return None
        if not self.writer.record(device_id, now, basis):
            return None
        return (
            CheckinResponse(
                device_id=device_id,
                state=DeviceState.ACTIVE,
                server_time=now,
                next_checkin_seconds=self.interval,
                compliance=ComplianceOut(compliant=bool(compliant), reasons=list(reasons or [])),
                commands=[],
            )
            .model_dump_json()
            .encode()
        )

    # --- the database ----------------------------------------------------------------

    def _read(self, digest: str) -> tuple[Any, ...] | None:
        """The device row (converted as the ORM would), or None (no such device, or the
        connection is busy or broken: the ordinary path then answers)."""
        if not self._lock.acquire(blocking=False):
            return None  # another thread of this process is using it: not worth a wait
        try:
            cursor = self._cursor or self._connect()
            if cursor is None:
                return None
            try:
                if self._postgres:
                    cursor.execute(self._sql, {"digest": digest}, prepare=True)
                elif self._positional:
                    cursor.execute(self._sql, (digest,))
                else:
                    cursor.execute(self._sql, {"digest": digest})
                row = cursor.fetchone()
            except self._dbapi_error as exc:
                log.warning("fast_checkin_read_failed", error=type(exc).__name__)
                self._disconnect()
                return None
        finally:
            self._lock.release()
        if row is None:
            return None
        return tuple(
            value if convert is None or value is None else convert(value)
            for convert, value in zip(self._convert, row, strict=True)
        )

    def _connect(self) -> Any:
        if self._closed or time.monotonic() < self._retry_at:
            return None
        fairy = None
        try:
            fairy = self.engine.raw_connection()
            connection: Any = fairy.driver_connection
            fairy.detach()  # this connection is ours until close(), not the pool's
            if self._postgres:
                connection.autocommit = True
                connection.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            else:
                connection.execute(f"PRAGMA busy_timeout = {STATEMENT_TIMEOUT_MS}")
        except Exception as exc:  # any failure: the ordinary path answers meanwhile
            log.warning("fast_checkin_connect_failed", error=type(exc).__name__)
            self._retry_at = time.monotonic() + RECONNECT_AFTER_SECONDS
            if fairy is not None:
                fairy.close()
            return None
        self._connection = fairy
        self._cursor = connection.cursor()
        return self._cursor

    def _disconnect(self) -> None:
        fairy, self._connection, self._cursor = self._connection, None, None
        if fairy is not None:
            try:
                fairy.close()
            except Exception as exc:
                log.warning("fast_checkin_close_failed", error=type(exc).__name__)

    def release(self) -> None:
        """Give the connection back and write the held times; both come back with the
        next check-in.  Runs when the engine is disposed (as the app's lifespan does at
        its end, and tests' app fixtures before they drop their database)."""
        with self._lock:
            self._disconnect()
        self.writer.stop()

    def close(self) -> None:
        """The server's orderly shutdown: close the connection, write the held times, and
        leave later check-ins to the ordinary path."""
        with self._lock:
            self._closed = True
            self._disconnect()
        self.writer.close()
