"""The master key and the per-purpose keys derived from it.

A 256-bit master key is read from ``SPILLGUARD_MASTER_KEY`` (base64) or from the key file
in the data directory, generated there with mode 0600 at first start.  Nothing uses the
master key directly: each purpose gets its own key through HKDF-SHA256, so a digest key
can never be confused with an encryption key, and later modules add purposes freely.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from spillguard.core.settings import ConfigError, Settings

MASTER_KEY_BYTES = 32


class KeyPurpose(StrEnum):
    """Every purpose a derived key serves.  The value is the HKDF info string: never change it."""

    API_TOKEN_DIGEST = "spillguard/v1/api-token-digest"
    SESSION_DIGEST = "spillguard/v1/session-digest"
    CSRF = "spillguard/v1/csrf"
    SETUP_LINK_DIGEST = "spillguard/v1/setup-link-digest"
    THROTTLE_KEY_DIGEST = "spillguard/v1/throttle-key-digest"
    DEVICE_CREDENTIAL_DIGEST = "spillguard/v1/device-credential-digest"
    ENROLLMENT_TOKEN_DIGEST = "spillguard/v1/enrollment-token-digest"
    CUSTOMER_CONTACT_KEY_WRAP = "spillguard/v1/customer-contact-key-wrap"
    CUSTOMER_ROW_DIGEST = "spillguard/v1/customer-row-digest"
    EDM_SNAPSHOT_MAC = "spillguard/v1/edm-snapshot-mac"
    AUDIT_CHECKPOINT_SIGNING = "spillguard/v1/audit-checkpoint-signing"
    EXPOSURE_STORE_KEY_WRAP = "spillguard/v1/exposure-store-key-wrap"
    GATEWAY_LINK_DIGEST = "spillguard/v1/gateway-link-digest"


@dataclass(frozen=True)
class KeyRing:
    """Holds the master key and hands out derived keys and keyed digests."""

    master: bytes = field(repr=False)

    def derive(self, purpose: KeyPurpose | str, length: int = 32) -> bytes:
        """An independent key for one purpose (HKDF-SHA256, no salt, purpose as info)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=str(purpose).encode())
        return hkdf.derive(self.master)

    def digest(self, purpose: KeyPurpose, value: str | bytes) -> str:
        """HMAC-SHA256 of a value under the purpose key, hex encoded."""
        data = value.encode() if isinstance(value, str) else value
        return hmac.new(self.derive(purpose), data, hashlib.sha256).hexdigest()


def _decode(raw: str, source: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"master key from {source} is not valid base64") from exc
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"master key from {source} must be {MASTER_KEY_BYTES} bytes")
    return key


def check_key_file_mode(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"master key file {path} has mode {mode:04o}; it must be readable by its owner only "
            f"(chmod 600 {path})"
        )


def load_or_create_key_ring(settings: Settings) -> KeyRing:
    """Load the master key, generating the key file on first start if no key is configured."""
    if settings.master_key is not None:
        return KeyRing(_decode(settings.master_key.get_secret_value(), "SPILLGUARD_MASTER_KEY"))
    path = settings.resolved_master_key_file
    if path.exists():
        check_key_file_mode(path)
        try:
            return KeyRing(_decode(path.read_text(), str(path)))
        except OSError as exc:
            raise ConfigError(f"master key file {path} cannot be read: {exc.strerror}") from exc
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_bytes(MASTER_KEY_BYTES)
        # Write a private temporary file, then link it into place: the key file appears
        # complete or not at all, so a process that loses the race never reads it half-written.
        partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(key).decode() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(partial, path)  # fails with FileExistsError if another process won
        finally:
            partial.unlink(missing_ok=True)
    except FileExistsError:  # another process won the race: use its key
        check_key_file_mode(path)
        return KeyRing(_decode(path.read_text(), str(path)))
    except OSError as exc:
        raise ConfigError(f"cannot create master key file {path}: {exc.strerror or exc}") from exc
    return KeyRing(key)
