"""Honeytoken triggers: any sign of a honeytoken customer is a critical alert.

Honeytoken customers (:mod:`spillguard.customers.honeytokens`) exist only in the customer
directory and the CRM; no real work touches them. Three kinds of sighting raise an alert
(detector ``honeytoken``, severity ``critical``) through
:func:`spillguard.audit.alerts.raise_alert`, in the caller's transaction:

1. :func:`check_access_events` — an ingested access event (CRM, billing, call centre)
   touched a honeytoken's customer id. The alert names the actor; one alert per actor and
   day (of the event's source time), its evidence growing with each event.
2. :func:`check_matched_customers` — exact data match found a honeytoken in inspected
   content (a record match, or its unique e-mail address or phone number alone: a
   ``primary_only`` hit is enough, because those values exist nowhere else). One alert
   per content (SHA-256); the channel that saw it first (``inspection``, ``mail``,
   ``exposure-ledger``) and the person or sender are named, later sightings are added.
3. :func:`check_mail` — mail addressed to a honeytoken's e-mail address reached the mail
   filter. Recipients are compared by keyed hash (``honeytoken_customers.email_digest``),
   never read back. The alert names the sender (the outside party, kept as the actor) and
   the sender's domain; one alert per sender and day.

Evidence names the honeytoken by its directory id and says where and when; it never holds
a honeytoken's values (name, address, e-mail, phone). Retired honeytokens do not alert.

Which ids are honeytokens is itself a secret (an insider who knew would leave them alone):
only ``honeytokens:manage`` may see it. :func:`redaction_for` gives everyone else a
:class:`HoneytokenRedaction` that shows an alert whole (detector, actor or channel,
severity, time, explanation) but puts the neutral :data:`HONEYTOKEN_MARKER` where a
honeytoken's id was — once, after the real ids, so neither its position in a sorted list
nor a count tells which id it was.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.audit.models import AccessEvent, AccessEventCustomer, Alert
from spillguard.core.db import utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal
from spillguard.customers.edm import FieldHasher
from spillguard.customers.honeytokens import all_honeytoken_ids, email_digest, honeytoken_ids
from spillguard.customers.models import MAX_EXTERNAL_ID, Customer, HoneytokenCustomer

if TYPE_CHECKING:
    from spillguard.inspection.classify import InspectionReport

__all__ = [
    "DETECTOR",
    "HONEYTOKEN_MARKER",
    "HoneytokenRedaction",
    "check_access_events",
    "check_mail",
    "check_matched_customers",
    "redact_evidence",
    "redact_refs",
    "redaction_for",
    "redaction_of_all",
]

DETECTOR = "honeytoken"
SEVERITY = "critical"
SCORE = 100.0
CHUNK = 500
MAX_LISTED = 100  # honeytoken ids kept in one alert's evidence (the count is always given)
MAX_SIGHTINGS = 20  # sightings / events / messages kept in one alert's evidence


def _any_honeytokens(session: Session) -> bool:
    found = session.scalar(
        select(HoneytokenCustomer.customer_id).where(HoneytokenCustomer.retired_at.is_(None))
    )
    return found is not None


def _active_honeytokens(session: Session, external_ids: Iterable[str]) -> set[str]:
    wanted = sorted({str(i) for i in external_ids if i})
    found: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        found.update(
            session.scalars(
                select(Customer.external_id)
                .join(HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id)
                .where(
                    Customer.external_id.in_(wanted[start : start + CHUNK]),
                    HoneytokenCustomer.retired_at.is_(None),
                )
            )
        )
    return found


def _raise(
    session: Session,
    *,
    scope: str,
    actor: str | None,
    key_actor: str | None,
    channel: str,
    title: str,
    honeytokens: Iterable[str],
    evidence: dict[str, Any],
    history: tuple[str, dict[str, Any]],
    event_ids: Iterable[int] = (),
    now: datetime,
) -> Alert:
    """Raise or grow the alert of ``scope``: the honeytoken ids and the history list
    (``history = (name, entry)``) are merged with what the alert already holds."""
    from spillguard.audit.alerts import dedup_key_for, raise_alert

    key = dedup_key_for(DETECTOR, key_actor, scope)
    existing = session.scalar(select(Alert.evidence).where(Alert.dedup_key == key)) or {}
    listed = sorted(set(existing.get("honeytokens", [])) | set(honeytokens))
    name, entry = history
    entries = list(existing.get(name, []))
    total = int(existing.get(f"{name}_total", 0))
    if entry not in entries:  # the same message seen again by another recipient group
        entries.append(entry)
        total += 1
    merged = {
        **evidence,
        "honeytokens": listed[:MAX_LISTED],
        "honeytoken_count": len(listed),
        name: entries[-MAX_SIGHTINGS:],
        f"{name}_total": total,
    }
    return raise_alert(
        session,
        detector=DETECTOR,
        dedup_key=key,
        severity=SEVERITY,
        score=SCORE,
        title=title,
        evidence=merged,
        actor=actor,
        channel=channel,
        event_ids=event_ids,
        now=now,
    )


def _when(value: datetime) -> str:
    return value.isoformat()


# --- 1. access events ----------------------------------------------------------------------


def check_access_events(
    session: Session, events: Sequence[AccessEvent], now: datetime | None = None
) -> list[Alert]:
    """Alert on ingested access events that touched a honeytoken customer id.

    Called by the streaming detectors (``audit.detect.on_ingested``) in the ingesting
    transaction; the events' customer ids are already in ``access_event_customers``.
    One query when no honeytoken exists; one per 500 events otherwise.
    """
    if not events or not _any_honeytokens(session):
        return []
    at = now or utcnow()
    by_id = {e.id: e for e in events}
    touched: dict[int, set[str]] = {}
    ids = sorted(by_id)
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(AccessEventCustomer.event_id, AccessEventCustomer.customer_ref)
            .join(Customer, Customer.external_id == AccessEventCustomer.customer_ref)
            .join(HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id)
            .where(
                AccessEventCustomer.event_id.in_(ids[start : start + CHUNK]),
                HoneytokenCustomer.retired_at.is_(None),
            )
        )
        for event_id, ref in rows:
            touched.setdefault(event_id, set()).add(ref)
    groups: dict[tuple[str, str], list[int]] = {}
    for event_id in sorted(touched):
        event = by_id[event_id]
        groups.setdefault((event.actor, event.occurred_at.date().isoformat()), []).append(event_id)
    alerts = []
    for (actor, day), event_ids in groups.items():
        for event_id in event_ids:
            event = by_id[event_id]
            alert = _raise(
                session,
                scope=f"access:{day}",
                actor=actor,
                key_actor=actor,
                channel="access-log",
                title=f"{actor} opened honeytoken customer records in {event.system}",
                honeytokens=sorted(touched[event_id]),
                evidence={
                    "trigger": "access-event",
                    "day": day,
                    "why": "honeytoken customers exist only to be left alone: no work "
                    "needs to open, search, export or print them",
                },
                history=(
                    "events",
                    {
                        "event_id": event.id,
                        "source_event_id": event.source_event_id,
                        "system": event.system,
                        "action": event.action,
                        "record_type": event.record_type,
                        "time": _when(event.occurred_at),
                        "received_at": _when(event.received_at or at),
                        "source_address": event.source_address,
                        "records": event.records,
                        "honeytokens": sorted(touched[event_id]),
                    },
                ),
                event_ids=[event.id],
                now=at,
            )
        alerts.append(alert)
    return alerts


# --- 2. values in inspected content -------------------------------------------------------


def check_matched_customers(
    session: Session,
    customer_ids: Iterable[str],
    channel: str,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    *,
    primary_only: Iterable[str] = (),
) -> Alert | None:
    """Alert when exact data match found honeytoken customers in inspected content.

    ``customer_ids`` are the record matches (primary + supporting field), ``primary_only``
    the customers whose e-mail address or phone number alone was found: for a honeytoken
    that is enough, its values being unique to it. ``context`` says where: the content's
    ``content_sha256`` (one alert per content), ``actor`` (who submitted it) or
    ``sender`` and ``message_ref`` (mail). Nothing is queried when nothing matched.
    """
    records = {str(c) for c in customer_ids}
    partial = {str(c) for c in primary_only} - records
    if not records and not partial:
        return None
    found = _active_honeytokens(session, records | partial)
    if not found:
        return None
    at = now or utcnow()
    ctx = dict(context or {})
    sha256 = ctx.get("content_sha256")
    actor = ctx.get("actor") or ctx.get("sender") or None
    scope = f"content:{sha256}" if sha256 else f"content:{channel}:{at.date().isoformat()}"
    matches = {ref: ("record" if ref in records else "primary-only") for ref in sorted(found)}
    sighting: dict[str, Any] = {"channel": channel, "at": _when(at)}
    for name in ("actor", "sender", "sender_domain", "message_ref", "system"):
        if ctx.get(name):
            sighting[name] = str(ctx[name])[:320]
    where = f" by {actor}" if actor else ""
    return _raise(
        session,
        scope=scope,
        actor=str(actor)[:320] if actor else None,
        key_actor=None,
        channel=channel[:32],
        title=f"Honeytoken customer values found in content ({channel}{where})",
        honeytokens=found,
        evidence={
            "trigger": "content",
            "content_sha256": sha256,
            "matches": matches,
            "why": "values of a honeytoken customer exist only in the directory and the "
            "CRM: content holding them was copied from there",
        },
        history=("sightings", sighting),
        now=at,
    )


# --- 3. inbound mail ------------------------------------------------------------------------


def check_mail(
    session: Session,
    keys: KeyRing,
    *,
    sender: str,
    recipients: Iterable[str],
    reports: Iterable[InspectionReport] = (),
    message_ref: str | None = None,
    now: datetime | None = None,
) -> list[Alert]:
    """What the mail filter calls once per message: mail to a honeytoken's address
    (compared by keyed hash) and honeytoken values in the message's parts.

    ``sender`` is the envelope sender: the outside party, named as the alert's actor (it
    is not a customer value; an empty sender is a bounce and shown as ``<>``).
    """
    at = now or utcnow()
    alerts: list[Alert] = []
    if not _any_honeytokens(session):
        return alerts
    who = sender.strip() or "<>"
    domain = who.rpartition("@")[2].lower() if "@" in who else None
    for report in reports:
        alert = check_matched_customers(
            session,
            report.customer_ids,
            "mail",
            {
                "content_sha256": report.sha256,
                "sender": who,
                "sender_domain": domain,
                "message_ref": message_ref,
            },
            at,
            primary_only=report.primary_only,
        )
        if alert is not None:
            alerts.append(alert)
    hasher = FieldHasher(keys)
    digests = {d for d in (email_digest(hasher, r) for r in recipients) if d is not None}
    if not digests:
        return alerts
    addressed = sorted(
        session.scalars(
            select(Customer.external_id)
            .join(HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id)
            .where(
                HoneytokenCustomer.email_digest.in_(sorted(digests)),
                HoneytokenCustomer.retired_at.is_(None),
            )
        )
    )
    if not addressed:
        return alerts
    alerts.append(
        _raise(
            session,
            scope=f"mail:{at.date().isoformat()}",
            actor=who[:320],
            key_actor=who,
            channel="mail",
            title=f"Mail from {domain or who} to honeytoken customer addresses",
            honeytokens=addressed,
            evidence={
                "trigger": "mail-to-address",
                "sender": who,
                "sender_domain": domain,
                "why": "a honeytoken's e-mail address exists only in the directory and the "
                "CRM: whoever mails it got it from there",
            },
            history=(
                "messages",
                {"message_ref": message_ref, "at": _when(at), "honeytokens": addressed},
            ),
            now=at,
        )
    )
    return alerts


# --- who may see which ids are honeytokens ------------------------------------------------

HONEYTOKEN_MARKER = "honeytoken customer"
"""What a principal without ``honeytokens:manage`` sees instead of a honeytoken's id."""
HIDDEN_COUNT_KEYS = frozenset({"honeytoken_count"})
"""Evidence keys left out for them: the number of honeytokens an alert touched."""


