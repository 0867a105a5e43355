"""Builders of users and API tokens through the real services (so rules and audit apply)."""

from __future__ import annotations

from dataclasses import dataclass

from faker import Faker
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.models import User
from spillguard.core.roles import Principal, Role
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService

fake = Faker("en_GB")
DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass
class UserFactory:
    session: Session
    keys: KeyRing

    def create(
        self,
        role: Role | str = Role.ADMIN,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
    ) -> User:
        address = email or f"{fake.user_name()}.{fake.random_int(1000, 99999)}@example.com"
        user = UserService(self.session, Principal.system("tests")).create(
            address, Role(role), password
        )
        self.session.commit()
        return user

    def token(
        self,
        user: User,
        role: Role | str | None = None,
        expires_days: int | None = None,
        name: str = "tests",
    ) -> str:
        issued = TokenService(self.session, Principal.system("tests"), self.keys).create(
            user.id, name=name, role=Role(role) if role else None, expires_days=expires_days
        )
        self.session.commit()
        return issued.secret

    def auth(self, role: Role | str = Role.ADMIN) -> dict[str, str]:
        """Headers of a fresh user of that role holding a token."""
        return {"Authorization": f"Bearer {self.token(self.create(role))}"}
