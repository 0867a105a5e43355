"""Console login: password check, throttling of failures, database-backed sessions,
one-time setup links and CSRF tokens.

Everything lives in the database, so any number of server processes share sessions and
the failure counts that throttle password guessing.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import AuditAction, record_event
from spillguard.core.db import affected, utcnow
from spillguard.core.errors import AuthenticationRequired, Conflict, NotFound, Throttled
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import LoginFailure, SetupLink, User, WebSession
from spillguard.core.passwords import hash_password, needs_rehash, verify_password
from spillguard.core.roles import Principal, Role, mark_authz_checked
from spillguard.core.settings import Settings


class InvalidCredentials(AuthenticationRequired):
    slug = "invalid-credentials"
    title = "Invalid credentials"
    keep_changes = True


class SetupLinkInvalid(NotFound):
    slug = "setup-link-invalid"
    title = "Setup link invalid"


@dataclass(frozen=True)
class NewSession:
    user: User
    secret: str
    csrf_seed: str


class LoginService:
    """Authenticates people for the console and keeps their sessions."""

    def __init__(
        self, session: Session, principal: Principal, keys: KeyRing, settings: Settings
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.settings = settings

    # Login -------------------------------------------------------------------------
    def login(self, email: str, password: str) -> NewSession:
        mark_authz_checked()  # logging in is, by definition, open to the unauthenticated
        address = email.strip().lower()
        keys = [self._throttle_key("account", address)]
        if self.principal.source_ip:
            keys.append(self._throttle_key("address", self.principal.source_ip))
        self._check_throttle(keys, address)
        user = self.session.scalar(select(User).where(User.email == address))
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            for key in keys:
                self.session.add(LoginFailure(key_digest=key))
            record_event(
                self.session,
                self.principal,
                AuditAction.LOGIN_FAILED,
                outcome="failure",
                object_type="user",
                object_id=user.id if user else None,
                details={
                    "email": address,
                    "reason": "disabled" if user and user.disabled and ok else "bad credentials",
                },
            )
            raise InvalidCredentials("E-mail address or password is wrong.")
        if user.password_hash and needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        # A successful login clears the account's failures (not the address's).
        self.session.execute(delete(LoginFailure).where(LoginFailure.key_digest == keys[0]))
        now = utcnow()
        user.last_login_at = now
        secret = secrets.token_urlsafe(32)
        self.session.add(
            WebSession(
                digest=self.keys.digest(KeyPurpose.SESSION_DIGEST, secret),
                user_id=user.id,
                expires_at=now + timedelta(hours=self.settings.session_hours),
                source_ip=self.principal.source_ip,
            )
        )
        actor = Principal(
            "user",
            user.id,
            user.email,
            Role(user.role),
            source_ip=self.principal.source_ip,
            request_id=self.principal.request_id,
        )
        record_event(
            self.session, actor, AuditAction.LOGIN_SUCCEEDED, object_type="user", object_id=user.id
        )
        return NewSession(user, secret, secrets.token_urlsafe(16))

    def _throttle_key(self, kind: str, value: str) -> str:
        return self.keys.digest(KeyPurpose.THROTTLE_KEY_DIGEST, f"{kind}:{value}")

    def _check_throttle(self, keys: list[str], address: str) -> None:
        window = timedelta(seconds=self.settings.login_failure_window_seconds)
        since = utcnow() - window
        limits = [
            self.settings.login_max_failures_account,
            self.settings.login_max_failures_address,
        ]
        for key, limit in zip(keys, limits, strict=False):
            count, oldest = self.session.execute(
                select(func.count(), func.min(LoginFailure.occurred_at)).where(
                    LoginFailure.key_digest == key, LoginFailure.occurred_at >= since
                )
            ).one()
            if count >= limit:
                retry = int((oldest + window - utcnow()).total_seconds()) + 1 if oldest else 60
                record_event(
                    self.session,
                    self.principal,
                    AuditAction.LOGIN_THROTTLED,
                    outcome="failure",
                    details={"email": address, "scope": "account" if key == keys[0] else "address"},
                )
                raise Throttled(
                    "Too many failed logins; wait before trying again.", retry_after=max(retry, 1)
                )

    # Sessions ----------------------------------------------------------------------
    def resolve(self, secret: str) -> Principal | None:
        """The principal of a session cookie, or None if it is unknown or expired."""
        if not secret or len(secret) > 200:
            return None
        digest = self.keys.digest(KeyPurpose.SESSION_DIGEST, secret)
        row = self.session.scalar(select(WebSession).where(WebSession.digest == digest))
        now = utcnow()
        if row is None:
            return None
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        if row.expires_at <= now or row.last_seen_at + idle <= now or row.user.disabled:
            self.session.delete(row)
            return None
        if now - row.last_seen_at > timedelta(minutes=1):
            row.last_seen_at = now
        return Principal(
            "user",
            row.user_id,
            row.user.email,
            Role(row.user.role),
            source_ip=self.principal.source_ip,
            request_id=self.principal.request_id,
        )

    def logout(self, secret: str | None) -> None:
        """End the session of this cookie, if any.  Anyone may log out."""
        mark_authz_checked()
        if not secret or len(secret) > 200:
            return
        digest = self.keys.digest(KeyPurpose.SESSION_DIGEST, secret)
        row = self.session.scalar(select(WebSession).where(WebSession.digest == digest))
        if row is not None:
            self.session.delete(row)
            record_event(
                self.session,
                self.principal,
                AuditAction.LOGOUT,
                object_type="user",
                object_id=row.user_id,
            )

    # CSRF --------------------------------------------------------------------------
    def csrf_token(self, seed: str) -> str:
        """The form token bound to the browser's CSRF cookie; unforgeable without the key."""
        return self.keys.digest(KeyPurpose.CSRF, seed)

    def csrf_valid(self, seed: str | None, token: str | None) -> bool:
        if not seed or not token:
            return False
        return hmac.compare_digest(
            self.csrf_token(seed).encode(), token.encode("utf-8", "surrogatepass")
        )

    # First administrator -------------------------------------------------------------
    def create_setup_link(self) -> str | None:
        """A one-time setup secret if the database has no users yet, else None."""
        if self.session.scalar(select(func.count()).select_from(User)):
            return None
        secret = secrets.token_urlsafe(24)
        now = utcnow()
        self.session.add(
            SetupLink(
                digest=self.keys.digest(KeyPurpose.SETUP_LINK_DIGEST, secret),
                expires_at=now + timedelta(minutes=self.settings.setup_link_minutes),
            )
        )
        record_event(self.session, Principal.system("serve"), AuditAction.SETUP_LINK_CREATED)
        return secret

    def check_setup_link(self, secret: str) -> SetupLink:
        mark_authz_checked()  # the one-time secret is the authorisation
        digest = self.keys.digest(KeyPurpose.SETUP_LINK_DIGEST, secret)
        link = self.session.scalar(select(SetupLink).where(SetupLink.digest == digest))
        if link is None or link.used_at is not None or link.expires_at <= utcnow():
            raise SetupLinkInvalid(
                "This setup link is unknown, used or expired. Restart the server for a new one, "
                "or create an administrator with `spillguard users create EMAIL --role admin`."
            )
        if self.session.scalar(select(func.count()).select_from(User)):
            raise Conflict("An administrator already exists; log in instead.")
        return link

    def complete_setup(self, secret: str, email: str, password: str) -> User:
        from spillguard.core.users import UserService

        link = self.check_setup_link(secret)
        link.used_at = utcnow()
        user = UserService(self.session, Principal.system("setup link"))._create(
            email, Role.ADMIN, password
        )
        record_event(
            self.session,
            Principal.system("setup link"),
            AuditAction.SETUP_COMPLETED,
            object_type="user",
            object_id=user.id,
        )
        return user


def purge_expired(session: Session, settings: Settings) -> dict[str, int]:
    """Housekeeping: drop expired sessions, old login failures and dead setup links."""
    now = utcnow()
    idle = timedelta(minutes=settings.session_idle_minutes)
    window = timedelta(seconds=settings.login_failure_window_seconds)
    statements = {
        "sessions": delete(WebSession).where(
            (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - idle)
        ),
        "login_failures": delete(LoginFailure).where(LoginFailure.occurred_at < now - window),
        "setup_links": delete(SetupLink).where(SetupLink.expires_at <= now),
    }
    return {name: affected(session.execute(stmt)) for name, stmt in statements.items()}
