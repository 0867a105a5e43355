"""Honeytoken customers: synthetic customers planted in the directory and the CRM.

A honeytoken is an ordinary directory entry — keyed hashes for exact data match and
encrypted contact details, stored by the import machinery
(:meth:`~spillguard.customers.services.CustomerImportService.add_values`) — marked by a
``honeytoken_customers`` row. Nobody has a reason to open, export or mail it, so any
sign of it (an access-log entry, its values in inspected content, mail to its address)
is a critical alert (:mod:`spillguard.audit.honeytokens` raises them).

This module is the directory side: generating believable identities that collide with
nobody (:func:`derive_identity`, :func:`parse_phone_range`, :func:`infer_id_format`),
and :class:`HoneytokenService` — create, list (ids only), export (values, for loading
into the CRM), retire and reactivate, each needing ``honeytokens:manage`` and each
recorded in the audit trail.

Retiring a honeytoken (it was found out, or the CRM dropped it) stops it alerting and
takes it out of exact data match: its marker gets ``retired_at``, its keyed hashes are
deleted and its directory entry is marked removed, which changes the directory's
generation so every cached EDM index is rebuilt without it. The marker row, and so its
past alerts and the knowledge that it was a honeytoken, stay. Reactivating it rebuilds
those hashes from the contact store and the key (proved by the row fingerprint the
directory kept) and makes the entry active again.

Values are derived, not random: each honeytoken's phone number and date of birth come
from an HMAC of its customer id under a key derived from the master key, so an export
long after creation recomputes them and checks them against the stored keyed hashes.
Name, e-mail and postal address are read back from the encrypted contact store. No value
is ever written in clear text to the database, the audit trail or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

import phonenumbers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput, NotFound
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.customers.edm import EdmIndexBuilder, FieldHasher
from spillguard.customers.fields import FieldKind, normalise_email, normalise_phone
from spillguard.customers.models import (
    Customer,
    CustomerContact,
    CustomerDataKey,
    CustomerFieldHash,
    HoneytokenCustomer,
    ImportRun,
)
from spillguard.customers.services import (
    ContactCipher,
    CustomerImportService,
    _unpack,
    configured_edm_settings,
)
from spillguard.inspection.detectors.phone import is_drama_number

__all__ = [
    "CSV_HEADERS",
    "HoneytokenAuditAction",
    "HoneytokenIdentity",
    "HoneytokenNotFound",
    "HoneytokenRecord",
    "HoneytokenService",
    "HoneytokenSummary",
    "IdFormat",
    "PhoneRange",
    "ReactivateResult",
    "RetireResult",
    "all_honeytoken_ids",
    "derive_identity",
    "email_digest",
    "honeytoken_ids",
    "infer_id_format",
    "parse_phone_range",
]

MAX_CREATE = 1000
"""Honeytokens per create call: a few dozen per CRM is plenty; 1,000 is one import batch."""
MAX_ATTEMPTS = 64
"""Draws per honeytoken before giving up (a phone range too small or too full)."""
MAX_BATCH = 100
MAX_RETIRE = 1000
"""Honeytokens per retire (or reactivate) call."""
SEED_PURPOSE = "spillguard/v1/honeytoken-seed"
DEFAULT_PHONE_RANGE = "07700900000-07700900999"
DEFAULT_ID_FORMAT = ("C", 7)
_UNIQUE_KINDS = (FieldKind.EMAIL, FieldKind.PHONE, FieldKind.NAME)
_ID_SHAPE = re.compile(r"^(\D*?)(\d{1,18})$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,19}$|^$")
_BATCH = re.compile(r"^[\w .:-]{1,100}$")
_DOB_FIRST = date(1941, 1, 1)
_DOB_DAYS = (date(2005, 12, 31) - _DOB_FIRST).days
CSV_HEADERS = (
    "Customer ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Date of Birth",
    "Address Line 1",
    "Town/City",
    "Postcode",
)
"""Headers of the export: what a CRM import wizard maps without help (and what
``spillguard customers import`` recognises)."""


class HoneytokenAuditAction(StrEnum):
    """Audit event names of honeytoken management (counts and batch only, never ids)."""

    CREATED = "customers:honeytokens:created"
    LISTED = "customers:honeytokens:listed"
    EXPORTED = "customers:honeytokens:exported"
    RETIRED = "customers:honeytokens:retired"
    REACTIVATED = "customers:honeytokens:reactivated"


class HoneytokenNotFound(NotFound):
    """An id given to retire or reactivate is not a honeytoken customer."""

    slug = "honeytoken-not-found"
    title = "Honeytoken not found"


# --- pure generation ----------------------------------------------------------------------


@dataclass(frozen=True)
class PhoneRange:
    """A block of phone numbers the organisation controls, as E.164 digits (no ``+``)."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def number(self, offset: int) -> str:
        """The number ``offset`` places into the range, in E.164 (``+447700900123``)."""
        return f"+{self.start + offset}"

    def __str__(self) -> str:
        return f"{national(self.number(0))}-{national(self.number(self.size - 1))}"


