"""Tables read column by column give exactly the findings of the laid-out text.

``InspectionEngine.scan_table(rows)`` must return what
``scan_text(table_text(rows).text)`` returns — the same findings, offsets, confidence,
context and values — and fail closed the same way.  The tables here are the evaluation
corpus's exports and sheets, and random tables built to hit every cell shape of
:mod:`spillguard.inspection.tables` and the cases around them: values that fit a shape
but fail validation, groups starting with 0, dates in sort-code clothing, account
numbers before their sort code, labels with and without context words, ragged and
empty rows, cells holding tabs, line breaks and non-ASCII characters, custom
identifiers and other phone regions.
"""

from __future__ import annotations

import random
import string
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillguard.inspection import CustomIdentifier, DetectorSettings, InspectionEngine
from spillguard.inspection.backends import hyperscan_available
from spillguard.inspection.corpus import generate_corpus, generate_documents
from spillguard.inspection.corpus import identifiers as ids
from spillguard.inspection.corpus.generator import _Gen
from spillguard.inspection.engine import ScanStatus, lay_out, table_text
from spillguard.inspection.tables import RULES, TableScanner

NO_HYPERSCAN = "hyperscan has no wheel for this platform (x86-64 only); nothing to compare"

LOYALTY = CustomIdentifier(
    name="loyalty_number",
    pattern=r"\bLC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}\b",
    check_digit="luhn",
    context_words=("loyalty", "member"),
)


def _same(engine: InspectionEngine, rows: list[list[str]]) -> list:
    """Assert both ways agree on ``rows``; return the findings."""
    expected = engine.scan_text(table_text(rows).text, timeout=None)
    result = engine.scan_table(rows, timeout=None)
    table = result.table
    assert table is not None
    assert result.status == expected.status, rows
    assert result.findings == expected.findings, rows
    assert [vars(f) for f in result.findings] == [vars(f) for f in expected.findings], rows
    assert table.text == table_text(rows).text
    return list(result.findings)


# --- random cells -----------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _mutate(rng: random.Random, value: str) -> str:
    """Change one character: a digit for another, a 0 into a group start, a letter."""
    if not value:
        return value
    at = rng.randrange(len(value))
    choice = rng.choice(("0", str(rng.randrange(10)), "A", "a", " ", "-", "", "."))
    return value[:at] + choice + value[at + 1 :]


def _cell(rng: random.Random, g: _Gen) -> str:
    """A cell of one of the kinds found in exports, sometimes altered."""
    kind = rng.randrange(24)
    if kind == 0:
        value = g.phone()
    elif kind == 1:
        value = g.email()
    elif kind == 2:
        value = ids.postcode(rng)
    elif kind == 3:
        value = g.card()
    elif kind == 4:
        value = g.iban()
    elif kind == 5:
        value = g.nino()
    elif kind == 6:
        value = g.nhs(context=True)
    elif kind == 7:
        value = g.dob()
    elif kind == 8:
        value = g.ip()
    elif kind == 9:
        value = ids.sort_code(rng, rng.choice("- "))
    elif kind == 10:
        value = rng.choice(("0", "", "1")) + _digits(rng, rng.randint(5, 19))
    elif kind == 11:
        value = f"{rng.choice(('CUST', 'ORD', 'SKU', 'x'))}-{_digits(rng, rng.randint(1, 12))}"
    elif kind == 12:
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        value = f"{day}T10:{rng.randint(0, 59):02d}:00Z"
    elif kind == 13:
        value = " ".join(g.name())
    elif kind == 14:
        # groups that start with 0, 3-3-4 phones, 10-digit runs after +44
        value = rng.choice(
            (
                f"{_digits(rng, 4)} 0{_digits(rng, 3)} {_digits(rng, 4)} {_digits(rng, 4)}",
                f"0{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 4)}",
                f"+44 {_digits(rng, 10)}",
                f"0044 {_digits(rng, 4)} {_digits(rng, 6)}",
                f"{rng.randint(1, 31)}-{rng.randint(1, 12)}-{rng.randint(1, 99):02d}",
                f"{_digits(rng, 2)}.{_digits(rng, 1)}.{_digits(rng, 2)}.{_digits(rng, 2)}",
                f"{_digits(rng, 3)}-0{_digits(rng, 2)}-{_digits(rng, 4)}",
                f"LC {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)}",
                f"{ids.luhn_number(rng, '4', 16)[:4]}-{_digits(rng, 6)}-{_digits(rng, 5)}",
            )
        )
    elif kind == 15:
        value = "".join(
            rng.choice("0123456789 -+()/.:@AaBbCcDdEeZz\u00a0\uff10\u2013é")
            for _ in range(rng.randint(0, 18))
        )
    elif kind == 16:
        value = rng.choice(("", " ", "n/a", "07700 900123\n07700 900124", "a\tb 4111 1111"))
    elif kind == 17:
        value = ids.account_number(rng)
    elif kind == 18:
        value = g.email().upper() if rng.random() < 0.5 else "x" + g.email()
    else:
        value = rng.choice(
            (g.phone(), g.card(), g.nhs(context=False), ids.postcode(rng), g.email(), g.dob())
        )
    return _mutate(rng, value) if rng.random() < 0.15 else value