def redact_refs(refs: Sequence[str], hidden: Collection[str]) -> list[str]:
    """Customer ids with the ``hidden`` ones taken out and, if there were any, one
    :data:`HONEYTOKEN_MARKER` after the rest: no position or multiplicity left to tell
    which id (or how many) it stood for. Pure."""
    kept = [r for r in refs if r not in hidden]
    if len(kept) < len(refs):
        kept.append(HONEYTOKEN_MARKER)
    return kept


def _redact(value: Any, hidden: Collection[str]) -> Any:
    if isinstance(value, str):
        return HONEYTOKEN_MARKER if value in hidden else value
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            return redact_refs(value, hidden)
        return [_redact(v, hidden) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in HIDDEN_COUNT_KEYS:
                continue
            shown = HONEYTOKEN_MARKER if key in hidden else key
            if shown not in out:  # several honeytokens collapse into one marker key
                out[shown] = _redact(item, hidden)
        return out
    return value


def redact_evidence(evidence: Mapping[str, Any], hidden: Collection[str]) -> dict[str, Any]:
    """An alert's evidence as a principal who may not know the honeytokens sees it: every
    ``hidden`` id (in a list, as a value or as a key, at any depth) becomes the marker,
    lists keep one marker after their real ids, and the honeytoken count is left out.
    Everything else (the explanation, times, actor, system, figures) is unchanged. Pure."""
    return dict(_redact(dict(evidence), hidden))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)


