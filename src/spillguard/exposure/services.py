"""The exposure ledger's service: register inspected content, record deliveries, answer
"what reached this phone / user / domain" and "where has this customer's data gone".

Writers are the mail filter, the download gateway, device inventory matching and the
REST API; each goes through :class:`ExposureService` (or :func:`register_report` and
:func:`record_deliveries` for callers that already hold a system principal's session).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from spillguard.audit.honeytokens import check_matched_customers
from spillguard.core.audit import record_event
from spillguard.core.db import insert_rows, rows_among, utcnow
from spillguard.core.errors import InvalidInput, NotFound
from spillguard.core.jobs import Job
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.customers.edm import EdmIndex
from spillguard.customers.fields import PRIMARY, FieldKind
from spillguard.customers.models import Customer
from spillguard.devices.models import Device
from spillguard.exposure.ledger import (
    DeliverySpec,
    Destination,
    InvalidDestination,
    NewDelivery,
    check_source,
    normalise_domain,
    source_ref,
)
from spillguard.exposure.models import (
    Channel,
    ContentCustomer,
    Delivery,
    DestinationType,
    InspectedContent,
)
from spillguard.incidents import timeline as incident_timeline
from spillguard.inspection.classify import InspectionReport, ItemStatus, Label, parse_label

CHUNK = 500
"""Ids per ``IN (…)``: well under SQLite's and PostgreSQL's parameter limits."""


class ExposureAuditAction(StrEnum):
    """What the exposure module records in the audit trail (counts and ids, never values)."""

    DELIVERIES_RECORDED = "exposure:deliveries:recorded"
    CUSTOMER_TRACED = "exposure:customer:traced"
    DEVICE_CUSTOMERS_LISTED = "exposure:device-customers:listed"
    LEDGER_PRUNED = "exposure:ledger:pruned"
    GATEWAY_DOWNLOADED = "exposure:gateway:downloaded"
    GATEWAY_REFUSED = "exposure:gateway:refused"
    LINK_CREATED = "exposure:gateway-link:created"
    LINK_REVOKED = "exposure:gateway-link:revoked"
    ACCESS_DENIED = "exposure:access:denied"
    CUSTOMER_LOOKED_UP = "exposure:customer:looked-up"


class ContentNotFound(NotFound):
    slug = "content-not-found"
    title = "Content not found"


class CustomerNotFound(NotFound):
    slug = "customer-not-found"
    title = "Customer not found"


class InvalidDelivery(InvalidInput):
    slug = "invalid-delivery"
    title = "Invalid delivery"


# --- registering inspected content -----------------------------------------------------


def content_status(report: InspectionReport) -> str:
    """``inspected`` when every part was read; otherwise the report's own status."""
    if report.status in (ItemStatus.CLEAN, ItemStatus.FINDINGS) and report.complete:
        return "inspected"
    if report.status in (ItemStatus.CLEAN, ItemStatus.FINDINGS):
        return ItemStatus.UNINSPECTED.value
    return report.status.value


def directory_ids(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """Directory ids of customers by their external (CRM) ids; unknown ids are left out."""
    wanted = sorted(set(external_ids))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), CHUNK):
        for external_id, customer_id in session.execute(
            select(Customer.external_id, Customer.id).where(
                Customer.external_id.in_(wanted[start : start + CHUNK])
            )
        ):
            found[external_id] = customer_id
    return found


def register_report(
    session: Session, report: InspectionReport, *, now: datetime | None = None
) -> InspectedContent:
    """Store (or refresh) what an inspection found in a content, by its SHA-256.

    Re-inspecting the same content replaces its label, counts and customer list: the
    directory or the detectors may have changed since. Customers the report names but
    the directory does not hold (an index given as a CSV file) are not stored.
    """
    if not report.sha256:
        raise InvalidDelivery("Only content with a SHA-256 can be recorded in the ledger.")
    now = now or utcnow()
    ids = directory_ids(session, report.customer_ids)
    check_matched_customers(
        session,
        report.customer_ids,
        "exposure-ledger",
        {"content_sha256": report.sha256},
        now,
        primary_only=report.primary_only,
    )
    content = session.scalar(
        select(InspectedContent).where(InspectedContent.sha256 == report.sha256)
    )
    values: dict[str, Any] = {
        "size": report.size,
        "format": report.format[:32],
        "status": content_status(report),
        "label": report.label.value,
        "categories": dict(report.categories),
        "customer_count": len(ids),
        "inspected_at": now,
    }
    if content is None:
        content = InspectedContent(sha256=report.sha256, first_seen_at=now, **values)
        session.add(content)
        session.flush()
    else:
        for key, value in values.items():
            setattr(content, key, value)
        session.execute(delete(ContentCustomer).where(ContentCustomer.content_id == content.id))
        session.flush()
    insert_rows(
        session.connection(),
        ContentCustomer.__table__,
        [{"content_id": content.id, "customer_id": cid} for cid in sorted(ids.values())],
    )
    return content


