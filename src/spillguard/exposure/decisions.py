"""Access decisions for other gateways: may this person (on this phone) have content of
this label or hash? The same rules as the mail filter and the download gateway
(``exposure.access``), asked over the API or by nginx's ``auth_request``.

A decision fails closed: an unknown person, a phone that is not theirs, a hash nobody
inspected (treated as the protected label) are denials with a reason, never errors.
Denials are audited; allows are not (a reverse proxy asks on every request), they are
counted in the metrics of the route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.errors import InvalidInput
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.devices.models import Device
from spillguard.exposure.access import (
    DEFAULT_PROTECTED_LABEL,
    Decision,
    device_decision,
    recipient_decision,
    user_by_email,
    user_devices,
    verdict_of,
)
from spillguard.exposure.models import InspectedContent
from spillguard.exposure.services import ExposureAuditAction
from spillguard.inspection.classify import Label, parse_label


@dataclass(frozen=True)
class AccessOutcome:
    allow: bool
    reasons: tuple[str, ...]
    label: Label
    user_id: int | None
    device_id: int | None


# A user id as text (a header, a JSON string): digits only, so never an e-mail address; at
# most 18 digits, the bounds of an id everywhere else (and within a 64-bit column).
_USER_ID = re.compile(r"[1-9][0-9]{0,17}")


def person_named(session: Session, user: str | int) -> User | None:
    """The person a decision is asked for: a user id (a number, or its digits as text, as
    an HTTP header carries it) or an e-mail address (case-insensitive), the same for the
    JSON endpoint and nginx's ``X-Spillguard-User``."""
    if isinstance(user, int):
        return session.get(User, user)
    text = user.strip()
    if _USER_ID.fullmatch(text):
        return session.get(User, int(text))
    return user_by_email(session, text)


class AccessDecisions:
    def __init__(
        self,
        session: Session,
        principal: Principal,
        *,
        protected: Label = DEFAULT_PROTECTED_LABEL,
    ) -> None:
        self.session = session
        self.principal = principal
        self.protected = protected

    def check(self) -> None:
        self.principal.require(Permission.EXPOSURE_DECIDE)

    def _label(self, label: Label | None, sha256: str | None) -> tuple[Label, list[str]]:
        notes: list[str] = []
        if label is None and not sha256:
            raise InvalidInput("Give the content's label, its SHA-256, or both.")
        found = label or Label.PUBLIC
        if sha256:
            content = self.session.scalar(
                select(InspectedContent).where(InspectedContent.sha256 == sha256.lower())
            )
            if content is None:
                # Never inspected: its content is unknown, so it is protected (fail closed).
                found = max(found, self.protected)
                notes.append("The content has not been inspected, so it is treated as protected.")
            else:
                found = max(found, Label(content.label))
        return found, notes

    def decide(
        self,
        *,
        user: str | int | None,
        device: Device | None = None,
        device_id: int | None = None,
        label: Label | None = None,
        sha256: str | None = None,
    ) -> AccessOutcome:
        """Decide for a person (e-mail or id, see :func:`person_named`) and optionally one of
        their phones (by id, or already authenticated by its credential)."""
        self.check()
        effective, notes = self._label(label, sha256)
        person: User | None = None
        if isinstance(user, int) or (isinstance(user, str) and user.strip()):
            person = person_named(self.session, user)
        elif device is not None:
            person = self.session.get(User, device.owner_id)
        if device is None and device_id is not None:
            device = self.session.get(Device, device_id)
        decision: Decision
        if person is None or person.disabled:
            decision = Decision(False, ("The person is not a known, enabled user.",))
        elif device_id is not None and device is None:
            decision = Decision(False, ("This phone is not enrolled.",))
        elif device is not None and device.owner_id != person.id:
            decision = Decision(False, ("This phone is not enrolled to this person.",))
        elif device is not None:
            decision = device_decision(verdict_of(device), effective, protected=self.protected)
        else:
            decision = recipient_decision(
                user_devices(self.session, person.id), effective, protected=self.protected
            )
        outcome = AccessOutcome(
            decision.allow,
            tuple(notes) + decision.reasons if not decision.allow else decision.reasons,
            effective,
            person.id if person else None,
            device.id if device else None,
        )
        if not outcome.allow:
            record_event(
                self.session,
                self.principal,
                ExposureAuditAction.ACCESS_DENIED,
                object_type="device" if outcome.device_id else "user",
                object_id=outcome.device_id or outcome.user_id,
                outcome="failure",
                details={
                    "label": effective.value,
                    "user_id": outcome.user_id,
                    "reasons": list(outcome.reasons)[:5],
                },
            )
        return outcome


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def nginx_headers_problem(label: str | None, sha256: str | None, user: str | None) -> str | None:
    """Why nginx's headers for the auth_request check cannot be read, in plain words, or
    None. The endpoint answers such a request 403 (deny), not 422: nginx's auth_request
    understands only 2xx, 401 and 403 and turns anything else into a 500."""
    if label is not None and label.strip():
        try:
            parse_label(label)
        except ValueError:
            return "X-Spillguard-Label is not one of public, internal, confidential, restricted."
    if sha256 is not None and not _SHA256_HEX.fullmatch(sha256):
        return "X-Spillguard-Content-Sha256 is not a SHA-256 digest (64 hex digits)."
    if user is not None and not 0 < len(user) <= 320:
        return "X-Spillguard-User is not a user's e-mail address or id."
    return None