@dataclass(frozen=True)
class HoneytokenRedaction:
    """What one principal may see of honeytoken identities in alerts and evidence.

    ``restricted`` is False for ``honeytokens:manage`` (everything shown as stored);
    otherwise ``hidden`` holds the honeytoken ids (retired ones too) among what is about
    to be shown."""

    restricted: bool
    hidden: frozenset[str] = frozenset()

    def evidence(self, evidence: Mapping[str, Any] | None) -> dict[str, Any]:
        """The evidence to show (a copy; the stored alert is not touched)."""
        if not self.restricted:
            return dict(evidence or {})
        return redact_evidence(evidence or {}, self.hidden)

    def refs(self, refs: Sequence[str]) -> list[str]:
        """Customer ids to show."""
        return redact_refs(refs, self.hidden) if self.restricted else list(refs)

    def value(self, value: str | None) -> str | None:
        """One id to show (an audit event's ``object_id``): the marker if hidden."""
        if self.restricted and value is not None and value in self.hidden:
            return HONEYTOKEN_MARKER
        return value

    def hides(self, value: str | None) -> bool:
        """Whether ``value`` is a honeytoken id this principal may not learn about (a
        filter by it must answer as for an id nobody touched)."""
        return self.restricted and value is not None and value in self.hidden


def redaction_for(
    session: Session,
    principal: Principal,
    *,
    evidence: Iterable[Mapping[str, Any] | None] = (),
    refs: Iterable[str] = (),
) -> HoneytokenRedaction:
    """The redaction for ``principal`` over what is about to be shown: alerts' evidence
    and customer ids. One query (per 500 candidate strings) for a restricted principal,
    none for a honeytoken manager."""
    if principal.can(Permission.HONEYTOKENS_MANAGE):
        return HoneytokenRedaction(restricted=False)
    candidates = {s for e in evidence for s in _strings(dict(e or {}))} | set(refs)
    candidates = {s for s in candidates if 0 < len(s) <= MAX_EXTERNAL_ID}
    found = honeytoken_ids(session, candidates) if candidates else set()
    return HoneytokenRedaction(restricted=True, hidden=frozenset(found))


def redaction_of_all(session: Session, principal: Principal) -> HoneytokenRedaction:
    """The redaction for ``principal`` over anything at all (a streamed export whose rows
    are not known in advance): every honeytoken id, retired ones included, is hidden from
    a principal without ``honeytokens:manage``. One query; honeytokens number in the
    hundreds or thousands, so the set is small whatever the size of the export."""
    if principal.can(Permission.HONEYTOKENS_MANAGE):
        return HoneytokenRedaction(restricted=False)
    return HoneytokenRedaction(restricted=True, hidden=all_honeytoken_ids(session))