HEADERS = (
    "Phone",
    "mobile_no",
    "E-mail",
    "Postcode",
    "Card number",
    "IBAN",
    "NI Number",
    "NHS No",
    "Date of birth",
    "DOB",
    "Sort code",
    "Account",
    "account_number",
    "IP",
    "last_seen",
    "Customer",
    "Notes",
    "",
    "Health record",
    "loyalty member",
    "Telephone number and other details of the customer",
)


def _table(rng: random.Random, g: _Gen) -> list[list[str]]:
    width = rng.randint(1, 7)
    rows: list[list[str]] = []
    if rng.random() < 0.75:
        rows.append([rng.choice(HEADERS) for _ in range(width)])
    # Columns of one kind (each column repeats a cell maker), as exports are.
    makers = [random.Random(rng.random()) for _ in range(width)]
    for _ in range(rng.randint(1, 12)):
        size = width if rng.random() < 0.85 else rng.randint(0, width + 2)
        row = []
        for c in range(size):
            maker = makers[c % width]
            state = maker.getstate()
            row.append(_cell(random.Random(maker.random()), g))
            maker.setstate(state)
            maker.random()
        rows.append(row)
    if rng.random() < 0.2:  # sort code then account, the bank layout
        for row in rows[1:]:
            row[:0] = [
                ids.sort_code(rng, "-"),
                rng.choice((ids.account_number(rng), "0" + _digits(rng, 7))),
            ]
    return rows


# --- the corpus ---------------------------------------------------------------------


@pytest.mark.parametrize("region", ["GB", "US"])
def test_corpus_tables_give_the_findings_of_the_laid_out_text(region):
    engine = InspectionEngine(settings=DetectorSettings(phone_region=region), timeout=None)
    documents = [
        doc
        for doc in generate_documents("csv", 30, seed=1001)
        + generate_documents("sheet", 20, seed=1001)
    ]
    documents += [d for d in generate_corpus(seed=77) if d.rows]
    found = sum(len(_same(engine, list(map(list, doc.rows)))) for doc in documents)
    assert found > 8000


@pytest.mark.parametrize("min_confidence", [0.0, 0.86, 0.92])
def test_min_confidence_is_applied_as_the_engine_applies_it(min_confidence):
    engine = InspectionEngine(min_confidence=min_confidence, timeout=None)
    for doc in generate_documents("csv", 10, seed=1002):
        _same(engine, list(map(list, doc.rows)))