def content_by_sha256(session: Session, sha256: str) -> InspectedContent:
    content = session.scalar(
        select(InspectedContent).where(InspectedContent.sha256 == sha256.strip().lower())
    )
    if content is None:
        raise ContentNotFound(
            "No inspected content has that SHA-256: inspect it first, then record where it went."
        )
    return content


# --- recording deliveries --------------------------------------------------------------


@dataclass(frozen=True)
class RecordOutcome:
    recorded: int
    duplicates: int


def _row(delivery: NewDelivery, content: tuple[str, int], now: datetime) -> dict[str, Any]:
    try:
        check_source(delivery.source_system, delivery.source_id)
    except InvalidDestination as exc:
        raise InvalidDelivery(str(exc)) from None
    d = delivery.destination
    return {
        "occurred_at": delivery.occurred_at,
        "recorded_at": now,
        "channel": delivery.channel.value,
        "destination_type": d.type.value,
        "device_id": d.device_id,
        "user_id": d.user_id,
        "recipient": d.recipient,
        "domain": d.domain,
        "third_party": d.third_party,
        "content_id": delivery.content_id,
        "label": content[0],
        "customer_count": content[1],
        "source_system": delivery.source_system.strip(),
        "source_ref": source_ref(delivery.source_system.strip(), delivery.source_id),
    }


# From this many keyed rows on, PostgreSQL gets them by COPY into a temporary table and one
# INSERT … SELECT … ON CONFLICT DO NOTHING instead of multi-row INSERTs (docs/benchmarks.md).
_STAGE_FROM = 200


