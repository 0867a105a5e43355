"""Gateway links: a held document served only to its recipient's enrolled, compliant phone.

A link's secret is random, or — when the link is made for a known delivery (a message id
and recipient) — derived from the link key and that delivery, so a retried message gets
the same link instead of a second one. Only a keyed digest of the secret is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.exposure.models import GatewayLink, HeldDocument

TOKEN_BYTES = 32
GATEWAY_PATH = "/gateway/"


def link_digest(keys: KeyRing, token: str) -> str:
    return keys.digest(KeyPurpose.GATEWAY_LINK_DIGEST, token)


def derived_token(keys: KeyRing, source_ref: str) -> str:
    """The link secret for a known delivery: the same delivery always gets the same one."""
    key = keys.derive(KeyPurpose.GATEWAY_LINK_DIGEST)
    raw = hmac.new(key, b"link-token|" + source_ref.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{GATEWAY_PATH}{token}"


@dataclass(frozen=True)
class MadeLink:
    link: GatewayLink
    token: str
    created: bool  # False when the delivery already had its link (a retry)


def ensure_link(
    session: Session,
    keys: KeyRing,
    *,
    user_id: int,
    days: int,
    hold: Callable[[], HeldDocument],
    source_ref: str | None = None,
    now: datetime | None = None,
) -> MadeLink:
    """The gateway link for a delivery, made (and its document held, by calling ``hold``)
    unless the same ``source_ref`` already has one."""
    now = now or utcnow()
    if source_ref is not None:
        token = derived_token(keys, source_ref)
        existing = session.scalar(select(GatewayLink).where(GatewayLink.source_ref == source_ref))
        if existing is not None:
            return MadeLink(existing, token, False)
    else:
        token = secrets.token_urlsafe(TOKEN_BYTES)
    document = hold()
    link = GatewayLink(
        token_digest=link_digest(keys, token),
        document_id=document.id,
        user_id=user_id,
        source_ref=source_ref,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(link)
    session.flush()
    return MadeLink(link, token, True)


def find_link(session: Session, keys: KeyRing, token: str) -> GatewayLink | None:
    if not token or len(token) > 100:
        return None
    return session.scalar(
        select(GatewayLink).where(GatewayLink.token_digest == link_digest(keys, token))
    )