@pytest.mark.skipif(not hyperscan_available(), reason=NO_HYPERSCAN)
def test_both_backends_take_the_table_path_alike():
    hyperscan, re2 = InspectionEngine(backend="hyperscan"), InspectionEngine(backend="re2")
    for doc in generate_documents("csv", 6, seed=1003):
        rows = [list(r) for r in doc.rows]
        assert hyperscan.scan_table(rows).findings == re2.scan_table(rows).findings


# --- random tables ------------------------------------------------------------------


def test_random_tables_of_every_shape_agree():
    engine = InspectionEngine(timeout=None)
    rng = random.Random(2026)
    g = _Gen(5)
    found = 0
    for _ in range(1500):
        found += len(_same(engine, _table(rng, g)))
    assert found > 3000


def test_random_tables_agree_with_a_custom_identifier_and_another_region():
    settings = DetectorSettings(phone_region="US", custom_identifiers=(LOYALTY,))
    engine = InspectionEngine(settings=settings, timeout=None)
    scanner = TableScanner(engine)
    assert {engine.detectors[n].name for n in scanner._foreign} == {"phone", "loyalty_number"}
    rng = random.Random(7)
    g = _Gen(6)
    for _ in range(400):
        _same(engine, _table(rng, g))


def test_random_tables_agree_with_detectors_left_out():
    settings = DetectorSettings(disabled=frozenset({"phone", "date_of_birth", "nhs_number"}))
    engine = InspectionEngine(settings=settings, timeout=None)
    rng = random.Random(8)
    g = _Gen(8)
    for _ in range(300):
        _same(engine, _table(rng, g))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), mutate=st.booleans())
def test_hypothesis_tables_agree(seed, mutate):
    rng = random.Random(seed)
    g = _Gen(seed % 1000)
    rows = _table(rng, g)
    if mutate:
        rows = [[_mutate(rng, c) for c in row] for row in rows]
    _same(_ENGINE, rows)


_ENGINE = InspectionEngine(timeout=None)


# --- cases around the shapes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "cells"),
    [
        # A card whose later group starts with 0 holds a phone candidate: with the card's
        # context the card outranks it, without it the phone may win.
        ("Card number", ["4111 0207 9460 0123", "4111 1111 1111 1111"]),
        ("Notes", ["4111 0207 9460 0123", "5500 0000 0000 0004"]),
        # NHS numbers whose groups start with 0 (phone candidates inside).
        ("NHS No", ["020 794 6012", "401 023 4567", "943 476 5919"]),
        ("Customer", ["020 794 6012", "401 023 4567"]),
        # IBAN without its context word.
        ("Reference", ["GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"]),
        # Spaced NINOs (a sort-code candidate inside).
        ("NI Number", ["AB 12 34 56 C", "ab 12 34 56 c"]),
        ("Reference", ["AB 12 34 56 C"]),
        # IPv4 octets that read as a date, with and without an IP word.
        ("IP", ["12.5.80.17", "1.2.34.56", "10.0.12.34"]),
        ("Customer", ["12.5.80.17", "1.2.34.56"]),
        # Phones: a 3-3-4 national number, ten digits after +44, invalid ones.
        ("Phone", ["020 794 6012", "+44 7700900123", "07700 900123", "07000 000000"]),
        # Digit runs: a phone and an NHS number at once, long 00 numbers.
        ("NHS No", ["0123456789", "9434765919", "00447700900123456"]),
        # Postcodes of the right shape breaking Royal Mail's letter rules.
        ("Postcode", ["QV1 1AA", "SW1A 1AA", "AB1 1CI", "W1A 0AX"]),
        # Timestamps and references.
        ("Last seen", ["2024-03-05T10:01:00Z", "2024-03-05T10:01:00", "ORD-2019-000000"]),
    ],
)
def test_shapes_that_hold_other_candidates(header, cells):
    engine = InspectionEngine(timeout=None)
    rows = [[header, "DOB", "Phone"]] + [[c, "01/02/1980", "07700 900123"] for c in cells]
    _same(engine, rows)
    _same(engine, [[c] for c in cells])  # no header, no label context