def national(e164: str) -> str:
    """A number as people write it in its country (``07700 900123``)."""
    parsed = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def parse_phone_range(text: str, region: str = "GB") -> PhoneRange:
    """``START-END`` (e.g. ``07700900000-07700900999``; spaces allowed, ``+44`` too).

    Both ends must be valid numbers of the same length (the phone normaliser accepts
    them: libphonenumber's plan or an Ofcom drama range) and END must not precede START.
    """
    start_text, dash, end_text = text.strip().partition("-")
    if not dash or "-" in end_text:
        raise InvalidInput("a phone range is START-END, e.g. 07700900000-07700900999")
    first = normalise_phone(start_text.strip(), region)
    last = normalise_phone(end_text.strip(), region)
    if first is None or last is None:
        raise InvalidInput("each end of the phone range must be a valid phone number")
    start, end = int(first[1:]), int(last[1:])
    if len(str(start)) != len(str(end)) or end < start:
        raise InvalidInput("the phone range's END must follow START, with as many digits")
    if end - start >= 10_000_000:
        raise InvalidInput("the phone range is larger than 10,000,000 numbers")
    return PhoneRange(start, end)


@dataclass(frozen=True)
class IdFormat:
    """A customer id is ``prefix`` + a ``width``-digit number (zero-padded)."""

    prefix: str
    width: int
    low: int
    high: int

    def make(self, number: int) -> str:
        return f"{self.prefix}{number:0{self.width}d}"


def infer_id_format(sample: Iterable[str], prefix: str | None = None) -> IdFormat:
    """The commonest ``prefix + digits`` shape among directory ids (``C0001234``), and the
    span of numbers seen, so honeytoken ids look like the customers around them. An
    explicit ``prefix`` wins; an empty or unshaped directory gives ``C`` + 7 digits."""
    shapes: Counter[tuple[str, int]] = Counter()
    numbers: dict[tuple[str, int], list[int]] = {}
    for external_id in sample:
        match = _ID_SHAPE.match(external_id)
        if match is None:
            continue
        shape = (match.group(1), len(match.group(2)))
        shapes[shape] += 1
        numbers.setdefault(shape, []).append(int(match.group(2)))
    if prefix is not None and not _PREFIX.match(prefix):
        raise InvalidInput("an id prefix is up to 20 letters, digits, _ or -, starting a letter")
    if not shapes:
        chosen = (DEFAULT_ID_FORMAT[0] if prefix is None else prefix, DEFAULT_ID_FORMAT[1])
        return IdFormat(chosen[0], chosen[1], 1, 10 ** chosen[1] - 1)
    (seen_prefix, width), _ = shapes.most_common(1)[0]
    seen = numbers[(seen_prefix, width)]
    low, high = min(seen), max(seen)
    if high - low < 1000:  # too few to tell a span: anywhere the width allows
        low, high = 10 ** (width - 1), 10**width - 1
    return IdFormat(seen_prefix if prefix is None else prefix, width, low, high)


@dataclass(frozen=True)
class HoneytokenIdentity:
    """One synthetic customer's values (clear text: only in memory and in an export)."""

    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str  # E.164
    date_of_birth: date
    street: str
    town: str
    postcode: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def values(self) -> dict[FieldKind, list[str]]:
        """The values by field kind, as a customer-list row gives them to the importer.
        The first address is the full one (the contact store keeps it); the street alone
        is hashed as well, because documents quote it without the town."""
        return {
            FieldKind.NAME: [self.name],
            FieldKind.EMAIL: [self.email],
            FieldKind.PHONE: [self.phone],
            FieldKind.DATE_OF_BIRTH: [self.date_of_birth.isoformat()],
            FieldKind.ADDRESS: [f"{self.street}, {self.town}", self.street],
            FieldKind.POSTCODE: [self.postcode],
        }


def _stream(seed_key: bytes, *parts: object) -> random.Random:
    label = "|".join(str(p) for p in parts).encode()
    digest = hmac.new(seed_key, label, hashlib.sha256).digest()
    # Seeded from a keyed HMAC: reproducible for whoever holds the master key (the export
    # recomputes values), unpredictable for anyone else.
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311


def derived_phone(seed_key: bytes, customer_id: str, attempt: int, phones: PhoneRange) -> str:
    """The phone number of draw ``attempt`` for ``customer_id`` (E.164)."""
    return phones.number(_stream(seed_key, "phone", customer_id, attempt).randrange(phones.size))


