"""Pure decisions of the mail filter: what happens to a message for each recipient, the
headers it carries, the keys that make a retried message count once, and the words a
sender or recipient reads.

No database, no network: :mod:`spillguard.exposure.mailfilter` gathers the facts (the
inspected parts, each recipient's account and phones) and applies what these functions
decide. Who may receive what is decided by :mod:`spillguard.exposure.access`, never here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from spillguard.exposure.access import DeviceVerdict, recipient_decision
from spillguard.exposure.ledger import Destination
from spillguard.inspection.classify import Label, parse_label

SOURCE_SYSTEM = "mail-filter"
HEADER_PREFIX = "X-Spillguard-"
MAX_RECIPIENTS = 1000
WHOLE_MESSAGE = -1
"""The part index that stands for the whole message (a message that cannot be split)."""

# RFC 5321 replies (with RFC 3463 enhanced status codes).
REPLY_OK = "250 2.0.0 OK: filtered"
REPLY_NEXT_HOP_DOWN = "451 4.4.1 Next hop unavailable; try again later"
REPLY_TEMPORARY = "451 4.3.0 Temporary failure in the content filter; try again later"
REPLY_BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"
REPLY_BAD_SENDER = "501 5.1.7 Bad sender address syntax"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"


class MailAction(StrEnum):
    """What the filter does with a message for one recipient."""

    DELIVER = "deliver"
    LINK = "link"
    QUARANTINE = "quarantine"


class InternalAction(StrEnum):
    """The configured answer to protected content for a recipient whose phone fails."""

    LINK = "link"
    QUARANTINE = "quarantine"


class QuarantineKind(StrEnum):
    """Why a message was held: an outside recipient, or an inside one whose phone fails."""

    EXTERNAL = "external"
    INTERNAL = "internal"


class QuarantineAuditAction(StrEnum):
    """What the quarantine records in the audit trail (ids, counts and labels only)."""

    HELD = "exposure:quarantine:held"
    RELEASED = "exposure:quarantine:released"
    DELETED = "exposure:quarantine:deleted"


class AddressError(ValueError):
    """A host:port that cannot be used; the message is one line for the operator."""


def parse_hostport(value: str, *, what: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a host and a port number."""
    text = (value or "").strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise AddressError(f"{what} {value!r} is not host:port (for example 127.0.0.1:10025)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AddressError(f"{what} {value!r}: the port must be 1 to 65535")
    if not host or any(c.isspace() for c in host) or ("[" in host or "]" in host):
        raise AddressError(f"{what} {value!r}: the host is not valid")
    return host, port


@dataclass(frozen=True)
class MailPolicy:
    """The filter's configuration, as plain data."""

    protected_label: Label = Label.CONFIDENTIAL
    external_label: Label = Label.RESTRICTED
    internal_action: InternalAction = InternalAction.LINK
    internal_domains: frozenset[str] = frozenset()

    @classmethod
    def from_values(
        cls,
        *,
        protected_label: str,
        external_label: str,
        internal_action: str,
        internal_domains: str | Iterable[str] = "",
    ) -> MailPolicy:
        domains = (
            internal_domains.split(",") if isinstance(internal_domains, str) else internal_domains
        )
        return cls(
            protected_label=parse_label(protected_label),
            external_label=parse_label(external_label),
            internal_action=InternalAction(internal_action),
            internal_domains=frozenset(d.strip().lower().strip(".") for d in domains if d.strip()),
        )

    def is_internal_domain(self, domain: str) -> bool:
        domain = domain.lower()
        return any(domain == d or domain.endswith("." + d) for d in self.internal_domains)


@dataclass(frozen=True)
class PartSummary:
    """What a decision needs of one inspected part of a message."""

    index: int
    label: Label
    replaceable: bool = True  # a body or attachment; not the subject or a broken message


@dataclass(frozen=True)
class Recipient:
    """One recipient as the filter found them: a Spillguard user (with the phones that may
    hold their mail), an address at an internal domain, or an outsider."""

    address: str  # normalised: lower case, IDNA domain
    domain: str
    user_id: int | None = None
    devices: tuple[DeviceVerdict, ...] = ()
    internal_domain: bool = False

    @property
    def internal(self) -> bool:
        return self.user_id is not None or self.internal_domain


@dataclass(frozen=True)
class RecipientOutcome:
    """The decision for one recipient.

    ``linked`` lists the parts replaced by gateway links (``WHOLE_MESSAGE`` alone when the
    message is replaced by a notice as a whole); ``destinations`` are where the parts still
    delivered are recorded in the ledger.
    """

    action: MailAction
    destinations: tuple[Destination, ...] = ()
    linked: tuple[int, ...] = ()
    reason: str = ""
    kind: QuarantineKind | None = None


def message_label(parts: Sequence[PartSummary]) -> Label:
    return max((p.label for p in parts), default=Label.PUBLIC)


def decide(
    recipient: Recipient, parts: Sequence[PartSummary], policy: MailPolicy
) -> RecipientOutcome:
    """What happens to a message with these parts for this recipient.

    * an outsider: quarantined at or above ``external_label``, else delivered;
    * an internal address without an account: delivered below ``protected_label``, else
      quarantined (there is nobody a gateway link could be made for);
    * a user: delivered when :func:`access.recipient_decision` allows it (recorded per
      phone, or to the person when they have none); otherwise the protected parts are
      replaced by gateway links (or the whole message, when a protected part cannot be cut
      out), or the message is quarantined, as configured.
    """
    label = message_label(parts)
    if not recipient.internal:
        if label >= policy.external_label:
            return RecipientOutcome(
                MailAction.QUARANTINE,
                reason=f"Content labelled {label.value} may not be sent outside the "
                f"organisation (limit: below {policy.external_label.value}).",
                kind=QuarantineKind.EXTERNAL,
            )
        return RecipientOutcome(MailAction.DELIVER, (Destination.external(recipient.address),))
    if recipient.user_id is None:
        if label < policy.protected_label:
            return RecipientOutcome(MailAction.DELIVER, (Destination.external(recipient.address),))
        return RecipientOutcome(
            MailAction.QUARANTINE,
            reason=f"Content labelled {label.value} for an internal address that has no "
            "Spillguard account and so no enrolled phone.",
            kind=QuarantineKind.INTERNAL,
        )
    decision = recipient_decision(recipient.devices, label, protected=policy.protected_label)
    if decision.allow:
        destinations = tuple(
            Destination.device(d.device_id, recipient.user_id) for d in recipient.devices
        ) or (Destination.user(recipient.user_id),)
        return RecipientOutcome(MailAction.DELIVER, destinations)
    reason = decision.reason_text
    if policy.internal_action is InternalAction.QUARANTINE:
        return RecipientOutcome(MailAction.QUARANTINE, reason=reason, kind=QuarantineKind.INTERNAL)
    protected = [p for p in parts if p.label >= policy.protected_label]
    if any(not p.replaceable for p in protected):
        return RecipientOutcome(MailAction.LINK, (), (WHOLE_MESSAGE,), reason)
    linked = tuple(p.index for p in protected)
    delivered = [p for p in parts if p.index not in linked]
    destinations = (Destination.user(recipient.user_id),) if delivered else ()
    return RecipientOutcome(MailAction.LINK, destinations, linked, reason)


# --- grouping recipients -----------------------------------------------------------------


@dataclass
class Group:
    """Recipients that get the same copy of a message (or are held together)."""

    action: MailAction
    recipients: list[str] = field(default_factory=list)  # normalised addresses
    kind: QuarantineKind | None = None


def group_recipients(outcomes: Sequence[tuple[str, RecipientOutcome]]) -> list[Group]:
    """Split recipients by outcome, in a fixed order: quarantines first (nothing leaves),
    then one copy for everyone it goes to unchanged, then one copy per recipient whose
    parts were replaced by their own gateway links."""
    held: dict[QuarantineKind, Group] = {}
    unchanged = Group(MailAction.DELIVER)
    linked: list[Group] = []
    for address, outcome in outcomes:
        if outcome.action is MailAction.QUARANTINE:
            kind = outcome.kind or QuarantineKind.EXTERNAL
            held.setdefault(kind, Group(MailAction.QUARANTINE, kind=kind)).recipients.append(
                address
            )
        elif outcome.action is MailAction.DELIVER:
            unchanged.recipients.append(address)
        else:
            linked.append(Group(MailAction.LINK, [address]))
    groups = [held[k] for k in (QuarantineKind.EXTERNAL, QuarantineKind.INTERNAL) if k in held]
    if unchanged.recipients:
        groups.append(unchanged)
    return groups + linked


# --- headers -----------------------------------------------------------------------------

_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """The header block as a list of fields (each with its folded continuation lines and
    line ends) and everything after it (the blank line and the body)."""
    fields: list[bytes] = []
    position = 0
    while position < len(raw):
        end = raw.find(b"\n", position)
        line = raw[position:] if end < 0 else raw[position : end + 1]
        if line in (b"\r\n", b"\n") or not line.strip(b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif _HEADER_NAME.match(line):
            fields.append(line)
        else:
            break  # not a header line: the body starts here (no blank line)
        position += len(line)
    return fields, raw[position:]


def field_name(header: bytes) -> str:
    match = _HEADER_NAME.match(header)
    return match.group(1).decode("ascii", "replace").lower() if match else ""


def strip_own_headers(raw: bytes) -> bytes:
    """The message without any ``X-Spillguard-*`` field: a sender must not be able to
    forge the filter's verdict for the systems after it."""
    fields, rest = split_message(raw)
    prefix = HEADER_PREFIX.lower()
    kept = [f for f in fields if not field_name(f).startswith(prefix)]
    if len(kept) == len(fields):
        return raw
    return b"".join(kept) + rest


def header_value(raw: bytes, name: str) -> str | None:
    """The first field called ``name``, unfolded, as text (undecoded), or None."""
    wanted = name.lower()
    for header in split_message(raw)[0]:
        if field_name(header) == wanted:
            value = header.split(b":", 1)[1]
            return " ".join(value.decode("utf-8", "replace").split())
    return None


def verdict_headers(
    *, complete: bool, label: Label, customers: int, action: str
) -> list[tuple[str, str]]:
    """The ``X-Spillguard-*`` fields a copy carries: counts and labels, never values."""
    return [
        (f"{HEADER_PREFIX}Verdict", "inspected" if complete else "incomplete"),
        (f"{HEADER_PREFIX}Label", label.value),
        (f"{HEADER_PREFIX}Customers", str(customers)),
        (f"{HEADER_PREFIX}Action", action),
    ]


def with_headers(raw: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """``raw`` with these fields on top (after removing any ``X-Spillguard-*``)."""
    top = b"".join(f"{k}: {v}\r\n".encode("ascii") for k, v in headers)
    return top + strip_own_headers(raw)


# --- idempotency keys --------------------------------------------------------------------


def _digest(*pieces: str) -> str:
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def message_key(message_id: str | None, raw: bytes) -> str:
    """What identifies a message across retries: its Message-ID, or (without one) a hash of
    its bytes as received. A sender's retry carries both unchanged."""
    if message_id and message_id.strip():
        return _digest("message-id", message_id.strip())
    return _digest("raw", hashlib.sha256(raw).hexdigest())


def delivery_source_id(key: str, recipient: str, part: int, destination: Destination) -> str:
    """The ledger's source id of one part of one message reaching one destination for one
    recipient: a retried message records the same rows, so they are recorded once."""
    return f"{key}|{recipient}|part {part}|{destination.describe()}|mail"


def link_ref(key: str, recipient: str, part: int) -> str:
    """The gateway link's source ref: one link per message, recipient and part."""
    return _digest("link", key, recipient, str(part))


def quarantine_ref(key: str, kind: QuarantineKind, recipients: Iterable[str]) -> str:
    """The quarantine's message ref: a retried message is held once."""
    return _digest("quarantine", key, kind.value, ",".join(sorted(recipients)))


# --- words -------------------------------------------------------------------------------


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def describe_content(label: Label, customers: int) -> str:
    if customers:
        return f"{label.value}, naming {_count(customers, 'customer', 'customers')}"
    return label.value


def link_text(
    *,
    name: str,
    label: Label,
    customers: int,
    reason: str,
    url: str,
    expires_at: datetime,
    whole_message: bool = False,
) -> str:
    """The text that replaces a protected part (or message) for a recipient whose phone
    may not hold it."""
    what = "This message" if whole_message else f"The attachment “{name}”"
    lines = [
        f"{what} ({describe_content(label, customers)}) was held back by Spillguard, "
        "because it may reach only phones that meet the security policy.",
        "",
    ]
    if reason:
        lines += [f"Why: {reason}", ""]
    lines += [
        "Open it on your enrolled phone with the Spillguard agent (spillguard agent fetch URL):",
        url,
        "",
        f"The link works until {expires_at:%Y-%m-%d %H:%M} UTC.",
    ]
    return "\n".join(lines) + "\n"


def sender_notice(
    *,
    quarantine_id: int,
    message_id: str | None,
    received_at: datetime,
    recipients: Sequence[str],
    label: Label,
    customers: int,
    reason: str,
) -> tuple[str, str]:
    """Subject and text of the notice a sender gets when their message is held: which
    message (the quarantine's number and time, and its Message-ID if it has one), to whom,
    why. Counts and labels only: never a value from the message, nor its subject."""
    held_for = ", ".join(recipients[:10]) + (
        f" and {len(recipients) - 10} more" if len(recipients) > 10 else ""
    )
    which = [f"Sent: {received_at:%Y-%m-%d %H:%M} UTC"]
    if message_id and message_id.strip():
        which.append(f"Message-ID: {message_id.strip()}")
    which.append(f"Quarantine reference: {quarantine_id}")
    text = "\n".join(
        [
            "Spillguard held back a message you sent, so it has not been delivered to:",
            f"  {held_for}",
            "",
            *which,
            f"What it holds: {describe_content(label, customers)}.",
            f"Why: {reason}",
            "",
            "Your security team can release it if it may go; ask them, quoting the "
            f"quarantine reference {quarantine_id}. Do not send it again by another route.",
        ]
    )
    return "Your message was held by Spillguard", text + "\n"
