"""Worksheets read by python-calamine, behind our own zip checks, with the cells the
streamed reader in :mod:`office` gives.

calamine never sees the uploaded file.  Every member it needs is first read through
:class:`ZipReader` (encryption, declared and actual sizes, ratios, the byte and time
budget), checked as bytes, and repacked *stored* into a new in-memory package that holds
only a workbook and relationships written here, the shared strings and the worksheets
— no styles, so calamine reports every number as the float it parsed and never as a
date of its own reckoning.  A sheet is read this way only when its bytes show that the
answer is the streamed reader's, cell for cell; otherwise :func:`read_sheets` returns
``None`` and the caller reads the workbook with the streamed reader, as before:

* no ``<!`` (DOCTYPE, entities, comments, CDATA), no carriage return (expat folds line
  ends, calamine does not), no phonetic runs (``rPh``), UTF-8, unprefixed cell markup,
  well-formed to expat; no text with white space (or a character reference) at either
  end unless ``xml:space="preserve"`` (calamine trims it, expat keeps it);
* every cell has its reference first (``<c r="B7"``), each ``<row>`` holds cells of one
  row number, rows ascend and columns ascend within a row (the streamed reader goes by
  document order, calamine by reference), and the rectangle from the first to the last
  cell is at most :data:`MAX_CELLS` (calamine allocates all of it:
  ``calamine-sparse-rectangle-abort.xlsx`` asks for 512 GB);
* every numeric ``<v>`` of a sheet is what one formatter writes for its float: Python's
  ``repr`` (:func:`number_text`: ``0``, ``1.5``, ``1e-05``) or openpyxl's ``%.16g``
  (``9.050000000000001``), so the float calamine parsed gives the text back; not
  Excel's 17 digits (``0.59999999999999998``) or ``1E-3``; other ``<v>`` are shared
  string indexes, booleans ``0`` or ``1``, or a formula's cached text (``t="str"``);
  no error (``t="e"``), ISO date (``t="d"``) or unknown cell types;
* the shared strings and each sheet's text fit in ``max_part_chars`` (no cutting), and
  the shared strings and worksheets together in :data:`MAX_BYTES`.

Dates: a numeric cell whose style our reader counts as a date is found by its ``s``
attribute in the sheet bytes and formatted from calamine's float exactly as
:func:`office._excel_date` formats the text it was parsed from.
"""

from __future__ import annotations

import io
import math
import operator
import re
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from spillguard.inspection.extract.archive import ZipReader
from spillguard.inspection.extract.budget import Abort, Skip

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_BYTES", "MAX_CELLS", "number_text", "read_sheets"]

MAX_CELLS = 2_000_000
"""Largest rectangle handed to calamine (about 64 MB of its cells, 16 MB of lists)."""

MAX_BYTES = 16 * 1024 * 1024
"""Largest shared strings plus worksheets read at once (held about three times over)."""

