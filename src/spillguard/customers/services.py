"""The customer directory in the database: import, index loading, contact reveal.

* :class:`CustomerImportService` reads a customer CSV as a stream and upserts it
  incrementally in one transaction: keyed field hashes (never values), the contact
  details needed for a notification encrypted under the contact store's data key, and
  an :class:`~spillguard.customers.models.ImportRun` with the counts.
* :class:`EdmIndexLoader` rebuilds the in-memory :class:`~spillguard.customers.edm.EdmIndex`
  from the stored hashes, for the scan engine.
* :class:`ContactService` decrypts contact details for the ``dpo`` role only, for a
  stated notification purpose, and audits every reveal.

Contact encryption is envelope encryption (DESIGN.md "Keys"): a random 256-bit data key
encrypts each field with AES-256-GCM (fresh 96-bit nonce per field; associated data
``customer-contact|v1|<customer row id>|<field>``); the data key is stored wrapped by
AES-256-GCM under ``KeyRing.derive(KeyPurpose.CUSTOMER_CONTACT_KEY_WRAP)``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import sys
import tempfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import insert_rows, utcnow
from spillguard.core.errors import (
    ContentTooLarge,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.customers.columns import ColumnMapping, map_columns
from spillguard.customers.edm import EdmIndex, EdmIndexBuilder, EdmSettings
from spillguard.customers.fields import PRIMARY, FieldKind
from spillguard.customers.models import (
    MAX_EXTERNAL_ID,
    Customer,
    CustomerContact,
    CustomerDataKey,
    CustomerFieldHash,
    HoneytokenCustomer,
    ImportRun,
)
from spillguard.inspection.extract.text import HEAD_SAMPLE, detect_encoding

__all__ = [
    "ContactService",
    "ContactUnreadable",
    "CustomerAuditAction",
    "CustomerDirectoryService",
    "CustomerImportService",
    "DirectoryMisconfigured",
    "EdmIndexLoader",
    "ImportCounts",
    "ImportRunNotFound",
    "RevealedContact",
    "configured_edm_settings",
]

CONTACT_FIELDS = ("name", "email", "postal_address")
_NONCE = 12
_DATA_KEY_AAD = b"spillguard/v1/customer-contact-data-key"
_BATCH = 1000  # rows per round trip; well under SQLite's bound-parameter limit
_MAX_PURPOSE = 500
_MAX_REVEAL = 1000
_BIG_ENDIAN = sys.byteorder == "big"


class CustomerAuditAction(StrEnum):
    IMPORT_COMPLETED = "customers:import:completed"
    CONTACT_REVEALED = "customers:contact:revealed"


class ContactUnreadable(DomainError):
    """A stored contact failed authentication: tampered, moved, or another master key."""

    status = 500
    slug = "contact-unreadable"
    title = "Contact details unreadable"


class CustomerNotFound(NotFound):
    pass


class DirectoryMisconfigured(DomainError):
    """The ``[inspection]`` settings the directory reads values by cannot be used."""

    status = 500
    slug = "directory-misconfigured"
    title = "The customer directory is misconfigured"


def configured_edm_settings(settings: Settings) -> EdmSettings:
    """How this installation reads customers' values (``[inspection]`` and
    ``[inspection.edm]`` of the config file, :mod:`spillguard.inspection.config`): an
    import must normalise values as the scans that look for them do."""
    from spillguard.inspection.config import inspection_config_for

    try:
        return inspection_config_for(settings).edm_settings()
    except ValueError as exc:
        raise DirectoryMisconfigured(f"The inspection settings cannot be used: {exc}") from None


class ImportRunNotFound(NotFound):
    pass


# --- envelope encryption -------------------------------------------------------------


def _contact_aad(customer_row_id: int, field_name: str) -> bytes:
    return f"customer-contact|v1|{customer_row_id}|{field_name}".encode()


class ContactCipher:
    """Wraps data keys under the master-derived key and seals contact fields."""

    def __init__(self, keys: KeyRing) -> None:
        self._kek = AESGCM(keys.derive(KeyPurpose.CUSTOMER_CONTACT_KEY_WRAP))

    def new_wrapped_key(self) -> tuple[bytes, bytes]:
        """A fresh data key and its wrapped form (nonce ‖ ciphertext ‖ tag)."""
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        return key, nonce + self._kek.encrypt(nonce, key, _DATA_KEY_AAD)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return self._kek.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _DATA_KEY_AAD)
        except InvalidTag:
            raise ContactUnreadable(
                "The contact store's data key cannot be unwrapped with this master key."
            ) from None

    @staticmethod
    def seal(data_key: AESGCM, customer_row_id: int, field_name: str, value: str) -> bytes:
        nonce = os.urandom(_NONCE)
        aad = _contact_aad(customer_row_id, field_name)
        return nonce + data_key.encrypt(nonce, value.encode(), aad)

    @staticmethod
    def open(data_key: AESGCM, customer_row_id: int, field_name: str, blob: bytes) -> str:
        try:
            plain = data_key.decrypt(
                blob[:_NONCE], blob[_NONCE:], _contact_aad(customer_row_id, field_name)
            )
        except InvalidTag:
            raise ContactUnreadable(
                "A customer's contact details failed authentication (altered or moved "
                "ciphertext); nothing was revealed."
            ) from None
        return plain.decode()


def _data_key(session: Session, cipher: ContactCipher, *, create: bool) -> tuple[int, AESGCM]:
    row = session.scalar(select(CustomerDataKey).order_by(CustomerDataKey.id.desc()).limit(1))
    if row is None:
        if not create:
            raise ContactUnreadable("The contact store has no data key.")
        _, wrapped = cipher.new_wrapped_key()
        row = CustomerDataKey(wrapped_key=wrapped)
        session.add(row)
        session.flush()
    return row.id, AESGCM(cipher.unwrap(row.wrapped_key))


# --- import ---------------------------------------------------------------------------


@dataclass
class ImportCounts:
    """What an import did, in customers (rows) and invalid values per kind."""

    rows: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    invalid_rows: int = 0
    invalid: dict[str, int] = field(default_factory=dict)


def counts_of(run: ImportRun) -> ImportCounts:
    return ImportCounts(
        rows=run.rows,
        added=run.added,
        changed=run.changed,
        unchanged=run.unchanged,
        removed=run.removed,
        invalid_rows=run.invalid_rows,
        invalid=dict(run.invalid or {}),
    )


def _pack(digests: Sequence[int]) -> bytes:
    packed = array("Q", sorted(digests))
    if not _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpack(blob: bytes) -> array[int]:
    packed = array("Q")
    packed.frombytes(blob)
    if not _BIG_ENDIAN:
        packed.byteswap()
    return packed


def _contact_values(values: dict[FieldKind, list[str]]) -> dict[str, str]:
    """Name, e-mail and postal address as written in the list (first value of each)."""

    def first(kind: FieldKind) -> str:
        items = values.get(kind) or []
        return items[0].strip() if items else ""

    name = first(FieldKind.NAME) or " ".join(
        p for p in (first(FieldKind.FIRST_NAME), first(FieldKind.LAST_NAME)) if p
    )
    address = ", ".join(p for p in (first(FieldKind.ADDRESS), first(FieldKind.POSTCODE)) if p)
    contact = {"name": name, "email": first(FieldKind.EMAIL), "postal_address": address}
    return {k: v for k, v in contact.items() if v}


@dataclass
class _Row:
    external_id: str
    hashes: dict[str, bytes]
    contact: dict[str, str]
    fingerprint: str


@dataclass
class _Known:
    row_id: int
    fingerprint: str | None
    active: bool


class _Source:
    """A seekable binary stream of the CSV, its SHA-256, size and detected encoding."""

    def __init__(self, source: str | Path | IO[bytes], file_name: str | None) -> None:
        self._owned: IO[bytes] | None = None
        if isinstance(source, str | Path):
            path = Path(source)
            try:
                self.stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
            except FileNotFoundError:
                raise InvalidInput(f"no such file: {path}") from None
            except IsADirectoryError:
                raise InvalidInput(f"{path} is a directory, not a CSV file") from None
            except OSError as exc:
                raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
            self._owned = self.stream
            self.name = file_name or path.name
        else:
            self.stream = source
            self.name = file_name or "upload.csv"
            if not source.seekable():
                spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
                while chunk := source.read(1 << 20):
                    spool.write(chunk)
                spool.seek(0)
                self.stream = self._owned = spool  # type: ignore[assignment]
        digest = hashlib.sha256()
        head = b""
        size = 0
        try:
            while chunk := self.stream.read(1 << 20):
                if len(head) < HEAD_SAMPLE:
                    head += chunk[: HEAD_SAMPLE - len(head)]
                digest.update(chunk)
                size += len(chunk)
        except OSError as exc:
            self.close()
            raise InvalidInput(f"cannot read {self.name}: {exc.strerror or exc}") from None
        self.stream.seek(0)
        self.sha256 = digest.hexdigest()
        self.size = size
        encoding = detect_encoding(head, complete=size <= len(head))
        if encoding is None:
            self.close()
            raise InvalidInput(
                f"{self.name} is not readable text (binary content or an unknown encoding)"
            )
        self.encoding = encoding

    def text(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")  # type: ignore[type-var]

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


class CustomerImportService:
    """Imports a customer list: keyed hashes, encrypted contacts, counts, one audit event."""

    def __init__(
        self,
        session: Session,
        principal: Principal,
        keys: KeyRing,
        settings: EdmSettings | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.settings = settings or EdmSettings()

    def import_csv(
        self,
        source: str | Path | IO[bytes],
        *,
        id_column: str | None = None,
        overrides: Sequence[str] = (),
        file_name: str | None = None,
    ) -> ImportRun:
        """Import a CSV (path or binary stream) and return the finished :class:`ImportRun`.

        Every row is a customer: ``added`` (new, or back after removal), ``changed``
        (hashes or contact details differ), ``unchanged``; customers of earlier imports
        missing from this file are ``removed`` (their hashes and contact details are
        deleted).  Runs in the caller's transaction: on any error nothing is stored.
        """
        self.principal.require(Permission.CUSTOMERS_IMPORT)
        src = _Source(source, file_name)
        try:
            return self._import(src, id_column, overrides)
        finally:
            src.close()

    def import_upload(
        self,
        stream: IO[bytes],
        *,
        size: int,
        max_bytes: int,
        file_name: str,
        id_column: str | None = None,
        overrides: Sequence[str] = (),
    ) -> ImportRun:
        """Import an uploaded CSV (API and console) of at most ``max_bytes`` bytes.

        The import runs in the request, so uploads are capped (setting
        ``customers_import_max_upload_bytes``); larger lists go through the CLI.
        """
        self.principal.require(Permission.CUSTOMERS_IMPORT)
        if size > max_bytes:
            raise ContentTooLarge(
                f"{file_name} is {size:,} bytes; this server imports at most {max_bytes:,} "
                "bytes over the web (setting customers_import_max_upload_bytes). Use "
                "`spillguard customers import` for larger lists."
            )
        return self.import_csv(
            stream, id_column=id_column, overrides=overrides, file_name=file_name
        )

    def _import(self, src: _Source, id_column: str | None, overrides: Sequence[str]) -> ImportRun:
        started = utcnow()
        text = src.text()
        # strict: a quote left open reads the rest of the file as one field, and the
        # customers after it would be removed as missing from the list; refuse the file.
        reader = csv.reader(text, strict=True)
        counts = ImportCounts()
        try:
            header = next(reader, None)
            if header is None:
                raise InvalidInput(f"{src.name} is empty: expected a header row")
            mapping = map_columns(header, id_column=id_column, overrides=overrides)
            builder = EdmIndexBuilder(self.keys, self.settings)
            cipher = ContactCipher(self.keys)
            key_id, data_key = _data_key(self.session, cipher, create=True)
            known = self._known()
            seen: set[str] = set()
            batch: list[_Row] = []
            row_key = self.keys.derive(KeyPurpose.CUSTOMER_ROW_DIGEST)
            for row in reader:
                counts.rows += 1
                parsed = self._parse(row, mapping, builder, row_key)
                if parsed is None:
                    counts.invalid_rows += 1
                    continue
                if parsed.external_id in seen:
                    raise InvalidInput(
                        f"{src.name} line {reader.line_num}: a customer id appears more than "
                        "once in the file"
                    )
                seen.add(parsed.external_id)
                batch.append(parsed)
                if len(batch) >= _BATCH:
                    self._flush(batch, known, counts, key_id, data_key)
                    batch = []
            self._flush(batch, known, counts, key_id, data_key)
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{src.name} is not valid {src.encoding} text near line {reader.line_num + 1}"
            ) from None
        except csv.Error as exc:
            raise InvalidInput(
                f"{src.name} line {reader.line_num}: malformed CSV ({exc})"
            ) from None
        finally:
            text.detach()
        # Honeytoken customers are planted in the CRM, not in the list: an import keeps them.
        kept = set(self.session.scalars(select(HoneytokenCustomer.customer_id)))
        gone = [
            k.row_id
            for k in known.values()
            if k.active and k.row_id not in self._touched and k.row_id not in kept
        ]
        self._remove(gone)
        counts.removed = len(gone)
        counts.invalid = dict(sorted(builder.stats.invalid.items()))
        run = ImportRun(
            actor_id=self.principal.user_id,
            actor_label=self.principal.label,
            started_at=started,
            finished_at=utcnow(),
            file_name=src.name[:255],
            file_sha256=src.sha256,
            file_bytes=src.size,
            encoding=src.encoding[:32],
            rows=counts.rows,
            added=counts.added,
            changed=counts.changed,
            unchanged=counts.unchanged,
            removed=counts.removed,
            invalid_rows=counts.invalid_rows,
            invalid=counts.invalid,
            mapping=mapping.describe(),
        )
        self.session.add(run)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            CustomerAuditAction.IMPORT_COMPLETED,
            object_type="customer_import",
            object_id=run.id,
            details={
                "file_sha256": src.sha256,
                "file_bytes": src.size,
                "rows": counts.rows,
                "added": counts.added,
                "changed": counts.changed,
                "unchanged": counts.unchanged,
                "removed": counts.removed,
                "invalid_rows": counts.invalid_rows,
                "invalid": counts.invalid,
            },
        )
        return run

    _touched: set[int]

    def _known(self) -> dict[str, _Known]:
        self._touched = set()
        rows = self.session.execute(
            select(Customer.id, Customer.external_id, Customer.fingerprint, Customer.removed_at)
        )
        return {ext: _Known(rid, fp, removed is None) for rid, ext, fp, removed in rows}

    @staticmethod
    def _parse(
        row: list[str], mapping: ColumnMapping, builder: EdmIndexBuilder, row_key: bytes
    ) -> _Row | None:
        raw_id, values = mapping.read(row)
        external_id = raw_id.strip()
        if (
            not external_id
            or len(external_id) > MAX_EXTERNAL_ID
            or any(ch < " " for ch in external_id)
        ):
            return None
        return CustomerImportService._row_of(external_id, values, builder, row_key)

    @staticmethod
    def _row_of(
        external_id: str,
        values: dict[FieldKind, list[str]],
        builder: EdmIndexBuilder,
        row_key: bytes,
    ) -> _Row:
        by_kind: dict[str, list[int]] = {}
        for field_kind, digest in builder.hash_values(values):
            by_kind.setdefault(field_kind.value, []).append(digest)
        hashes = {name: _pack(d) for name, d in sorted(by_kind.items())}
        contact = _contact_values(values)
        mac = hmac.new(row_key, digestmod=hashlib.sha256)
        for name, packed in hashes.items():
            mac.update(name.encode() + b"\x1f" + packed + b"\x1e")
        for name in CONTACT_FIELDS:
            mac.update(name.encode() + b"\x1f" + contact.get(name, "").encode() + b"\x1e")
        return _Row(external_id, hashes, contact, mac.hexdigest())

    def add_values(self, rows: Sequence[tuple[str, dict[FieldKind, list[str]]]]) -> dict[str, int]:
        """Add new customers given as values by kind, stored exactly as an import stores a
        row (keyed hashes, encrypted contact details); returns their row ids by external id.

        For the honeytoken service, which authorises its caller itself
        (``honeytokens:manage``): no import run, no removal, no audit event here. An
        external id already in the directory is refused.
        """
        ids = [external_id for external_id, _ in rows]
        if len(set(ids)) != len(ids):
            raise InvalidInput("a customer id appears more than once")
        taken = select(Customer.id).where(Customer.external_id.in_(ids)).limit(1)
        if self.session.scalar(taken) is not None:
            raise InvalidInput("a customer id to add is already in the directory")
        builder = EdmIndexBuilder(self.keys, self.settings)
        key_id, data_key = _data_key(self.session, ContactCipher(self.keys), create=True)
        row_key = self.keys.derive(KeyPurpose.CUSTOMER_ROW_DIGEST)
        known: dict[str, _Known] = {}
        self._touched = set()
        batch = [self._row_of(ext, values, builder, row_key) for ext, values in rows]
        self._flush(batch, known, ImportCounts(), key_id, data_key)
        return {external_id: known[external_id].row_id for external_id in ids}

    def _flush(
        self,
        batch: list[_Row],
        known: dict[str, _Known],
        counts: ImportCounts,
        key_id: int,
        data_key: AESGCM,
    ) -> None:
        if not batch:
            return
        now = utcnow()
        new: list[_Row] = []
        rewrite: list[tuple[int, _Row]] = []
        for row in batch:
            entry = known.get(row.external_id)
            if entry is None:
                new.append(row)
                counts.added += 1
                continue
            self._touched.add(entry.row_id)
            if entry.active and entry.fingerprint == row.fingerprint:
                counts.unchanged += 1
                continue
            if entry.active:
                counts.changed += 1
            else:
                counts.added += 1  # back after a removal
            rewrite.append((entry.row_id, row))
        conn = self.session.connection()
        if rewrite:
            ids = [rid for rid, _ in rewrite]
            conn.execute(delete(CustomerFieldHash).where(CustomerFieldHash.customer_id.in_(ids)))
            conn.execute(delete(CustomerContact).where(CustomerContact.customer_id.in_(ids)))
            self.session.execute(
                update(Customer),
                [
                    {"id": rid, "fingerprint": r.fingerprint, "updated_at": now, "removed_at": None}
                    for rid, r in rewrite
                ],
            )
        stored = list(rewrite)
        if new:
            result = conn.execute(
                insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
                [
                    {
                        "external_id": r.external_id,
                        "fingerprint": r.fingerprint,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for r in new
                ],
            )
            new_ids = [rid for (rid,) in result]
            for rid, r in zip(new_ids, new, strict=True):
                known[r.external_id] = _Known(rid, r.fingerprint, True)
                self._touched.add(rid)
            stored.extend(zip(new_ids, new, strict=True))
        hash_rows = [
            {"customer_id": rid, "kind": kind, "digests": packed}
            for rid, r in stored
            for kind, packed in r.hashes.items()
        ]
        insert_rows(conn, CustomerFieldHash.__table__, hash_rows)
        contact_rows: list[dict[str, Any]] = [
            {
                "customer_id": rid,
                "data_key_id": key_id,
                **{
                    name: ContactCipher.seal(data_key, rid, name, value)
                    for name, value in r.contact.items()
                },
            }
            for rid, r in stored
            if r.contact
        ]
        for contact_row in contact_rows:  # executemany needs the same keys in every row
            for name in CONTACT_FIELDS:
                contact_row.setdefault(name, None)
        insert_rows(conn, CustomerContact.__table__, contact_rows)

    def _remove(self, ids: list[int]) -> None:
        now = utcnow()
        conn = self.session.connection()
        for start in range(0, len(ids), _BATCH):
            part = ids[start : start + _BATCH]
            conn.execute(delete(CustomerFieldHash).where(CustomerFieldHash.customer_id.in_(part)))
            conn.execute(delete(CustomerContact).where(CustomerContact.customer_id.in_(part)))
            conn.execute(
                update(Customer)
                .where(Customer.id.in_(part))
                .values(removed_at=now, updated_at=now, fingerprint=None)
            )


# --- index loading --------------------------------------------------------------------


class EdmIndexLoader:
    """Builds the in-memory EDM index from the stored hashes (active customers only)."""

    def __init__(
        self,
        session: Session,
        principal: Principal,
        keys: KeyRing,
        settings: EdmSettings | None = None,
    ) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys
        self.settings = settings or EdmSettings()

    def load(self) -> EdmIndex:
        self.principal.require(Permission.CUSTOMERS_VIEW)
        builder = EdmIndexBuilder(self.keys, self.settings)
        primary_kinds = {k.value for k in PRIMARY}
        conn = self.session.connection()
        customers = conn.execute(
            select(Customer.id, Customer.external_id)
            .where(Customer.removed_at.is_(None))
            .order_by(Customer.id)
            .execution_options(yield_per=20_000)
        )
        # Hashes exist only for active customers; both streams are in customer order.
        hashes = conn.execute(
            select(CustomerFieldHash.customer_id, CustomerFieldHash.kind, CustomerFieldHash.digests)
            .order_by(CustomerFieldHash.customer_id)
            .execution_options(yield_per=20_000)
        )
        pending = next(hashes, None)
        for row_id, external_id in customers:
            primaries: array[int] = array("Q")
            supporting: array[int] = array("Q")
            while pending is not None and pending[0] <= row_id:
                if pending[0] == row_id:
                    target = primaries if pending[1] in primary_kinds else supporting
                    target.extend(_unpack(pending[2]))
                pending = next(hashes, None)
            builder.add_hashed(external_id, primaries, supporting)
        return builder.build()


# --- contact reveal -------------------------------------------------------------------


@dataclass(frozen=True)
class RevealedContact:
    customer_id: str
    name: str | None
    email: str | None
    postal_address: str | None


class ContactService:
    """Decrypts customers' contact details: the dpo role only, for a notification."""

    def __init__(self, session: Session, principal: Principal, keys: KeyRing) -> None:
        self.session = session
        self.principal = principal
        self.keys = keys

    def reveal_for_notification(
        self, customer_ids: Sequence[str], purpose: str
    ) -> list[RevealedContact]:
        self.principal.require(Permission.CUSTOMERS_CONTACT_REVEAL)
        if self.principal.role is not Role.DPO:
            # admin holds every permission (so it may issue any token), but contact
            # details are for the data-protection officer alone.
            raise PermissionDenied("Only the dpo role may reveal customers' contact details.")
        purpose = (purpose or "").strip()
        if not purpose:
            raise InvalidInput("state the notification this reveal is for (purpose)")
        if len(purpose) > _MAX_PURPOSE:
            raise InvalidInput(f"the purpose is longer than {_MAX_PURPOSE} characters")
        wanted = list(dict.fromkeys(i.strip() for i in customer_ids if i and i.strip()))
        if not wanted:
            raise InvalidInput("name at least one customer id")
        if len(wanted) > _MAX_REVEAL:
            raise InvalidInput(f"at most {_MAX_REVEAL} customers per reveal")
        found = {
            c.external_id: c
            for c in self.session.scalars(
                select(Customer).where(
                    Customer.external_id.in_(wanted), Customer.removed_at.is_(None)
                )
            )
        }
        missing = len(wanted) - len(found)
        if missing:
            raise CustomerNotFound(f"{missing} of the customer ids are not in the directory")
        cipher = ContactCipher(self.keys)
        keys_by_id: dict[int, AESGCM] = {}
        contacts = {
            c.customer_id: c
            for c in self.session.scalars(
                select(CustomerContact).where(
                    CustomerContact.customer_id.in_([c.id for c in found.values()])
                )
            )
        }
        revealed: list[RevealedContact] = []
        for external_id in wanted:
            customer = found[external_id]
            contact = contacts.get(customer.id)
            plain: dict[str, str | None] = dict.fromkeys(CONTACT_FIELDS)
            if contact is not None:
                data_key = keys_by_id.get(contact.data_key_id)
                if data_key is None:
                    wrapped = self.session.get(CustomerDataKey, contact.data_key_id)
                    if wrapped is None:
                        raise ContactUnreadable("A contact's data key has been destroyed.")
                    data_key = AESGCM(cipher.unwrap(wrapped.wrapped_key))
                    keys_by_id[contact.data_key_id] = data_key
                for name in CONTACT_FIELDS:
                    blob = getattr(contact, name)
                    if blob is not None:
                        plain[name] = ContactCipher.open(data_key, customer.id, name, blob)
            revealed.append(RevealedContact(external_id, **plain))
        record_event(
            self.session,
            self.principal,
            CustomerAuditAction.CONTACT_REVEALED,
            object_type="customer",
            details={"customer_ids": wanted, "purpose": purpose, "count": len(wanted)},
        )
        return revealed


