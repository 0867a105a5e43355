"""The incident service: open, edit, move through the workflow, tasks, notes, attachments,
the exposure assessment and the regulator notification, each checked, audited and put
on the timeline in the caller's transaction.

Rules:

- the workflow runs open → contained → assessed → notifying → closed; a step may be
  skipped forward (a false alarm goes from open to closed) but never back;
- a closed incident is not edited (:class:`IncidentClosed`, a 409 problem); reopening is
  an explicit action with a reason, audited and on the timeline;
- the awareness time (the breach clock's start) defaults to the time the incident was
  opened (for a lost phone, the report-lost action) and may be corrected, with a reason;
- a regulator notification recorded after the deadline needs the reason for the delay.

"Report lost" opens a ``lost-device`` incident through :func:`open_for_lost_device`, in
the same transaction; reporting the same phone lost again reuses the open incident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.models import User
from spillguard.core.roles import ROLE_PERMISSIONS, Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.customers.honeytokens import all_honeytoken_ids
from spillguard.customers.models import Customer
from spillguard.devices.models import Device
from spillguard.exposure.models import Delivery, HeldDocument
from spillguard.exposure.store import HeldDocuments, blob_store
from spillguard.incidents import timeline
from spillguard.incidents.assessment import compute_and_store
from spillguard.incidents.clock import BreachClock, clock_of
from spillguard.incidents.errors import (
    AssessmentNotFound,
    AttachmentNotFound,
    IncidentClosed,
    IncidentNotFound,
    InvalidTransition,
    LateReasonRequired,
    TaskNotFound,
)
from spillguard.incidents.events import IncidentAuditAction
from spillguard.incidents.models import (
    ExposureAssessment,
    Incident,
    IncidentAttachment,
    IncidentNote,
    IncidentStatus,
    IncidentTask,
    IncidentType,
    Severity,
    TimelineEntry,
    TimelineKind,
)

WORKFLOW = list(IncidentStatus)
STATUS_TIMESTAMP = {
    IncidentStatus.CONTAINED: "contained_at",
    IncidentStatus.ASSESSED: "assessed_at",
    IncidentStatus.NOTIFYING: "notifying_at",
    IncidentStatus.CLOSED: "closed_at",
}
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_SCOPE_IDS = 1_000_000
NOTE_KEY_PURPOSE = "spillguard/v1/incident-note-key"
_NOTE_AAD = b"spillguard/incidents/note/v1|"
NONCE = 12


def allowed_next(status: IncidentStatus) -> list[IncidentStatus]:
    """The statuses an incident may move to from ``status`` (forward only)."""
    if status is IncidentStatus.CLOSED:
        return []
    return WORKFLOW[WORKFLOW.index(status) + 1 :]


class NoteCipher:
    """Note bodies and attachment names under a key derived from the master key for
    incident notes, bound to their incident and use (AES-256-GCM; the associated data
    names both)."""

    def __init__(self, keys: KeyRing) -> None:
        self._cipher = AESGCM(keys.derive(NOTE_KEY_PURPOSE))

    @staticmethod
    def _aad(incident_id: int, use: str) -> bytes:
        return _NOTE_AAD + f"{use}|{incident_id}".encode()

    def seal(self, incident_id: int, text: str, use: str = "note") -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._cipher.encrypt(nonce, text.encode(), self._aad(incident_id, use))

    def open(self, incident_id: int, sealed: bytes, use: str = "note") -> str:
        try:
            return self._cipher.decrypt(
                sealed[:NONCE], sealed[NONCE:], self._aad(incident_id, use)
            ).decode()
        except (InvalidTag, ValueError):
            return "[cannot be decrypted with this installation's master key]"


@dataclass(frozen=True)
class NoteView:
    id: int
    author_label: str | None
    created_at: datetime
    body: str


def open_for_lost_device(
    session: Session,
    principal: Principal,
    device: Device,
    *,
    reported_at: datetime,
) -> tuple[Incident, bool]:
    """The open ``lost-device`` incident of this phone, opened now if there is none.

    Called by "report lost" (devices.commands) in its transaction, with the device row
    locked, so two racing reports find one incident. Returns (incident, created).
    """
    existing = session.scalar(
        select(Incident)
        .where(
            Incident.device_id == device.id,
            Incident.type == IncidentType.LOST_DEVICE.value,
            Incident.status != IncidentStatus.CLOSED.value,
        )
        .order_by(Incident.id)
        .limit(1)
    )
    if existing is not None:
        timeline.add(
            session,
            existing.id,
            TimelineKind.ACTION,
            f"The phone was reported lost again by {principal.label}; this incident continues.",
            actor_label=principal.label,
            data={"device_id": device.id},
            at=reported_at,
        )
        return existing, False
    incident = Incident(
        type=IncidentType.LOST_DEVICE.value,
        title=f"Lost phone: {device.name}"[:200],
        severity=Severity.HIGH.value,
        status=IncidentStatus.OPEN.value,
        owner_id=None,
        device_id=device.id,
        opened_at=reported_at,
        opened_by_id=principal.user_id,
        opened_by_label=principal.label,
        aware_at=reported_at,
        status_changed_at=reported_at,
        updated_at=reported_at,
    )
    session.add(incident)
    session.flush()
    timeline.add(
        session,
        incident.id,
        TimelineKind.OPENED,
        f"Incident opened: {principal.label} reported the phone '{device.name}' lost. "
        "The breach clock starts now.",
        actor_label=principal.label,
        data={"device_id": device.id, "type": incident.type},
        at=reported_at,
    )
    record_event(
        session,
        principal,
        IncidentAuditAction.OPENED,
        object_type="incident",
        object_id=incident.id,
        details={"type": incident.type, "device_id": device.id, "automatic": True},
    )
    return incident, True


@dataclass(frozen=True)
class ScopeCounts:
    """An insider-leak scope's size as one reader may see it: real customers, and the
    honeytokens in it (``None`` when the reader may not know that)."""

    customers: int
    honeytokens: int | None


@dataclass(frozen=True)
class IncidentFilter:
    status: IncidentStatus | None = None
    open_only: bool = False
    type: IncidentType | None = None
    device_id: int | None = None


class IncidentService:
    """Everything people do with incidents; authorisation first, audit and timeline in
    the same transaction."""

    def __init__(
        self,
        session: Session,
        principal: Principal,
        settings: Settings,
        keys: KeyRing | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self._keyring = keys

    @property
    def keys(self) -> KeyRing:
        if self._keyring is None:  # a caller that only reads lists passes no keys
            raise RuntimeError("IncidentService needs the key ring for this")
        return self._keyring

    def assignable_users(self) -> list[User]:
        """Active users who may own an incident or a task (roles that manage incidents)."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        roles = [r.value for r in Role if Permission.INCIDENTS_MANAGE in ROLE_PERMISSIONS[r]]
        return list(
            self.session.scalars(
                select(User)
                .where(User.disabled.is_(False), User.role.in_(roles))
                .order_by(User.email)
            )
        )

    def users_by_id(self, ids: set[int | None]) -> dict[int, str]:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        return dict(
            self.session.execute(select(User.id, User.email).where(User.id.in_(wanted))).all()
        )

    # --- reading ------------------------------------------------------------------------

    def _get(self, incident_id: int, *, for_update: bool = False) -> Incident:
        query = select(Incident).where(Incident.id == incident_id)
        if for_update:
            query = query.with_for_update()
        incident = self.session.scalar(query)
        if incident is None:
            raise IncidentNotFound(f"No incident with id {incident_id}.")
        return incident

    def get(self, incident_id: int) -> Incident:
        self.principal.require(Permission.INCIDENTS_VIEW)
        return self._get(incident_id)

    def clock(self, incident: Incident, now: datetime | None = None) -> BreachClock:
        return clock_of(incident, self.settings, now)

    def scope_counts(self, incident: Incident) -> ScopeCounts:
        """How many customers the incident's scope names, honeytokens apart: they are
        planted, not people (never counted or notified), and only ``honeytokens:manage``
        may learn how many of them are in a scope (``None`` for everyone else)."""
        ids = list((incident.scope or {}).get("customer_ids", []))
        planted = len(all_honeytoken_ids(self.session).intersection(ids)) if ids else 0
        shown = planted if self.principal.can(Permission.HONEYTOKENS_MANAGE) else None
        return ScopeCounts(customers=len(ids) - planted, honeytokens=shown)

    def listing(
        self, flt: IncidentFilter, *, limit: int, offset: int
    ) -> tuple[list[Incident], int]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        base = select(Incident)
        if flt.status is not None:
            base = base.where(Incident.status == flt.status.value)
        if flt.open_only:
            base = base.where(Incident.status != IncidentStatus.CLOSED.value)
        if flt.type is not None:
            base = base.where(Incident.type == flt.type.value)
        if flt.device_id is not None:
            base = base.where(Incident.device_id == flt.device_id)
        total = self.session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = self.session.scalars(
            base.order_by(Incident.aware_at, Incident.id).limit(limit).offset(offset)
        )
        return list(rows), total

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        return timeline.entries(self.session, incident_id)

    def tasks(self, incident_id: int) -> list[IncidentTask]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        return list(
            self.session.scalars(
                select(IncidentTask)
                .where(IncidentTask.incident_id == incident_id)
                .order_by(IncidentTask.id)
            )
        )

    def notes(self, incident_id: int) -> list[NoteView]:
        """The notes, decrypted (reading them is audited: a note may name a customer)."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        rows = list(
            self.session.scalars(
                select(IncidentNote)
                .where(IncidentNote.incident_id == incident_id)
                .order_by(IncidentNote.id)
            )
        )
        if rows:
            record_event(
                self.session,
                self.principal,
                IncidentAuditAction.NOTES_READ,
                object_type="incident",
                object_id=incident_id,
                details={"notes": len(rows)},
            )
        cipher = NoteCipher(self.keys)
        return [
            NoteView(n.id, n.author_label, n.created_at, cipher.open(incident_id, n.body_sealed))
            for n in rows
        ]

    def attachments(self, incident_id: int) -> list[tuple[IncidentAttachment, str]]:
        """Attachments with their (decrypted) file names."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        rows = list(
            self.session.scalars(
                select(IncidentAttachment)
                .where(IncidentAttachment.incident_id == incident_id)
                .order_by(IncidentAttachment.id)
            )
        )
        cipher = NoteCipher(self.keys)
        listed = [(row, cipher.open(incident_id, row.name_sealed, "name")) for row in rows]
        return listed

    def read_attachment(self, incident_id: int, attachment_id: int) -> tuple[str, str, bytes]:
        """(file name, media type, bytes) of an attachment; the read is audited."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        row = self.session.get(IncidentAttachment, attachment_id)
        if row is None or row.incident_id != incident_id:
            raise AttachmentNotFound(f"Incident {incident_id} has no attachment {attachment_id}.")
        document = self.session.get(HeldDocument, row.document_id)
        if document is None:
            raise AttachmentNotFound("The attachment's document is gone.")
        store = HeldDocuments(self.session, self.keys, blob_store(self.settings.exposure_store_dir))
        name, data = store.read(document)
        record_event(
            self.session,
            self.principal,
            IncidentAuditAction.ATTACHMENT_READ,
            object_type="incident",
            object_id=incident_id,
            details={"attachment_id": attachment_id, "size": len(data)},
        )
        return name, row.media_type, data

    def assessments(self, incident_id: int) -> list[ExposureAssessment]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        return list(
            self.session.scalars(
                select(ExposureAssessment)
                .where(ExposureAssessment.incident_id == incident_id)
                .order_by(ExposureAssessment.version.desc())
            )
        )

    def latest_assessment(self, incident_id: int) -> ExposureAssessment | None:
        listed = self.assessments(incident_id)
        return listed[0] if listed else None

    def assessment(self, incident_id: int, version: int) -> ExposureAssessment:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._get(incident_id)
        row = self.session.scalar(
            select(ExposureAssessment).where(
                ExposureAssessment.incident_id == incident_id,
                ExposureAssessment.version == version,
            )
        )
        if row is None:
            raise AssessmentNotFound(f"Incident {incident_id} has no assessment {version}.")
        return row

    def affected_customers(
        self, incident_id: int, version: int, *, limit: int, offset: int
    ) -> tuple[list[str], int]:
        """A page of the directory ids an assessment found (audited: who listed them)."""
        self.principal.require(Permission.CUSTOMERS_VIEW)
        row = self.assessment(incident_id, version)
        ids = row.customer_ids[offset : offset + limit]
        record_event(
            self.session,
            self.principal,
            IncidentAuditAction.CUSTOMERS_LISTED,
            object_type="incident",
            object_id=incident_id,
            details={"version": version, "listed": len(ids), "offset": offset},
        )
        return ids, len(row.customer_ids)

    def affected_customer_names(
        self, incident_id: int, version: int, *, purpose: str, limit: int, offset: int
    ) -> list[tuple[str, str | None]]:
        """(id, name) of a page of affected customers, for the dpo only, for a stated
        purpose (customers.ContactService audits the reveal)."""
        from spillguard.customers.services import ContactService

        self.principal.require(Permission.CUSTOMERS_CONTACT_REVEAL)
        if self.principal.role is not Role.DPO:
            raise PermissionDenied("Only the dpo role may see customers' names.")
        ids, _ = self.affected_customers(incident_id, version, limit=limit, offset=offset)
        if not ids:
            return []
        revealed = {
            r.customer_id: r.name
            for r in ContactService(
                self.session, self.principal, self.keys
            ).reveal_for_notification(ids, purpose)
        }
        record_event(
            self.session,
            self.principal,
            IncidentAuditAction.CUSTOMER_NAMES_REVEALED,
            object_type="incident",
            object_id=incident_id,
            details={"version": version, "revealed": len(revealed), "purpose": purpose[:200]},
        )
        return [(i, revealed.get(i)) for i in ids]

    # --- changing -----------------------------------------------------------------------

    def _editable(self, incident_id: int) -> Incident:
        """The incident, locked for the change; refused (409) when closed."""
        self.principal.require(Permission.INCIDENTS_MANAGE)
        incident = self._get(incident_id, for_update=True)
        if incident.status == IncidentStatus.CLOSED.value:
            raise IncidentClosed(
                f"Incident {incident_id} is closed; reopen it (an audited action) to change it."
            )
        return incident

    def _log(
        self,
        incident: Incident,
        action: IncidentAuditAction,
        kind: TimelineKind,
        summary: str,
        details: dict[str, Any],
        at: datetime | None = None,
    ) -> None:
        now = at or utcnow()
        incident.updated_at = now
        timeline.add(
            self.session,
            incident.id,
            kind,
            summary,
            actor_label=self.principal.label,
            data=details,
            at=now,
        )
        record_event(
            self.session,
            self.principal,
            action,
            object_type="incident",
            object_id=incident.id,
            details=details,
        )

    def _check_owner(self, owner_id: int | None) -> User | None:
        if owner_id is None:
            return None
        user = self.session.get(User, owner_id)
        if user is None or user.disabled:
            raise InvalidInput(f"No active user with id {owner_id}.", field="owner_id")
        return user

    def create(
        self,
        *,
        type: IncidentType,
        title: str,
        severity: Severity,
        description: str | None = None,
        owner_id: int | None = None,
        device_id: int | None = None,
        aware_at: datetime | None = None,
    ) -> Incident:
        self.principal.require(Permission.INCIDENTS_MANAGE)
        now = utcnow()
        self._check_owner(owner_id)
        if device_id is not None and self.session.get(Device, device_id) is None:
            raise InvalidInput(f"No device with id {device_id}.", field="device_id")
        if aware_at is not None and aware_at > now:
            raise InvalidInput("The awareness time cannot be in the future.", field="aware_at")
        incident = Incident(
            type=type.value,
            title=title,
            description=description,
            severity=severity.value,
            status=IncidentStatus.OPEN.value,
            owner_id=owner_id,
            device_id=device_id,
            opened_at=now,
            opened_by_id=self.principal.user_id,
            opened_by_label=self.principal.label,
            aware_at=aware_at or now,
            status_changed_at=now,
            updated_at=now,
        )
        self.session.add(incident)
        self.session.flush()
        self._log(
            incident,
            IncidentAuditAction.OPENED,
            TimelineKind.OPENED,
            f"Incident opened by {self.principal.label}: {type.value}, severity {severity.value}.",
            {"type": type.value, "severity": severity.value, "device_id": device_id},
            at=now,
        )
        return incident

    def update(
        self,
        incident_id: int,
        *,
        title: str | None = None,
        description: str | None = None,
        severity: Severity | None = None,
        owner_id: int | None = None,
        clear_owner: bool = False,
    ) -> Incident:
        incident = self._editable(incident_id)
        changes: dict[str, Any] = {}
        if title is not None and title != incident.title:
            incident.title = title
            changes["title"] = True
        if description is not None and description != incident.description:
            incident.description = description
            changes["description"] = True
        if severity is not None and severity.value != incident.severity:
            changes["severity"] = {"from": incident.severity, "to": severity.value}
            incident.severity = severity.value
        if clear_owner and incident.owner_id is not None:
            changes["owner"] = {"from": incident.owner_id, "to": None}
            incident.owner_id = None
        elif owner_id is not None and owner_id != incident.owner_id:
            user = self._check_owner(owner_id)
            changes["owner"] = {"from": incident.owner_id, "to": owner_id}
            changes["owner_label"] = user.email if user else None
            incident.owner_id = owner_id
        if not changes:
            return incident
        words = []
        if "severity" in changes:
            words.append(f"severity {changes['severity']['from']} → {severity}")
        if "owner" in changes:
            words.append(f"owner {changes.get('owner_label') or 'none'}")
        if "title" in changes:
            words.append("title")
        if "description" in changes:
            words.append("description")
        self._log(
            incident,
            IncidentAuditAction.UPDATED,
            TimelineKind.ACTION,
            f"{self.principal.label} changed " + ", ".join(words) + ".",
            changes,
        )
        return incident

    def change_status(self, incident_id: int, to: IncidentStatus, reason: str = "") -> Incident:
        incident = self._editable(incident_id)
        current = IncidentStatus(incident.status)
        if to not in allowed_next(current):
            raise InvalidTransition(
                f"An incident that is {current.value} cannot become {to.value}; "
                f"it may become: {', '.join(s.value for s in allowed_next(current))}.",
                incident_status=current.value,
            )
        now = utcnow()
        incident.status = to.value
        incident.status_changed_at = now
        if to in STATUS_TIMESTAMP:
            setattr(incident, STATUS_TIMESTAMP[to], now)
        text = f"Status {current.value} → {to.value} by {self.principal.label}."
        if reason:
            text += f" Reason: {reason}"
        self._log(
            incident,
            IncidentAuditAction.STATUS_CHANGED,
            TimelineKind.STATUS,
            text,
            {"from": current.value, "to": to.value, "reason": reason},
            at=now,
        )
        return incident

    def reopen(self, incident_id: int, reason: str) -> Incident:
        """Reopen a closed incident (explicit, with a reason, audited)."""
        self.principal.require(Permission.INCIDENTS_MANAGE)
        incident = self._get(incident_id, for_update=True)
        if incident.status != IncidentStatus.CLOSED.value:
            raise InvalidTransition(
                f"Incident {incident_id} is {incident.status}, not closed.",
                incident_status=incident.status,
            )
        if not reason.strip():
            raise InvalidInput("Say why the incident is reopened.", field="reason")
        now = utcnow()
        incident.status = IncidentStatus.OPEN.value
        incident.status_changed_at = now
        incident.closed_at = None
        self._log(
            incident,
            IncidentAuditAction.REOPENED,
            TimelineKind.STATUS,
            f"Reopened by {self.principal.label}. Reason: {reason.strip()}",
            {"from": IncidentStatus.CLOSED.value, "to": incident.status, "reason": reason},
            at=now,
        )
        return incident

    def set_awareness(self, incident_id: int, aware_at: datetime, reason: str) -> Incident:
        """Correct when the organisation became aware (moves the breach clock)."""
        incident = self._editable(incident_id)
        if aware_at > utcnow():
            raise InvalidInput("The awareness time cannot be in the future.", field="aware_at")
        if not reason.strip():
            raise InvalidInput("Say why the awareness time changes.", field="reason")
        before = incident.aware_at
        incident.aware_at = aware_at
        clock = self.clock(incident)
        self._log(
            incident,
            IncidentAuditAction.AWARENESS_CHANGED,
            TimelineKind.ACTION,
            f"Awareness time changed by {self.principal.label} from {before:%Y-%m-%d %H:%M} "
            f"to {aware_at:%Y-%m-%d %H:%M} UTC; the regulator deadline is now "
            f"{clock.deadline:%Y-%m-%d %H:%M} UTC. Reason: {reason.strip()}",
            {
                "from": before.isoformat(),
                "to": aware_at.isoformat(),
                "deadline": clock.deadline.isoformat(),
                "reason": reason.strip(),
            },
        )
        return incident

    def set_scope(
        self,
        incident_id: int,
        *,
        customer_ids: list[str] | None = None,
        delivery_ids: list[int] | None = None,
    ) -> Incident:
        """The scope of an incident without a device (an insider leak): directory ids of
        customers and/or ledger entries. Unknown ids are refused."""
        incident = self._editable(incident_id)
        scope: dict[str, Any] = {}
        planted = 0
        if customer_ids:
            wanted = sorted({c.strip() for c in customer_ids if c.strip()})
            if len(wanted) > MAX_SCOPE_IDS:
                raise InvalidInput(f"At most {MAX_SCOPE_IDS} customers.", field="customer_ids")
            found: set[str] = set()
            for start in range(0, len(wanted), 5000):
                chunk = wanted[start : start + 5000]
                found.update(
                    self.session.scalars(
                        select(Customer.external_id).where(Customer.external_id.in_(chunk))
                    )
                )
            missing = len(wanted) - len(found)
            if missing:
                raise InvalidInput(
                    f"{missing} of the customer ids are not in the directory.",
                    field="customer_ids",
                )
            scope["customer_ids"] = wanted
            planted = len(all_honeytoken_ids(self.session).intersection(wanted))
        if delivery_ids:
            wanted_d = sorted(set(delivery_ids))
            known = set(self.session.scalars(select(Delivery.id).where(Delivery.id.in_(wanted_d))))
            if len(known) != len(wanted_d):
                raise InvalidInput(
                    f"{len(wanted_d) - len(known)} of the ledger entries do not exist.",
                    field="delivery_ids",
                )
            scope["delivery_ids"] = wanted_d
        incident.scope = scope or None
        # Everyone who reads the incident reads this entry: honeytokens are not counted
        # as customers and not numbered (how many is for honeytokens:manage only).
        people = len(scope.get("customer_ids", [])) - planted
        self._log(
            incident,
            IncidentAuditAction.SCOPE_CHANGED,
            TimelineKind.ACTION,
            f"Scope set by {self.principal.label}: {people} customer(s)"
            + (" and honeytoken customers (planted, never notified)" if planted else "")
            + f", {len(scope.get('delivery_ids', []))} ledger entr(ies).",
            {
                "customers": people,
                "honeytokens": planted > 0,
                "deliveries": len(scope.get("delivery_ids", [])),
            },
        )
        return incident

    def record_regulator_notification(
        self, incident_id: int, notified_at: datetime | None = None, late_reason: str = ""
    ) -> Incident:
        """Record that the regulator was notified; after the deadline only with the
        reasons for the delay (GDPR Art 33(1))."""
        incident = self._editable(incident_id)
        now = utcnow()
        at = notified_at or now
        if at > now:
            raise InvalidInput(
                "The notification time cannot be in the future.", field="notified_at"
            )
        clock = self.clock(incident, now)
        late = at > clock.deadline
        if late and not late_reason.strip():
            raise LateReasonRequired(
                f"The deadline was {clock.deadline:%Y-%m-%d %H:%M} UTC; a later notification "
                "must give the reasons for the delay (late_reason).",
                field="late_reason",
                deadline=clock.deadline.isoformat(),
            )
        incident.regulator_notified_at = at
        incident.late_reason = late_reason.strip() or None
        text = f"Regulator notified at {at:%Y-%m-%d %H:%M} UTC (recorded by {self.principal.label})"
        text += f", late. Reason: {late_reason.strip()}" if late else ", within the deadline."
        self._log(
            incident,
            IncidentAuditAction.REGULATOR_NOTIFIED,
            TimelineKind.REGULATOR,
            text,
            {"notified_at": at.isoformat(), "late": late, "deadline": clock.deadline.isoformat()},
        )
        return incident

    def add_task(
        self,
        incident_id: int,
        title: str,
        *,
        assignee_id: int | None = None,
        due_at: datetime | None = None,
    ) -> IncidentTask:
        incident = self._editable(incident_id)
        assignee = self._check_owner(assignee_id)
        task = IncidentTask(
            incident_id=incident.id,
            title=title,
            assignee_id=assignee_id,
            due_at=due_at,
            created_by_label=self.principal.label,
        )
        self.session.add(task)
        self.session.flush()
        due = f", due {due_at:%Y-%m-%d %H:%M} UTC" if due_at else ""
        who = f" for {assignee.email}" if assignee else ""
        self._log(
            incident,
            IncidentAuditAction.TASK_ADDED,
            TimelineKind.TASK,
            f"Task added by {self.principal.label}{who}{due}: {title}",
            {"task_id": task.id, "assignee_id": assignee_id},
        )
        return task

    def complete_task(self, incident_id: int, task_id: int) -> IncidentTask:
        incident = self._editable(incident_id)
        task = self.session.get(IncidentTask, task_id)
        if task is None or task.incident_id != incident.id:
            raise TaskNotFound(f"Incident {incident_id} has no task {task_id}.")
        if task.done_at is not None:
            return task
        task.done_at = utcnow()
        task.done_by_label = self.principal.label
        self._log(
            incident,
            IncidentAuditAction.TASK_DONE,
            TimelineKind.TASK,
            f"Task done ({self.principal.label}): {task.title}",
            {"task_id": task.id},
        )
        return task

    def add_note(self, incident_id: int, body: str) -> IncidentNote:
        incident = self._editable(incident_id)
        note = IncidentNote(
            incident_id=incident.id,
            body_sealed=NoteCipher(self.keys).seal(incident.id, body),
            author_id=self.principal.user_id,
            author_label=self.principal.label,
        )
        self.session.add(note)
        self.session.flush()
        self._log(
            incident,
            IncidentAuditAction.NOTE_ADDED,
            TimelineKind.NOTE,
            f"Note added by {self.principal.label}.",
            {"note_id": note.id, "length": len(body)},
        )
        return note

    def attach(
        self, incident_id: int, *, name: str, media_type: str, data: bytes
    ) -> IncidentAttachment:
        """Keep a file with the incident, encrypted (the exposure module's document store)."""
        incident = self._editable(incident_id)
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise InvalidInput(
                f"An attachment may be at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB.",
                field="file",
            )
        store = HeldDocuments(self.session, self.keys, blob_store(self.settings.exposure_store_dir))
        document = store.hold(
            data,
            name=name or "attachment",
            media_type=media_type or "application/octet-stream",
            purpose="incident",
            content_id=None,
        )
        row = IncidentAttachment(
            incident_id=incident.id,
            document_id=document.id,
            media_type=document.media_type,
            size=len(data),
            name_sealed=NoteCipher(self.keys).seal(incident.id, name or "attachment", "name"),
            uploaded_by_label=self.principal.label,
        )
        self.session.add(row)
        self.session.flush()
        self._log(
            incident,
            IncidentAuditAction.ATTACHMENT_ADDED,
            TimelineKind.ATTACHMENT,
            f"Attachment added by {self.principal.label} ({len(data):,} bytes).",
            {"attachment_id": row.id, "size": len(data)},
        )
        return row

    def assess(self, incident_id: int) -> ExposureAssessment:
        """Compute a new version of the exposure assessment (re-computable at any time
        while the incident is open)."""
        incident = self._editable(incident_id)
        row = compute_and_store(self.session, self.principal, incident)
        incident.updated_at = row.computed_at
        return row
