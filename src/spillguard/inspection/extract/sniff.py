"""What an item really is, from its first bytes (and zip member names), not its name."""

from __future__ import annotations

import re

__all__ = ["BINARY_SIGNATURES", "looks_like_email", "sniff_binary", "zip_kind"]

_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x89PNG\r\n\x1a\n", "image (png)"),
    (b"\xff\xd8\xff", "image (jpeg)"),
    (b"GIF87a", "image (gif)"),
    (b"GIF89a", "image (gif)"),
    (b"II*\x00", "image (tiff)"),
    (b"MM\x00*", "image (tiff)"),
    (b"\x7fELF", "executable"),
    (b"SQLite format 3\x00", "sqlite database"),
)


def sniff_binary(head: bytes) -> str | None:
    """``zip``, ``pdf``, ``cfb`` or a name for an unsupported binary format; else None."""
    if head.startswith(_ZIP):
        return "zip"
    if head.startswith(CFB):
        return "cfb"
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for signature, kind in BINARY_SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def zip_kind(names: set[str], mimetype: bytes | None) -> str:
    """Tell an Office or OpenDocument package from a plain zip by its members."""
    if mimetype is not None:
        kind = mimetype.strip().decode("ascii", "replace")
        if kind == "application/vnd.oasis.opendocument.spreadsheet":
            return "ods"
        if kind == "application/vnd.oasis.opendocument.text":
            return "odt"
    if "[Content_Types].xml" in names:
        if "xl/workbook.xml" in names:
            return "xlsx"
        if "word/document.xml" in names:
            return "docx"
        if "ppt/presentation.xml" in names:
            return "pptx"
        if "xl/workbook.bin" in names:
            return "xlsb"
    return "zip"


_HEADER = re.compile(rb"^[!-9;-~]{1,76}:[ \t]?")
_KNOWN = frozenset(
    {
        b"from", b"to", b"cc", b"subject", b"date", b"received", b"message-id",
        b"mime-version", b"return-path", b"delivered-to", b"reply-to", b"sender",
        b"content-type", b"x-mailer", b"dkim-signature", b"authentication-results",
    }
)  # fmt: skip


def looks_like_email(head: bytes) -> bool:
    """An RFC 5322 header block: header lines up to a blank line, with mail headers."""
    lines = head.split(b"\n", 200)
    if lines and lines[0].startswith(b"From ") and not lines[0].startswith(b"From: "):
        lines = lines[1:]  # mbox separator
    known = 0
    seen = 0
    for raw in lines[:200]:
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in {b" ", b"\t"}:
            if not seen:
                return False
            continue
        match = _HEADER.match(line)
        if match is None:
            return False
        seen += 1
        if line.split(b":", 1)[0].lower() in _KNOWN:
            known += 1
    return seen >= 2 and known >= 2