def derived_date_of_birth(seed_key: bytes, customer_id: str) -> date:
    """A date of birth between 1941 and 2005, fixed by the customer id alone."""
    return _DOB_FIRST + timedelta(days=_stream(seed_key, "dob", customer_id).randrange(_DOB_DAYS))


def _ascii_word(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def derive_identity(
    fake: Any,
    seed_key: bytes,
    customer_id: str,
    attempt: int,
    *,
    email_domain: str,
    phones: PhoneRange,
) -> HoneytokenIdentity:
    """Draw ``attempt`` of the identity of ``customer_id``: deterministic for a key.

    ``fake`` is a ``Faker("en_GB")``: names and the address come from it, seeded from
    the key; the phone number and date of birth come from the key alone (so they can be
    recomputed at export whatever the Faker version).
    """
    fake.seed_instance(_stream(seed_key, "person", customer_id, attempt).getrandbits(64))
    first, last = fake.first_name(), fake.last_name()
    street = ", ".join(line.strip() for line in fake.street_address().splitlines())
    town, postcode = fake.city(), fake.postcode()
    number = _stream(seed_key, "mailbox", customer_id, attempt).randrange(10, 100)
    local = f"{_ascii_word(first) or 'customer'}.{_ascii_word(last) or 'account'}{number}"
    return HoneytokenIdentity(
        customer_id=customer_id,
        first_name=first,
        last_name=last,
        email=f"{local}@{email_domain}",
        phone=derived_phone(seed_key, customer_id, attempt, phones),
        date_of_birth=derived_date_of_birth(seed_key, customer_id),
        street=street,
        town=town,
        postcode=postcode,
    )


def email_digest(hasher: FieldHasher, address: str) -> bytes | None:
    """The keyed hash of an e-mail address as EDM computes it (8 bytes, big-endian):
    what ``honeytoken_customers.email_digest`` holds, so mail can be matched unread."""
    normalised = normalise_email(address)
    if normalised is None:
        return None
    return hasher(FieldKind.EMAIL, normalised).to_bytes(8, "big")


def _faker() -> Any:
    try:
        from faker import Faker
    except ImportError:  # pragma: no cover - faker is installed with the project
        raise InvalidInput("creating honeytokens needs the faker package installed") from None
    return Faker("en_GB")


# --- queries shared with the triggers and incidents --------------------------------------


def honeytoken_ids(session: Session, external_ids: Iterable[str]) -> set[str]:
    """Which of these directory ids are honeytoken customers (retired ones included)."""
    wanted = sorted({str(i) for i in external_ids})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            session.scalars(
                select(Customer.external_id)
                .join(HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id)
                .where(Customer.external_id.in_(wanted[start : start + 500]))
            )
        )
    return found


def all_honeytoken_ids(session: Session) -> frozenset[str]:
    """The directory ids of every honeytoken customer (retired ones included): one query.
    They number in the hundreds or thousands, so intersecting a large id list with this
    set is cheaper than asking about the list in chunks."""
    return frozenset(
        session.scalars(
            select(Customer.external_id).join(
                HoneytokenCustomer, HoneytokenCustomer.customer_id == Customer.id
            )
        )
    )


# --- the service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoneytokenSummary:
    """A honeytoken as listings show it: id, batch, when, by whom, status. No value."""

    customer_id: str
    batch: str | None
    created_at: datetime
    created_by: str | None
    status: str  # active | retired | removed


@dataclass(frozen=True)
class HoneytokenRecord:
    """A honeytoken with its values, for loading into the CRM (export only)."""

    identity: HoneytokenIdentity
    batch: str | None
    phone_known: bool = True

    def row(self) -> list[str]:
        """The CSV row under :data:`CSV_HEADERS`."""
        i = self.identity
        return [
            i.customer_id,
            i.first_name,
            i.last_name,
            i.email,
            national(i.phone) if self.phone_known else "",
            i.date_of_birth.isoformat(),
            i.street,
            i.town,
            i.postcode,
        ]


@dataclass(frozen=True)
class CreateResult:
    records: list[HoneytokenRecord]
    batch: str | None
    phone_range: str
    drama_range: bool


@dataclass(frozen=True)
class ReactivateResult:
    """What a reactivate did: the ids made active again and those that were active."""

    reactivated: list[str]
    already_active: list[str]


@dataclass(frozen=True)
class RetireResult:
    """What a retire did: the ids newly retired and those retired before (no change)."""

    retired: list[str]
    already_retired: list[str]


