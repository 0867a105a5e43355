"""The mail quarantine: messages the mail filter held back, released or deleted by the
``security`` or ``dpo`` role (never another role, not even ``admin``: a held message is
customer data on its way out).

Releasing hands the message, as it was received, to the next hop for its original
recipients and records where it went in the ledger; deleting erases the stored message
(crypto-erasure, :meth:`~spillguard.exposure.store.HeldDocuments.erase`). Both are
audited (``exposure:quarantine:released`` / ``…:deleted``) with ids, counts and labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.exposure.access import user_by_email, user_devices
from spillguard.exposure.ledger import (
    Destination,
    InvalidDestination,
    NewDelivery,
    normalise_recipient,
)
from spillguard.exposure.mail_policy import (
    SOURCE_SYSTEM,
    QuarantineAuditAction,
    delivery_source_id,
    message_key,
    verdict_headers,
    with_headers,
)
from spillguard.exposure.mailfilter import Relay, RelayError, parse_mail
from spillguard.exposure.models import (
    Channel,
    HeldDocument,
    InspectedContent,
    QuarantinedMessage,
    QuarantineStatus,
)
from spillguard.exposure.services import record_deliveries
from spillguard.exposure.store import BlobStore, HeldDocuments
from spillguard.inspection.classify import parse_label

MANAGERS = frozenset({Role.SECURITY, Role.DPO})
MAX_NOTE = 500

__all__ = [
    "MANAGERS",
    "NextHopUnavailable",
    "QuarantineAuditAction",
    "QuarantineDecided",
    "QuarantineNotFound",
    "QuarantineService",
    "ReleaseRefused",
    "Released",
]


class QuarantineNotFound(NotFound):
    slug = "quarantine-not-found"
    title = "Quarantined message not found"


class QuarantineDecided(Conflict):
    slug = "quarantine-already-decided"
    title = "Already released or deleted"


class NextHopUnavailable(DomainError):
    status = 503
    slug = "next-hop-unavailable"
    title = "Mail server unavailable"


class ReleaseRefused(DomainError):
    status = 502
    slug = "release-refused"
    title = "Mail server refused the message"


@dataclass(frozen=True)
class Released:
    message: QuarantinedMessage
    recorded: int


class QuarantineService:
    """List, release and delete held messages (``security`` and ``dpo`` only, audited)."""

    def __init__(
        self,
        session: Session,
        principal: Principal,
        keys: KeyRing,
        store: BlobStore,
        relay: Relay | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.store = store
        self.relay = relay

    def check_access(self) -> None:
        """Raise unless the principal may manage the quarantine."""
        self.principal.require(Permission.QUARANTINE_MANAGE)
        if self.principal.role not in MANAGERS:
            # admin holds every permission, but held mail is for security and the dpo.
            raise PermissionDenied("Only the security and dpo roles manage the quarantine.")

    def listing(
        self, *, status: QuarantineStatus | None, limit: int, offset: int
    ) -> tuple[list[QuarantinedMessage], int]:
        self.check_access()
        conditions = [] if status is None else [QuarantinedMessage.status == status.value]
        total = self.session.scalar(
            select(func.count()).select_from(QuarantinedMessage).where(*conditions)
        )
        rows = self.session.scalars(
            select(QuarantinedMessage)
            .where(*conditions)
            .order_by(QuarantinedMessage.received_at.desc(), QuarantinedMessage.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows), int(total or 0)

    def get(self, message_id: int) -> QuarantinedMessage:
        self.check_access()
        return self._find(message_id)

    def _find(self, message_id: int, *, lock: bool = False) -> QuarantinedMessage:
        query = select(QuarantinedMessage).where(QuarantinedMessage.id == message_id)
        if lock:
            query = query.with_for_update()
        held = self.session.scalar(query)
        if held is None:
            raise QuarantineNotFound(f"There is no quarantined message {message_id}.")
        return held

    def _held(self, message_id: int) -> QuarantinedMessage:
        held = self._find(message_id, lock=True)
        if held.status != QuarantineStatus.HELD.value:
            raise QuarantineDecided(f"Message {message_id} was already {held.status}.")
        return held

    @staticmethod
    def _note(note: str | None) -> str | None:
        text = " ".join((note or "").split())
        if len(text) > MAX_NOTE:
            raise InvalidInput(f"The note is longer than {MAX_NOTE} characters.", field="note")
        return text or None

    def release(self, message_id: int, *, note: str | None = None) -> Released:
        """Hand the message to its original recipients and record where it went.

        The database changes are made first and committed by the caller after the next
        hop has accepted the message; if it does not, nothing changes (503 or 502).
        """
        self.check_access()
        note = self._note(note)
        held = self._held(message_id)
        if self.relay is None:
            raise NextHopUnavailable("No next hop is configured for releasing mail.")
        document = self.session.get(HeldDocument, held.document_id)
        if document is None:
            raise QuarantineNotFound(f"The stored copy of message {message_id} is missing.")
        _name, raw = HeldDocuments(self.session, self.keys, self.store).read(document)
        recorded, complete = self._record(held, raw)
        now = utcnow()
        held.status = QuarantineStatus.RELEASED.value
        held.decided_by_id = self.principal.user_id
        held.decided_at = now
        held.decision_note = note
        record_event(
            self.session,
            self.principal,
            QuarantineAuditAction.RELEASED,
            object_type="quarantine",
            object_id=held.id,
            details={
                "recipients": len(held.recipients),
                "label": held.label,
                "customer_count": held.customer_count,
                "deliveries_recorded": recorded,
            },
        )
        self.session.flush()
        data = with_headers(
            raw,
            verdict_headers(
                complete=complete,
                label=parse_label(held.label),
                customers=held.customer_count,
                action="released",
            ),
        )
        options = () if raw.isascii() else ("BODY=8BITMIME",)
        try:
            refused = self.relay.send(held.sender, list(held.recipients), data, options=options)
        except RelayError as exc:
            if exc.temporary:
                raise NextHopUnavailable(
                    "The mail server did not accept the message now; try again later."
                ) from None
            raise ReleaseRefused(
                f"The mail server refused the message ({exc.reply[:3]})."
            ) from None
        if refused:
            raise ReleaseRefused(
                f"The mail server refused {len(refused)} of the recipients; nothing was released."
            )
        return Released(held, recorded)

    def _record(self, held: QuarantinedMessage, raw: bytes) -> tuple[int, bool]:
        """Ledger rows for every part of the released message and every recipient, as the
        filter would have recorded them (same keys: a second release records nothing)."""
        parsed = parse_mail(raw)
        key = message_key(parsed.message_id, parsed.raw)
        by_sha = {hashlib.sha256(p.data).hexdigest(): p.index for p in parsed.parts}
        contents = {
            by_sha[c.sha256]: c
            for c in self.session.scalars(
                select(InspectedContent).where(InspectedContent.sha256.in_(sorted(by_sha)))
            )
        }
        now = utcnow()
        rows: list[NewDelivery] = []
        for given in held.recipients:
            try:
                address, _domain = normalise_recipient(given)
            except InvalidDestination:
                continue
            for destination in self._destinations(address):
                for index, content in sorted(contents.items()):
                    rows.append(
                        NewDelivery(
                            content.id,
                            destination,
                            Channel.MAIL,
                            now,
                            SOURCE_SYSTEM,
                            delivery_source_id(key, address, index, destination),
                        )
                    )
        outcome = record_deliveries(self.session, rows, now=now)
        complete = all(c.status == "inspected" for c in contents.values())
        return outcome.recorded, complete and parsed.problem is None

    def _destinations(self, address: str) -> list[Destination]:
        user = user_by_email(self.session, address)
        if user is None:
            return [Destination.external(address)]
        devices = user_devices(self.session, user.id)
        return [Destination.device(d.device_id, user.id) for d in devices] or [
            Destination.user(user.id)
        ]

    def delete(self, message_id: int, *, note: str | None = None) -> QuarantinedMessage:
        """Erase the held message for good; the row stays as the record of the decision."""
        self.check_access()
        note = self._note(note)
        held = self._held(message_id)
        document = self.session.get(HeldDocument, held.document_id)
        if document is not None:
            HeldDocuments(self.session, self.keys, self.store).erase(document)
        held.status = QuarantineStatus.DELETED.value
        held.decided_by_id = self.principal.user_id
        held.decided_at = utcnow()
        held.decision_note = note
        record_event(
            self.session,
            self.principal,
            QuarantineAuditAction.DELETED,
            object_type="quarantine",
            object_id=held.id,
            details={
                "recipients": len(held.recipients),
                "label": held.label,
                "customer_count": held.customer_count,
            },
        )
        self.session.flush()
        return held
