"""python-calamine reads worksheets to the very cells the streamed reader gives.

Every workbook is extracted twice: as shipped (calamine where the sheet bytes allow it)
and with the calamine path switched off (the streamed expat reader alone, as before);
parts, rows and unscannable entries must be equal.  Each case also says which path it
expects, so a gate that refused everything would fail here rather than pass quietly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillguard.inspection.extract import Extraction, ExtractLimits, extract, office, xlsx_fast
from tests.factories.spreadsheets import raw_xlsx, varied_xlsx

REGRESSIONS = Path(__file__).parents[3] / "data" / "extract-regressions"


def _snapshot(result: Extraction) -> tuple[object, ...]:
    return (
        result.format,
        [(p.path, p.kind, p.rows, p.text, p.truncated) for p in result.parts],
        result.unscannable,
    )


def both(
    data: bytes, monkeypatch: pytest.MonkeyPatch, limits: ExtractLimits | None = None
) -> tuple[Extraction, Extraction, list[bool]]:
    """(streamed reader, as shipped, whether calamine answered for each workbook)."""
    used: list[bool] = []
    real = xlsx_fast.read_sheets

    def spy(*args: object, **kwargs: object) -> object:
        rows = real(*args, **kwargs)  # type: ignore[arg-type]
        used.append(rows is not None)
        return rows

    with monkeypatch.context() as patch:
        patch.setattr(office, "read_sheets", spy)
        new = extract(data, "book.xlsx", limits)
    with monkeypatch.context() as patch:
        patch.setattr(office, "read_sheets", lambda *_a, **_k: None)
        old = extract(data, "book.xlsx", limits)
    return old, new, used


def test_varied_workbooks_give_the_same_cells(monkeypatch):
    fast = 0
    for seed in range(60):
        old, new, used = both(varied_xlsx(seed), monkeypatch)
        assert _snapshot(new) == _snapshot(old), seed
        fast += all(used)
    # Most of what openpyxl writes passes the gates; a rich-text run of bare white space
    # (calamine trims it) or a float whose %.16g does not round-trip sends the whole
    # workbook back to the streamed reader (45 of these 60 are read by calamine).
    assert fast >= 40


# monkeypatch is only used through monkeypatch.context(), undone after every example.
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.integers(min_value=1000, max_value=10**9))
def test_any_varied_workbook_gives_the_same_cells(monkeypatch, seed):
    old, new, _used = both(varied_xlsx(seed), monkeypatch)
    assert _snapshot(new) == _snapshot(old)


def _row(number: int, cells: str) -> str:
    return f'<row r="{number}">{cells}</row>'


DATE_STYLES = (
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="dd/mm/yyyy"/>'
    '<numFmt numFmtId="165" formatCode="hh:mm"/></numFmts>'
    '<cellXfs count="5"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="165"/>'
    '<xf numFmtId="14"/><xf numFmtId="22"/></cellXfs>'
)

# (name, sheet data, shared strings, styles, calamine expected to answer)
CASES = [
    (
        "shared and inline strings, rich runs, spaces kept",
        _row(1, '<c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>')
        + _row(2, '<c r="A2" t="inlineStr"><is><r><t>in</t></r><r><t>line</t></r></is></c>')
        + _row(3, '<c r="C3" t="s"><v>2</v></c>'),
        [
            "<t>Jo Bloggs</t>",
            '<r><t xml:space="preserve">07700 </t></r><r><t>900123</t></r>',
            '<t xml:space="preserve">  padded  </t>',
        ],
        "",
        True,
    ),
    (
        "numbers as Python writes them, leading zeros in text",
        _row(
            1,
            '<c r="A1"><v>0</v></c><c r="B1"><v>-12</v></c><c r="C1"><v>1.5</v></c>'
            '<c r="D1"><v>1e-05</v></c><c r="E1"><v>1e+20</v></c><c r="F1" t="s"><v>0</v></c>'
            '<c r="G1" t="n"><v>123456789012345</v></c><c r="H1"><v>0.0001</v></c>',
        ),
        ["007"],
        "",
        True,
    ),
    (
        "booleans and a formula's cached text and number",
        _row(
            1,
            '<c r="A1" t="b"><v>1</v></c><c r="B1" t="b"><v>0</v></c>'
            '<c r="C1" t="str"><f>A1&amp;"x"</f><v>TRUEx &amp; 1.50</v></c>'
            '<c r="D1"><f>1+2</f><v>3</v></c><c r="E1"><f>1+2</f><v></v></c>',
        ),
        None,
        "",
        True,
    ),
    (
        "dates, datetimes and times by our rule (d or y), other formats as numbers",
        _row(
            1,
            '<c r="A1" s="1"><v>36925</v></c><c r="B1" s="2"><v>0.5</v></c>'
            '<c r="C1" s="3"><v>45000.25</v></c><c r="D1" s="4"><v>45000.75</v></c>'
            '<c r="E1" s="1" t="s"><v>0</v></c><c r="F1" s="4"><v>-1</v></c>'
            '<c r="G1" s="3"><v>2958466</v></c>',
        ),
        ["not a date"],
        DATE_STYLES,
        True,
    ),
    (
        "empty and style-only cells, empty rows, gaps, rows starting at column C",
        _row(1, '<c r="A1" s="1"/><c r="B1"><v></v></c>')
        + _row(2, '<c r="C2" t="inlineStr"><is><t>x</t></is></c><c r="F2"><v>2</v></c>')
        + '<row r="3"/>'
        + _row(7, '<c r="B7" t="inlineStr"><is><t></t></is></c><c r="D7"><v>4</v></c>'),
        None,
        "",
        True,
    ),
    (
        "a row wider than the padding cap",
        _row(1, '<c r="A1"><v>1</v></c><c r="AMK1"><v>2</v></c><c r="XFD1"><v>3</v></c>'),
        None,
        "",
        True,
    ),
    # -- the streamed reader's, by design --------------------------------------------
    (
        "Excel's 17-digit numbers",
        _row(1, '<c r="A1"><v>0.59999999999999998</v></c><c r="B1"><v>1E-3</v></c>'),
        None,
        "",
        False,
    ),
    (
        "numbers written with leading zeros or a plus",
        _row(1, '<c r="A1"><v>007</v></c><c r="B1"><v>+5</v></c>'),
        None,
        "",
        False,
    ),
    ("error cells", _row(1, '<c r="A1" t="e"><v>#DIV/0!</v></c>'), None, "", False),
    ("ISO date cells", _row(1, '<c r="A1" t="d"><v>2024-01-02</v></c>'), None, "", False),
    ("a boolean of 2", _row(1, '<c r="A1" t="b"><v>2</v></c>'), None, "", False),
    ("a boolean without value", _row(1, '<c r="A1" t="b"/>'), None, "", False),
    ("cells without references", _row(1, "<c><v>1</v></c><c><v>2</v></c>"), None, "", False),
    (
        "rows out of order",
        _row(2, '<c r="A2"><v>2</v></c>') + _row(1, '<c r="A1"><v>1</v></c>'),
        None,
        "",
        False,
    ),
    (
        "a row element holding another row's cells",
        _row(1, '<c r="A1"><v>1</v></c><c r="B2"><v>2</v></c>'),
        None,
        "",
        False,
    ),
    (
        "the same cell twice",
        _row(1, '<c r="A1"><v>1</v></c><c r="A1"><v>2</v></c>'),
        None,
        "",
        False,
    ),
    (
        "a carriage return in text",
        _row(1, '<c r="A1" t="inlineStr"><is><t>a\r\nb</t></is></c>'),
        None,
        "",
        False,
    ),
    (
        "CDATA",
        _row(1, '<c r="A1" t="inlineStr"><is><t><![CDATA[x]]></t></is></c>'),
        None,
        "",
        False,
    ),
    (
        "phonetic runs in shared strings",
        _row(1, '<c r="A1" t="s"><v>0</v></c>'),
        ['<t>漢字</t><rPh sb="0" eb="2"><t>かんじ</t></rPh>'],
        "",
        False,
    ),
    (
        "a shared string index out of range",
        _row(1, '<c r="A1" t="s"><v>5</v></c><c r="B1"><v>1</v></c>'),
        ["<t>only</t>"],
        "",
        None,
    ),
    (
        "cells far apart (calamine would allocate the rectangle)",
        _row(1, '<c r="A1"><v>1</v></c>') + _row(1048576, '<c r="XFD1048576"><v>2</v></c>'),
        None,
        "",
        False,
    ),
    ("truncated XML", '<row r="1"><c r="A1"><v>1</v></c>', None, "", False),
    (
        "single-quoted attributes",
        _row(1, "<c r=\"A1\" t='b'><v>2</v></c><c r=\"B1\" s='1'><v>36925</v></c>"),
        None,
        DATE_STYLES,
        False,
    ),
    (
        "space around an attribute's =",
        _row(1, '<c r="A1" t = "b"><v>2</v></c>'),
        None,
        "",
        False,
    ),
    (
        "a date style written with a leading zero",
        _row(1, '<c r="A1" s="01"><v>36925</v></c>'),
        None,
        DATE_STYLES,
        False,
    ),
    (
        "a date style that cells without s take",
        _row(1, '<c r="A1"><v>36925</v></c>'),
        None,
        '<cellXfs count="1"><xf numFmtId="14"/></cellXfs>',
        False,
    ),
]


@pytest.mark.parametrize(
    ("sheet", "shared", "styles", "fast"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hand_written_sheets(monkeypatch, sheet, shared, styles, fast):
    old, new, used = both(raw_xlsx(sheet, shared=shared, styles=styles), monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    if fast is not None:
        assert used == [fast]


def test_prefixed_markup_and_other_encodings_go_to_the_streamed_reader(monkeypatch):
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    prefixed = (
        f'<x:worksheet xmlns:x="{main}"><x:sheetData><x:row r="1"><x:c r="A1"><x:v>1</x:v>'
        "</x:c></x:row></x:sheetData></x:worksheet>"
    )
    utf16 = (
        f'<?xml version="1.0" encoding="UTF-16"?><worksheet xmlns="{main}"><sheetData>'
        '<row r="1"><c r="A1"><v>1</v></c></row></sheetData></worksheet>'
    ).encode("utf-16")
    for worksheet in (prefixed, utf16.decode("latin-1")):
        data = raw_xlsx("", worksheet=worksheet)
        old, new, used = both(data, monkeypatch)
        assert _snapshot(new) == _snapshot(old)
        assert used == [False]


def test_doctype_is_refused_as_before(monkeypatch):
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = (
        f'<!DOCTYPE x [<!ENTITY a "aaaa">]><worksheet xmlns="{main}"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>&a;</t></is></c></row></sheetData></worksheet>'
    )
    old, new, _used = both(raw_xlsx("", worksheet=sheet), monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    assert [u.code.value for u in new.unscannable] == ["unsupported"]


def test_text_over_the_part_limit_is_cut_by_the_streamed_reader(monkeypatch):
    rows = "".join(
        _row(n, f'<c r="A{n}" t="inlineStr"><is><t>customer {n:05d}</t></is></c>')
        for n in range(1, 400)
    )
    limits = ExtractLimits(max_part_chars=2_000)
    old, new, used = both(raw_xlsx(rows), monkeypatch, limits)
    assert _snapshot(new) == _snapshot(old)
    assert used == [False] and new.parts[0].truncated


def test_a_customer_export_is_read_by_calamine(monkeypatch):
    sys.path.insert(0, str(Path(__file__).parents[4] / "benchmarks"))
    try:
        import mail_filter
    finally:
        sys.path.pop(0)
    data, _rows = mail_filter.spreadsheet(mail_filter.directory(400), 30)
    old, new, used = both(data, monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    assert used == [True]
    catalogue, _n = mail_filter.products(30)
    old, new, used = both(catalogue, monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    assert used == [True]


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.xlsx")), ids=lambda p: p.name)
def test_regression_files_give_the_same_outcome(monkeypatch, path):
    old, new, _used = both(path.read_bytes(), monkeypatch)
    assert _snapshot(new) == _snapshot(old)


def test_calamine_errors_fall_back(monkeypatch):
    """A calamine failure on a sheet the gates accepted: the streamed reader answers."""
    import python_calamine

    def broken(*_args: object, **_kwargs: object) -> None:
        raise python_calamine.XmlError("synthetic")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", broken)
    old, new, used = both(varied_xlsx(3), monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    assert used == [False]


def test_big_sheets_stay_with_the_streamed_reader(monkeypatch):
    monkeypatch.setattr(xlsx_fast, "MAX_BYTES", 2_000)
    rows = "".join(_row(n, f'<c r="A{n}"><v>{n}</v></c>') for n in range(1, 200))
    old, new, used = both(raw_xlsx(rows), monkeypatch)
    assert _snapshot(new) == _snapshot(old)
    assert used == [False] and len(new.parts[0].rows) == 199