def test_sort_codes_in_every_layout():
    engine = InspectionEngine(timeout=None)
    rows = [
        ["Sort code", "Account", "Notes"],
        ["20-00-00", "12345678", "x"],  # read directly
        ["20-00-00", "02345678", "x"],  # account holding a phone candidate
        ["00-00-00", "12345678", "x"],  # refused sort code
        ["12-05-56", "", "born 1956"],  # no account: a date of birth, maybe
        ["12 34 56", "12345678", "x"],
        ["12345678", "20-00-00", "x"],  # account before the sort code
        ["20-00-00", "12345678", "40-00-00"],  # two sort codes, one account
    ]
    found = _same(engine, rows)
    assert sum(f.entity == "uk_bank_account" for f in found) >= 3
    _same(engine, [["Account", "Sort code"], ["12345678", "20-00-00"]])
    _same(engine, [["Notes", "Other"], ["20-00-00", "12345678"]])  # no bank word


def test_cells_with_tabs_line_breaks_and_other_scripts_go_the_generic_way():
    engine = InspectionEngine(timeout=None)
    rows = [
        ["Phone", "Notes"],
        ["07700 900123\n07700 900124", "call\t07700 900125"],
        ["\uff10\uff17\uff17\uff10\uff10 900123", "Zoë 07700\u00a0900123"],
        ["07700\u2013900123", "e-mail: jo@example.org"],
    ]
    assert len(_same(engine, rows)) >= 4


def test_empty_and_ragged_tables():
    engine = InspectionEngine(timeout=None)
    for rows in (
        [],
        [[]],
        [["Phone"]],
        [["Phone"], []],
        [[], ["07700 900123"]],
        [["a", "b"], ["07700 900123"], ["x", "y", "4111 1111 1111 1111"]],
    ):
        _same(engine, rows)


# --- failing closed -------------------------------------------------------------------------


def test_a_timeout_gives_uninspected_never_clean():
    ticks = count()
    engine = InspectionEngine(timeout=5.0, clock=lambda: next(ticks) * 10.0)
    rows = [["Phone"], ["07700 900123"]]
    result = engine.scan_table(rows)
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason is not None and result.reason.startswith("timeout")
    assert result.table is not None and result.table.text == table_text(rows).text


def test_an_engine_failure_gives_uninspected(monkeypatch):
    engine = InspectionEngine(timeout=None)

    def broken(self, *args, **kwargs):
        raise RuntimeError("07700 900123 must never appear in the reason")

    monkeypatch.setattr(TableScanner, "_sole", broken)
    result = engine.scan_table([["Phone"], ["07700 900123"]])
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason == "engine error: RuntimeError"


def test_too_many_candidates_gives_uninspected_as_the_generic_path_does():
    engine = InspectionEngine(timeout=None, max_candidates=20)
    rows = [["Phone", "Card"]] + [["07700 900123", "4111 1111 1111 1111"]] * 20
    result = engine.scan_table(rows)
    assert result.status is ScanStatus.UNINSPECTED
    assert engine.scan_text(table_text(rows).text).status is ScanStatus.UNINSPECTED
    assert result.reason == "too many candidates: more than 20"


def test_a_deadline_passing_mid_table_is_noticed(monkeypatch):
    """The deadline is looked at while columns are decided, not only at the end."""
    now = [0.0]
    engine = InspectionEngine(timeout=0.035, clock=lambda: now[0])
    decided = []
    original = TableScanner._column

    def slow_column(self, table, cells, indexes, label):
        now[0] += 0.01  # each column takes 10 ms
        decided.append(len(cells))
        return original(self, table, cells, indexes, label)

    monkeypatch.setattr(TableScanner, "_column", slow_column)
    rows = [["Phone", "E-mail", "Postcode"]] + [
        ["07700 900123", "jo@example.org", "SW1A 1AA"]
    ] * 9000
    result = engine.scan_table(rows)
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason is not None and result.reason.startswith("timeout")
    assert len(decided) < 1 + 3 * 3  # the header row, then 3 columns in 3 blocks of rows


