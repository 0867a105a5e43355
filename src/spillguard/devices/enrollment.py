"""Enrollments: random tokens that let a user's device(s) join, and the exchange of a
token for a device id and credential (see docs/device-protocol.md).

Tokens and credentials are 256-bit random secrets shown once and stored as HMAC-SHA256
digests under their own HKDF purpose keys.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import segno
import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import affected, utcnow
from spillguard.core.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal, mark_authz_checked
from spillguard.devices.models import Device, DeviceGroup, Enrollment
from spillguard.devices.schemas import EnrollDevice
from spillguard.devices.services import (
    DeviceAuditAction,
    GroupNotFound,
    device_principal,
    reevaluate,
)

log = structlog.get_logger("spillguard.devices")

ENROLLMENT_PREFIX = "sge_"
CREDENTIAL_PREFIX = "sgd_"
ENROLL_PATH = "/api/device/v1/enroll"

EnrollmentStatus = Literal["usable", "used", "expired", "revoked"]


class EnrollmentNotFound(NotFound):
    slug = "enrollment-not-found"
    title = "Enrollment not found"


class EnrollmentTokenInvalid(AuthenticationRequired):
    slug = "enrollment-token-invalid"
    title = "Enrollment token invalid"
    challenge = "Device"


class EnrollmentRefused(PermissionDenied):
    """A known token that can no longer be used; the refusal is audited (kept)."""

    keep_changes = True


class EnrollmentTokenUsed(EnrollmentRefused):
    slug = "enrollment-token-used"
    title = "Enrollment token already used"


class EnrollmentTokenExpired(EnrollmentRefused):
    slug = "enrollment-token-expired"
    title = "Enrollment token expired"


class EnrollmentTokenRevoked(EnrollmentRefused):
    slug = "enrollment-token-revoked"
    title = "Enrollment token revoked"


def enrollment_status(enrollment: Enrollment, now: datetime) -> EnrollmentStatus:
    if enrollment.revoked_at is not None:
        return "revoked"
    if enrollment.expires_at <= now:
        return "expired"
    if enrollment.uses_count >= enrollment.uses_allowed:
        return "used"
    return "usable"


def enrollment_url(base_url: str, token: str) -> str:
    """The enroll endpoint with the token in the fragment (never sent to a server)."""
    return f"{base_url.rstrip('/')}{ENROLL_PATH}#token={token}"


@dataclass(frozen=True)
class IssuedEnrollment:
    enrollment: Enrollment
    token: str
    url: str


@dataclass(frozen=True)
class EnrolledDevice:
    device: Device
    credential: str


class EnrollmentService:
    def __init__(self, session: Session, principal: Principal, keys: KeyRing) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys

    def create(
        self,
        *,
        user_id: int,
        group_id: int | None,
        uses_allowed: int,
        expires_in_hours: int,
        base_url: str,
    ) -> IssuedEnrollment:
        self.principal.require(Permission.DEVICES_MANAGE)
        user = self.session.get(User, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}.", field="user_id")
        if user.disabled:
            raise Conflict("That user is disabled; enable it before enrolling devices.")
        if group_id is not None and self.session.get(DeviceGroup, group_id) is None:
            raise GroupNotFound(f"No device group with id {group_id}.")
        if not 1 <= uses_allowed <= 10_000:
            raise InvalidInput("uses_allowed must be 1 to 10,000.", field="uses_allowed")
        token = ENROLLMENT_PREFIX + secrets.token_urlsafe(32)
        enrollment = Enrollment(
            token_digest=self.keys.digest(KeyPurpose.ENROLLMENT_TOKEN_DIGEST, token),
            prefix=token[: len(ENROLLMENT_PREFIX) + 6],
            user_id=user.id,
            group_id=group_id,
            uses_allowed=uses_allowed,
            uses_count=0,
            expires_at=utcnow() + timedelta(hours=expires_in_hours),
            created_by_id=self.principal.user_id,
        )
        self.session.add(enrollment)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            DeviceAuditAction.ENROLLMENT_CREATED,
            object_type="enrollment",
            object_id=enrollment.id,
            details={
                "for_user": user.email,
                "group_id": group_id,
                "uses_allowed": uses_allowed,
                "expires_at": enrollment.expires_at.isoformat(),
            },
        )
        return IssuedEnrollment(enrollment, token, enrollment_url(base_url, token))

    def listing(self, *, limit: int, offset: int) -> tuple[list[Enrollment], int]:
        self.principal.require(Permission.DEVICES_VIEW)
        total = self.session.scalar(select(func.count()).select_from(Enrollment)) or 0
        rows = self.session.scalars(
            select(Enrollment).order_by(Enrollment.id.desc()).limit(limit).offset(offset)
        )
        return list(rows), total

    def get(self, enrollment_id: int) -> Enrollment:
        self.principal.require(Permission.DEVICES_VIEW)
        return self._get(enrollment_id)

    def _get(self, enrollment_id: int) -> Enrollment:
        enrollment = self.session.get(Enrollment, enrollment_id)
        if enrollment is None:
            raise EnrollmentNotFound(f"No enrollment with id {enrollment_id}.")
        return enrollment

    def revoke(self, enrollment_id: int) -> Enrollment:
        self.principal.require(Permission.DEVICES_MANAGE)
        enrollment = self._get(enrollment_id)
        if enrollment.revoked_at is None:
            enrollment.revoked_at = utcnow()
            record_event(
                self.session,
                self.principal,
                DeviceAuditAction.ENROLLMENT_REVOKED,
                object_type="enrollment",
                object_id=enrollment.id,
                details={"uses_count": enrollment.uses_count},
            )
        return enrollment

    def qr_svg(self, enrollment_id: int, token: str, base_url: str) -> bytes:
        """The QR code (SVG) of the enrollment URL, for the holder of its token only.

        Only the token's digest is stored, so the caller supplies the token it was given;
        a token of another enrollment is refused, so this is no general QR generator.
        """
        self.principal.require(Permission.DEVICES_MANAGE)
        enrollment = self._get(enrollment_id)
        if not secrets.compare_digest(
            self.keys.digest(KeyPurpose.ENROLLMENT_TOKEN_DIGEST, token), enrollment.token_digest
        ):
            raise InvalidInput("That is not this enrollment's token.", field="token")
        out = io.BytesIO()
        segno.make(enrollment_url(base_url, token), error="m").save(
            out, kind="svg", scale=4, border=2, xmldecl=False
        )
        return out.getvalue()


def enroll_device(
    session: Session,
    keys: KeyRing,
    base: Principal,
    token: str,
    facts: EnrollDevice,
    *,
    checkin_now: datetime | None = None,
) -> EnrolledDevice:
    """Exchange an enrollment token for a new device and its credential (device side)."""
    mark_authz_checked()  # the token is the authorisation, decided below
    now = checkin_now or utcnow()
    if not token.startswith(ENROLLMENT_PREFIX) or len(token) > 200:
        raise EnrollmentTokenInvalid("The enrollment token is malformed.")
    digest = keys.digest(KeyPurpose.ENROLLMENT_TOKEN_DIGEST, token)
    enrollment = session.scalar(select(Enrollment).where(Enrollment.token_digest == digest))
    if enrollment is None:
        log.warning("enrollment_token_unknown", source_ip=base.source_ip)
        raise EnrollmentTokenInvalid("The enrollment token is unknown.")
    status = enrollment_status(enrollment, now)
    if status == "usable":
        # Conditional increment: of two devices racing for the last use, one wins.
        won = affected(
            session.execute(
                update(Enrollment)
                .where(
                    Enrollment.id == enrollment.id,
                    Enrollment.uses_count < Enrollment.uses_allowed,
                    Enrollment.revoked_at.is_(None),
                )
                .values(uses_count=Enrollment.uses_count + 1)
                .execution_options(synchronize_session=False)
            )
        )
        if not won:
            status = "used"
    if status != "usable":
        session.rollback()  # nothing but the audit event below may be kept
        record_event(
            session,
            base,
            DeviceAuditAction.ENROLLMENT_REFUSED,
            object_type="enrollment",
            object_id=enrollment.id,
            outcome="failure",
            details={"reason": status, "device_name": facts.name},
        )
        error = {
            "used": EnrollmentTokenUsed(
                "Every allowed use of this enrollment token is spent; ask for a new one."
            ),
            "expired": EnrollmentTokenExpired("This enrollment token has expired."),
            "revoked": EnrollmentTokenRevoked("This enrollment token was revoked."),
        }[status]
        raise error
    session.refresh(enrollment)
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    device = Device(
        name=facts.name,
        platform=facts.platform.value,
        model=facts.model,
        serial=facts.serial,
        os_version=facts.os_version,
        owner_id=enrollment.user_id,
        group_id=enrollment.group_id,
        enrollment_id=enrollment.id,
        credential_digest=keys.digest(KeyPurpose.DEVICE_CREDENTIAL_DIGEST, credential),
        state="active",
        enrolled_at=now,
        compliance_reasons=[],
    )
    session.add(device)
    session.flush()
    actor = device_principal(device.id, base)
    record_event(
        session,
        actor,
        DeviceAuditAction.DEVICE_ENROLLED,
        object_type="device",
        object_id=device.id,
        details={
            "enrollment_id": enrollment.id,
            "owner": enrollment.user.email,
            "name": facts.name,
            "platform": facts.platform.value,
        },
    )
    reevaluate(session, actor, device, cause="enrollment", now=now)
    return EnrolledDevice(device, credential)
