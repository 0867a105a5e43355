"""Text formats: encoding detection, capped decoding, and txt, csv/tsv, html and json."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import charset_normalizer

from spillguard.inspection.extract.budget import Budget
from spillguard.inspection.extract.source import Blob

__all__ = [
    "DecodedText",
    "csv_rows",
    "decode_bytes",
    "decode_capped",
    "detect_encoding",
    "html_content",
    "json_content",
    "looks_tabular",
]

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def detect_encoding(head: bytes, *, complete: bool) -> str | None:
    """The encoding of text starting with ``head``, or ``None`` for binary content.

    A byte-order mark wins; then strict UTF-8; then charset-normalizer.  ``complete``
    says ``head`` is the whole input (so a multi-byte sequence cut at its end is an error).
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if not head:
        return "utf-8"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8" if _mostly_text(head.decode("utf-8", "ignore")) else None
    best = charset_normalizer.from_bytes(head[:HEAD_SAMPLE]).best()
    if best is None:
        return None
    encoding = str(best.encoding)
    if "cp1252" in best.could_be_from_charset:
        encoding = "cp1252"  # same text either way; the usual Western single-byte choice
    if b"\x00" in head and not encoding.startswith(("utf_16", "utf_32")):
        return None
    return encoding if _mostly_text(head.decode(encoding, "replace")) else None


HEAD_SAMPLE = 64 * 1024


def _mostly_text(sample: str) -> bool:
    if not sample:
        return True
    bad = sum(1 for ch in sample if ch < " " and ch not in _ALLOWED_CONTROLS)
    return bad * 20 <= len(sample)


class DecodedText:
    """Text decoded from a blob, cut at a number of characters."""

    def __init__(self, text: str, encoding: str, truncated: bool) -> None:
        self.text = text
        self.encoding = encoding
        self.truncated = truncated


def decode_capped(blob: Blob, budget: Budget, max_chars: int) -> DecodedText | None:
    """Decode ``blob`` chunk by chunk, keeping at most ``max_chars`` characters.

    Returns ``None`` when the content is not text.  Memory stays bounded by the cap,
    whatever the line length: reading stops as soon as the cap is reached.
    """
    complete = blob.size is not None and blob.size <= len(blob.head)
    encoding = detect_encoding(blob.head, complete=complete)
    if encoding is None:
        return None
    strict = encoding == "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)("strict" if strict else "replace")
    pieces: list[str] = []
    kept = 0
    truncated = False
    for chunk in blob.chunks(budget):
        try:
            piece = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            # UTF-8 at the start, something else later: re-detect around the bad byte.
            around = chunk[max(0, exc.start - 4096) : exc.start + 4096]
            fallback = "cp1252"
            try:
                around.decode(fallback)
            except UnicodeDecodeError:
                fallback = detect_encoding(around, complete=False) or fallback
            if fallback.replace("-", "_") in {"ascii", "utf_8"}:
                fallback = "cp1252"
            encoding = f"utf-8+{fallback}"
            decoder = codecs.getincrementaldecoder(fallback)("replace")
            piece = decoder.decode(chunk)
        if kept + len(piece) > max_chars:
            pieces.append(piece[: max_chars - kept])
            kept = max_chars
            truncated = True
            break
        pieces.append(piece)
        kept += len(piece)
    if not truncated:
        tail = decoder.decode(b"", final=True)
        if kept + len(tail) > max_chars:
            tail = tail[: max_chars - kept]
            truncated = True
        pieces.append(tail)
    return DecodedText("".join(pieces), encoding, truncated)


def decode_bytes(data: bytes) -> str | None:
    """Decode a small in-memory byte string with the same detection, or ``None``."""
    encoding = detect_encoding(data[:HEAD_SAMPLE], complete=len(data) <= HEAD_SAMPLE)
    if encoding is None:
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return data.decode(encoding if encoding != "utf-8" else "cp1252", "replace")


# --- csv / tsv -------------------------------------------------------------------------

_DELIMITERS = (",", "\t", ";", "|")


def _choose_delimiter(text: str) -> str | None:
    lines = [line for line in text[:65536].splitlines()[:50] if line.strip()]
    if len(lines) > 1 and not text[:65536].endswith("\n") and len(text) > 65536:
        lines = lines[:-1]  # the last sampled line may be cut
    if len(lines) < 2:
        return None
    for delimiter in _DELIMITERS:
        counts = Counter(line.count(delimiter) for line in lines)
        count, seen = counts.most_common(1)[0]
        if count > 0 and seen >= max(2, int(len(lines) * 0.8)):
            return delimiter
    return None


def looks_tabular(text: str) -> bool:
    """True when the first lines share a delimiter count (an unlabelled CSV/TSV)."""
    return _choose_delimiter(text) is not None