def _insert_keyed_staged(conn: Any, rows: list[dict[str, Any]]) -> Sequence[Any]:
    """Insert deliveries with source refs on PostgreSQL: COPY into a temporary table shaped
    like the ledger (dropped at commit), then insert what is not there yet; the ids and
    devices of the rows inserted come back, as from the multi-row INSERT."""
    names = list(rows[0])
    columns = ", ".join(f'"{n}"' for n in names)
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS exposure_deliveries_incoming "
            "(LIKE exposure_deliveries INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE exposure_deliveries_incoming")
        with cursor.copy(f"COPY exposure_deliveries_incoming ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[n] for n in names])
        cursor.execute(  # the column names are _row's keys, not input
            f"INSERT INTO exposure_deliveries ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM exposure_deliveries_incoming "
            "ON CONFLICT (source_ref) DO NOTHING RETURNING id, device_id"
        )
        return cursor.fetchall()


def record_deliveries(
    session: Session, deliveries: Sequence[NewDelivery], *, now: datetime | None = None
) -> RecordOutcome:
    """Append deliveries to the ledger; one whose source ref is already there is skipped.

    Rows without a source ref go in with COPY (PostgreSQL) or executemany; rows with one
    use ``INSERT … ON CONFLICT DO NOTHING`` so a sender that reports the same delivery
    twice (a retried mail, a replayed API batch) is recorded once.
    """
    now = now or utcnow()
    if not deliveries:
        return RecordOutcome(0, 0)
    contents = {
        cid: (label, count)
        for cid, label, count in rows_among(
            session,
            select(InspectedContent.id, InspectedContent.label, InspectedContent.customer_count),
            InspectedContent.id,
            (d.content_id for d in deliveries),
        )
    }
    plain: list[dict[str, Any]] = []
    keyed: dict[uuid.UUID, dict[str, Any]] = {}
    batch_duplicates = 0
    for delivery in deliveries:
        content = contents.get(delivery.content_id)
        if content is None:
            raise ContentNotFound(f"Content {delivery.content_id} is not in the ledger.")
        row = _row(delivery, content, now)
        if row["source_ref"] is None:
            plain.append(row)
        elif row["source_ref"] in keyed:
            batch_duplicates += 1
        else:
            keyed[row["source_ref"]] = row
    conn = session.connection()
    insert_rows(conn, Delivery.__table__, plain)
    recorded = len(plain)
    returned: Sequence[Any] = []
    if keyed and conn.dialect.name == "postgresql" and len(keyed) >= _STAGE_FROM:
        returned = _insert_keyed_staged(conn, list(keyed.values()))
    elif keyed:
        # One compiled statement, sent as executemany ("insertmanyvalues" batches it into
        # multi-row INSERTs on both databases); the ids returned are the rows recorded.
        maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = (
            maker(Delivery)
            .on_conflict_do_nothing(index_elements=["source_ref"])
            .returning(Delivery.id, Delivery.device_id)
        )
        returned = conn.execute(statement, list(keyed.values())).all()
    recorded += len(returned)
    # Ledger facts for the timeline of an open incident of a device (a lost phone that
    # still receives mail): one SELECT per batch that names devices.
    per_device = Counter(r["device_id"] for r in plain if r["device_id"] is not None)
    per_device.update(device_id for _, device_id in returned if device_id is not None)
    incident_timeline.deliveries_reached_devices(session, per_device, at=now)
    return RecordOutcome(recorded, len(deliveries) - recorded)


def prune(session: Session, retention_days: int, *, now: datetime | None = None) -> int:
    """Delete deliveries older than the retention period (0 keeps them for ever)."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    result = session.execute(
        delete(Delivery)
        .where(Delivery.occurred_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilter:
    """Which ledger entries to list; every field narrows the list."""

    device_id: int | None = None
    user_id: int | None = None
    domain: str | None = None
    recipient: str | None = None
    channel: Channel | None = None
    min_label: Label | None = None
    content_sha256: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ContentOnDestination:
    """One content that reached a destination: when first and last, how often."""

    content: InspectedContent
    first_at: datetime
    last_at: datetime
    deliveries: int
    channels: tuple[str, ...]


@dataclass(frozen=True)
class DestinationExposure:
    """What reached one destination: contents, distinct customers, labels."""

    contents: list[ContentOnDestination]
    distinct_customers: int
    label_counts: dict[str, int]
    categories: dict[str, int]


def _needs_content(condition: Any) -> bool:
    """Whether a filter condition reads a column of the contents table."""
    return any(
        getattr(col, "table", None) is InspectedContent.__table__
        for col in condition.get_children()
    )


_LABELS_AT_LEAST = {label: [x.value for x in Label if x >= label] for label in Label}


class ExposureService:
    """Record and query the ledger for a principal; authorisation first, audit inside."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    # writing

    def check_record(self) -> None:
        """Refuse early (before inspecting anything) a principal that may not record."""
        self.principal.require(Permission.EXPOSURE_RECORD)

    def register(self, report: InspectionReport) -> InspectedContent:
        self.principal.require(Permission.EXPOSURE_RECORD)
        return register_report(self.session, report)

    def record_reported(
        self, specs: Sequence[DeliverySpec], *, clock_skew: timedelta
    ) -> RecordOutcome:
        """Record deliveries a client reports by content hash (the REST API).

        Every content must have been inspected; every device and user must exist (a device
        delivery also names the device's owner); no delivery may lie in the future beyond
        ``clock_skew``. One bad delivery refuses the whole batch, naming its position.
        """
        self.principal.require(Permission.EXPOSURE_RECORD)
        now = utcnow()
        content_ids: dict[str, int] = dict(
            rows_among(
                self.session,
                select(InspectedContent.sha256, InspectedContent.id),
                InspectedContent.sha256,
                (s.sha256.strip().lower() for s in specs),
            )
        )
        owners = self._device_owners({s.destination.device_id for s in specs} - {None})
        users = self._existing_users({s.destination.user_id for s in specs} - {None})
        deliveries: list[NewDelivery] = []
        for position, spec in enumerate(specs):
            where = f"items[{position}]"
            cid = content_ids.get(spec.sha256.strip().lower())
            if cid is None:
                raise ContentNotFound(
                    f"{where}: no inspected content has that SHA-256; send the content to "
                    "POST /api/v1/exposure/contents first."
                )
            destination = spec.destination
            if destination.device_id is not None:
                if destination.device_id not in owners:
                    raise InvalidDelivery(f"{where}: there is no device {destination.device_id}.")
                destination = Destination.device(
                    destination.device_id, owners[destination.device_id]
                )
            elif destination.user_id is not None and destination.user_id not in users:
                raise InvalidDelivery(f"{where}: there is no user {destination.user_id}.")
            occurred = spec.occurred_at or now
            if occurred > now + clock_skew:
                raise InvalidDelivery(f"{where}: occurred_at lies in the future.")
            deliveries.append(
                NewDelivery(
                    cid, destination, spec.channel, occurred, spec.source_system, spec.source_id
                )
            )
        return self.record(deliveries)

    def _device_owners(self, ids: set[int | None]) -> dict[int, int]:
        wanted = (i for i in ids if i is not None)
        return dict(rows_among(self.session, select(Device.id, Device.owner_id), Device.id, wanted))

    def _existing_users(self, ids: set[int | None]) -> set[int]:
        wanted = (i for i in ids if i is not None)
        return {row[0] for row in rows_among(self.session, select(User.id), User.id, wanted)}

    def record(self, deliveries: Sequence[NewDelivery], *, channel_note: str = "") -> RecordOutcome:
        self.principal.require(Permission.EXPOSURE_RECORD)
        outcome = record_deliveries(self.session, deliveries)
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.DELIVERIES_RECORDED,
            object_type="exposure",
            details={
                "recorded": outcome.recorded,
                "duplicates": outcome.duplicates,
                "channels": sorted({d.channel.value for d in deliveries}),
                **({"note": channel_note} if channel_note else {}),
            },
        )
        return outcome

    # reading

    def deliveries(
        self, flt: DeliveryFilter, *, limit: int, offset: int
    ) -> tuple[list[tuple[Delivery, InspectedContent]], int]:
        self.principal.require(Permission.EXPOSURE_VIEW)
        query = select(Delivery, InspectedContent).join(
            InspectedContent, InspectedContent.id == Delivery.content_id
        )
        conditions = self._conditions(flt)
        query = query.where(*conditions)
        total = self.session.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(InspectedContent, InspectedContent.id == Delivery.content_id)
            .where(*conditions)
        )
        rows = self.session.execute(
            query.order_by(Delivery.occurred_at.desc(), Delivery.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return [(d, c) for d, c in rows], int(total or 0)

    def _conditions(self, flt: DeliveryFilter) -> list[Any]:
        conditions: list[Any] = []
        if flt.device_id is not None:
            conditions.append(Delivery.device_id == flt.device_id)
        if flt.user_id is not None:
            conditions.append(Delivery.user_id == flt.user_id)
        if flt.domain:
            try:
                conditions.append(Delivery.domain == normalise_domain(flt.domain))
            except InvalidDestination as exc:
                raise InvalidDelivery(str(exc)) from None
        if flt.recipient:
            try:
                conditions.append(
                    Delivery.recipient == Destination.external(flt.recipient).recipient
                )
            except InvalidDestination as exc:
                raise InvalidDelivery(str(exc)) from None
        if flt.channel is not None:
            conditions.append(Delivery.channel == flt.channel.value)
        if flt.min_label is not None:
            conditions.append(Delivery.label.in_(_LABELS_AT_LEAST[flt.min_label]))
        if flt.content_sha256:
            conditions.append(InspectedContent.sha256 == flt.content_sha256.strip().lower())
        if flt.since is not None:
            conditions.append(Delivery.occurred_at >= flt.since)
        if flt.until is not None:
            conditions.append(Delivery.occurred_at < flt.until)
        return conditions

    def destination_exposure(self, flt: DeliveryFilter) -> DestinationExposure:
        """Contents that reached the destination(s) ``flt`` names, and who is in them."""
        self.principal.require(Permission.EXPOSURE_VIEW)
        conditions = self._conditions(flt)
        per_content = self.session.execute(
            select(
                Delivery.content_id,
                func.min(Delivery.occurred_at),
                func.max(Delivery.occurred_at),
                func.count(),
            )
            .join(InspectedContent, InspectedContent.id == Delivery.content_id)
            .where(*conditions)
            .group_by(Delivery.content_id)
        ).all()
        content_ids = [row[0] for row in per_content]
        contents = self._contents(content_ids)
        channels = self._channels(conditions)
        listed = [
            ContentOnDestination(
                contents[cid], first, last, int(n), tuple(sorted(channels.get(cid, ())))
            )
            for cid, first, last, n in per_content
        ]
        listed.sort(key=lambda x: (x.last_at, x.content.id), reverse=True)
        labels: dict[str, int] = {}
        categories: dict[str, int] = {}
        for item in listed:
            labels[item.content.label] = labels.get(item.content.label, 0) + 1
            for name, count in (item.content.categories or {}).items():
                categories[name] = categories.get(name, 0) + int(count)
        return DestinationExposure(
            listed, self._distinct_customers(conditions), labels, dict(sorted(categories.items()))
        )

    def _contents(self, ids: Sequence[int]) -> dict[int, InspectedContent]:
        found: dict[int, InspectedContent] = {}
        for start in range(0, len(ids), CHUNK):
            for content in self.session.scalars(
                select(InspectedContent).where(InspectedContent.id.in_(ids[start : start + CHUNK]))
            ):
                found[content.id] = content
        return found

    def _channels(self, conditions: list[Any]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for cid, channel in self.session.execute(
            select(Delivery.content_id, Delivery.channel)
            .join(InspectedContent, InspectedContent.id == Delivery.content_id)
            .where(*conditions)
            .distinct()
        ):
            found.setdefault(cid, set()).add(channel)
        return found

    def _customers_query(self, conditions: list[Any]) -> Any:
        """Distinct directory ids of the customers in the contents that reached the
        destination(s): deliveries by their index, then each content's customer list by
        its primary key (no join to the contents unless a filter needs one)."""
        query = select(ContentCustomer.customer_id).join(
            Delivery, Delivery.content_id == ContentCustomer.content_id
        )
        if any(_needs_content(c) for c in conditions):
            query = query.join(InspectedContent, InspectedContent.id == Delivery.content_id)
        return query.where(*conditions).distinct()

    def _distinct_customers(self, conditions: list[Any]) -> int:
        inner = self._customers_query(conditions).subquery()
        return int(self.session.scalar(select(func.count()).select_from(inner)) or 0)

    def destination_customers(
        self, flt: DeliveryFilter, *, limit: int, offset: int
    ) -> tuple[list[str], int]:
        """External ids of the distinct customers whose data reached the destination(s),
        in directory order (one query for the set, one for the page's ids)."""
        self.principal.require(Permission.EXPOSURE_VIEW)
        conditions = self._conditions(flt)
        every = sorted(self.session.scalars(self._customers_query(conditions)))
        total = len(every)
        page = every[offset : offset + limit]
        external = (
            dict(
                self.session.execute(
                    select(Customer.id, Customer.external_id).where(Customer.id.in_(page))
                ).all()
            )
            if page
            else {}
        )
        ids = [external[i] for i in page if i in external]
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.DEVICE_CUSTOMERS_LISTED,
            object_type="device" if flt.device_id is not None else "exposure",
            object_id=flt.device_id,
            details={"total": total, "listed": len(ids), "offset": offset},
        )
        return ids, total

    def customer_trail(
        self, external_id: str, *, limit: int, offset: int
    ) -> tuple[list[tuple[Delivery, InspectedContent]], int]:
        """Every delivery of content that named this customer, newest first (audited)."""
        self.principal.require(Permission.EXPOSURE_VIEW)
        customer = self.session.scalar(
            select(Customer).where(Customer.external_id == external_id.strip())
        )
        if customer is None:
            raise CustomerNotFound("No customer in the directory has that id.")
        return self.customer_trail_by_directory_id(
            customer.id, limit=limit, offset=offset, audit_as=customer.external_id
        )

    def customers_with(self, index: EdmIndex | None, kind: FieldKind, value: str) -> list[str]:
        """Which directory customers have this e-mail, phone, card or loyalty number? The
        value is normalised and hashed to look it up, then forgotten; the audit trail gets
        the kind and the number found, never the value."""
        self.principal.require(Permission.EXPOSURE_VIEW)
        if kind not in PRIMARY:
            raise InvalidDelivery("Search by e-mail, phone, card or loyalty number.")
        found = index.customers_with(kind, value) if index is not None else []
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.CUSTOMER_LOOKED_UP,
            object_type="customer",
            details={"kind": kind.value, "found": len(found)},
        )
        return found

    def customer_trail_by_directory_id(
        self, customer_id: int, *, limit: int, offset: int, audit_as: str
    ) -> tuple[list[tuple[Delivery, InspectedContent]], int]:
        self.principal.require(Permission.EXPOSURE_VIEW)
        contents = select(ContentCustomer.content_id).where(
            ContentCustomer.customer_id == customer_id
        )
        condition = Delivery.content_id.in_(contents)
        total = int(
            self.session.scalar(select(func.count()).select_from(Delivery).where(condition)) or 0
        )
        rows = self.session.execute(
            select(Delivery, InspectedContent)
            .join(InspectedContent, InspectedContent.id == Delivery.content_id)
            .where(condition)
            .order_by(Delivery.occurred_at.desc(), Delivery.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        record_event(
            self.session,
            self.principal,
            ExposureAuditAction.CUSTOMER_TRACED,
            object_type="customer",
            object_id=audit_as,
            details={"deliveries": total},
        )
        return [(d, c) for d, c in rows], total

    def content(self, sha256: str) -> InspectedContent:
        self.principal.require(Permission.EXPOSURE_VIEW)
        return content_by_sha256(self.session, sha256)


def parse_min_label(value: str | None) -> Label | None:
    if value is None or not value.strip():
        return None
    try:
        return parse_label(value)
    except ValueError as exc:
        raise InvalidDelivery(str(exc)) from None


def reported_specs(items: Iterable[Any]) -> list[DeliverySpec]:
    """The deliveries of an API batch (``schemas.DeliveryIn`` items) as specs; an invalid
    destination refuses the batch naming its item (``items[N]: ...``), as
    :meth:`ExposureService.record_reported` names its own refusals."""
    specs = []
    for position, item in enumerate(items):
        try:
            destination = destination_from(
                type_=item.destination.type,
                device_id=item.destination.device_id,
                user_id=item.destination.user_id,
                recipient=item.destination.recipient,
                third_party=item.destination.third_party,
            )
        except InvalidDelivery as exc:
            raise InvalidDelivery(f"items[{position}]: {exc.detail}", **exc.extra) from None
        specs.append(
            DeliverySpec(
                sha256=item.sha256,
                destination=destination,
                channel=item.channel,
                occurred_at=item.occurred_at,
                source_system=item.source_system,
                source_id=item.source_id,
            )
        )
    return specs


def destination_from(
    *,
    type_: DestinationType,
    device_id: int | None,
    user_id: int | None,
    recipient: str | None,
    third_party: str | None,
) -> Destination:
    """A destination from API fields, refusing fields that do not belong to its type."""
    try:
        if type_ is DestinationType.DEVICE:
            if device_id is None or recipient or third_party:
                raise InvalidDestination("A device destination needs device_id (and only that).")
            return Destination.device(device_id, user_id)
        if type_ is DestinationType.USER:
            if user_id is None or device_id is not None or recipient or third_party:
                raise InvalidDestination("A user destination needs user_id (and only that).")
            return Destination.user(user_id)
        if type_ is DestinationType.RECIPIENT:
            if not recipient or device_id is not None or user_id is not None or third_party:
                raise InvalidDestination(
                    "An external recipient needs recipient (an e-mail address) and only that."
                )
            return Destination.external(recipient)
        if not third_party or device_id is not None or user_id is not None or recipient:
            raise InvalidDestination("A third party needs third_party (its name) and only that.")
        return Destination.party(third_party)
    except InvalidDestination as exc:
        raise InvalidDelivery(str(exc)) from None


PRUNE_JOB = "exposure.retention"


def run_retention(session: Session, settings: Settings, *, now: datetime | None = None) -> int:
    """Delete deliveries past retention and audit how many went (as the system)."""
    removed = prune(session, settings.exposure_retention_days, now=now)
    if removed:
        record_event(
            session,
            Principal.system("retention"),
            ExposureAuditAction.LEDGER_PRUNED,
            object_type="exposure",
            details={"removed": removed, "retention_days": settings.exposure_retention_days},
        )
    return removed


def retention_job(settings: Settings) -> Job:
    return Job(
        PRUNE_JOB,
        settings.exposure_prune_interval_seconds,
        lambda session: run_retention(session, settings),
    )
