"""Exposure assessment: which customers' data is out, how well it was protected, and
whether the regulator and the people affected must be told.

:func:`assess` is a pure function over plain data (:class:`ExposureFacts`), following
GDPR Articles 33 and 34:

- Art 33(1): notify the regulator unless the breach is *unlikely to result in a risk*;
- Art 34(1): tell the individuals when it is *likely to result in a high risk*;
- Art 34(3)(a): not required when the data was made *unintelligible* to anyone not
  authorised to access it, such as by encryption.

For a lost phone: storage encrypted, a PIN or password, and a wipe acknowledged → the data
is unintelligible, low risk, no one needs telling (the decision is recorded). Encrypted
with a PIN but no wipe confirmed → medium: tell the regulator, individuals probably not
(re-assess when the wipe is confirmed or the phone is found). A swipe, pattern or no
screen lock, unencrypted storage, or a posture never reported → high: the regulator and
every customer must be told. An insider leak is deliberate: the protections of a device
do not help, so any customer in scope makes it high.

:class:`AssessmentService` gathers the facts (exposure ledger, last posture before the
loss, lock and wipe acknowledgements), stores a versioned snapshot, and puts it on the
timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.roles import Principal
from spillguard.customers.honeytokens import honeytoken_ids
from spillguard.customers.models import Customer
from spillguard.devices.models import (
    Command,
    CommandStatus,
    CommandType,
    Device,
    DeviceState,
    PostureSnapshot,
)
from spillguard.exposure.models import ContentCustomer, Delivery, InspectedContent
from spillguard.incidents import timeline
from spillguard.incidents.events import IncidentAuditAction
from spillguard.incidents.models import (
    ExposureAssessment,
    Incident,
    IncidentType,
    TimelineKind,
)

STRONG_LOCKS = ("pin", "alphanumeric")


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class Protections:
    """What protected the data on a lost phone at the time of loss."""

    posture_known: bool
    passcode_type: str | None = None
    passcode_length: int | None = None
    storage_encrypted: bool | None = None
    auto_lock_seconds: int | None = None
    rooted: bool | None = None
    agent_version: str | None = None
    posture_reported_at: str | None = None
    last_checkin_at: datetime | None = None
    lock_acknowledged_at: datetime | None = None
    wipe_acknowledged_at: datetime | None = None

    @property
    def strong_lock(self) -> bool:
        return self.passcode_type in STRONG_LOCKS


@dataclass(frozen=True)
class DocumentFact:
    """One inspected content known to have reached the device (no name, no value)."""

    content_id: int
    sha256: str
    label: str
    format: str
    customer_count: int
    categories: dict[str, int]
    first_delivered_at: datetime
    last_delivered_at: datetime


@dataclass(frozen=True)
class ExposureFacts:
    """Everything :func:`assess` judges on, as plain data."""

    incident_type: str
    customer_count: int
    documents: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    protections: Protections | None = None


@dataclass(frozen=True)
class Assessment:
    """The risk, whom to tell, and why, in plain words."""

    risk: Risk
    notify_regulator: bool
    notify_individuals: bool
    reasons: tuple[str, ...]


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"


def _people(n: int) -> str:
    return f"{n:,} customer{'s' if n != 1 else ''}"


def assess(facts: ExposureFacts) -> Assessment:
    """The risk rating of an exposure, with its reasons (GDPR Art 33/34)."""
    reasons: list[str] = []
    if facts.categories:
        kinds = ", ".join(sorted(facts.categories))
        reasons.append(f"Data categories involved: {kinds}.")
    if facts.customer_count == 0:
        reasons.insert(
            0,
            "No customer data is known to be affected: the breach is unlikely to result in "
            "a risk to anyone (Art 33(1)); record the decision, no one needs telling.",
        )
        return Assessment(Risk.LOW, False, False, tuple(reasons))
    who = _people(facts.customer_count)
    if facts.incident_type == IncidentType.INSIDER_LEAK.value:
        reasons.insert(
            0,
            f"The data of {who} was taken on purpose by someone with access: no technical "
            "protection makes it unintelligible to them (Art 34(3)(a) does not apply). High "
            "risk: tell the regulator and every customer (Art 33, Art 34(1)).",
        )
        return Assessment(Risk.HIGH, True, True, tuple(reasons))
    p = facts.protections
    if p is None:
        reasons.insert(
            0,
            f"The data of {who} is exposed and nothing is known to have protected it: "
            "high risk; tell the regulator and every customer (Art 33, Art 34(1)).",
        )
        return Assessment(Risk.HIGH, True, True, tuple(reasons))
    if not p.posture_known:
        reasons.insert(
            0,
            f"The phone held the data of {who} and never reported its protections "
            "(no posture): assume none. High risk; tell the regulator and every customer.",
        )
        return Assessment(Risk.HIGH, True, True, tuple(reasons))
    lock = p.passcode_type or "unknown"
    weak: list[str] = []
    if not p.strong_lock:
        weak.append(f"its screen lock was '{lock}', which anyone holding the phone can pass")
    if not p.storage_encrypted:
        weak.append("its storage was not encrypted, so the files can be read directly")
    if p.rooted:
        weak.append("it was rooted or jailbroken, which defeats the platform's protections")
    if weak:
        text = f"The phone held the data of {who}; " + "; ".join(weak) + "."
        if p.wipe_acknowledged_at is not None:
            text += (
                f" A wipe was acknowledged at {_when(p.wipe_acknowledged_at)}, but the data "
                "was readable until then."
            )
        reasons.insert(
            0,
            text + " High risk: tell the regulator and every customer (Art 33, Art 34(1)).",
        )
        return Assessment(Risk.HIGH, True, True, tuple(reasons))
    if p.wipe_acknowledged_at is not None:
        reasons.insert(
            0,
            f"The phone held the data of {who}, but its storage was encrypted, it was locked "
            f"with a {lock}, and a wipe was acknowledged at {_when(p.wipe_acknowledged_at)}: "
            "the data is unintelligible to anyone who has the phone. Low risk; notifying the "
            "customers is likely not required (Art 34(3)(a)) and the breach is unlikely to "
            "result in a risk (Art 33(1)). Record this decision and its reasons.",
        )
        return Assessment(Risk.LOW, False, False, tuple(reasons))
    reasons.insert(
        0,
        f"The phone held the data of {who}; its storage was encrypted and locked with a "
        f"{lock}, but no wipe has been acknowledged yet. Medium risk: tell the regulator; "
        "the customers need not be told while the encryption holds (Art 34(3)(a)). "
        "Re-assess when the wipe is acknowledged or the phone is found.",
    )
    return Assessment(Risk.MEDIUM, True, False, tuple(reasons))


# --- gathering the facts ----------------------------------------------------------------


@dataclass(frozen=True)
class GatheredFacts:
    """The facts of an incident plus the customer ids and documents behind them."""

    facts: ExposureFacts
    customer_ids: list[str]
    document_facts: list[DocumentFact]
    scope: str


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def protections_at_loss(session: Session, device: Device, lost_at: datetime) -> Protections:
    """The device's protections as last reported at or before ``lost_at`` (else the latest
    report), with the time of its last check-in and of an acknowledged lock and wipe."""
    snapshot = session.scalar(
        select(PostureSnapshot.posture)
        .where(PostureSnapshot.device_id == device.id, PostureSnapshot.received_at <= lost_at)
        .order_by(PostureSnapshot.received_at.desc(), PostureSnapshot.id.desc())
        .limit(1)
    )
    posture = snapshot if snapshot is not None else device.posture
    acks = dict(
        session.execute(
            select(Command.type, func.min(Command.finished_at))
            .where(
                Command.device_id == device.id,
                Command.status == CommandStatus.ACKNOWLEDGED.value,
                Command.type.in_([CommandType.LOCK.value, CommandType.WIPE.value]),
            )
            .group_by(Command.type)
        ).all()
    )
    wiped_at = acks.get(CommandType.WIPE.value)
    if wiped_at is None and device.state == DeviceState.WIPED.value:
        wiped_at = device.credential_revoked_at  # the wipe's command row was pruned
    if not posture:
        return Protections(
            posture_known=False,
            last_checkin_at=device.last_checkin_at,
            lock_acknowledged_at=acks.get(CommandType.LOCK.value),
            wipe_acknowledged_at=wiped_at,
        )
    passcode = posture.get("passcode") or {}
    return Protections(
        posture_known=True,
        passcode_type=passcode.get("type"),
        passcode_length=passcode.get("length"),
        storage_encrypted=posture.get("storage_encrypted"),
        auto_lock_seconds=posture.get("auto_lock_seconds"),
        rooted=posture.get("rooted"),
        agent_version=posture.get("agent_version"),
        posture_reported_at=posture.get("reported_at"),
        last_checkin_at=device.last_checkin_at,
        lock_acknowledged_at=acks.get(CommandType.LOCK.value),
        wipe_acknowledged_at=wiped_at,
    )


def _documents(session: Session, conditions: list[Any]) -> list[DocumentFact]:
    rows = session.execute(
        select(
            InspectedContent,
            func.min(Delivery.occurred_at),
            func.max(Delivery.occurred_at),
        )
        .join(Delivery, Delivery.content_id == InspectedContent.id)
        .where(*conditions)
        .group_by(InspectedContent.id)
        .order_by(InspectedContent.id)
    ).all()
    return [
        DocumentFact(
            content_id=c.id,
            sha256=c.sha256,
            label=c.label,
            format=c.format,
            customer_count=c.customer_count,
            categories={k: int(v) for k, v in (c.categories or {}).items()},
            first_delivered_at=first,
            last_delivered_at=last,
        )
        for c, first, last in rows
    ]


def _customers_of_deliveries(session: Session, conditions: list[Any]) -> list[str]:
    """Distinct directory ids of the customers named in the contents delivered."""
    return sorted(
        session.scalars(
            select(Customer.external_id)
            .join(ContentCustomer, ContentCustomer.customer_id == Customer.id)
            .join(Delivery, Delivery.content_id == ContentCustomer.content_id)
            .where(*conditions)
            .distinct()
        )
    )


def gather(session: Session, incident: Incident) -> GatheredFacts:
    """Collect the facts :func:`assess` needs for this incident."""
    documents: list[DocumentFact] = []
    customer_ids: set[str] = set()
    protections: Protections | None = None
    scope = "none"
    device = session.get(Device, incident.device_id) if incident.device_id else None
    if device is not None:
        scope = "device"
        conditions: list[Any] = [Delivery.device_id == device.id]
        documents = _documents(session, conditions)
        customer_ids.update(_customers_of_deliveries(session, conditions))
        protections = protections_at_loss(
            session, device, device.lost_reported_at or incident.aware_at
        )
    chosen = incident.scope or {}
    if chosen.get("delivery_ids"):
        scope = "deliveries" if scope == "none" else scope + "+deliveries"
        conditions = [Delivery.id.in_([int(i) for i in chosen["delivery_ids"]])]
        seen = {d.content_id for d in documents}
        documents += [d for d in _documents(session, conditions) if d.content_id not in seen]
        customer_ids.update(_customers_of_deliveries(session, conditions))
    if chosen.get("customer_ids"):
        scope = "customers" if scope == "none" else scope + "+customers"
        customer_ids.update(str(c) for c in chosen["customer_ids"])
    customer_ids -= honeytoken_ids(session, customer_ids)  # planted, not people: never notified
    categories: dict[str, int] = {}
    labels: dict[str, int] = {}
    for doc in documents:
        labels[doc.label] = labels.get(doc.label, 0) + 1
        for name, count in doc.categories.items():
            categories[name] = categories.get(name, 0) + count
    facts = ExposureFacts(
        incident_type=incident.type,
        customer_count=len(customer_ids),
        documents=len(documents),
        categories=dict(sorted(categories.items())),
        labels=dict(sorted(labels.items())),
        protections=protections,
    )
    return GatheredFacts(facts, sorted(customer_ids), documents, scope)


def compute_and_store(
    session: Session, principal: Principal, incident: Incident, *, now: datetime | None = None
) -> ExposureAssessment:
    """Gather, assess and store a new version of the incident's assessment (audited, on
    the timeline). The caller has checked authorisation and that the incident is open."""
    now = now or utcnow()
    gathered = gather(session, incident)
    result = assess(gathered.facts)
    last = session.scalar(
        select(func.max(ExposureAssessment.version)).where(
            ExposureAssessment.incident_id == incident.id
        )
    )
    facts_json: dict[str, Any] = _jsonable(
        {
            "scope": gathered.scope,
            "documents": [asdict(d) for d in gathered.document_facts],
            "categories": gathered.facts.categories,
            "labels": gathered.facts.labels,
            "protections": asdict(gathered.facts.protections)
            if gathered.facts.protections
            else None,
        }
    )
    row = ExposureAssessment(
        incident_id=incident.id,
        version=(last or 0) + 1,
        computed_at=now,
        computed_by_label=principal.label,
        risk=result.risk.value,
        notify_regulator=result.notify_regulator,
        notify_individuals=result.notify_individuals,
        reasons=list(result.reasons),
        facts=facts_json,
        customer_count=gathered.facts.customer_count,
        customer_ids=gathered.customer_ids,
    )
    session.add(row)
    session.flush()
    timeline.add(
        session,
        incident.id,
        TimelineKind.LEDGER,
        f"Exposure assessed (version {row.version}): {_people(row.customer_count)} in "
        f"{gathered.facts.documents} document(s); risk {row.risk}; "
        f"regulator {'must' if row.notify_regulator else 'need not'} be told, customers "
        f"{'must' if row.notify_individuals else 'need not'} be told.",
        actor_label=principal.label,
        data={
            "assessment_id": row.id,
            "version": row.version,
            "risk": row.risk,
            "customers": row.customer_count,
            "documents": gathered.facts.documents,
        },
        at=now,
    )
    record_event(
        session,
        principal,
        IncidentAuditAction.ASSESSMENT_COMPUTED,
        object_type="incident",
        object_id=incident.id,
        details={
            "version": row.version,
            "risk": row.risk,
            "customers": row.customer_count,
            "documents": gathered.facts.documents,
            "scope": gathered.scope,
        },
    )
    return row
