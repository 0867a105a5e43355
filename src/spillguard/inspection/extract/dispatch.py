"""The recursive driver: detect each item, hand it to its extractor, record what fails."""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

from spillguard.inspection.extract.archive import ZipReader
from spillguard.inspection.extract.budget import Abort, Budget, Skip
from spillguard.inspection.extract.eml import extract_eml
from spillguard.inspection.extract.model import (
    ExtractedPart,
    Extraction,
    ExtractLimits,
    PartKind,
    Unscannable,
    UnscannableCode,
)
from spillguard.inspection.extract.office import (
    cfb_is_encrypted,
    extract_docx,
    extract_odf,
    extract_pptx,
    extract_xlsx,
    odf_is_encrypted,
)
from spillguard.inspection.extract.pdf import extract_pdf
from spillguard.inspection.extract.sniff import (
    looks_like_email,
    sniff_binary,
    zip_kind,
    zip_kind_hint,
)
from spillguard.inspection.extract.source import Blob
from spillguard.inspection.extract.text import (
    csv_rows,
    decode_capped,
    html_content,
    json_content,
    looks_tabular,
)

__all__ = ["Context", "Source", "extract"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO

_TEXT_HINTS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
}


class Context:
    """One extraction in progress: the budget, the result, and recursion into children."""

    def __init__(self, limits: ExtractLimits, budget: Budget, result: Extraction) -> None:
        self.limits = limits
        self.budget = budget
        self.result = result

    # -- recording ----------------------------------------------------------------------

    def unscannable(self, path: str, code: UnscannableCode, detail: str = "") -> None:
        self.result.unscannable.append(Unscannable(path, code, detail))

    def _cut(self, path: str) -> None:
        self.unscannable(
            path,
            UnscannableCode.TOO_LARGE,
            f"text cut at {self.limits.max_part_chars:,} characters, the limit for one part",
        )

    def add_text(self, path: str, text: str, fmt: str, truncated: bool) -> None:
        self.result.parts.append(ExtractedPart(path, PartKind.TEXT, text, None, fmt, truncated))
        if truncated:
            self._cut(path)

    def add_table(self, path: str, rows: list[list[str]], fmt: str, truncated: bool) -> None:
        self.result.parts.append(ExtractedPart.table(path, rows, format=fmt, truncated=truncated))
        if truncated:
            self._cut(path)

    # -- recursion ----------------------------------------------------------------------

    def enter(self, path: str, depth: int) -> bool:
        """Count a child item; False (and an unscannable entry) when it is too deep."""
        self.budget.add_entry()
        if depth > self.limits.max_depth:
            self.unscannable(
                path,
                UnscannableCode.TOO_DEEP,
                f"inside {depth} nested containers (limit {self.limits.max_depth})",
            )
            return False
        return True

    def child(self, blob: Blob, path: str, name: str, depth: int) -> None:
        """Extract an item found inside a container (zip member, attachment)."""
        if self.enter(path, depth):
            self.item(blob, path, name, depth)

    def item(self, blob: Blob, path: str, name: str, depth: int) -> None:
        """Detect and extract one item; its failures become unscannable entries."""
        fmt = "data"
        try:
            self.budget.check_time()
            fmt = sniff_binary(blob.head) or "text"
            if fmt == "text" and looks_like_email(blob.head):
                fmt = "eml"
            if depth == 0 and not self.result.format:
                self.result.format = fmt
            self._dispatch(blob, path, name, depth, fmt)
        except Skip as skip:
            self.unscannable(path, skip.code, skip.detail)
        except Abort as abort:
            if abort.path is None:
                abort.path = path
            raise
        except RecursionError:
            self.unscannable(path, UnscannableCode.CORRUPT, f"{fmt}: nested too deeply to parse")
        except Exception as exc:  # a broken file must never stop the other files
            self.unscannable(path, UnscannableCode.CORRUPT, f"{fmt}: {type(exc).__name__}")

    def _dispatch(self, blob: Blob, path: str, name: str, depth: int, fmt: str) -> None:
        if fmt == "zip":
            self._zip(blob, path, name, depth)
        elif fmt == "pdf":
            extract_pdf(self, blob.random_access(self.budget), path)
        elif fmt == "cfb":
            data = blob.read_all(self.budget)
            if cfb_is_encrypted(data):
                raise Skip(UnscannableCode.ENCRYPTED, "encrypted Office document")
            raise Skip(UnscannableCode.UNSUPPORTED, "legacy Office (OLE2) document")
        elif fmt == "eml":
            extract_eml(self, blob.read_all(self.budget), path, depth)
        elif fmt != "text":
            raise Skip(UnscannableCode.UNSUPPORTED, fmt)
        else:
            self._text(blob, path, name, depth)

    def _set_format(self, depth: int, fmt: str) -> None:
        if depth == 0:
            self.result.format = fmt

    def _zip(self, blob: Blob, path: str, name: str, depth: int) -> None:
        # Until the zip opens, its kind is what its first bytes or its name say, so that a
        # truncated workbook is reported as an xlsx that cannot be read, not as a zip.
        hint = zip_kind_hint(blob.head, name)
        try:
            stream = blob.random_access(self.budget)
            size = blob.size if blob.size is not None else stream.seek(0, io.SEEK_END)
            if depth == 0 and self.budget.input_size is None:
                self.budget.input_size = size  # a one-way stream: its size is known only now
            reader = ZipReader(stream, size, self.budget, kind=hint)
        except Skip:
            self._set_format(depth, hint)
            raise
        mimetype = None
        info = reader.info("mimetype")
        if info is not None and info.file_size <= 256:
            mimetype = reader.read(info)
        kind = zip_kind(reader.names, mimetype)
        self._set_format(depth, kind)
        reader.kind = kind
        if kind != "zip":
            try:
                self._package(reader, kind, path)
            except (Skip, Abort):
                raise
            except expat.ExpatError as exc:  # position only, never content
                raise Skip(UnscannableCode.CORRUPT, f"{kind}: XML {exc}") from None
            except Exception as exc:
                raise Skip(UnscannableCode.CORRUPT, f"{kind}: {type(exc).__name__}") from None
            return
        for member in reader.members:
            member_path = f"{path}/{member.filename}"
            if not self.enter(member_path, depth + 1):
                continue
            try:
                data = reader.read(member)
            except Skip as skip:
                self.unscannable(member_path, skip.code, skip.detail)
                continue
            self.item(Blob.of_bytes(data), member_path, member.filename, depth + 1)

    def _package(self, reader: ZipReader, kind: str, path: str) -> None:
        if kind == "xlsx":
            extract_xlsx(self, reader, path)
        elif kind == "docx":
            extract_docx(self, reader, path)
        elif kind == "pptx":
            extract_pptx(self, reader, path)
        elif kind in {"ods", "odt"}:
            if odf_is_encrypted(reader):
                raise Skip(UnscannableCode.ENCRYPTED, f"password-protected {kind}")
            extract_odf(self, reader, path, kind)
        else:
            raise Skip(UnscannableCode.UNSUPPORTED, "xlsb (binary workbook)")

    def _text(self, blob: Blob, path: str, name: str, depth: int) -> None:
        decoded = decode_capped(blob, self.budget, self.limits.max_part_chars)
        if decoded is None:
            raise Skip(UnscannableCode.UNSUPPORTED, "unrecognised binary content")
        text, truncated = decoded.text, decoded.truncated
        hint = _TEXT_HINTS.get(Path(name).suffix.lower(), "") if name else ""
        stripped = text.lstrip()[:2048].lower()
        if stripped.startswith(("{", "[")) and not truncated:
            content = json_content(text, self.budget)
            if content is not None:
                self._set_format(depth, "json")
                body, tables = content
                if body:
                    self.add_text(path, body, "json", False)
                for where, json_rows in tables:
                    self.add_table(f"{path}/{where}", json_rows, "json", False)
                return
        if (
            hint == "html"
            or stripped.startswith(("<!doctype html", "<html"))
            or (stripped.startswith("<") and ("<body" in stripped or "<head" in stripped))
        ):
            self._set_format(depth, "html")
            visible, html_tables = html_content(text, self.budget)
            self.add_text(path, visible, "html", truncated)
            for number, html_rows in enumerate(html_tables, 1):
                self.add_table(f"{path}/table {number}", html_rows, "html", False)
            return
        if hint in {"csv", "tsv"} or looks_tabular(text):
            fmt = hint or "csv"
            rows = csv_rows(text, "\t" if hint == "tsv" else None, self.budget)
            if rows is not None:
                self._set_format(depth, fmt)
                self.add_table(path, rows, fmt, truncated)
                return
        self._set_format(depth, "txt")
        self.add_text(path, text, "txt", truncated)


