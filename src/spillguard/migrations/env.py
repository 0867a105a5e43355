"""Alembic environment: runs on the connection Spillguard hands it (see core.db.upgrade)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# Imported for their side effect: registering each module's tables on Base.metadata.
import spillguard.audit.models
import spillguard.core.models
import spillguard.customers.models
import spillguard.devices.models
import spillguard.exposure.models
import spillguard.incidents.models  # noqa: F401
from spillguard.core.db import Base

target_metadata = Base.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy; same scripts on both databases
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