class HoneytokenService:
    """Creates, lists, exports, retires and reactivates honeytoken customers;
    ``honeytokens:manage`` for each, and each recorded in the audit trail (counts and
    batch, never ids or values)."""

    def __init__(
        self, session: Session, principal: Principal, keys: KeyRing, settings: Settings
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.settings = settings

    # create ---------------------------------------------------------------------------------

    def create(
        self,
        count: int,
        *,
        batch: str | None = None,
        email_domain: str | None = None,
        phone_range: str | None = None,
        id_prefix: str | None = None,
    ) -> CreateResult:
        """Add ``count`` honeytoken customers to the directory and return their values.

        Every e-mail address, phone number, name and id is new: not in the directory's
        hashes (active customers) and not drawn twice here.
        """
        self.principal.require(Permission.HONEYTOKENS_MANAGE)
        if not 1 <= count <= MAX_CREATE:
            raise InvalidInput(f"create between 1 and {MAX_CREATE} honeytokens at a time")
        batch = self._batch(batch)
        domain = self._domain(email_domain)
        phones = parse_phone_range(phone_range or self.settings.honeytoken_phone_range)
        if phones.size < 2 * count:
            raise InvalidInput(
                f"the phone range {phones} has {phones.size:,} numbers: give one with at "
                f"least {2 * count:,} for {count:,} honeytokens"
            )
        finished = self.session.scalar(
            select(func.count()).select_from(ImportRun).where(ImportRun.finished_at.is_not(None))
        )
        if not finished:
            raise InvalidInput(
                "import the customer list first: honeytokens hide among real customers "
                "(and exact data match is off until a list is imported)"
            )
        ids = self._new_ids(count, id_prefix or self.settings.honeytoken_id_prefix)
        identities = self._draw(ids, domain, phones)
        stored = CustomerImportService(
            self.session, self.principal, self.keys, configured_edm_settings(self.settings)
        ).add_values([(i.customer_id, i.values()) for i in identities])
        hasher = FieldHasher(self.keys)
        now = utcnow()
        for identity in identities:
            self.session.add(
                HoneytokenCustomer(
                    customer_id=stored[identity.customer_id],
                    email_digest=email_digest(hasher, identity.email),
                    batch=batch,
                    created_at=now,
                    created_by_label=(self.principal.label or "")[:320] or None,
                )
            )
        self.session.flush()
        drama = any(
            is_drama_number(phonenumbers.parse(phones.number(at), None))
            for at in (0, phones.size - 1)
        )
        record_event(
            self.session,
            self.principal,
            HoneytokenAuditAction.CREATED,
            object_type="honeytokens",
            object_id=batch,
            # The range is kept here (it is no customer value) so an export can recompute
            # the numbers drawn from it.
            details={
                "count": count,
                "batch": batch,
                "phone_range": str(phones),
                "drama_phone_range": drama,
            },
        )
        return CreateResult(
            [HoneytokenRecord(i, batch) for i in identities], batch, str(phones), drama
        )

    def _batch(self, batch: str | None) -> str | None:
        value = " ".join((batch or "").split())
        if not value:
            return None
        if not _BATCH.match(value):
            raise InvalidInput(
                f"a batch name is 1 to {MAX_BATCH} letters, digits, spaces, '.', ':', '_' or '-'"
            )
        return value

    def _domain(self, given: str | None) -> str:
        domain = (given or self.settings.honeytoken_email_domain or "").strip().lower()
        if not domain:
            raise InvalidInput(
                "name the mail domain for honeytoken addresses (--email-domain or the "
                "setting honeytoken_email_domain): one the organisation controls, whose "
                "mail reaches the mail filter"
            )
        checked = normalise_email(f"honeytoken@{domain}")
        if checked is None or "." not in domain:
            raise InvalidInput(f"{domain!r} is not a valid mail domain")
        return checked.partition("@")[2]

    def _new_ids(self, count: int, prefix: str | None) -> list[str]:
        """Ids in the directory's format: numbers inside the span its ids use (read from
        its oldest and newest ids, so a directory numbered densely from 0 still shows its
        span) and not taken; where that span is full, just above it, as the newest
        customers' ids would be."""
        external = Customer.external_id
        newest = self.session.scalars(select(external).order_by(Customer.id.desc()).limit(500))
        oldest = self.session.scalars(select(external).order_by(Customer.id).limit(500))
        shape = infer_id_format([*newest, *oldest], prefix)
        spans = [(shape.low, shape.high)]
        top = 10**shape.width - 1
        if shape.high < top:
            spans.append((shape.high + 1, min(top, shape.high + max(1000, 10 * count))))
        rng = secrets.SystemRandom()
        chosen: list[str] = []
        for low, high in spans:
            for _ in range(MAX_ATTEMPTS):
                want = count - len(chosen)
                candidates = {shape.make(rng.randint(low, high)) for _ in range(want * 2)} - set(
                    chosen
                )
                taken = set(self.session.scalars(select(external).where(external.in_(candidates))))
                chosen.extend(sorted(candidates - taken)[:want])
                if len(chosen) == count:
                    return chosen
        raise InvalidInput("no free customer ids in the directory's id format: give --id-prefix")

    def _draw(
        self, ids: Sequence[str], domain: str, phones: PhoneRange
    ) -> list[HoneytokenIdentity]:
        """Draw an identity per id, unique among themselves, then compare them with the
        directory's hashes in one streamed pass and redraw the few that collide (memory
        stays proportional to the honeytokens, not to the directory)."""
        builder = EdmIndexBuilder(self.keys)
        seed_key = self.keys.derive(SEED_PURPOSE)
        fake = _faker()
        attempts = dict.fromkeys(ids, 0)
        chosen: dict[str, tuple[HoneytokenIdentity, dict[FieldKind, set[int]]]] = {}
        pending = list(ids)
        while pending:
            used: dict[FieldKind, set[int]] = {k: set() for k in _UNIQUE_KINDS}
            for _, digests in chosen.values():
                for kind, found in digests.items():
                    used[kind] |= found
            for customer_id in pending:
                while attempts[customer_id] < MAX_ATTEMPTS:
                    identity = derive_identity(
                        fake,
                        seed_key,
                        customer_id,
                        attempts[customer_id],
                        email_domain=domain,
                        phones=phones,
                    )
                    hashes = self._digests(builder, identity)
                    if hashes is not None and not any(used[k] & d for k, d in hashes.items()):
                        chosen[customer_id] = (identity, hashes)
                        for kind, found in hashes.items():
                            used[kind] |= found
                        break
                    attempts[customer_id] += 1
                else:
                    raise InvalidInput(
                        f"could not draw {len(ids)} honeytokens with unused values: the "
                        f"phone range {phones} is too full; give a larger --phone-range"
                    )
            pending = self._colliding({c: chosen[c][1] for c in pending})
            for customer_id in pending:
                del chosen[customer_id]
                attempts[customer_id] += 1
        return [chosen[c][0] for c in ids]

    def _colliding(self, drawn: dict[str, dict[FieldKind, set[int]]]) -> list[str]:
        """The ids whose e-mail, phone or full-name hash an active customer already has
        (honeytokens of earlier batches included): one streamed pass over those hashes."""
        owners: dict[FieldKind, dict[int, str]] = {k: {} for k in _UNIQUE_KINDS}
        for customer_id, digests in drawn.items():
            for kind, found in digests.items():
                for digest in found:
                    owners[kind][digest] = customer_id
        wanted = {kind: set(by_digest) for kind, by_digest in owners.items()}
        clashing: set[str] = set()
        rows = self.session.execute(
            select(CustomerFieldHash.kind, CustomerFieldHash.digests)
            .where(CustomerFieldHash.kind.in_([k.value for k in _UNIQUE_KINDS]))
            .execution_options(yield_per=20_000)
        )
        for kind_name, packed in rows:
            kind = FieldKind(kind_name)
            for digest in wanted[kind].intersection(_unpack(packed)):
                clashing.add(owners[kind][digest])
        return sorted(clashing)

    @staticmethod
    def _digests(
        builder: EdmIndexBuilder, identity: HoneytokenIdentity
    ) -> dict[FieldKind, set[int]] | None:
        """The e-mail, phone and full-name hashes the directory would store for it."""
        pairs = builder.hash_values(
            {
                FieldKind.EMAIL: [identity.email],
                FieldKind.PHONE: [identity.phone],
                FieldKind.NAME: [identity.name],
            }
        )
        found: dict[FieldKind, set[int]] = {k: set() for k in _UNIQUE_KINDS}
        for kind, digest in pairs:
            if kind in found:
                found[kind].add(digest)
        return found if all(found.values()) else None

    # list ---------------------------------------------------------------------------------------

    def listing(
        self, *, limit: int = 100, offset: int = 0, batch: str | None = None
    ) -> tuple[list[HoneytokenSummary], int]:
        """Honeytokens, newest first: ids, batch, created, status — never a value.

        Which ids are honeytokens is itself sensitive (an insider who knew would avoid
        them), so listing needs ``honeytokens:manage`` and is audited too."""
        self.principal.require(Permission.HONEYTOKENS_MANAGE)
        query = select(HoneytokenCustomer, Customer.external_id, Customer.removed_at).join(
            Customer, Customer.id == HoneytokenCustomer.customer_id
        )
        counting = select(func.count()).select_from(HoneytokenCustomer)
        if batch is not None:
            query = query.where(HoneytokenCustomer.batch == batch)
            counting = counting.where(HoneytokenCustomer.batch == batch)
        total = int(self.session.scalar(counting) or 0)
        rows = self.session.execute(
            query.order_by(HoneytokenCustomer.created_at.desc(), Customer.external_id)
            .limit(limit)
            .offset(offset)
        ).all()
        record_event(
            self.session,
            self.principal,
            HoneytokenAuditAction.LISTED,
            object_type="honeytokens",
            object_id=batch,
            details={"batch": batch, "shown": len(rows), "total": total},
        )
        return [
            HoneytokenSummary(
                customer_id=external_id,
                batch=row.batch,
                created_at=row.created_at,
                created_by=row.created_by_label,
                status=_status(row, removed_at),
            )
            for row, external_id, removed_at in rows
        ], total

    # export -------------------------------------------------------------------------------------

    def export(
        self, *, batch: str | None = None, phone_range: str | None = None
    ) -> list[HoneytokenRecord]:
        """Every active honeytoken (of ``batch``) with its values, for the CRM; audited.

        Name, e-mail and address are decrypted from the contact store. The phone number
        is recomputed from the key and checked against the stored hash, trying the given
        range, the setting's and the default; a number no range reproduces is left empty
        (``phone_known`` false) rather than guessed.
        """
        self.principal.require(Permission.HONEYTOKENS_MANAGE)
        query = (
            select(HoneytokenCustomer, Customer, CustomerContact)
            .join(Customer, Customer.id == HoneytokenCustomer.customer_id)
            .join(CustomerContact, CustomerContact.customer_id == Customer.id)
            .where(Customer.removed_at.is_(None), HoneytokenCustomer.retired_at.is_(None))
            .order_by(Customer.external_id)
        )
        if batch is not None:
            query = query.where(HoneytokenCustomer.batch == batch)
        rows = self.session.execute(query).all()
        ranges = self._ranges(phone_range)
        hasher = FieldHasher(self.keys)
        seed_key = self.keys.derive(SEED_PURPOSE)
        cipher = ContactCipher(self.keys)
        data_keys: dict[int, AESGCM] = {}
        records: list[HoneytokenRecord] = []
        for marker, customer, contact in rows:
            plain = self._plain_contact(cipher, data_keys, customer, contact)
            if plain is None:
                continue  # crypto-erased: nothing to export
            phone = self._phone(hasher, seed_key, customer, ranges)
            identity = _identity_of(customer.external_id, plain, phone or "", seed_key)
            records.append(HoneytokenRecord(identity, marker.batch, phone_known=phone is not None))
        record_event(
            self.session,
            self.principal,
            HoneytokenAuditAction.EXPORTED,
            object_type="honeytokens",
            object_id=batch,
            details={
                "batch": batch,
                "count": len(records),
                "phones_unknown": sum(not r.phone_known for r in records),
            },
        )
        return records

    # retire -------------------------------------------------------------------------------------

    def retire(self, customer_ids: Sequence[str]) -> RetireResult:
        """Retire these honeytokens: no new alert from them, out of exact data match; their
        past alerts stay readable and ``listing`` shows them as retired.

        All or nothing: an id that is not a honeytoken refuses the whole call
        (:class:`HoneytokenNotFound`). Retiring one again changes nothing (idempotent).
        Recorded as one audit event in the caller's transaction (counts only).
        """
        self.principal.require(Permission.HONEYTOKENS_MANAGE)
        wanted = self._wanted(customer_ids, "retire")
        found = self._markers(wanted)
        now = utcnow()
        fresh = [i for i in wanted if found[i][0].retired_at is None]
        rows = [found[i][1].id for i in fresh]
        if rows:
            self.session.execute(
                update(HoneytokenCustomer)
                .where(HoneytokenCustomer.customer_id.in_(rows))
                .values(retired_at=now)
            )
            # Out of exact data match: no hashes to match, and a new directory generation
            # (fewer active customers) so cached indexes are rebuilt without them.
            self.session.execute(
                delete(CustomerFieldHash).where(CustomerFieldHash.customer_id.in_(rows))
            )
            self.session.execute(
                update(Customer)
                .where(Customer.id.in_(rows), Customer.removed_at.is_(None))
                .values(removed_at=now, updated_at=now)
            )
        record_event(
            self.session,
            self.principal,
            HoneytokenAuditAction.RETIRED,
            object_type="honeytokens",
            details={
                "requested": len(wanted),
                "retired": len(fresh),
                "already_retired": len(wanted) - len(fresh),
            },
        )
        return RetireResult(fresh, [i for i in wanted if i not in set(fresh)])

    # reactivate ---------------------------------------------------------------------------------

    def reactivate(
        self, customer_ids: Sequence[str], *, phone_range: str | None = None
    ) -> ReactivateResult:
        """Make retired honeytokens active again: they alert again and exact data match
        finds them again. The mirror of :meth:`retire`.

        Retiring deleted their keyed hashes, so they are rebuilt from what is kept: name,
        e-mail and address from the encrypted contact store, date of birth from the key,
        and the phone number recomputed from the key over the known ranges (``phone_range``,
        those the creations recorded, the setting's, the default) — the candidate whose
        values give the directory entry's stored row fingerprint (an HMAC over every hash
        and contact value, which retiring kept) is the one created, so nothing is guessed.
        The directory entry is active again and the directory's generation changes, so no
        cached EDM index built while it was retired is reused.

        All or nothing: an id that is not a honeytoken refuses the whole call
        (:class:`HoneytokenNotFound`); so does one whose values cannot be rebuilt, or whose
        e-mail, phone or name now belongs to another active customer (a real customer
        would then raise honeytoken alerts). Reactivating an active one changes nothing
        (idempotent). One audit event in the caller's transaction (counts only).
        """
        self.principal.require(Permission.HONEYTOKENS_MANAGE)
        wanted = self._wanted(customer_ids, "reactivate")
        found = self._markers(wanted)
        fresh = [i for i in wanted if found[i][0].retired_at is not None]
        rebuilt = self._rebuild([found[i][1] for i in fresh], phone_range) if fresh else {}
        if rebuilt:
            clashing = self._colliding(
                {
                    external_id: {
                        kind: set(_unpack(packed))
                        for kind_name, packed in hashes.items()
                        if (kind := FieldKind(kind_name)) in _UNIQUE_KINDS
                    }
                    for external_id, hashes in rebuilt.items()
                }
            )
            if clashing:
                raise InvalidInput(
                    f"{len(clashing)} of the honeytokens' values now belong to another "
                    f"customer in the directory: {', '.join(c[:40] for c in clashing[:5])}; "
                    "leave them retired and create new ones",
                    field="customer_ids",
                )
            now = utcnow()
            rows = [found[i][1].id for i in fresh]
            self.session.execute(
                delete(CustomerFieldHash).where(CustomerFieldHash.customer_id.in_(rows))
            )
            self.session.execute(
                insert(CustomerFieldHash),
                [
                    {"customer_id": found[external_id][1].id, "kind": kind, "digests": packed}
                    for external_id, hashes in rebuilt.items()
                    for kind, packed in hashes.items()
                ],
            )
            self.session.execute(
                update(Customer)
                .where(Customer.id.in_(rows))
                .values(removed_at=None, updated_at=now)
            )
            self.session.execute(
                update(HoneytokenCustomer)
                .where(HoneytokenCustomer.customer_id.in_(rows))
                .values(retired_at=None)
            )
        record_event(
            self.session,
            self.principal,
            HoneytokenAuditAction.REACTIVATED,
            object_type="honeytokens",
            details={
                "requested": len(wanted),
                "reactivated": len(fresh),
                "already_active": len(wanted) - len(fresh),
            },
        )
        return ReactivateResult(fresh, [i for i in wanted if i not in set(fresh)])

    def _wanted(self, customer_ids: Sequence[str], verb: str) -> list[str]:
        wanted = list(dict.fromkeys(i.strip() for i in customer_ids if i and i.strip()))
        if not wanted:
            raise InvalidInput("name at least one honeytoken customer id", field="customer_ids")
        if len(wanted) > MAX_RETIRE:
            raise InvalidInput(f"{verb} at most {MAX_RETIRE} honeytokens at a time")
        return wanted

    def _markers(self, wanted: list[str]) -> dict[str, tuple[HoneytokenCustomer, Customer]]:
        """The marker and directory entry of each id; refuses all if one is no honeytoken."""
        found = {
            external_id: (marker, customer)
            for marker, customer, external_id in self.session.execute(
                select(HoneytokenCustomer, Customer, Customer.external_id)
                .join(Customer, Customer.id == HoneytokenCustomer.customer_id)
                .where(Customer.external_id.in_(wanted))
            )
        }
        missing = [i for i in wanted if i not in found]
        if missing:
            shown = ", ".join(m[:40] for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise HoneytokenNotFound(
                f"{len(missing)} of the ids {'is' if len(missing) == 1 else 'are'} not a "
                f"honeytoken customer: {shown}"
            )
        return found

    def _rebuild(
        self, customers: Sequence[Customer], phone_range: str | None
    ) -> dict[str, dict[str, bytes]]:
        """The keyed hashes (packed, by kind) each retired honeytoken had, rebuilt from the
        contact store and the key and proved by the row fingerprint; refuses all if one
        cannot be."""
        importer = CustomerImportService(
            self.session, self.principal, self.keys, configured_edm_settings(self.settings)
        )
        builder = EdmIndexBuilder(self.keys, importer.settings)
        row_key = self.keys.derive(KeyPurpose.CUSTOMER_ROW_DIGEST)
        seed_key = self.keys.derive(SEED_PURPOSE)
        ranges = self._ranges(phone_range)
        cipher = ContactCipher(self.keys)
        data_keys: dict[int, AESGCM] = {}
        contacts = {
            c.customer_id: c
            for c in self.session.scalars(
                select(CustomerContact).where(
                    CustomerContact.customer_id.in_([c.id for c in customers])
                )
            )
        }
        rebuilt: dict[str, dict[str, bytes]] = {}
        lost: list[str] = []
        for customer in customers:
            contact = contacts.get(customer.id)
            plain = (
                None
                if contact is None
                else self._plain_contact(cipher, data_keys, customer, contact)
            )
            hashes = None
            if plain is not None:
                hashes = _matching_hashes(customer, plain, seed_key, ranges, builder, row_key)
            if hashes is None:
                lost.append(customer.external_id)
            else:
                rebuilt[customer.external_id] = hashes
        if lost:
            raise InvalidInput(
                f"the values of {len(lost)} retired honeytoken(s) cannot be rebuilt "
                f"({', '.join(i[:40] for i in lost[:5])}): give the phone range they were "
                "created with, or create new ones",
                field="customer_ids",
            )
        return rebuilt

    def _plain_contact(
        self,
        cipher: ContactCipher,
        data_keys: dict[int, AESGCM],
        customer: Customer,
        contact: CustomerContact,
    ) -> dict[str, str] | None:
        """Name, e-mail and postal address decrypted (None if the data key is erased)."""
        key = data_keys.get(contact.data_key_id)
        if key is None:
            wrapped = self.session.get(CustomerDataKey, contact.data_key_id)
            if wrapped is None:
                return None
            key = data_keys[contact.data_key_id] = AESGCM(cipher.unwrap(wrapped.wrapped_key))
        return {
            name: ContactCipher.open(key, customer.id, name, blob) if blob else ""
            for name, blob in (
                ("name", contact.name),
                ("email", contact.email),
                ("postal_address", contact.postal_address),
            )
        }

    def _ranges(self, given: str | None) -> list[PhoneRange]:
        """Ranges the phone numbers may come from: the one given, those recorded by the
        creations (their audit events), the setting's and the default."""
        created = self.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == HoneytokenAuditAction.CREATED)
        )
        recorded = [d.get("phone_range") for d in created if isinstance(d, dict)]
        texts = [given, *recorded, self.settings.honeytoken_phone_range, DEFAULT_PHONE_RANGE]
        ranges: list[PhoneRange] = []
        for text in dict.fromkeys(t for t in texts if isinstance(t, str) and t):
            ranges.append(parse_phone_range(text))
        return ranges

    def _phone(
        self, hasher: FieldHasher, seed_key: bytes, customer: Customer, ranges: list[PhoneRange]
    ) -> str | None:
        row = self.session.get(CustomerFieldHash, (customer.id, FieldKind.PHONE.value))
        if row is None:
            return None
        stored = set(_unpack(row.digests))
        for phones in ranges:
            for attempt in range(MAX_ATTEMPTS):
                number = derived_phone(seed_key, customer.external_id, attempt, phones)
                if hasher(FieldKind.PHONE, number) in stored:
                    return number
        return None