# Substrings that send a part to the streamed reader (some may also occur in harmless
# text; that only costs the fast path).  _PREFIXED catches prefixed SpreadsheetML markup.
_UNSAFE = (b"<!", b"\r", b"<rPh", b"<c\t", b"<c\n")
_PREFIXED = re.compile(rb":(?:c[\s>/]|row[\s>/]|v[\s>/]|is[\s>]|si[\s>]|t[\s>]|sheetData)")
_SPACE_REF = rb"&#(?:0*(?:32|9|10|13)|x0*(?:20|9|[aAdD]));"
_SPACE_REF_REVERSED = rb";(?:23|9|01|31)0*#&|;(?:02|9|[aAdD])0*x#&"
_LEADING_SPACE = tuple(re.compile(rb"<%b>(?:\s|%b)" % (tag, _SPACE_REF)) for tag in (b"t", b"v"))
_TRAILING_SPACE = (  # searched in the reversed bytes: ">t/<" is "</t>", ">t<" is "<t>"
    re.compile(rb">t/<(?:\s|%b)[^<]*>t<" % _SPACE_REF_REVERSED),
    re.compile(rb">v/<(?:\s|%b)" % _SPACE_REF_REVERSED),
)
_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*encoding=[\"']([^\"']+)", re.IGNORECASE)
_TOKENS = re.compile(rb'<row[\s>/]|<c r="([A-Z]{1,3})([0-9]{1,7})"')
_ROW_GROUPS = re.compile(rb"(?:R;(?:([0-9]+);(?:\1;)*)?)*")
_ROW_STARTS = re.compile(rb"R;([0-9]+);")
# A <v> that is not plainly canonical: an integer of at most 15 digits, or a decimal of
# at most 15 digits not below 0.0001 without trailing zeros (repr writes those as is).
_ODD_VALUE = re.compile(
    rb"<v>(?!(?:-?[1-9][0-9]{0,14}|0|-?(?=[0-9.]{3,16}</v>)(?!0\.0000)"
    rb"(?:0|[1-9][0-9]*)\.[0-9]*[1-9])</v>)([^<]*)</v>"
)
_CELL_TYPE = re.compile(rb'\st="([^"]*)"')
_ODD_STYLE = re.compile(rb'\ss="(?!0"|[1-9][0-9]*")')
# Attributes are read by their exact spelling (r="…", t="…", s="…"): no single quotes,
# no space around "=" (searched forwards, and backwards for a space before it).
_LOOSE_ATTRIBUTE = re.compile(rb"=[\s']")
_BOOL_CELL = re.compile(
    rb'<c r="[^"]*"[^>]*\st="b"[^>]*>(?:<f[^>]*/>|<f[^>]*>[^<]*</f>)?<v>([01])</v>'
)
_KNOWN_TYPES = (b' t="s"', b' t="str"', b' t="inlineStr"', b' t="n"', b' t="b"')

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_CONTENT_TYPES = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    "</Types>"
)


