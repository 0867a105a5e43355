"""Pure rules of the exposure ledger: destinations, recipients, idempotency keys.

No database here; the service (``exposure.services``) stores what these functions decide.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from spillguard.exposure.models import Channel, DestinationType

MAX_SOURCE_SYSTEM = 100
MAX_SOURCE_ID = 500
MAX_THIRD_PARTY = 200
_LOCAL_PART = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidDestination(ValueError):
    """A destination the ledger cannot record; the message says why, in plain words."""


def normalise_recipient(address: str) -> tuple[str, str]:
    """An e-mail address as the ledger stores it, and its domain.

    The whole address is lower-cased (mailbox names are case-insensitive at every mail
    system a ledger query would care about), the domain is IDNA-encoded, and anything that
    is not one ``local@domain`` with a dotted domain is refused.
    """
    value = address.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise InvalidDestination("A recipient must be an e-mail address (name@domain).")
    if not _LOCAL_PART.match(local):
        raise InvalidDestination("The recipient's mailbox name is not valid.")
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidDestination("The recipient's domain is not a valid domain name.") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253 or not all(_LABEL.match(x) for x in labels):
        raise InvalidDestination("The recipient's domain is not a valid domain name.")
    return f"{local.lower()}@{ascii_domain}", ascii_domain


def normalise_domain(domain: str) -> str:
    """A domain as the ledger stores it (for queries by domain)."""
    return normalise_recipient(f"x@{domain}")[1]


@dataclass(frozen=True)
class Destination:
    """Where content went. Exactly the fields of its type are set."""

    type: DestinationType
    device_id: int | None = None
    user_id: int | None = None
    recipient: str | None = None
    domain: str | None = None
    third_party: str | None = None

    @classmethod
    def device(cls, device_id: int, owner_id: int | None = None) -> Destination:
        return cls(DestinationType.DEVICE, device_id=device_id, user_id=owner_id)

    @classmethod
    def user(cls, user_id: int) -> Destination:
        return cls(DestinationType.USER, user_id=user_id)

    @classmethod
    def external(cls, address: str) -> Destination:
        recipient, domain = normalise_recipient(address)
        return cls(DestinationType.RECIPIENT, recipient=recipient, domain=domain)

    @classmethod
    def party(cls, name: str) -> Destination:
        cleaned = " ".join(name.split())
        if not cleaned or len(cleaned) > MAX_THIRD_PARTY:
            raise InvalidDestination(
                f"A third party needs a name of 1 to {MAX_THIRD_PARTY} characters."
            )
        return cls(DestinationType.THIRD_PARTY, third_party=cleaned)

    def describe(self) -> str:
        """A short label for lists (ids only; names are looked up by the caller)."""
        if self.type is DestinationType.DEVICE:
            return f"device {self.device_id}"
        if self.type is DestinationType.USER:
            return f"user {self.user_id}"
        if self.type is DestinationType.RECIPIENT:
            return str(self.recipient)
        return str(self.third_party)


@dataclass(frozen=True)
class NewDelivery:
    """One delivery to record: which content (by id), where, how, when, from which system."""

    content_id: int
    destination: Destination
    channel: Channel
    occurred_at: datetime
    source_system: str
    source_id: str | None = None


def source_ref(source_system: str, source_id: str | None) -> uuid.UUID | None:
    """The idempotency key of a delivery: the same sender's same id gives the same key
    (the first 128 bits of a SHA-256, as a uuid)."""
    if source_id is None:
        return None
    digest = hashlib.sha256()
    digest.update(source_system.encode())
    digest.update(b"\x00")
    digest.update(source_id.encode())
    return uuid.UUID(bytes=digest.digest()[:16])


def check_source(source_system: str, source_id: str | None) -> None:
    """Refuse a source system or source id the ledger cannot keep."""
    if not source_system.strip() or len(source_system) > MAX_SOURCE_SYSTEM:
        raise InvalidDestination(
            f"The source system needs a name of 1 to {MAX_SOURCE_SYSTEM} characters."
        )
    if source_id is not None and not (0 < len(source_id) <= MAX_SOURCE_ID):
        raise InvalidDestination(f"A source id has 1 to {MAX_SOURCE_ID} characters.")


@dataclass(frozen=True)
class DeliverySpec:
    """A delivery as a client reports it: the content by its SHA-256."""

    sha256: str
    destination: Destination
    channel: Channel
    occurred_at: datetime | None
    source_system: str
    source_id: str | None = None