def _identity_of(
    customer_id: str, plain: dict[str, str], phone: str, seed_key: bytes
) -> HoneytokenIdentity:
    """A honeytoken's identity from its decrypted contact values (the postal address is
    ``street, town, postcode`` as created) and its derived date of birth."""
    first, _, last = plain["name"].partition(" ")
    parts = plain["postal_address"].split(", ")
    postcode = parts[-1] if len(parts) >= 3 else ""
    town = parts[-2] if len(parts) >= 3 else ""
    street = ", ".join(parts[:-2]) if len(parts) >= 3 else plain["postal_address"]
    return HoneytokenIdentity(
        customer_id=customer_id,
        first_name=first,
        last_name=last,
        email=plain["email"],
        phone=phone,
        date_of_birth=derived_date_of_birth(seed_key, customer_id),
        street=street,
        town=town,
        postcode=postcode,
    )


def _matching_hashes(
    customer: Customer,
    plain: dict[str, str],
    seed_key: bytes,
    ranges: Sequence[PhoneRange],
    builder: EdmIndexBuilder,
    row_key: bytes,
) -> dict[str, bytes] | None:
    """The packed hashes of the candidate identity (phone drawn at each attempt, from each
    range: most honeytokens were drawn at the first attempt) whose row fingerprint is the
    one stored for ``customer``; None if no candidate gives it."""
    external_id = customer.external_id
    for attempt in range(MAX_ATTEMPTS):
        for phones in ranges:
            phone = derived_phone(seed_key, external_id, attempt, phones)
            identity = _identity_of(external_id, plain, phone, seed_key)
            row = CustomerImportService._row_of(external_id, identity.values(), builder, row_key)
            if hmac.compare_digest(row.fingerprint, customer.fingerprint or ""):
                return row.hashes
    return None


def _status(row: HoneytokenCustomer, removed_at: datetime | None) -> str:
    if row.retired_at is not None:
        return "retired"  # retiring marks the directory entry removed as well
    return "removed" if removed_at is not None else "active"
