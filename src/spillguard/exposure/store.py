"""Held documents: attachments kept for the download gateway and quarantined messages,
encrypted at rest.

Each document is encrypted (AES-256-GCM) under a data key of its own; the data key is
stored wrapped by the key derived from the master key for
``KeyPurpose.EXPOSURE_STORE_KEY_WRAP``, in the document's row. Erasing a document destroys
its wrapped key, which makes its bytes unreadable wherever copies of them remain
(crypto-erasure); the bytes are deleted too.

Where the encrypted bytes live is the :class:`BlobStore` interface: the database (the
default, nothing to share between server processes) or a directory
(``exposure_store_dir``; on several servers it must be a shared file system).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.errors import DomainError
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.exposure.models import HeldDocument, StoredBlob

NONCE = 12
_KEY_AAD = b"spillguard/exposure/data-key/v1|"
_BLOB_AAD = b"spillguard/exposure/blob/v1|"
_NAME_AAD = b"spillguard/exposure/name/v1|"


class DocumentUnavailable(DomainError):
    status = 410
    slug = "document-unavailable"
    title = "Document unavailable"


class BlobStore(Protocol):
    """Where encrypted document bytes are kept, by document id."""

    def put(self, session: Session, document_id: int, data: bytes) -> None: ...

    def get(self, session: Session, document_id: int) -> bytes | None: ...

    def delete(self, session: Session, document_id: int) -> None: ...


class DatabaseBlobStore:
    """Encrypted bytes in ``exposure_blobs``, in the caller's transaction."""

    def put(self, session: Session, document_id: int, data: bytes) -> None:
        session.add(StoredBlob(document_id=document_id, data=data))
        session.flush()

    def get(self, session: Session, document_id: int) -> bytes | None:
        data = session.scalar(select(StoredBlob.data).where(StoredBlob.document_id == document_id))
        return bytes(data) if data is not None else None

    def delete(self, session: Session, document_id: int) -> None:
        session.execute(delete(StoredBlob).where(StoredBlob.document_id == document_id))


class DirectoryBlobStore:
    """Encrypted bytes as files (mode 0600) under a directory, written durably: a file is
    complete and on disk before the transaction that names it commits."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, document_id: int) -> Path:
        return self.root / f"{document_id:012d}.blob"

    def put(self, session: Session, document_id: int, data: bytes) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self._path(document_id)
        partial = final.with_suffix(f".{secrets.token_hex(4)}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        directory = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, session: Session, document_id: int) -> bytes | None:
        try:
            return self._path(document_id).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, session: Session, document_id: int) -> None:
        self._path(document_id).unlink(missing_ok=True)


def blob_store(directory: Path | None) -> BlobStore:
    """The store the settings choose: a directory if one is set, else the database."""
    return DirectoryBlobStore(directory) if directory is not None else DatabaseBlobStore()


class HeldDocuments:
    """Keep, read and erase encrypted documents."""

    def __init__(self, session: Session, keys: KeyRing, store: BlobStore) -> None:
        self.session = session
        self.store = store
        self._kek = AESGCM(keys.derive(KeyPurpose.EXPOSURE_STORE_KEY_WRAP))

    def hold(
        self,
        data: bytes,
        *,
        name: str,
        media_type: str,
        purpose: str,
        content_id: int | None,
    ) -> HeldDocument:
        """Encrypt and keep ``data``; the row and the bytes are in the caller's transaction
        (a directory store writes the file durably before returning)."""
        document = HeldDocument(
            content_id=content_id,
            purpose=purpose,
            media_type=media_type[:200] or "application/octet-stream",
            size=len(data),
        )
        self.session.add(document)
        self.session.flush()
        tag = str(document.id).encode()
        key = AESGCM.generate_key(bit_length=256)
        cipher = AESGCM(key)
        document.wrapped_key = _seal(self._kek, key, _KEY_AAD + tag)
        document.name_sealed = _seal(cipher, name.encode("utf-8", "replace"), _NAME_AAD + tag)
        self.store.put(self.session, document.id, _seal(cipher, data, _BLOB_AAD + tag))
        self.session.flush()
        return document

    def read(self, document: HeldDocument) -> tuple[str, bytes]:
        """The document's file name and bytes; :class:`DocumentUnavailable` once erased."""
        if document.wrapped_key is None or document.erased_at is not None:
            raise DocumentUnavailable("This document has been deleted.")
        tag = str(document.id).encode()
        blob = self.store.get(self.session, document.id)
        if blob is None:
            raise DocumentUnavailable("This document's stored bytes are missing.")
        try:
            key = _open(self._kek, document.wrapped_key, _KEY_AAD + tag)
            cipher = AESGCM(key)
            name = _open(cipher, document.name_sealed or b"", _NAME_AAD + tag).decode()
            return name, _open(cipher, blob, _BLOB_AAD + tag)
        except (InvalidTag, ValueError):
            raise DocumentUnavailable(
                "This document cannot be decrypted with this installation's master key."
            ) from None

    def erase(self, document: HeldDocument) -> None:
        """Destroy the document's key and bytes; the row stays, marked erased."""
        document.wrapped_key = None
        document.name_sealed = None
        document.erased_at = utcnow()
        self.store.delete(self.session, document.id)
        self.session.flush()


def _seal(cipher: AESGCM, data: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + cipher.encrypt(nonce, data, aad)


def _open(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE + 16:
        raise ValueError("sealed value too short")
    return cipher.decrypt(blob[:NONCE], blob[NONCE:], aad)
