"""Office documents: xlsx/xlsm, ods/odt, docx, pptx, parsed as streamed XML.

Every XML member is parsed with expat, streamed from the zip with its bytes counted,
with document type declarations refused (no entity expansion, no external entities).
Worksheets go to python-calamine first (:mod:`xlsx_fast`) when their bytes show that it
gives these same cells.  calamine allocates the full rectangle between the first and
last cell (a 9 KB workbook with cells in A1 and XFD1048576 asks for 512 GB and aborts
the whole process) and differs on odd input, so anything else is read here, where
only cells that exist are kept and padding between them is capped.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from xml.parsers import expat

from spillguard.inspection.extract.archive import ZipReader
from spillguard.inspection.extract.budget import Skip
from spillguard.inspection.extract.model import UnscannableCode
from spillguard.inspection.extract.xlsx_fast import Sheets, read_sheets

if TYPE_CHECKING:
    from spillguard.inspection.extract.dispatch import Context

__all__ = [
    "cfb_is_encrypted",
    "extract_docx",
    "extract_odf",
    "extract_pptx",
    "extract_xlsx",
    "odf_is_encrypted",
]

MAX_PAD_COLUMNS = 1024
MAX_REPEAT = 1000

Attrs = dict[str, str]


class _Full(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise Skip(UnscannableCode.UNSUPPORTED, "XML with a document type declaration")


def parse_xml(
    chunks: Iterable[bytes],
    start: Callable[[str, Attrs], None],
    end: Callable[[str], None],
    text: Callable[[str], None],
) -> bool:
    """Stream-parse XML, calling back with local names; False when stopped by ``_Full``."""
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse

    def on_start(name: str, attrs: dict[str, str]) -> None:
        start(name.rpartition("}")[2], {k.rpartition("}")[2]: v for k, v in attrs.items()})

    parser.StartElementHandler = on_start
    parser.EndElementHandler = lambda name: end(name.rpartition("}")[2])
    parser.CharacterDataHandler = text
    try:
        for chunk in chunks:
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Full:
        return False
    return True


def _member_chunks(zr: ZipReader, name: str) -> Iterable[bytes]:
    info = zr.info(name)
    if info is None:
        raise Skip(UnscannableCode.CORRUPT, f"{zr.kind}: missing {name}")
    return zr.stream(info)


class _Cap:
    """Counts characters kept for one part against ``max_part_chars``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.truncated = False

    def take(self, value: str) -> str:
        self.add(len(value))
        return value

    def add(self, n: int) -> None:
        if self.used + n > self.limit:
            self.truncated = True
            raise _Full
        self.used += n


# --- xlsx ------------------------------------------------------------------------------

_DATE_FORMAT_IDS = frozenset({14, 15, 16, 17, 22, *range(27, 37), *range(50, 59)})
_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')


def _is_date_format(code: str) -> bool:
    bare = _QUOTED.sub("", code).lower()
    return "d" in bare or "y" in bare


def _column(ref: str) -> int | None:
    number = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            number = number * 26 + ord(ch) - 64
        elif "a" <= ch <= "z":
            number = number * 26 + ord(ch) - 96
        else:
            break
    return number - 1 if number else None


def _excel_date(serial: str, date1904: bool) -> str:
    try:
        days = float(serial)
        base = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
        moment = base + timedelta(days=days)
    except (ValueError, OverflowError):
        return serial
    if moment.hour == moment.minute == moment.second == 0:
        return moment.date().isoformat()
    return moment.isoformat(sep=" ", timespec="seconds")


def _pad_row(cells: dict[int, str]) -> list[str]:
    if not cells:
        return []
    width = max(cells) + 1
    if width <= MAX_PAD_COLUMNS:
        row = [""] * width
        for column, value in cells.items():
            row[column] = value
        return row
    return [cells[column] for column in sorted(cells)]


def _resolve(base_dir: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(base_dir, target))