# --- the layout and the rules ---------------------------------------------------------------


def _reference_layout(rows):
    """table_text before the column-wise layout: cell by cell."""
    from spillguard.inspection.engine import header_labels

    labels = header_labels(rows)
    pieces, starts, cells = [], [], []
    position = 0
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            if c:
                pieces.append("\t")
                position += 1
            if labels is not None and r > 0 and c < len(labels) and labels[c]:
                pieces.append(labels[c])
                position += len(labels[c])
            starts.append(position)
            cells.append((r, c, len(cell)))
            pieces.append(cell)
            position += len(cell)
        pieces.append("\n")
        position += 1
    return "".join(pieces), starts, cells


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from(["", "a", "Phone", "1", "é\t", "NHS No", "x@y", "07700"]), max_size=5
        ),
        max_size=6,
    )
)
def test_table_layout_is_the_cell_by_cell_layout(rows):
    text, starts, cells = _reference_layout(rows)
    table = table_text(rows)
    assert table.text == text
    assert list(table.starts) == starts
    assert list(table.cells) == cells
    for offset in range(len(text) + 1):
        expected = None
        for at, start in enumerate(starts):
            if start <= offset < start + max(cells[at][2], 1):
                expected = (cells[at][0], cells[at][1], offset - start, cells[at][2])
        assert table.locate(offset) == expected
    assert lay_out(rows).text == text


def test_every_rule_is_applied_somewhere_in_the_corpus():
    """The shapes are not dead code: each decides cells of the evaluation exports."""
    engine = InspectionEngine(timeout=None)
    scanner = TableScanner(engine)
    used: set[str] = set()
    original = scanner._admit

    def spy(table, rule, cells, indexes, label, joined=None):
        used.add(rule.name)
        return original(table, rule, cells, indexes, label, joined)

    scanner._admit = spy  # type: ignore[method-assign]
    engine._table_scanner = scanner
    for doc in generate_documents("csv", 40, seed=1004):
        engine.scan_table([list(r) for r in doc.rows])
    # Every rule but the one for postcodes that break Royal Mail's rules (the corpus
    # writes valid ones; see test_shapes_that_hold_other_candidates).
    assert used == {rule.name for rule in RULES} - {"postcode_invalid"}


def test_the_corpus_exports_need_no_generic_cells():
    """Every cell of the benchmark's dense exports is decided by its shape (the speed of
    the table path depends on it; correctness does not)."""
    engine = InspectionEngine(timeout=None)
    scanner = TableScanner(engine)
    generic = 0
    original = scanner._generic_ranked

    def spy(table, indexes):
        nonlocal generic
        generic += len(indexes)
        return original(table, indexes)

    scanner._generic_ranked = spy  # type: ignore[method-assign]
    engine._table_scanner = scanner
    cells = 0
    for doc in generate_documents("csv", 40, seed=1000):
        engine.scan_table([list(r) for r in doc.rows])
        cells += sum(map(len, doc.rows))
    assert generic * 100 < cells  # under 1 %


@pytest.mark.parametrize("rule", [rule.name for rule in RULES])
def test_each_rule_alone_gives_the_engines_findings(rule):
    """A rule holds for every cell its shape fits, whatever the other rules: with only
    this rule (every other cell going the generic way), the findings are the same."""
    engine = InspectionEngine(timeout=None)
    scanner = TableScanner(engine)
    scanner._rules = [entry for entry in scanner._rules if entry[0].name == rule]
    assert scanner._rules
    engine._table_scanner = scanner
    shape = scanner._rules[0][1]
    rng = random.Random(rule)
    g = _Gen(len(rule))
    fitted = 0
    for _ in range(150):
        rows = _table(rng, g)
        fitted += sum(1 for row in rows for cell in row if shape.fullmatch(cell))
        _same(engine, rows)
    assert fitted > 0 or rule == "postcode_invalid"