# --- directory --------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryStats:
    customers: int
    removed: int
    with_contact: int
    hashes_by_kind: dict[str, int]
    last_import: ImportRun | None


class CustomerDirectoryService:
    """Counts and import history: never a value."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def stats(self) -> DirectoryStats:
        self.principal.require(Permission.CUSTOMERS_VIEW)
        active = self.session.scalar(
            select(func.count()).select_from(Customer).where(Customer.removed_at.is_(None))
        )
        removed = self.session.scalar(
            select(func.count()).select_from(Customer).where(Customer.removed_at.is_not(None))
        )
        with_contact = self.session.scalar(select(func.count()).select_from(CustomerContact))
        by_kind = {
            kind: int(n)
            for kind, n in self.session.execute(
                select(CustomerFieldHash.kind, func.count())
                .group_by(CustomerFieldHash.kind)
                .order_by(CustomerFieldHash.kind)
            )
        }
        last = self.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()).limit(1))
        return DirectoryStats(
            int(active or 0), int(removed or 0), int(with_contact or 0), by_kind, last
        )

    def import_run(self, run_id: int) -> ImportRun:
        """One import run (counts and mapping, never a value)."""
        self.principal.require(Permission.CUSTOMERS_VIEW)
        run = self.session.get(ImportRun, run_id)
        if run is None:
            raise ImportRunNotFound(f"There is no customer import {run_id}.")
        return run

    def imports(self, *, limit: int, offset: int) -> tuple[list[ImportRun], int]:
        self.principal.require(Permission.CUSTOMERS_VIEW)
        total = self.session.scalar(select(func.count()).select_from(ImportRun)) or 0
        rows = self.session.scalars(
            select(ImportRun).order_by(ImportRun.id.desc()).limit(limit).offset(offset)
        ).all()
        return list(rows), int(total)