def _relationships(zr: ZipReader, name: str) -> dict[str, tuple[str, str]]:
    rels: dict[str, tuple[str, str]] = {}
    if zr.info(name) is None:
        return rels

    def start(tag: str, attrs: Attrs) -> None:
        if tag == "Relationship" and "Id" in attrs:
            rels[attrs["Id"]] = (attrs.get("Target", ""), attrs.get("Type", ""))

    parse_xml(_member_chunks(zr, name), start, lambda _t: None, lambda _s: None)
    return rels


def extract_xlsx(ctx: Context, zr: ZipReader, path: str) -> None:
    """Every worksheet of an xlsx/xlsm workbook as a table part ``path/<sheet name>``."""
    sheets: list[tuple[str, str]] = []
    flags = {"date1904": False}

    def wb_start(tag: str, attrs: Attrs) -> None:
        if tag == "sheet":
            sheets.append((attrs.get("name", f"Sheet{len(sheets) + 1}"), attrs.get("id", "")))
        elif tag == "workbookPr":
            flags["date1904"] = attrs.get("date1904", "0").lower() in {"1", "true"}

    parse_xml(_member_chunks(zr, "xl/workbook.xml"), wb_start, lambda _t: None, lambda _s: None)
    rels = _relationships(zr, "xl/_rels/workbook.xml.rels")
    shared_name = "xl/sharedStrings.xml"
    styles_name = "xl/styles.xml"
    for target, kind in rels.values():
        if kind.endswith("/sharedStrings"):
            shared_name = _resolve("xl", target)
        elif kind.endswith("/styles"):
            styles_name = _resolve("xl", target)
    cap = ctx.limits.max_part_chars
    worksheets = sorted(n for n in zr.names if re.fullmatch(r"xl/worksheets/[^/]+\.xml", n))
    targets: list[tuple[str, str]] = []
    for index, (sheet_name, rel_id) in enumerate(sheets):
        if rel_id in rels:
            targets.append((sheet_name, _resolve("xl", rels[rel_id][0])))
        elif index < len(worksheets):
            targets.append((sheet_name, worksheets[index]))
    present = [(name, member) for name, member in targets if zr.info(member) is not None]
    job = Sheets(
        shared_name=shared_name,
        members=[member for _name, member in present],
        date_styles=lambda: _date_styles(zr, styles_name),
        excel_date=lambda raw: _excel_date(raw, flags["date1904"]),
        max_pad=MAX_PAD_COLUMNS,
        limit=cap,
        check_time=ctx.budget.check_time,
    )
    fast = read_sheets(zr, job)
    if fast is not None:
        for (sheet_name, _member), rows in zip(present, fast, strict=True):
            ctx.add_table(f"{path}/{sheet_name}", rows, "xlsx", False)
        return
    shared, shared_cut = _shared_strings(zr, shared_name, cap)
    if shared_cut:
        ctx.unscannable(
            path,
            UnscannableCode.TOO_LARGE,
            f"shared strings cut at {cap:,} characters, the limit for one part",
        )
    date_styles = _date_styles(zr, styles_name)
    for sheet_name, member in targets:
        if zr.info(member) is None:
            continue
        ctx.budget.check_time()
        rows, truncated = _sheet_rows(ctx, zr, member, shared, date_styles, flags["date1904"], cap)
        ctx.add_table(f"{path}/{sheet_name}", rows, "xlsx", truncated)


def _shared_strings(zr: ZipReader, name: str, limit: int) -> tuple[list[str], bool]:
    strings: list[str] = []
    if zr.info(name) is None:
        return strings, False
    state = {"depth_rph": 0, "in_t": False}
    current: list[str] = []
    budget = _Cap(limit)

    def start(tag: str, _attrs: Attrs) -> None:
        if tag == "si":
            current.clear()
        elif tag == "rPh":
            state["depth_rph"] += 1
        elif tag == "t":
            state["in_t"] = True

    def end(tag: str) -> None:
        if tag == "si":
            strings.append(budget.take("".join(current)))
        elif tag == "rPh":
            state["depth_rph"] -= 1
        elif tag == "t":
            state["in_t"] = False

    def text(data: str) -> None:
        if state["in_t"] and not state["depth_rph"]:
            current.append(data)

    complete = parse_xml(_member_chunks(zr, name), start, end, text)
    return strings, not complete