def csv_rows(text: str, delimiter: str | None, budget: Budget) -> list[list[str]] | None:
    """The rows of a CSV/TSV text, or ``None`` when it does not parse as one."""
    delimiter = delimiter or _choose_delimiter(text) or ","
    rows: list[list[str]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
        for index, row in enumerate(reader):
            if index % 4096 == 0:
                budget.check_time()
            if any(cell.strip() for cell in row):
                rows.append(row)
    except csv.Error:
        return None
    return rows


# --- html ------------------------------------------------------------------------------

_SKIPPED = frozenset({"script", "style", "template", "head"})
_BLOCKS = frozenset(
    {
        "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table",
        "section", "article", "header", "footer", "blockquote", "pre", "hr", "title",
        "dt", "dd", "ul", "ol", "form", "address", "main", "nav", "aside",
    }
)  # fmt: skip
_VOID = frozenset(
    {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source",
     "track", "wbr"}
)  # fmt: skip


class _Table:
    """A ``<table>`` being read: its rows, and the cell whose text is being collected."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def open_cell(self) -> None:
        self.close_cell()  # an omitted </td> ends at the next cell, as browsers read it
        if not self.rows:
            self.rows.append([])
        self.cell = []

    def close_cell(self) -> None:
        if self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None


class _HtmlText(HTMLParser):
    """Visible text plus tables; scripts, styles and templates are skipped.

    A table cell's content goes to its table only, never also to the running text, so
    each value is counted once (a table part keeps its rows for EDM's same-row matching).
    A table inside a cell is a table of its own; text of a table outside any cell (a
    caption) stays in the running text.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.tables: list[list[list[str]]] = []
        self._stack: list[_Table] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED and tag not in _VOID:
            if tag == "head":
                return  # <title> inside <head> is visible; scripts there are skipped anyway
            self.skip_depth += 1
            return
        if tag in _BLOCKS:
            self.out.append("\n")
        if tag == "table":
            self._stack.append(_Table())
        elif tag == "tr" and self._stack:
            self._stack[-1].close_cell()
            self._stack[-1].rows.append([])
        elif tag in {"td", "th"} and self._stack:
            self._stack[-1].open_cell()
        for key, value in attrs:
            if not value:
                continue
            if key == "href" and value.lower().startswith(("mailto:", "tel:")):
                self._text(" " + value.split(":", 1)[1] + " ")
            elif key in {"value", "alt", "title", "placeholder"}:
                self._text(" " + value + " ")
        if tag == "br":
            self._text("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and tag != "head":
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in {"td", "th", "tr"} and self._stack:
            self._stack[-1].close_cell()
        elif tag == "table" and self._stack:
            self._end_table()
        if tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self._text(data)

    def close(self) -> None:
        super().close()
        while self._stack:  # a table left open at the end of the document
            self._end_table()

    def _end_table(self) -> None:
        table = self._stack.pop()
        table.close_cell()
        rows = [row for row in table.rows if any(row)]
        if rows:
            self.tables.append(rows)

    def _text(self, data: str) -> None:
        if self._stack and self._stack[-1].cell is not None:
            self._stack[-1].cell.append(data)
        else:
            self.out.append(data)


def html_content(text: str, budget: Budget) -> tuple[str, list[list[list[str]]]]:
    """The visible text of an HTML document outside its tables, and its tables (rows of
    cell strings): each piece of text is in exactly one of them."""
    parser = _HtmlText()
    step = 65536
    for start in range(0, len(text), step):
        budget.check_time()
        parser.feed(text[start : start + step])
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.out).splitlines())
    return "\n".join(line for line in lines if line), parser.tables


# --- json ------------------------------------------------------------------------------


def json_content(text: str, budget: Budget) -> tuple[str, list[tuple[str, list[list[str]]]]] | None:
    """``key.path: value`` lines, and lists of objects as tables; ``None`` if not JSON."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    lines: list[str] = []
    tables: list[tuple[str, list[list[str]]]] = []
    for index, (where, value) in enumerate(_walk(document, tables)):
        if index % 4096 == 0:
            budget.check_time()
        lines.append(f"{where}: {value}" if where else value)
    return "\n".join(lines), tables


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _walk(document: Any, tables: list[tuple[str, list[list[str]]]]) -> Iterator[tuple[str, str]]:
    """Iterative walk (deep documents must not exhaust the stack)."""
    stack: list[tuple[str, Any]] = [("$", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, child in reversed(list(value.items())):
                stack.append((f"{where}.{key}", child))
        elif isinstance(value, list):
            if value and all(isinstance(item, dict) for item in value):
                header: dict[str, None] = {}
                for item in value:
                    header.update(dict.fromkeys(str(k) for k in item))
                keys = list(header)
                rows = [keys] + [[_scalar(item.get(k)) for k in keys] for item in value]
                tables.append((where, rows))
                continue
            for position in range(len(value) - 1, -1, -1):
                stack.append((f"{where}[{position}]", value[position]))
        else:
            yield where.removeprefix("$.").removeprefix("$"), _scalar(value)