def number_text(value: float) -> str:
    """The text of a number as Python and openpyxl write it: ``0``, ``1.5``, ``1e-05``."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value)) if value or math.copysign(1.0, value) > 0 else "-0"
    return repr(value)


def _g16_text(value: float) -> str:
    """The text of a number as openpyxl writes it (``%.16g``: ``9.050000000000001``)."""
    return f"{value:.16g}"


class _Refused(Exception):
    """This workbook is for the streamed reader."""


def _plain_xml(data: bytes) -> None:
    if data[:1] != b"<":  # a byte-order mark or another encoding
        raise _Refused
    declared = _DECLARED_ENCODING.match(data[:200])
    if declared and declared.group(1).lower() not in {b"utf-8", b"utf8"}:
        raise _Refused
    if any(marker in data for marker in _UNSAFE) or _PREFIXED.search(data):
        raise _Refused
    if data.count(b"<v") != data.count(b"<v>"):
        raise _Refused  # <v/>, or <v> with attributes: unlike the values checked below
    # calamine trims ASCII white space at both ends of a text not marked
    # xml:space="preserve" (even written as &#32;); expat keeps it.
    if data.count(b"<t ") != data.count(b'<t xml:space="preserve">'):
        raise _Refused
    if any(edge.search(data) for edge in _LEADING_SPACE):
        raise _Refused
    backwards = data[::-1]
    if any(edge.search(backwards) for edge in _TRAILING_SPACE):
        raise _Refused
    if _LOOSE_ATTRIBUTE.search(data) or _LOOSE_ATTRIBUTE.search(backwards):
        raise _Refused
    parser = expat.ParserCreate(namespace_separator="}")
    try:
        parser.Parse(data, True)  # no handlers: C speed; expat's verdict stays the old path's
    except expat.ExpatError:
        raise _Refused from None


def _check_values(data: bytes) -> Callable[[float], str]:
    """The formatter giving every numeric ``<v>`` back from its float, or refuse."""
    odd: list[str] = []
    for match in _ODD_VALUE.finditer(data):
        tag_at = data.rfind(b"<c", 0, match.start())
        tag = data[tag_at : data.find(b">", tag_at) + 1]
        kind = _CELL_TYPE.search(tag)
        cell_type = kind.group(1) if kind else b"n"
        if cell_type == b"str":
            continue  # a formula's cached text: calamine gives the same text
        if cell_type != b"n":
            raise _Refused
        if match.group(1):  # empty: a formula without a cached value, empty in both
            odd.append(match.group(1).decode("ascii", "replace"))
    if data.count(b' t="') != sum(data.count(kind) for kind in _KNOWN_TYPES):
        raise _Refused  # errors (t="e"), ISO dates (t="d"), anything unknown
    booleans = data.count(b't="b"')
    if booleans and len(_BOOL_CELL.findall(data)) != booleans:
        raise _Refused
    try:
        numbers = [float(raw) for raw in odd]
    except ValueError:
        raise _Refused from None
    for text in (number_text, _g16_text):
        if all(text(number) == raw for number, raw in zip(numbers, odd, strict=True)):
            return text
    raise _Refused


def _layout(data: bytes) -> tuple[int, int]:
    """Check the cells' order and the rectangle's size; the first and last row (0-based).

    The references are checked as one short text, ``R;`` for each ``<row>`` and the row
    number of each cell after it (``R;4;4;R;5;``), by a pattern with a back reference:
    every ``<row>``'s cells name the same row.  Then the rows ascend, no reference is
    repeated, and the rectangle is bounded.
    """
    tokens = _TOKENS.findall(data)
    row_marks = tokens.count((b"", b""))
    cells = len(tokens) - row_marks
    if cells != data.count(b"<c ") or b"<c>" in data or b"<c/" in data:
        raise _Refused  # a cell without a leading reference
    if not cells:
        return 0, -1
    sequence = b"".join([digits + b";" if digits else b"R;" for _letters, digits in tokens])
    if _ROW_GROUPS.fullmatch(sequence) is None:
        raise _Refused  # a cell before any <row>, or a <row> naming two rows
    rows = list(map(int, _ROW_STARTS.findall(sequence)))
    if not all(map(operator.lt, rows, rows[1:])):
        raise _Refused  # rows out of order, or one row in two <row> elements
    if len(set(tokens)) != cells + (1 if row_marks else 0):
        raise _Refused  # the same cell twice
    columns = [_column_number(letters) for letters in {letters for letters, _d in tokens}]
    columns.remove(0)
    if (rows[-1] - rows[0] + 1) * (max(columns) - min(columns) + 1) > MAX_CELLS:
        raise _Refused
    return rows[0] - 1, rows[-1] - 1


def _column_number(letters: bytes) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + ch - 64
    return number


def _date_cells(data: bytes, date_styles: frozenset[int]) -> set[tuple[int, int]]:
    """The (row, column) of the numeric cells our reader formats as dates."""
    if not date_styles:
        return set()
    if 0 in date_styles or _ODD_STYLE.search(data):
        raise _Refused  # a date style taken by cells without s, or s="01", s=" 1"...
    styles = b"|".join(str(s).encode() for s in sorted(date_styles))
    pattern = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,7})"[^>]*?\ss="(?:' + styles + rb')"[^>]*>')
    found: set[tuple[int, int]] = set()
    for match in pattern.finditer(data):
        kind = _CELL_TYPE.search(match.group(0))
        if kind is not None and kind.group(1) != b"n":
            continue
        found.add((int(match.group(2)) - 1, _column_number(match.group(1)) - 1))
    return found


def _package(shared: bytes | None, sheets: list[bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    entries = "".join(
        f'<sheet name={quoteattr(f"S{i}")} sheetId="{i + 1}" r:id="rId{i + 1}"/>'
        for i in range(len(sheets))
    )
    rels = "".join(
        f'<Relationship Id="rId{i + 1}" Type="{_DOC_RELS}/worksheet" Target="worksheets/s{i}.xml"/>'
        for i in range(len(sheets))
    )
    if shared is not None:
        rels += (
            f'<Relationship Id="rIdS" Type="{_DOC_RELS}/sharedStrings" Target="sharedStrings.xml"/>'
        )
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{_RELS}"><Relationship Id="rId1" '
            f'Type="{_DOC_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        package.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_DOC_RELS}">'
            f"<sheets>{entries}</sheets></workbook>",
        )
        package.writestr(
            "xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{_RELS}">{rels}</Relationships>'
        )
        if shared is not None:
            package.writestr("xl/sharedStrings.xml", shared)
        for i, data in enumerate(sheets):
            package.writestr(f"xl/worksheets/s{i}.xml", data)
    buffer.seek(0)
    return buffer


@dataclass(frozen=True, slots=True)
class Sheets:
    """What the office extractor hands over: the workbook's sheet members and its rules."""

    shared_name: str  # the shared-strings member (may be absent from the package)
    members: list[str]  # the worksheet members, in workbook order
    date_styles: Callable[[], frozenset[int]]  # the style ids that format a date (lazy)
    excel_date: Callable[[str], str]  # a date cell's serial number as the streamed reader shows it
    max_pad: int  # rows wider than this lose their empty cells
    limit: int  # the most text to take from the workbook
    check_time: Callable[[], None]  # raises when the file's time is up