def _date_styles(zr: ZipReader, name: str) -> frozenset[int]:
    if zr.info(name) is None:
        return frozenset()
    custom: dict[int, str] = {}
    xfs: list[int] = []
    state = {"in_cell_xfs": False}

    def start(tag: str, attrs: Attrs) -> None:
        if tag == "numFmt":
            with contextlib.suppress(ValueError):
                custom[int(attrs.get("numFmtId", "-1"))] = attrs.get("formatCode", "")
        elif tag == "cellXfs":
            state["in_cell_xfs"] = True
        elif tag == "xf" and state["in_cell_xfs"]:
            try:
                xfs.append(int(attrs.get("numFmtId", "0")))
            except ValueError:
                xfs.append(0)

    def end(tag: str) -> None:
        if tag == "cellXfs":
            state["in_cell_xfs"] = False

    parse_xml(_member_chunks(zr, name), start, end, lambda _s: None)
    return frozenset(
        index
        for index, fmt in enumerate(xfs)
        if fmt in _DATE_FORMAT_IDS or (fmt in custom and _is_date_format(custom[fmt]))
    )


def _sheet_rows(
    ctx: Context,
    zr: ZipReader,
    member: str,
    shared: list[str],
    date_styles: frozenset[int],
    date1904: bool,
    limit: int,
) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    cells: dict[int, str] = {}
    cap = _Cap(limit)
    cell: dict[str, str] = {}
    value: list[str] = []
    state = {"collect": False, "in_is": False, "next_col": 0, "rows": 0}

    def start(tag: str, attrs: Attrs) -> None:
        if tag == "row":
            cells.clear()
            state["next_col"] = 0
            state["rows"] += 1
            if state["rows"] % 2048 == 0:
                ctx.budget.check_time()
        elif tag == "c":
            cell.clear()
            cell.update(attrs)
            value.clear()
        elif tag == "v":
            state["collect"] = True
        elif tag == "is":
            state["in_is"] = True
        elif tag == "t" and state["in_is"]:
            state["collect"] = True

    def end(tag: str) -> None:
        if tag in {"v", "t"}:
            state["collect"] = False
        elif tag == "is":
            state["in_is"] = False
        elif tag == "c":
            column = _column(cell.get("r", "")) if "r" in cell else None
            if column is None:
                column = state["next_col"]
            state["next_col"] = column + 1
            text = _cell_text(cell, "".join(value), shared, date_styles, date1904)
            if text:
                cells[column] = cap.take(text)
        elif tag == "row" and cells:
            rows.append(_pad_row(cells))
            cells.clear()

    def text(data: str) -> None:
        if state["collect"]:
            value.append(data)

    complete = parse_xml(_member_chunks(zr, member), start, end, text)
    if not complete and cells:
        rows.append(_pad_row(cells))
    return rows, not complete


def _cell_text(
    cell: dict[str, str], raw: str, shared: list[str], date_styles: frozenset[int], date1904: bool
) -> str:
    kind = cell.get("t", "n")
    if kind == "s":
        try:
            index = int(raw)
        except ValueError:
            return ""
        return shared[index] if 0 <= index < len(shared) else ""
    if kind == "b":
        return "TRUE" if raw.strip() == "1" else "FALSE"
    if kind == "n" and raw:
        try:
            style = int(cell.get("s", "0"))
        except ValueError:
            style = 0
        if style in date_styles:
            return _excel_date(raw, date1904)
    return raw


# --- OpenDocument (ods, odt) -----------------------------------------------------------


