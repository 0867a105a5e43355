"""Signed checkpoints: the log's key, the checkpoint text format, signing and parsing.

A checkpoint is a C2SP signed note (https://c2sp.org/signed-note) whose body follows
the C2SP tlog-checkpoint layout, with one extension line for the time::

    spillguard/acme                     <- origin: the log's name
    1234                                <- tree size, decimal
    Gq3cJrF0hPZ2BYUz9yQ4wJ1mVYkfJ3uNfZ9m3b5sJvI=   <- root hash, base64
    time 2026-11-23T18:00:00Z           <- when it was signed (UTC, seconds)

    — spillguard/acme AbCdEf…           <- signature line

The body is the four lines, each ending in a newline; the signature is Ed25519 over the
body's bytes. The signature line is ``— <key name> <base64(key hash || signature)>``,
where the key name is the origin and the key hash is the first 4 bytes of
``SHA-256(name || "\\n" || 0x01 || public key)`` as signed-note defines it, so the note
can also be checked with Go's ``golang.org/x/mod/sumdb/note`` and the verifier key
:meth:`LogKey.note_verifier_key` prints. Spillguard's own **key id** is the first 8
bytes, hex, of ``SHA-256(raw public key)``.

The Ed25519 private key is derived from the master key (HKDF, purpose
``AUDIT_CHECKPOINT_SIGNING``): it is never stored, and the same master key always
gives the same log key. Everything here is pure: no database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from spillguard.audit.merkle import HASH_SIZE
from spillguard.core.keys import KeyPurpose, KeyRing

ALGORITHM = "Ed25519"
SIGNATURE_SIZE = 64
NOTE_ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space, as signed-note specifies
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class CheckpointError(ValueError):
    """A checkpoint cannot be parsed, or its signature does not verify."""


def origin_for(installation: str | None) -> str:
    """The log's origin line: ``spillguard/<installation>``, or ``spillguard``."""
    return f"spillguard/{installation}" if installation else "spillguard"


@dataclass(frozen=True)
class LogKey:
    """The log's public key and the identifiers derived from it."""

    public_key: bytes  # 32 raw bytes

    @property
    def key_id(self) -> str:
        """Spillguard's key id: the first 8 bytes (hex) of SHA-256 of the raw public key."""
        return hashlib.sha256(self.public_key).digest()[:8].hex()

    def note_key_hash(self, name: str) -> bytes:
        """The signed-note key hash: 4 bytes of SHA-256(name, newline, 0x01, public key)."""
        return hashlib.sha256(name.encode() + b"\n" + NOTE_ALG_ED25519 + self.public_key).digest()[
            :4
        ]

    def note_verifier_key(self, name: str) -> str:
        """The signed-note verifier key ``<name>+<hash hex>+<base64(0x01 || key)>``."""
        encoded = base64.b64encode(NOTE_ALG_ED25519 + self.public_key).decode()
        return f"{name}+{self.note_key_hash(name).hex()}+{encoded}"

    @property
    def pem(self) -> str:
        """The public key as a PEM SubjectPublicKeyInfo (for ``openssl pkeyutl -verify``)."""
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`CheckpointError` unless ``signature`` is this key's over ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            raise CheckpointError("the signature does not verify with the log's key") from None


class Signer:
    """The log's signing key, derived from the master key."""

    def __init__(self, keys: KeyRing) -> None:
        seed = keys.derive(KeyPurpose.AUDIT_CHECKPOINT_SIGNING)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key = LogKey(raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def checkpoint_body(origin: str, size: int, root: bytes, created_at: datetime) -> str:
    """The signed text of a checkpoint (four lines, each ending in a newline)."""
    if "\n" in origin or not origin:
        raise CheckpointError("the origin must be one non-empty line")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes")
    when = created_at.astimezone(UTC).strftime(TIME_FORMAT)
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {when}\n"


def checkpoint_text(body: str, key: LogKey, origin: str, signature: bytes) -> str:
    """The complete signed note: body, a blank line, the signature line."""
    blob = base64.b64encode(key.note_key_hash(origin) + signature).decode()
    return f"{body}\n{SIGNATURE_PREFIX}{origin} {blob}\n"


@dataclass(frozen=True)
class ParsedCheckpoint:
    """A checkpoint read back from its text."""

    origin: str
    size: int
    root: bytes
    created_at: datetime
    body: str
    key_name: str
    key_hash: bytes
    signature: bytes

    def verify(self, key: LogKey) -> None:
        """Raise :class:`CheckpointError` unless this log key signed this checkpoint."""
        if self.key_name != self.origin:
            raise CheckpointError(f"signed by {self.key_name!r}, not by the log {self.origin!r}")
        if self.key_hash != key.note_key_hash(self.key_name):
            raise CheckpointError("signed by a different key than the log's")
        key.verify(self.body.encode(), self.signature)


def parse_checkpoint(text: str) -> ParsedCheckpoint:
    """Parse one signed checkpoint note; raise :class:`CheckpointError` on any defect."""
    body, sep, signatures = text.partition("\n\n")
    if not sep:
        raise CheckpointError("no blank line between the checkpoint and its signature")
    lines = body.split("\n")
    if len(lines) != 4:
        raise CheckpointError(f"a checkpoint has 4 lines before its signature, got {len(lines)}")
    origin, size_text, root_text, time_line = lines
    decimal = size_text.isascii() and size_text.isdigit()
    if not decimal or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"tree size {size_text[:30]!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("the root hash is not base64") from None
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes, got {len(root)}")
    if not time_line.startswith("time "):
        raise CheckpointError("the fourth line must be 'time <UTC time>'")
    try:
        created_at = datetime.strptime(time_line[5:], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise CheckpointError(f"bad time {time_line[5:][:30]!r}") from None
    sig_lines = [line for line in signatures.split("\n") if line]
    if len(sig_lines) != 1 or not sig_lines[0].startswith(SIGNATURE_PREFIX):
        raise CheckpointError("expected exactly one signature line '— <name> <signature>'")
    name, _, blob_text = sig_lines[0][len(SIGNATURE_PREFIX) :].partition(" ")
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("the signature is not base64") from None
    if len(blob) != 4 + SIGNATURE_SIZE:
        raise CheckpointError("the signature has the wrong length")
    return ParsedCheckpoint(
        origin, int(size_text), root, created_at, body + "\n", name, blob[:4], blob[4:]
    )


def parse_checkpoints(text: str) -> list[ParsedCheckpoint]:
    """Parse a file of checkpoints as ``audit checkpoints --export`` writes them.

    Each note ends with its signature line; notes are separated by a blank line.
    """
    notes: list[ParsedCheckpoint] = []
    chunks = text.replace("\r\n", "\n").split("\n\n")
    chunks = [c for c in chunks if c.strip()]
    if len(chunks) % 2:
        raise CheckpointError("the file ends in the middle of a checkpoint")
    for n in range(0, len(chunks), 2):
        try:
            notes.append(parse_checkpoint(f"{chunks[n].strip(chr(10))}\n\n{chunks[n + 1]}\n"))
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {n // 2 + 1} in the file: {exc}") from None
    return notes