def extract(
    source: Source,
    name: str | None = None,
    limits: ExtractLimits | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Extraction:
    """Extract every part of ``source`` (bytes, a path, or a binary stream).

    What a file is comes from its content (magic bytes, zip member names, header
    blocks); ``name`` only helps tell text formats apart and names the parts.  Never
    raises for bad content or an unreadable path: those become ``unscannable`` entries.
    """
    limits = limits or ExtractLimits()
    opened: BinaryIO | None = None
    display = name
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            display = display or "<bytes>"
            blob = Blob.of_bytes(data)
        elif isinstance(source, str | os.PathLike):
            file_path = Path(source)
            display = display or file_path.name or str(file_path)
            special = not_a_regular_file(file_path)
            if special is not None:  # opening a pipe blocks; a device never ends
                result = Extraction(display)
                result.unscannable.append(Unscannable(display, UnscannableCode.UNREADABLE, special))
                return result
            try:
                opened = file_path.open("rb")
                blob = Blob(opened)
            except OSError as exc:
                result = Extraction(display)
                result.unscannable.append(
                    Unscannable(display, UnscannableCode.UNREADABLE, _os_reason(exc))
                )
                return result
        else:
            display = display or str(getattr(source, "name", "") or "<stream>")
            try:
                blob = Blob(source)
            except (OSError, ValueError) as exc:
                result = Extraction(display)
                result.unscannable.append(
                    Unscannable(display, UnscannableCode.UNREADABLE, type(exc).__name__)
                )
                return result
        result = Extraction(display)
        budget = Budget(limits, input_size=blob.size, clock=clock)
        context = Context(limits, budget, result)
        try:
            context.item(blob, display, name or display, 0)
        except Abort as abort:
            result.unscannable.append(Unscannable(abort.path or display, abort.code, abort.detail))
        except OSError as exc:  # the file went away or failed mid-read
            result.unscannable.append(
                Unscannable(display, UnscannableCode.UNREADABLE, _os_reason(exc))
            )
        return result
    finally:
        if opened is not None:
            opened.close()


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` is not read (a named pipe, socket or device: reading one blocks or never
    ends), or None for a regular file or a path ``stat`` cannot see (opening it says why)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "not a regular file (a pipe, socket or device)"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
