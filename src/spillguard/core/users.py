"""User administration: create, list, change role or password, disable."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import AuditAction, record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from spillguard.core.models import ApiToken, User, WebSession
from spillguard.core.passwords import check_password_rules, hash_password, verify_password
from spillguard.core.roles import Permission, Principal, Role, role_may_delegate

# No control characters: PostgreSQL cannot store NUL, and both backends must agree.  No lone
# surrogates either: they arrive from undecodable command-line bytes and cannot be encoded.
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\x7f\ud800-\udfff]{1,64}"
    r"@[^@\s\x00-\x1f\x7f\ud800-\udfff]{1,255}"
    r"\.[^@\s.\x00-\x1f\x7f\ud800-\udfff]{1,63}$"
)

MAX_EMAIL_LENGTH = 320  # the width of users.email


class UserNotFound(NotFound):
    pass


class UserExists(Conflict):
    pass


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    # Lower-casing can lengthen text ("İ" becomes two characters): check what is stored.
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL.match(value):
        raise InvalidInput("That is not a valid e-mail address.", field="email")
    return value


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidInput(
            f"Unknown role {value!r}; choose one of {names}.", field="role"
        ) from None


class UserService:
    """Every change to users goes through here, authorised and audited."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(User)) or 0

    def get(self, user_id: int) -> User:
        self.principal.require(Permission.USERS_VIEW)
        user = self.session.get(User, user_id)
        if user is None:
            raise UserNotFound(f"No user with id {user_id}.")
        return user

    def by_email(self, email: str) -> User:
        self.principal.require(Permission.USERS_VIEW)
        user = self.session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise UserNotFound("No user with that e-mail address.")
        return user

    def me(self) -> User:
        """The signed-in person's own account."""
        self.principal.require_authenticated()
        if self.principal.user_id is None:
            raise UserNotFound("This identity has no user account.")
        return self._load(self.principal.user_id)

    def list(self, *, limit: int = 100, offset: int = 0) -> tuple[list[User], int]:
        self.principal.require(Permission.USERS_VIEW)
        rows = self.session.scalars(select(User).order_by(User.id).limit(limit).offset(offset))
        return list(rows), self.count()

    def create(self, email: str, role: Role, password: str) -> User:
        self.principal.require(Permission.USERS_MANAGE)
        return self._create(email, role, password)

    def _create(self, email: str, role: Role, password: str) -> User:
        address = normalise_email(email)
        if self.session.scalar(select(User.id).where(User.email == address)) is not None:
            raise UserExists("A user with that e-mail address already exists.")
        user = User(email=address, role=role.value, password_hash=hash_password(password))
        user.password_changed_at = utcnow()
        self.session.add(user)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            AuditAction.USER_CREATED,
            object_type="user",
            object_id=user.id,
            details={"email": address, "role": role.value},
        )
        return user

    def set_password(
        self, user_id: int, password: str, *, current_password: str | None = None
    ) -> User:
        """Set a password.  Changing your own needs your current one, so a stolen session
        or token cannot lock the owner out; administrators reset others' without it."""
        if self.principal.user_id != user_id:
            self.principal.require(Permission.USERS_MANAGE)
        else:
            self.principal.require_authenticated()
        user = self._load(user_id)
        if (
            self.principal.user_id == user_id
            and self.principal.role is not None
            and not role_may_delegate(self.principal.role, Role(user.role))
        ):
            # A token with a narrower role than its owner must not be turned into the owner's
            # password, and so into the owner's full role in the console.
            raise PermissionDenied(
                "A token with a narrower role than its owner's may not change the password."
            )
        check_password_rules(password)
        if self.principal.user_id == user_id and not verify_password(
            user.password_hash, current_password or ""
        ):
            raise PermissionDenied("The current password is wrong.", field="current_password")
        user.password_hash = hash_password(password)
        user.password_changed_at = utcnow()
        # A new password ends every console session of that user.
        self.session.query(WebSession).filter(WebSession.user_id == user.id).delete()
        record_event(
            self.session,
            self.principal,
            AuditAction.USER_PASSWORD_CHANGED,
            object_type="user",
            object_id=user.id,
            details={"email": user.email},
        )
        return user

    def set_role(self, user_id: int, role: Role) -> User:
        self.principal.require(Permission.USERS_MANAGE)
        user = self._load(user_id)
        if user.role == role.value:
            return user
        self._keep_an_admin(user, losing="role")
        old = user.role
        user.role = role.value
        record_event(
            self.session,
            self.principal,
            AuditAction.USER_ROLE_CHANGED,
            object_type="user",
            object_id=user.id,
            details={"email": user.email, "from": old, "to": role.value},
        )
        return user

    def update(
        self, user_id: int, *, role: Role | None = None, disabled: bool | None = None
    ) -> User:
        """Apply a partial update (role and/or disabled)."""
        self.principal.require(Permission.USERS_MANAGE)
        user = self._load(user_id)
        if role is not None:
            user = self.set_role(user_id, role)
        if disabled is not None:
            user = self.set_disabled(user_id, disabled)
        return user

    def set_disabled(self, user_id: int, disabled: bool) -> User:
        self.principal.require(Permission.USERS_MANAGE)
        user = self._load(user_id)
        if user.disabled == disabled:
            return user
        if disabled:
            self._keep_an_admin(user, losing="account")
            self.session.query(WebSession).filter(WebSession.user_id == user.id).delete()
            now = utcnow()
            for token in user.tokens:
                if token.revoked_at is None:
                    token.revoked_at = now
        user.disabled = disabled
        record_event(
            self.session,
            self.principal,
            AuditAction.USER_DISABLED if disabled else AuditAction.USER_ENABLED,
            object_type="user",
            object_id=user.id,
            details={"email": user.email},
        )
        return user

    def _load(self, user_id: int) -> User:
        user = self.session.get(User, user_id)
        if user is None:
            raise UserNotFound(f"No user with id {user_id}.")
        return user

    def _keep_an_admin(self, user: User, *, losing: str) -> None:
        """Refuse to remove the last enabled administrator."""
        if user.role != Role.ADMIN.value or user.disabled:
            return
        admins = self.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.disabled.is_(False))
        )
        if (admins or 0) <= 1:
            raise Conflict(f"Refusing to change the {losing} of the last enabled administrator.")


def active_tokens_of(session: Session, user: User) -> list[ApiToken]:
    now = utcnow()
    return [
        t
        for t in user.tokens
        if t.revoked_at is None and (t.expires_at is None or t.expires_at > now)
    ]
