"""Access events and HR data for the insider-detection tests, through the real services
(the ingestion service runs the detectors in its transaction, as in production)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from faker import Faker
from sqlalchemy.orm import Session

from spillguard.audit.ingest import AccessIngestService, IngestResult
from spillguard.audit.models import ActorDay, StaffMember
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.customers.models import Customer

fake = Faker("en_GB")
_ids = itertools.count(1)


def actor_name() -> str:
    return (
        f"{fake.first_name()}.{fake.last_name()}.{fake.random_int(100, 999)}@example.co.uk".lower()
    )


def access(
    actor: str,
    at: datetime,
    *,
    action: str = "view",
    customer_ids: list[str] | None = None,
    result_count: int | None = None,
    record_type: str | None = "contract-renewal",
    system: str = "crm",
) -> dict[str, Any]:
    """One event in the wire format."""
    item: dict[str, Any] = {
        "id": f"ev-{next(_ids)}-{fake.random_int(0, 10**9)}",
        "time": at.isoformat(),
        "actor": actor,
        "action": action,
        "system": system,
    }
    if record_type is not None:
        item["record_type"] = record_type
    if customer_ids is not None:
        item["customer_ids"] = customer_ids
    if result_count is not None:
        item["result_count"] = result_count
    return item


@dataclass
class AccessFactory:
    session: Session
    settings: Settings
    keys: KeyRing

    def ingest(
        self, items: list[dict[str, Any]], now: datetime, source: str = "crm"
    ) -> IngestResult:
        service = AccessIngestService(
            self.session, self.settings, self.keys, Principal.system("tests")
        )
        result = service.ingest(source, items, "rest", rate_limit="off", now=now)
        assert not result.rejects, result.rejects
        return result

    def staff(self, actor: str, **fields: Any) -> StaffMember:
        row = StaffMember(actor=actor, display_name=fake.name(), **fields)
        self.session.add(row)
        self.session.flush()
        return row

    def baseline(self, actor: str, last_day: date, records: list[int]) -> None:
        """Counters of past active days (ending ``last_day``), as earlier batches left them."""
        for i, n in enumerate(records):
            day = last_day - timedelta(days=len(records) - 1 - i)
            self.session.add(ActorDay(actor=actor, day=day, events=max(1, n // 5), records=n))
        self.session.flush()

    def customers(self, ids: list[str]) -> None:
        """Directory entries (ids only) so an incident's scope can name them."""
        for cid in ids:
            self.session.add(Customer(external_id=cid))
        self.session.flush()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A UTC instant on a day (Europe/London is UTC in winter)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
