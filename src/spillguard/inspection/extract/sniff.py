"""What an item really is, from its first bytes (and zip member names), not its name."""

from __future__ import annotations

import re
import struct
from pathlib import PurePath

__all__ = ["BINARY_SIGNATURES", "looks_like_email", "sniff_binary", "zip_kind", "zip_kind_hint"]

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


_LOCAL_HEADER = b"PK\x03\x04"
_OFFICE_FOLDERS = (("xl/", "xlsx"), ("word/", "docx"), ("ppt/", "pptx"))
_PACKAGE_SUFFIXES = {
    ".xlsx": "xlsx", ".xlsm": "xlsx", ".xltx": "xlsx", ".xltm": "xlsx", ".xlsb": "xlsb",
    ".docx": "docx", ".docm": "docx", ".dotx": "docx", ".dotm": "docx",
    ".pptx": "pptx", ".pptm": "pptx", ".ods": "ods", ".odt": "odt",
}  # fmt: skip


def zip_kind_hint(head: bytes, name: str) -> str:
    """What a zip says it is before it is opened, for one that may not open (cut short).

    ``zip_kind`` needs the central directory at the end of the file; a truncated file
    has lost it.  Its first bytes still hold local headers, in which an Office folder
    (``xl/``, ``word/``, ``ppt/``) or an OpenDocument ``mimetype`` tells the kind;
    failing that, the name's extension (``.xlsx``, ``.xlsm``, ``.docx``, ``.ods``…).
    """
    names, mimetype = _local_entries(head)
    kind = zip_kind(names, mimetype)
    if kind != "zip":
        return kind
    for folder, office in _OFFICE_FOLDERS:
        if any(entry.startswith(folder) for entry in names):
            return "xlsb" if "xl/workbook.bin" in names else office
    return _PACKAGE_SUFFIXES.get(PurePath(name).suffix.lower(), "zip") if name else "zip"


def _local_entries(head: bytes) -> tuple[set[str], bytes | None]:
    """Entry names in the local headers found in ``head``, and a stored ``mimetype``."""
    names: set[str] = set()
    mimetype = None
    at = head.find(_LOCAL_HEADER)
    while at >= 0 and at + 30 <= len(head):
        flags, method, size, name_len, extra_len = struct.unpack_from("<HH8xI4xHH", head, at + 6)
        raw = head[at + 30 : at + 30 + name_len]
        if len(raw) < name_len:
            break
        entry = raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        names.add(entry)
        data_at = at + 30 + name_len + extra_len
        if entry == "mimetype" and method == 0 and size <= 256:
            mimetype = head[data_at : data_at + size]
        # sizes written after the data (flag 3) are unknown here: look for the next header
        at = head.find(_LOCAL_HEADER, data_at + (0 if flags & 0x8 else size))
    return names, mimetype


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
