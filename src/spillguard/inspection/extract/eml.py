"""E-mail messages (RFC 5322 / MIME): headers, body parts and attachments, recursively."""

from __future__ import annotations

import email
from email import policy
from email.message import Message
from typing import TYPE_CHECKING

from spillguard.inspection.extract.budget import size_text
from spillguard.inspection.extract.model import UnscannableCode
from spillguard.inspection.extract.source import Blob
from spillguard.inspection.extract.text import decode_bytes, html_content

if TYPE_CHECKING:
    from spillguard.inspection.extract.dispatch import Context

__all__ = ["extract_eml"]


def extract_eml(ctx: Context, data: bytes, path: str, depth: int) -> None:
    """Headers as ``path/headers``, text bodies as ``path/body``, attachments recursively.

    An attachment goes through the same detection as a file (``path/<file name>``), one
    nesting level deeper; an attached message (message/rfc822) likewise.
    """
    message = email.message_from_bytes(data, policy=policy.default)
    _message(ctx, message, path, depth)


def _header_lines(message: Message) -> list[str]:
    lines: list[str] = []
    for key, raw in message.raw_items():
        try:
            value = str(message[key]) if key.lower() not in {"received"} else str(raw)
        except Exception:  # malformed header: keep it raw, unfolded
            value = str(raw)
        lines.append(f"{key}: {' '.join(value.split())}")
    return lines


def _message(ctx: Context, message: Message, path: str, depth: int) -> None:
    ctx.add_text(f"{path}/headers", "\n".join(_header_lines(message)), "eml", False)
    counters = {"body": 0, "attachment": 0}
    stack: list[Message] = [message]
    while stack:
        ctx.budget.check_time()
        part = stack.pop()
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        _leaf(ctx, part, path, depth, counters)


def _leaf(ctx: Context, part: Message, path: str, depth: int, counters: dict[str, int]) -> None:
    content_type = part.get_content_type()
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    disposition = part.get_content_disposition()
    if content_type == "message/rfc822":
        counters["attachment"] += 1
        inner = part.get_payload()
        child = f"{path}/{filename or 'message {}.eml'.format(counters['attachment'])}"
        first = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(first, Message) and ctx.enter(child, depth + 1):
            _message(ctx, first, child, depth + 1)
        return
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    limit = ctx.limits.max_member_bytes
    inline_text = content_type in {"text/plain", "text/html"} and not filename
    if inline_text and disposition != "attachment":
        if len(data) > limit:
            ctx.unscannable(f"{path}/body", UnscannableCode.TOO_LARGE, _over(limit))
            return
        ctx.budget.count_bytes(len(data))
        counters["body"] += 1
        suffix = "" if counters["body"] == 1 else f" {counters['body']}"
        text = _decode(data, part.get_content_charset())
        if text is None:
            ctx.unscannable(f"{path}/body{suffix}", UnscannableCode.UNSUPPORTED, "binary body")
        elif content_type == "text/html":
            visible, tables = html_content(text, ctx.budget)
            ctx.add_text(f"{path}/body{suffix}.html", visible, "html", False)
            for number, rows in enumerate(tables, 1):
                ctx.add_table(f"{path}/body{suffix}.html/table {number}", rows, "html", False)
        else:
            ctx.add_text(f"{path}/body{suffix}", text, "eml", False)
        return
    counters["attachment"] += 1
    name = filename or f"attachment {counters['attachment']}"
    child = f"{path}/{name}"
    if len(data) > limit:
        ctx.unscannable(child, UnscannableCode.TOO_LARGE, _over(limit))
        return
    ctx.budget.count_bytes(len(data))
    ctx.child(Blob.of_bytes(data), child, name, depth + 1)


def _over(limit: int) -> str:
    return f"over {size_text(limit)}, the limit for one body or attachment"


def _decode(data: bytes, charset: str | None) -> str | None:
    if charset:
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_bytes(data)