def extract_odf(ctx: Context, zr: ZipReader, path: str, fmt: str) -> None:
    """Tables of content.xml as table parts ``path/<table name>``; other text as one part."""
    cap = _Cap(ctx.limits.max_part_chars)
    tables: list[tuple[str, list[list[str]]]] = []
    body: list[str] = []
    state: dict[str, int] = {"table": 0, "in_cell": 0, "p": 0, "note": 0}
    row_repeat = [1]
    cell_repeat = [1]
    pending_empty = [0]
    row: list[str] = []
    cell_text: list[str] = []
    cell_value = [""]
    para: list[str] = []

    def start(tag: str, attrs: Attrs) -> None:
        if tag == "table":
            state["table"] += 1
            if state["table"] == 1:
                tables.append((attrs.get("name", f"Table{len(tables) + 1}"), []))
                if len(tables) % 16 == 0:
                    ctx.budget.check_time()
        elif state["table"] == 1 and tag == "table-row":
            row.clear()
            pending_empty[0] = 0
            row_repeat[0] = _repeat(attrs.get("number-rows-repeated"))
        elif state["table"] == 1 and tag in {"table-cell", "covered-table-cell"}:
            state["in_cell"] = 1
            cell_text.clear()
            cell_repeat[0] = _repeat(attrs.get("number-columns-repeated"))
            kind = attrs.get("value-type", "")
            cell_value[0] = attrs.get("date-value", "") if kind == "date" else ""
        elif tag in {"p", "h"}:
            state["p"] += 1
            para.clear()
        elif tag == "s":
            para.append(" " * min(_repeat(attrs.get("c")), 64))
        elif tag == "tab":
            para.append("\t")
        elif tag == "line-break":
            para.append("\n")

    def end(tag: str) -> None:
        if tag in {"p", "h"}:
            state["p"] = max(0, state["p"] - 1)
            text = "".join(para)
            para.clear()
            if state["in_cell"]:
                cell_text.append(text)
            elif text.strip():
                body.append(cap.take(text))
        elif tag == "table":
            state["table"] = max(0, state["table"] - 1)
        elif state["table"] == 1 and tag in {"table-cell", "covered-table-cell"}:
            state["in_cell"] = 0
            value = cell_value[0] or " ".join(t for t in cell_text if t)
            if not value:
                pending_empty[0] += cell_repeat[0]
                return
            if len(row) < MAX_PAD_COLUMNS:
                row.extend([""] * min(pending_empty[0], MAX_PAD_COLUMNS - len(row)))
            pending_empty[0] = 0
            for _ in range(min(cell_repeat[0], MAX_REPEAT)):
                row.append(cap.take(value))
        elif state["table"] == 1 and tag == "table-row":
            if any(row) and tables:
                for _ in range(min(row_repeat[0], MAX_REPEAT)):
                    tables[-1][1].append(list(row))
                    cap.add(sum(len(value) for value in row))
            row.clear()

    def text(data: str) -> None:
        if state["p"]:
            para.append(data)

    complete = parse_xml(_member_chunks(zr, "content.xml"), start, end, text)
    truncated = not complete
    if body:
        ctx.add_text(path, "\n".join(body), fmt, truncated)
    for name, rows in tables:
        if rows:
            ctx.add_table(f"{path}/{name}", rows, fmt, truncated)
    if truncated and not body and not any(rows for _n, rows in tables):
        ctx.unscannable(
            path,
            UnscannableCode.TOO_LARGE,
            f"text cut at {ctx.limits.max_part_chars:,} characters, the limit for one part",
        )


def _repeat(value: str | None) -> int:
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        return 1


def odf_is_encrypted(zr: ZipReader) -> bool:
    """An OpenDocument package whose manifest declares encrypted entries."""
    info = zr.info("META-INF/manifest.xml")
    if info is None:
        return False
    found = [False]

    def start(tag: str, _attrs: Attrs) -> None:
        if tag == "encryption-data":
            found[0] = True

    parse_xml(zr.stream(info), start, lambda _t: None, lambda _s: None)
    return found[0]


# --- docx / pptx (WordprocessingML and DrawingML share p, t, tab, br, tbl, tr, tc) -----

_TEXT_TAGS = frozenset({"t", "delText", "instrText"})