def read_sheets(zr: ZipReader, job: Sheets) -> list[list[list[str]]] | None:
    """The rows of each sheet member, or ``None`` when the streamed reader must read them.

    ``None`` leaves the budget as it found it (bytes read here are not counted twice),
    and a limit met here (a member's size or ratio, the time) is met again, at the same
    point, by the streamed reader.
    """
    before = zr.budget.total_bytes
    try:
        rows = _read(zr, job)
    except (_Refused, Skip, Abort):
        rows = None
    except BaseException as exc:  # a Rust panic arrives as pyo3's PanicException
        if type(exc).__name__ != "PanicException" and not _is_calamine_error(exc):
            raise
        rows = None
    if rows is None:
        zr.budget.total_bytes = before
    return rows


def _is_calamine_error(exc: BaseException) -> bool:
    import python_calamine

    return isinstance(exc, python_calamine.CalamineError)


def _read(zr: ZipReader, job: Sheets) -> list[list[list[str]]] | None:
    import python_calamine

    limit, check_time = job.limit, job.check_time

    shared: bytes | None = None
    info = zr.info(job.shared_name)
    infos = [zr.info(member) for member in job.members]
    declared = sum(i.file_size for i in infos if i is not None)
    if declared + (info.file_size if info is not None else 0) > MAX_BYTES:
        return None
    read = 0
    if info is not None:
        if info.file_size > limit:  # text can be cut: the streamed reader decides
            return None
        shared = zr.read(info)
        read = len(shared)
        if read > limit:
            return None
        _plain_xml(shared)
    styles = job.date_styles()
    datas: list[bytes] = []
    layouts = []
    dates = []
    texts = []
    for member_info in infos:
        check_time()
        if member_info is None:
            return None
        data = zr.read(member_info)
        read += len(data)
        if read > MAX_BYTES:  # sizes declared smaller than they are
            return None
        _plain_xml(data)
        texts.append(_check_values(data))
        layouts.append(_layout(data))
        dates.append(_date_cells(data, styles))
        datas.append(data)
    check_time()
    book = python_calamine.CalamineWorkbook.from_filelike(_package(shared, datas))
    out: list[list[list[str]]] = []
    for index, ((first_row, last_row), date_cells, text_of) in enumerate(
        zip(layouts, dates, texts, strict=True)
    ):
        check_time()
        rows: list[list[str]] = []
        out.append(rows)
        if last_row < first_row:
            continue
        sheet = book.get_sheet_by_index(index)
        start = sheet.start
        if start is None:
            continue
        row0, col0 = start
        used = 0
        grid = cast("list[list[Any]]", sheet.to_python(skip_empty_area=True))
        for r, values in enumerate(grid, row0):
            try:
                used += len("".join(values))  # all text: the common case, at C speed
            except TypeError:
                for i, value in enumerate(values):
                    kind = type(value)
                    if kind is str:
                        continue
                    if kind is bool:
                        values[i] = "TRUE" if value else "FALSE"
                    elif kind is float or kind is int:
                        text = text_of(float(value))
                        values[i] = job.excel_date(text) if (r, col0 + i) in date_cells else text
                    else:
                        return None  # a type the streamed reader would not give
                used += len("".join(values))
            end = len(values)
            while end and not values[end - 1]:
                end -= 1
            if not end:
                continue
            row: list[str] = [""] * col0 + values[:end] if col0 else values[:end]
            rows.append(row if len(row) <= job.max_pad else [v for v in row if v])
        if used > limit:
            return None
    book.close()
    return out
