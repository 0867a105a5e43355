"""Migration 0010: deliveries' source refs become 16-byte uuids (the first 128 bits of the
same SHA-256, so older deliveries are still recognised) and the foreign key from
deliveries to contents is replaced by a trigger refusing to delete a delivered content;
down and up again."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from spillguard.exposure.ledger import source_ref
from tests.conftest import migrate_to as migrate

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FK = "fk_exposure_deliveries_content_id_exposure_contents"


@pytest.fixture
def engine(unmigrated_engine: Engine) -> Engine:
    return unmigrated_engine


def old_ref(source_system: str, source_id: str) -> str:
    """``ledger.source_ref`` before 0010: the whole SHA-256 in hex."""
    return hashlib.sha256(f"{source_system}\x00{source_id}".encode()).hexdigest()


def tables(engine: Engine) -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(engine, only=["exposure_contents", "exposure_deliveries"])
    return meta.tables["exposure_contents"], meta.tables["exposure_deliveries"]


def delivery(content_id: int, ref: object) -> dict[str, object]:
    return {
        "occurred_at": NOW,
        "recorded_at": NOW,
        "channel": "mail",
        "destination_type": "device",
        "device_id": 5,
        "user_id": 2,
        "content_id": content_id,
        "label": "confidential",
        "customer_count": 3,
        "source_system": "mail-filter",
        "source_ref": ref,
    }


def foreign_keys(engine: Engine) -> list[str | None]:
    return [fk["name"] for fk in sa.inspect(engine).get_foreign_keys("exposure_deliveries")]


def test_migration_0010_converts_the_refs_and_swaps_the_foreign_key_for_the_guard(
    engine: Engine,
) -> None:
    migrate(engine, "0009")
    contents, deliveries = tables(engine)
    with engine.begin() as conn:
        for cid in (1, 2):
            conn.execute(
                contents.insert().values(
                    id=cid,
                    sha256=f"{cid:064x}",
                    format="csv",
                    status="inspected",
                    label="confidential",
                    categories={},
                    customer_count=3,
                    first_seen_at=NOW,
                    inspected_at=NOW,
                )
            )
        conn.execute(
            deliveries.insert(),
            [delivery(1, old_ref("mail-filter", "<m1@example.org> to phone")), delivery(1, None)],
        )
    assert foreign_keys(engine) == [FK]

    migrate(engine, "0010")
    assert foreign_keys(engine) == []
    contents, deliveries = tables(engine)
    with engine.connect() as conn:
        refs = conn.scalars(select(deliveries.c.source_ref).order_by(deliveries.c.id)).all()
        # reflected: a uuid on PostgreSQL, 32 hex digits (what ``Uuid`` stores) on SQLite
        assert [uuid.UUID(str(r)) if r else None for r in refs] == [
            source_ref("mail-filter", "<m1@example.org> to phone"),
            None,
        ]
        with pytest.raises(IntegrityError):  # still unique
            conn.execute(deliveries.insert(), [delivery(1, refs[0])])
        conn.rollback()
        with pytest.raises(IntegrityError, match="has ledger deliveries"):
            conn.execute(contents.delete().where(contents.c.id == 1))
        conn.rollback()
        with pytest.raises(IntegrityError, match="has ledger deliveries"):
            conn.execute(contents.update().where(contents.c.id == 1).values(id=9))
        conn.rollback()
        conn.execute(contents.update().where(contents.c.id == 1).values(label="restricted"))
        conn.execute(contents.delete().where(contents.c.id == 2))  # never delivered
        conn.commit()

    migrate(engine, "0009", down=True)
    assert foreign_keys(engine) == [FK]
    contents, deliveries = tables(engine)
    with engine.connect() as conn:
        refs = conn.scalars(select(deliveries.c.source_ref).order_by(deliveries.c.id)).all()
        assert refs == [old_ref("mail-filter", "<m1@example.org> to phone")[:32], None]
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            conn.execute(contents.delete().where(contents.c.id == 1))
        conn.rollback()
    migrate(engine, "0010")
    assert foreign_keys(engine) == []