def _wordml(
    ctx: Context, zr: ZipReader, member: str, cap: _Cap
) -> tuple[str, list[list[list[str]]], bool]:
    body: list[str] = []
    tables: list[list[list[str]]] = []
    stack: list[list[list[str]]] = []
    cell: list[str] = []
    state = {"collect": False, "in_cell": 0, "n": 0}

    def emit(data: str) -> None:
        if stack and state["in_cell"]:
            cell.append(data)
        else:
            body.append(cap.take(data))

    def start(tag: str, _attrs: Attrs) -> None:
        state["n"] += 1
        if state["n"] % 8192 == 0:
            ctx.budget.check_time()
        if tag in _TEXT_TAGS:
            state["collect"] = True
        elif tag == "tab":
            emit("\t")
        elif tag in {"br", "cr"}:
            emit("\n")
        elif tag == "tbl":
            stack.append([])
        elif tag == "tr" and stack:
            if len(stack) == 1:
                stack[-1].append([])
        elif tag == "tc" and stack and len(stack) == 1:
            cell.clear()
            state["in_cell"] = 1

    def end(tag: str) -> None:
        if tag in _TEXT_TAGS:
            state["collect"] = False
        elif tag == "p":
            emit("\n" if not (stack and state["in_cell"]) else " ")
        elif tag == "tc" and len(stack) == 1 and state["in_cell"]:
            state["in_cell"] = 0
            if not stack[-1]:
                stack[-1].append([])
            stack[-1][-1].append(cap.take(" ".join("".join(cell).split())))
        elif tag == "tbl" and stack:
            table = stack.pop()
            if not stack:
                rows = [r for r in table if any(r)]
                if rows:
                    tables.append(rows)

    def text(data: str) -> None:
        if state["collect"]:
            emit(data)

    complete = parse_xml(_member_chunks(zr, member), start, end, text)
    lines = (line.rstrip() for line in "".join(body).splitlines())
    return "\n".join(line for line in lines if line), tables, not complete


def extract_docx(ctx: Context, zr: ZipReader, path: str) -> None:
    """Body text as ``path``, each top-level table as ``path/table N``; then headers,
    footers, foot- and endnotes and comments as ``path/<member>``."""
    cap = _Cap(ctx.limits.max_part_chars)
    extras = sorted(
        n
        for n in zr.names
        if re.fullmatch(r"word/(header\d*|footer\d*|footnotes|endnotes|comments)\.xml", n)
    )
    members = ["word/document.xml", *extras]
    table_no = 0
    for member in members:
        ctx.budget.check_time()
        text, tables, truncated = _wordml(ctx, zr, member, cap)
        where = path if member == "word/document.xml" else f"{path}/{member.removeprefix('word/')}"
        if text or truncated:
            ctx.add_text(where, text, "docx", truncated)
        for rows in tables:
            table_no += 1
            ctx.add_table(f"{path}/table {table_no}", rows, "docx", truncated)
        if truncated:
            return


def extract_pptx(ctx: Context, zr: ZipReader, path: str) -> None:
    """Each slide (and its notes) as ``path/slideN``; slide tables as table parts."""
    cap = _Cap(ctx.limits.max_part_chars)

    def order(name: str) -> tuple[str, int]:
        match = re.search(r"(\d+)\.xml$", name)
        return (name.rsplit("/", 2)[-2], int(match.group(1)) if match else 0)

    members = sorted(
        (n for n in zr.names if re.fullmatch(r"ppt/(slides|notesSlides)/[^/]+\.xml", n)),
        key=order,
    )
    for member in members:
        ctx.budget.check_time()
        text, tables, truncated = _wordml(ctx, zr, member, cap)
        where = f"{path}/{member.rsplit('/', 1)[-1].removesuffix('.xml')}"
        if text or truncated:
            ctx.add_text(where, text, "pptx", truncated)
        for number, rows in enumerate(tables, 1):
            ctx.add_table(f"{where}/table {number}", rows, "pptx", truncated)
        if truncated:
            return


# --- Compound File Binary (legacy Office, encrypted OOXML) ------------------------------

_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def cfb_is_encrypted(data: bytes) -> bool:
    """An OLE2/CFB file holding an encrypted OOXML package (``EncryptionInfo`` stream)."""
    return _ENCRYPTION_INFO in data or _ENCRYPTED_PACKAGE in data
