"""Tables inspected column by column: what ``scan_text(table_text(rows).text)`` finds.

A dense export (customers, one per row) has a candidate in almost every cell, and the
engine's candidate loop costs microseconds of Python per candidate.  But a column of
an export is nearly always one kind of value written one way, and for a cell of a
known *shape* the outcome of the whole loop is known in advance: which detectors'
patterns can match inside it, where, and whether anything else can.  So a table is
read a column at a time:

1. every cell is tested against the **cell rules** below (one compiled regex
   ``fullmatch`` per cell, or one per column when every cell of it fits);
2. a cell of a *quiet* shape (names, references glued to letters, timestamps, digit
   runs no pattern accepts) can hold no finding;
3. a cell of a *finding* shape is exactly one candidate of one detector spanning the
   whole cell: it is validated (a whole column at once where the detector can), its
   context is decided by the column's header label when the label holds a context
   word within reach (else by the window search the engine makes), and it becomes a
   finding — or, when the shape leaves a doubt (an invalid value that sub-spans might
   rescue), the cell goes the generic way;
4. every other cell goes the **generic way**: the engine's own backend finds its
   candidates (the cells joined by line breaks, one pass) and the engine's own loop
   refines, validates and scores them against the laid-out text.

Why the cell is enough.  Every built-in pattern matches within one cell of the
laid-out text: none can match a tab or a line break, and none can run from a header
label (``"Header: "``) into its cell; the characters around a cell (a space, a tab,
a line break or the text's edge) are all non-word characters, so ``\\b`` and ``\\B``
at a cell's edges behave as at the edges of a text holding the cell alone.  Of the
steps after the pattern, only two look beyond the candidate: context words (decided
on the laid-out text itself, as the engine does) and the bank-account refiner, which
widens a sort code to an account number in a later cell.  Findings that cross a cell
(bank accounts) and the findings of detectors that are not the built-in ones
(custom identifiers, a phone detector for another region: their patterns may cross
cells, so they are searched in the whole laid-out text) are resolved together with
every finding of each cell they touch, those cells having gone the generic way.
Overlaps are resolved within a cell (where the shape says there is nothing to
resolve, or a finding that outranks everything else a cell can hold) and across
cells (the crossing findings), so the result is the engine's, finding for finding.

Each shape comes with the reasoning (the comments at :data:`RULES`) and an
equivalence test that compares this path with the engine's on random tables of every
shape and on the evaluation corpus (``tests/unit/inspection/test_tables.py``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, is_, itemgetter, setitem
from typing import TYPE_CHECKING, cast

from spillguard.inspection.backends import (
    BACKENDS,
    Deadline,
    RawMatch,
    ScanBackend,
    TooManyCandidates,
)
from spillguard.inspection.detectors import build_detectors
from spillguard.inspection.detectors.base import Detector
from spillguard.inspection.detectors.dob import _MONTH, _ORDINAL
from spillguard.inspection.detectors.postcode import _INWARD, _OUTWARD
from spillguard.inspection.engine import (
    Finding,
    Layout,
    Ranked,
    _char_offsets,
    _make_finding,
    _Plan,
    _resolve_ranked,
    fold_text,
    make_findings,
)

if TYPE_CHECKING:
    from spillguard.inspection.engine import InspectionEngine

__all__ = ["RULES", "CellRule", "TableScanner"]

_QUIET = "quiet"
_DIGITS = "digits"
_FIND = "find"
_BANK = "bank"

_CHECK_CELLS = 2048  # cells decided between two looks at the deadline
_E = "{E}"  # the end of a cell: ``\Z`` for one cell, ``(?=\n)`` inside a column


@dataclass(frozen=True)
class CellRule:
    """A shape of cell, and what the engine finds in a cell of that shape.

    ``kind``: ``quiet`` (nothing), ``digits`` (a digit run: by its length and first
    digit, one candidate or none), ``find`` (one candidate of ``detector`` spanning
    the cell) or ``bank`` (a sort code: the bank-account detector's candidate, widened
    to the account number beside it).  ``sole`` is false for a ``find`` shape where
    other candidates may exist inside the cell: the cell is then decided here only when
    the finding outranks every other detector (``dominant``), else it goes the
    generic way.  ``shape`` is a regex with ``{E}`` standing for the end of a cell.

    A rule holds for every cell its shape matches, whatever the other rules say: a
    column's first cell picks the rule that is then applied to every cell it fits.
    """

    name: str
    kind: str
    shape: str
    detector: str = ""
    sole: bool = True
    rivals: tuple[str, ...] = ()
    """For a shape that is not ``sole``: the detectors whose candidates may lie in
    the cell besides the whole-cell one (each strictly shorter than the cell, or of
    lower confidence where it may span it)."""
    exclude: str = ""
    """A regex: a cell of the shape in which it is found does not fit the rule."""
    digits: tuple[int, ...] = ()
    """For the phone shape: the numbers of national digits (after +44, 0044 or the
    trunk 0, and a (0)) a cell may have to fit the rule."""

    def compile(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        """The shape for one cell (``fullmatch``), and for a whole column of cells each
        followed by a line break (``fullmatch`` of the joined column)."""
        cell = re.compile(self.shape.replace(_E, r"\Z"), re.ASCII)
        column = re.compile("(?:" + self.shape.replace(_E, r"(?=\n)") + r"\n)*+", re.ASCII)
        return cell, column

    def compile_exclude(self) -> re.Pattern[str] | None:
        """:attr:`exclude`, compiled (its matches never cross a line break)."""
        return re.compile(self.exclude, re.ASCII) if self.exclude else None


# Royal Mail's outward and inward code rules (the postcode validator's).
_POSTCODE_VALID = f"(?:{_OUTWARD.pattern}) (?:{_INWARD.pattern})".replace(r"\d", "[0-9]")
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"

RULES: tuple[CellRule, ...] = (
    # No ASCII digit, ":" or "@", and nothing that folds into one (full-width digits
    # and "@"): every built-in pattern needs one of them (e-mail "@", IPv6 ":", every
    # other a digit), so no candidate at all.  Names, free text, empty cells.
    CellRule("none", _QUIET, "[^0-9:@\uff10-\uff19\uff20\n]*" + _E),
    # A digit run: candidates are the whole run or nothing, by length and first digit
    # (phone: a leading 0 and 7-15 digits, or 00 and up to 19; card 13-19; NHS 10).
    CellRule("digits", _DIGITS, "[0-9]+" + _E),
    # A lower-case address whose local-part segments start with a letter and hold at
    # most five digits, at a domain of letters and hyphens, 64 characters at most: no
    # digit run follows a word boundary (so no pattern that starts with a digit
    # matches), no "+" is followed by a digit, no six digits make a NINO, no capital
    # makes a postcode or IBAN, no ":" an IPv6 address.  The e-mail pattern finds the
    # "@domain" part to the end of the cell, the local part reaches the cell's start,
    # and the validator gives the cell itself (lower case, nothing to strip).
    CellRule(
        "email",
        _FIND,
        r"(?=[^\n]{6,64}" + _E + r")[a-z]++[0-9]{0,5}+(?:[._%+'-][a-z]++[0-9]{0,5}+)*+"
        r"@(?:[a-z]++(?:-[a-z]++)*+\.)++[a-z]{2,24}+" + _E,
        "email",
    ),
    # A UK number written +44, 0044 or 0, an optional (0) after the code, then digit
    # runs of three or more joined by single spaces or hyphens, 9 or 10 digits after
    # the prefix (the trunk 0 included: 10 or 11), with no run of exactly ten digits
    # (an unspaced NHS number) and no 3-3-4 runs (a spaced one).  The phone pattern
    # matches the whole cell (6-14 digits after +CC, 7-15 from a trunk 0); runs of
    # three or more leave no one- or two-digit groups for sort codes or dates; a card
    # candidate needs 13 digits after a boundary, so only the 0044 forms hold one, and
    # it starts with 0 (no scheme does) with no sub-span of 14 digits.
    CellRule(
        "phone",
        _FIND,
        r"(?:(?:\+44|0044)[ -]?(?:\(0\)[ -]?)?(?=[1-9])|(?=0[1-9]))"
        r"[0-9]{3,}+(?:[ -][0-9]{3,}+)*+" + _E,
        "phone",
        exclude=r"(?<![0-9])[0-9]{10}(?![0-9])|(?<![0-9])[0-9]{3}[ -][0-9]{3}[ -][0-9]{4}(?![0-9])",
        digits=(9, 10),
    ),
    # A postcode written OUTWARD INWARD in capitals: no six digits (NINO), no four
    # characters after the first four (IBAN), no three letters in a row (month name),
    # no digit run after a word boundary longer than one; the postcode pattern matches
    # the whole cell.  Those following Royal Mail's rules are valid as written (the
    # validator gives the cell); the others are a candidate that fails validation, and
    # the postcode detector tries no sub-spans: nothing.
    CellRule("postcode", _FIND, _POSTCODE_VALID + _E, "uk_postcode"),
    CellRule(
        "postcode_invalid",
        _QUIET,
        "(?!" + _POSTCODE_VALID + _E + r")[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}" + _E,
    ),
    # References glued to letters ("CUST-613160", "ORD-2019-000042"), 32 characters at
    # most: every candidate starts at a digit group after a hyphen, within reach of the
    # letters, so it is glued (``is_glued``) and dropped; no "@", "." or ":" for the
    # detectors that are not standalone.
    CellRule(
        "reference", _QUIET, r"(?=[^\n]{1,32}" + _E + r")[A-Za-z]{1,10}(?:-[0-9]{1,12}){1,3}" + _E
    ),
    # NHS numbers 3-3-4 with one separator: no card (10 digits), no date or sort code
    # (no group of 1-2 digits), no unspaced NHS number (no run of 10).  A first or
    # second group starting with 0 starts a phone candidate (7 or 10 digits to its
    # right; a third group's 0 has only 4): decided here when no group does, or with
    # context (0.95 outranks any phone number, 0.9 at most).
    CellRule(
        "nhs",
        _FIND,
        r"[0-9]{3}([ -])[0-9]{3}\1[0-9]{4}" + _E,
        "nhs_number",
        sole=False,
        rivals=("phone",),
    ),
    # Cards written in groups (4-4-4-4, or Amex 4-6-5) with one separator.  The card
    # pattern matches the whole cell; no group of 1-3 digits (dates, sort codes, NHS
    # numbers need them).  A group starting with 0 can start a phone candidate, so the
    # cell is decided here only when no group does (sole), or when the card has its
    # context (0.95 outranks every phone).
    CellRule(
        "card",
        _FIND,
        r"(?:[1-9][0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}"
        r"|3[47][0-9]{2}([ -])[0-9]{6}\2[0-9]{5})" + _E,
        "payment_card",
        sole=False,
        rivals=("phone",),
    ),
    # IBANs in capitals, spaced in fours or compact: the IBAN pattern matches the whole
    # cell.  Other candidates may lie inside (digit runs): decided here only with
    # context (0.95, and longer than anything inside).
    CellRule(
        "iban",
        _FIND,
        r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}+(?: ?[A-Z0-9]{1,3})?+" + _E,
        "iban",
        sole=False,
        rivals=(
            "phone",
            "uk_postcode",
            "payment_card",
            "uk_bank_account",
            "uk_nino",
            "nhs_number",
            "nhs_number_unspaced",
            "date_of_birth",
        ),
    ),
    # NINOs compact (any case): the letters before the digits leave no boundary for a
    # digit pattern, six digits are too few for a phone and too many for a postcode.
    CellRule("nino", _FIND, r"[A-Za-z]{2}[0-9]{6}[A-Da-d]" + _E, "uk_nino"),
    # NINOs spaced in pairs: "12 34 56" is a sort-code candidate, so only with context
    # (0.95 outranks a bank account's 0.85).
    CellRule(
        "nino_spaced",
        _FIND,
        r"[A-Za-z]{2} [0-9]{2} [0-9]{2} [0-9]{2} [A-Da-d]" + _E,
        "uk_nino",
        sole=False,
        rivals=("uk_bank_account",),
    ),
    # IPv4 addresses as ``ipaddress`` accepts them (no leading zeros): the validator
    # gives the cell.  Octets d.d.dd can also be a date (context-gated, 0.85), so the
    # cell is decided here with context (0.9), or when no three octets make a date.
    CellRule(
        "ipv4",
        _FIND,
        _IPV4_OCTET + r"(?:\." + _IPV4_OCTET + "){3}" + _E,
        "ipv4",
        sole=False,
        rivals=("date_of_birth",),
    ),
    # IPv6 addresses without a dotted part: hex groups of 1-4 and colons, 39 characters
    # at most, starting with a group or "::", ending with a group or ":".  The IPv6
    # pattern matches the whole cell; digit runs of four at most and no space, dot,
    # hyphen or slash leave nothing for any other pattern.
    CellRule(
        "ipv6",
        _FIND,
        r"(?=[^\n]{3,39}" + _E + r")(?:[0-9A-Fa-f]{1,4}|:):[0-9A-Fa-f:]*" + _E,
        "ipv6",
    ),
    # Dates: ISO (year not starting with 0, else a phone), d/m/yyyy, d.m.yyyy,
    # d-m-yyyy (day not starting with 0) and with a month name: the date pattern
    # matches the whole cell and no other pattern matches inside (no run of 7+ digits
    # after a 0, no 3-3-4, no 13 digits, no two letters before two digits).
    CellRule(
        "date",
        _FIND,
        r"(?:[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"
        r"|[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}"
        r"|[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}"
        r"|[1-9][0-9]?-[0-9]{1,2}-[0-9]{4}"
        rf"|[0-9]{{1,2}}{_ORDINAL} (?:of )?{_MONTH},? [0-9]{{4}}"
        rf"|{_MONTH} [0-9]{{1,2}}{_ORDINAL},? [0-9]{{4}})" + _E,
        "date_of_birth",
    ),
    # A sort code: the bank-account candidate (widened to the account number) and, with
    # hyphens, a date candidate of the same span that a bank account outranks (the same
    # confidence, a longer span).  No phone (six digits).
    CellRule("sort_code", _BANK, r"[0-9]{2}([ -])[0-9]{2}\1[0-9]{2}" + _E, "uk_bank_account"),
    # ISO timestamps with a time ("2024-03-05T10:01:00Z"): the date is glued to the
    # "T" (no boundary), and the time's "hh:mm" pairs are no IPv6 address.
    CellRule(
        "timestamp",
        _QUIET,
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z?" + _E,
    ),
)
"""The cell rules, in the order a column's first cell is tried against them."""

# Rivals whose candidate may span the whole cell (a tie in confidence would then go to
# the detector listed first, not to the longer span).
_WHOLE_CELL_RIVALS: dict[str, tuple[str, ...]] = {"nhs": ("phone",)}

# What the phone detector's fast path strips before reading the national number.
_NOT_DIGITS = str.maketrans("", "", " -()")
_NATIONAL_PREFIX = re.compile(r"^(?:\+44|0044|0)", re.MULTILINE)

_ACCOUNT = re.compile("[0-9]{8}")
_FIRST = itemgetter(0)
_GAP = re.compile(r"[^\d\n]{1,40}")


def _recognised(detector: Detector, reference: Detector | None) -> bool:
    """Whether ``detector`` is the built-in one the shapes were reasoned about: the same
    pattern and the same steps around validation (the validator may differ: it is the
    detector's own that is called, except where :meth:`TableScanner._values` says)."""
    return (
        reference is not None
        and type(detector) is Detector
        and detector.entity == reference.entity
        and detector.pattern == reference.pattern
        and detector.refine is reference.refine
        and detector.standalone == reference.standalone
        and detector.split_on_failure == reference.split_on_failure
        and detector.requires_context == reference.requires_context
        and detector.context_words == reference.context_words
        and detector.confidence == reference.confidence
        and detector.context_boost == reference.context_boost
        and detector.context_before == reference.context_before
        and detector.context_after == reference.context_after
    )


_REFERENCE = {d.name: d for d in build_detectors()}


class _Table:
    """One table being scanned: the layout, and where each cell's outcome goes."""

    def __init__(self, layout: Layout, deadline: Deadline, limit: int) -> None:
        self.layout = layout
        self.deadline = deadline
        self.limit = limit
        self.candidates = 0
        count = len(layout.cells)
        self.slots: list[Finding | None] = [None] * count
        self.generic: list[int] = []
        # (cell, ranked finding, the other cells it covers when known, else None)
        self.crossing: list[tuple[int, Ranked, tuple[int, ...] | None]] = []
        self._folded: str | None = None

    @property
    def folded(self) -> str:
        if self._folded is None:
            self._folded = fold_text(self.layout.text)
        return self._folded

    def count(self, candidates: int) -> None:
        self.candidates += candidates
        if self.candidates > self.limit:
            raise TooManyCandidates


def _make_one(
    engine: InspectionEngine,
    number: int,
    start: int,
    end: int,
    confidence: float,
    context: bool,
    value: str,
) -> Finding:
    return _make_finding(
        engine._entities[number],
        engine._names[number],
        start,
        end,
        confidence,
        context,
        value,
        engine.region,
    )


def _same(cells: list[str]) -> list[str | None]:
    return cells  # type: ignore[return-value]


def _pick(items: list[int], indexes: Sequence[int]) -> list[int]:
    """``items`` at ``indexes`` (a slice when they are a range)."""
    if type(indexes) is range:
        return items[indexes.start : indexes.stop : indexes.step]
    return list(map(items.__getitem__, indexes))


class TableScanner:
    """The column-wise table path of one :class:`InspectionEngine` (see the module)."""

    def __init__(self, engine: InspectionEngine) -> None:
        self.engine = engine
        detectors = engine.detectors
        self._numbers: dict[str, int] = {}
        foreign: list[int] = []
        for number, detector in enumerate(detectors):
            if _recognised(detector, _REFERENCE.get(detector.name)) and engine._plans[number]:
                self._numbers[detector.name] = number
            else:
                foreign.append(number)
        self._foreign = tuple(foreign)
        self._foreign_backend: ScanBackend | None = None
        if foreign:
            self._foreign_backend = BACKENDS[engine.backend](
                [detectors[n].pattern for n in foreign]
            )
        self._rules: list[tuple[CellRule, re.Pattern[str], re.Pattern[str]]] = []
        for rule in RULES:
            if rule.detector and rule.detector not in self._numbers:
                continue
            self._rules.append((rule, *rule.compile()))
        self._exclude = {rule.name: rule.compile_exclude() for rule in RULES}
        self._parts: dict[int, tuple[_Plan, Callable[[list[str]], list[str | None]]]] = {}
        for number in self._numbers.values():
            plan = engine._plans[number]
            assert plan is not None  # recognised detectors are plain Detectors
            self._parts[number] = (plan, self._values_of(number))
        self._label_cache: dict[tuple[int, str], bool] = {}
        self._last_rule: dict[str, tuple[CellRule, re.Pattern[str], re.Pattern[str]]] = {}

    # --- the scan ------------------------------------------------------------------

    def scan(self, layout: Layout, deadline: Deadline) -> list[Finding]:
        """The findings of ``layout``'s text, as the engine's ``scan_text`` gives them."""
        engine = self.engine
        table = _Table(layout, deadline, engine.max_candidates)
        labels = layout.labels
        unchecked = 0
        for column, cells, indexes in layout.columns():
            label = ""
            if labels is not None and column is not None and column < len(labels):
                label = labels[column]
            self._column(table, cells, indexes, label)
            unchecked += len(cells)
            if unchecked >= _CHECK_CELLS:
                deadline.check()
                unchecked = 0
        ranked = self._resolve_generic(table)
        return self._assemble(table, ranked)

    def _column(self, table: _Table, cells: list[str], indexes: Sequence[int], label: str) -> None:
        """Decide the cells of one column (or of the header row) by their shapes: the
        rule of the first undecided cell, tried on the whole rest of the column at once
        (one regex) and else cell by cell, until every cell is decided or generic."""
        rules = self._rules
        remaining_cells, remaining_indexes = cells, indexes
        while remaining_cells:
            first = remaining_cells[0]
            found = None
            # The rule this column's label last took first (tables of one export
            # repeat their columns), then every rule in order.
            last = self._last_rule.get(label)
            if last is not None and last[1].fullmatch(first):
                found = last
            else:
                for entry in rules:
                    if entry[1].fullmatch(first):
                        found = entry
                        self._last_rule[label] = entry
                        break
            if found is None:
                table.generic.append(remaining_indexes[0])
                remaining_cells = remaining_cells[1:]
                remaining_indexes = remaining_indexes[1:]
                continue
            rule, one, column = found
            if len(remaining_cells) == 1:
                self._admit(table, rule, remaining_cells, remaining_indexes, label)
                return
            joined = "\n".join(remaining_cells) + "\n"
            if joined.count("\n") == len(remaining_cells) and column.fullmatch(joined):
                self._admit(table, rule, remaining_cells, remaining_indexes, label, joined)
                return
            # The cells of this shape, and the rest (C-level selections: a column of
            # numbers written several ways takes this path).
            matches = list(map(one.fullmatch, remaining_cells))
            misses = list(map(is_, matches, repeat(None)))
            self._admit(
                table,
                rule,
                list(compress(remaining_cells, matches)),
                list(compress(remaining_indexes, matches)),
                label,
            )
            remaining_indexes = list(compress(remaining_indexes, misses))
            remaining_cells = list(compress(remaining_cells, misses))

    def _admit(
        self,
        table: _Table,
        rule: CellRule,
        cells: list[str],
        indexes: Sequence[int],
        label: str,
        joined: str | None = None,
    ) -> None:
        """Apply ``rule`` to cells of its shape, except those its :attr:`~CellRule.exclude`
        or :attr:`~CellRule.digits` turn away (they go the generic way)."""
        exclude = self._exclude[rule.name]
        if exclude is not None:
            if joined is None:
                joined = "\n".join(cells) + "\n"
            if exclude.search(joined) is not None:
                keep = [exclude.search(c) is None for c in cells]
                table.generic.extend(i for i, k in zip(indexes, keep, strict=True) if not k)
                cells = [c for c, k in zip(cells, keep, strict=True) if k]
                indexes = [i for i, k in zip(indexes, keep, strict=True) if k]
                joined = None
        if rule.digits and cells:
            if joined is None:
                joined = "\n".join(cells) + "\n"
            national = _NATIONAL_PREFIX.sub("", joined.replace("(0)", "").translate(_NOT_DIGITS))
            sizes = map(len, national.split("\n"))
            keep = list(map(rule.digits.__contains__, sizes))
            if not all(keep[: len(cells)]):
                table.generic.extend(i for i, k in zip(indexes, keep, strict=False) if not k)
                cells = [c for c, k in zip(cells, keep, strict=False) if k]
                indexes = [i for i, k in zip(indexes, keep, strict=False) if k]
        if cells:
            self._apply(table, rule, cells, indexes, label)

    def _apply(
        self, table: _Table, rule: CellRule, cells: list[str], indexes: Sequence[int], label: str
    ) -> None:
        if rule.kind == _QUIET:
            return
        if rule.kind == _FIND:
            self._find(table, rule, self._numbers[rule.detector], cells, indexes, label)
        elif rule.kind == _DIGITS:
            self._digits(table, cells, indexes, label)
        else:
            self._bank(table, cells, indexes, label)

    # --- cells that are one candidate ------------------------------------------------

    def _digits(self, table: _Table, cells: list[str], indexes: Sequence[int], label: str) -> None:
        """Digit runs: a phone candidate (leading 0, 7-15 digits, or 00 and up to 19),
        a card candidate (13-19 digits; never a card with a leading 0: no scheme starts
        with 0, and a run without separators has no sub-spans), an unspaced NHS
        candidate (10 digits), or none.  A leading 0 and ten digits is two candidates
        of one span: the generic way."""
        # A column of one kind (the usual case) is decided by its lengths and first
        # digits alone, without a look at each cell.
        zeros = "".join(map(_FIRST, cells)).count("0")
        sizes = set(map(len, cells))
        name = ""
        if zeros == 0:
            if sizes == {10}:
                name = "nhs_number_unspaced"
            elif min(sizes) >= 13 and max(sizes) <= 19:
                name = "payment_card"
        elif zeros == len(cells) and min(sizes) >= 7 and max(sizes) <= 15 and 10 not in sizes:
            name = "phone"
        if name and name in self._numbers:
            self._sole(table, self._numbers[name], cells, indexes, label)
            return
        groups: dict[str, tuple[list[str], list[int]]] = {}
        for cell, index in zip(cells, indexes, strict=True):
            size = len(cell)
            if cell[0] == "0":
                if size == 10:
                    table.generic.append(index)
                    continue
                if 7 <= size <= 15 or (15 < size <= 19 and cell[1] == "0"):
                    name = "phone"
                else:
                    continue
            elif size == 10:
                name = "nhs_number_unspaced"
            elif 13 <= size <= 19:
                name = "payment_card"
            else:
                continue
            if name not in self._numbers:
                table.generic.append(index)
                continue
            group = groups.setdefault(name, ([], []))
            group[0].append(cell)
            group[1].append(index)
        for name, (group_cells, group_indexes) in groups.items():
            self._sole(table, self._numbers[name], group_cells, group_indexes, label)

    def _find(
        self,
        table: _Table,
        rule: CellRule,
        number: int,
        cells: list[str],
        indexes: Sequence[int],
        label: str,
    ) -> None:
        if rule.sole:
            self._sole(table, number, cells, indexes, label)
            return
        # Other candidates may lie inside: decide the cells whose finding outranks all
        # of them, the rest by their own shape check or the generic way.
        context = self._label_context(number, label)
        if context and self._outranks(number, rule):
            self._sole(table, number, cells, indexes, label, context=True, sole=False)
            return
        alone: list[str] = []
        alone_indexes: list[int] = []
        for cell, index in zip(cells, indexes, strict=True):
            if self._alone(rule.name, cell):
                alone.append(cell)
                alone_indexes.append(index)
            else:
                table.generic.append(index)
        if alone:
            self._sole(table, number, alone, alone_indexes, label)

    def _outranks(self, number: int, rule: CellRule) -> bool:
        """Whether detector ``number``'s finding with context outranks every rival: a
        higher confidence, or the same and a longer span (rivals other than those the
        rule marks as possibly spanning the cell lie strictly inside it)."""
        plans = self.engine._plans
        mine = plans[number].with_context  # type: ignore[union-attr]
        whole = _WHOLE_CELL_RIVALS.get(rule.name, ())
        for name in rule.rivals:
            rival = self._numbers.get(name)
            if rival is None:
                continue
            theirs = plans[rival].with_context  # type: ignore[union-attr]
            if theirs > mine or (theirs == mine and name in whole):
                return False
        return True

    @staticmethod
    def _alone(rule: str, cell: str) -> bool:
        """For a shape that is not always one candidate: whether this cell is."""
        if rule == "card":
            # No group after the first starts with 0 (it could start a phone number).
            return " 0" not in cell and "-0" not in cell
        if rule == "nhs":
            # Neither of the first two groups starts with 0.
            return cell[0] != "0" and cell[4] != "0"
        if rule == "ipv4":
            sizes = [len(octet) for octet in cell.split(".")]
            return not any(
                sizes[i] <= 2 and sizes[i + 1] <= 2 and sizes[i + 2] == 2 for i in range(2)
            )
        return False

    def _sole(
        self,
        table: _Table,
        number: int,
        cells: list[str],
        indexes: Sequence[int],
        label: str,
        *,
        context: bool | None = None,
        sole: bool = True,
    ) -> None:
        """Cells that are each one candidate of detector ``number`` spanning the cell
        (or, with ``sole`` false, whose finding, valid and with ``context``, outranks
        whatever else they hold: an invalid one goes the generic way)."""
        plan, values_of = self._parts[number]
        table.candidates += len(cells)
        if table.candidates > table.limit:
            raise TooManyCandidates
        values = values_of(cells)
        starts = _pick(table.layout.starts, indexes)
        if context is None:
            context = self._label_context(number, label)
        minimum = self.engine.min_confidence
        if context:
            confidence = plan.with_context
            if confidence < minimum:
                return
            if None not in values:
                ends = list(map(add, starts, _pick(table.layout.lengths, indexes)))
                valid = cast("list[str]", values)
                self._place(table, number, indexes, starts, ends, confidence, True, valid)
                return
        keep_indexes: list[int] = []
        keep_starts: list[int] = []
        keep_ends: list[int] = []
        keep_values: list[str] = []
        keep_context: list[bool] = []
        context_re = plan.context_re
        folded = table.folded if (not context and context_re is not None) else ""
        for cell, index, start, value in zip(cells, indexes, starts, values, strict=True):
            if value is None:
                if not sole or (plan.split and (" " in cell or "-" in cell)):
                    table.generic.append(index)  # other candidates, or a valid sub-span
                continue
            end = start + len(cell)
            found = context
            if not found and context_re is not None:
                window = folded[max(0, start - plan.before) : end + plan.after]
                found = context_re.search(window) is not None
            keep_indexes.append(index)
            keep_starts.append(start)
            keep_ends.append(end)
            keep_values.append(value)
            keep_context.append(found)
        for flag in (True, False):
            if flag:
                confidence = plan.with_context
            elif plan.requires_context:
                continue
            else:
                confidence = plan.without_context
            if confidence < minimum:
                continue
            chosen = [i for i, c in enumerate(keep_context) if c is flag]
            if not chosen:
                continue
            self._place(
                table,
                number,
                [keep_indexes[i] for i in chosen],
                [keep_starts[i] for i in chosen],
                [keep_ends[i] for i in chosen],
                confidence,
                flag,
                [keep_values[i] for i in chosen],
            )

    def _place(
        self,
        table: _Table,
        number: int,
        indexes: Sequence[int],
        starts: list[int],
        ends: list[int],
        confidence: float,
        context: bool,
        values: list[str],
    ) -> None:
        engine = self.engine
        findings = make_findings(
            engine._entities[number],
            engine._names[number],
            starts,
            ends,
            confidence,
            context,
            values,
            engine.region,
        )
        slots = table.slots
        if type(indexes) is range:
            slots[indexes.start : indexes.stop : indexes.step] = findings
        elif len(indexes) < 8:
            for index, finding in zip(indexes, findings, strict=True):
                slots[index] = finding
        else:
            deque(map(setitem, repeat(slots), indexes, findings), maxlen=0)

    def _values_of(self, number: int) -> Callable[[list[str]], list[str | None]]:
        """How to get the validator's answer for each cell of a shape.  Where the shape
        decides the answer (the built-in validator returns the cell itself, or
        ``None``), the validator is not called; the equivalence tests compare both."""
        detector = self.engine.detectors[number]
        reference = _REFERENCE[detector.name]
        if detector.validate is reference.validate and detector.name in (
            "email",
            "ipv4",
            "uk_postcode",
        ):
            return _same
        return detector.validate_all

    def _label_context(self, number: int, label: str) -> bool:
        """Whether the column's header label alone gives detector ``number`` context
        for every cell below it: a context word in the label, wholly within the
        ``context_before`` characters before the cell.  In the window the engine
        searches, that word sits between the non-word character before the label (or
        the window's start) and the label's own ": ", so the window search finds it."""
        key = (number, label)
        cached = self._label_cache.get(key)
        if cached is not None:
            return cached
        plan = self.engine._plans[number]
        assert plan is not None
        answer = False
        if plan.context_re is not None and label.endswith(": "):
            folded = fold_text(label)
            last = -1
            for match in plan.context_re.finditer(folded):
                last = match.start()
            answer = last >= 0 and len(folded) - last <= plan.before
        self._label_cache[key] = answer
        return answer

    # --- sort codes ------------------------------------------------------------------

    def _bank(self, table: _Table, cells: list[str], indexes: Sequence[int], label: str) -> None:
        """Sort codes: the bank-account detector's candidate, widened to the account
        number and validated as the detector does.  A finding crosses into the account
        number's cell; a sort code without one (or without its context) goes the
        generic way, where a date of the same span may be the finding.

        The common layout, an eight-digit cell right after the sort code's in the same
        row, is read directly when the detector is the built-in one: the refiner's
        account-after pattern then matches at that cell (the text between is the tab
        and the next label: no digit, no line break, 40 characters at most), the
        widened span holds one sort code and one account number, and its context is
        the sort code's label's.  Anything else takes the detector's own steps.
        """
        engine = self.engine
        number = self._numbers["uk_bank_account"]
        plan = engine._plans[number]
        assert plan is not None
        table.count(len(cells))
        layout = table.layout
        all_cells = layout.cells
        all_starts = layout.starts
        direct = (
            engine.detectors[number].validate is _REFERENCE["uk_bank_account"].validate
            and self._label_context(number, label)
            and plan.with_context >= engine.min_confidence
        )
        slow: list[tuple[int, int, int]] = []
        slow_indexes: list[int] = []
        confidence = -plan.with_context
        for cell, index in zip(cells, indexes, strict=True):
            start = all_starts[index]
            end = start + len(cell)
            if direct and index + 1 < len(all_cells):
                account = all_cells[index + 1]
                after = all_starts[index + 1]
                if (
                    _ACCOUNT.fullmatch(account)
                    and after > end
                    and _GAP.fullmatch(fold_text(layout.prefix(index + 1)))
                    and cell != "00-00-00"
                    and cell != "00 00 00"
                ):
                    close = after + 8
                    value = f"{cell[:2]}-{cell[3:5]}-{cell[6:]} {account}"
                    item = (confidence, start - close, start, number, 0, close, True, value)
                    table.crossing.append((index, item, (index + 1,)))
                    continue
            slow.append((number, start, end))
            slow_indexes.append(index)
        if not slow:
            return
        ranked = engine._rank(table.folded, slow, table.deadline)
        # _rank keeps its candidates' order; a finding holds its own sort code, so the
        # sort codes before the one a finding holds gave none.
        at = 0
        for item in ranked:
            while slow[at][2] <= item[2] or slow[at][1] >= item[5]:
                table.generic.append(slow_indexes[at])
                at += 1
            table.crossing.append((slow_indexes[at], item, None))
            at += 1
        table.generic.extend(slow_indexes[at:])

    # --- the generic way and the findings that cross cells ---------------------------

    def _generic_ranked(self, table: _Table, indexes: list[int]) -> list[Ranked]:
        """The engine's candidates in these cells (its backend over the cells joined by
        line breaks) through the engine's own loop, on the laid-out text."""
        if not indexes:
            return []
        engine = self.engine
        layout = table.layout
        cells = [fold_text(layout.cells[i]) for i in indexes]
        joined = "\n".join(cells)
        data = joined.encode("utf-8")
        raw = engine._backend.scan(data, table.deadline, engine.max_candidates)
        table.count(len(raw))
        if not raw:
            return []
        if len(data) != len(joined):
            offsets = _char_offsets(data, (o for _n, s, e in raw for o in (s, e)))
            raw = [(n, offsets[s], offsets[e]) for n, s, e in raw]
        piece_starts = []
        position = 0
        for cell in cells:
            piece_starts.append(position)
            position += len(cell) + 1
        foreign = self._foreign
        spans: list[RawMatch] = []
        for number, start, end in raw:
            if number in foreign:
                continue  # found in the whole text (see _resolve_generic)
            at = bisect_right(piece_starts, start) - 1
            shift = layout.starts[indexes[at]] - piece_starts[at]
            spans.append((number, start + shift, end + shift))
        spans.sort(key=lambda span: (span[0], span[1]))
        return self.engine._rank(table.folded, spans, table.deadline)

    def _foreign_ranked(self, table: _Table) -> list[Ranked]:
        """Candidates of detectors that are not the built-in ones, in the whole text."""
        if self._foreign_backend is None:
            return []
        text = table.folded
        data = text.encode("utf-8")
        raw = self._foreign_backend.scan(data, table.deadline, self.engine.max_candidates)
        table.count(len(raw))
        if len(data) != len(text):
            offsets = _char_offsets(data, (o for _n, s, e in raw for o in (s, e)))
            raw = [(n, offsets[s], offsets[e]) for n, s, e in raw]
        spans = sorted((self._foreign[n], s, e) for n, s, e in raw)
        return self.engine._rank(text, spans, table.deadline)

    def _resolve_generic(self, table: _Table) -> list[Ranked]:
        """Ranked findings of the generic cells, the crossing ones and the foreign ones,
        resolved together with every cell they touch (those go the generic way).

        A cell decided by its shape keeps its finding only when nothing from outside
        overlaps it; a crossing finding (a bank account) is kept as decided only when
        it overlaps no other finding at all (it outranks the date its sort code may
        also be only when nothing else competes).  Others are demoted to the generic
        way, until nothing changes.  Crossing findings that stay go into their cells'
        places; the rest are returned, resolved.
        """
        if not table.generic and not table.crossing and self._foreign_backend is None:
            return []
        layout = table.layout
        starts = layout.starts
        lengths = layout.lengths
        slots = table.slots
        generic = set(table.generic)
        ranked = self._generic_ranked(table, sorted(generic))
        outside = self._foreign_ranked(table)
        crossing = {index: (item, covered) for index, item, covered in table.crossing}
        while True:
            demoted: set[int] = set()
            spans = [(item[2], item[5], -1) for item in ranked]
            spans += [(item[2], item[5], -1) for item in outside]
            for start, end, _origin in spans:
                self._touched(start, end, -1, starts, lengths, slots, crossing, generic, demoted)
            for index, (item, covered) in crossing.items():
                if covered is None:
                    self._touched(
                        item[2], item[5], index, starts, lengths, slots, crossing, generic, demoted
                    )
                    continue
                for cell in covered:
                    if slots[cell] is not None or cell in crossing or cell in generic:
                        demoted.add(cell)
                        demoted.add(index)
            # A crossing finding that overlaps any other resolved span: an earlier one
            # (by start) ending after its start, or the next one starting before its end.
            # (Two read directly never overlap: each covers its sort code and the next
            # cell, an account number, which is no sort code.)
            if spans or any(covered is None for _item, covered in crossing.values()):
                spans += [(item[2], item[5], index) for index, (item, _c) in crossing.items()]
                spans.sort()
                reach = -1
                for at, (start, end, origin) in enumerate(spans):
                    if origin >= 0 and (
                        reach > start or (at + 1 < len(spans) and spans[at + 1][0] < end)
                    ):
                        demoted.add(origin)
                    reach = max(reach, end)
            demoted -= generic
            if not demoted:
                break
            for index in demoted:
                slots[index] = None
                crossing.pop(index, None)
            generic |= demoted
            ranked += self._generic_ranked(table, sorted(demoted))
        table.generic = sorted(generic)
        if crossing:
            engine = self.engine
            for index, (item, _covered) in crossing.items():
                negative, _length, start, number, _order, end, context, value = item
                slots[index] = _make_one(engine, number, start, end, -negative, context, value)
        return _resolve_ranked(ranked + outside)

    @staticmethod
    def _touched(
        start: int,
        end: int,
        origin: int,
        starts: list[int],
        lengths: list[int],
        slots: list[Finding | None],
        crossing: dict[int, tuple[Ranked, tuple[int, ...] | None]],
        generic: set[int],
        demoted: set[int],
    ) -> None:
        """Demote the decided cells whose content ``[start, end)`` overlaps (and the
        span's own cell ``origin`` with them, when it is one)."""
        at = max(0, bisect_right(starts, start) - 1)
        while at < len(starts) and starts[at] < end:
            cell_start = starts[at]
            if (
                at != origin
                and cell_start + lengths[at] > start
                and end > cell_start
                and (slots[at] is not None or at in crossing or at in generic)
            ):
                demoted.add(at)
                if origin >= 0:
                    demoted.add(origin)
            at += 1

    def _assemble(self, table: _Table, ranked: list[Ranked]) -> list[Finding]:
        """Every finding in order of its start: the cells' own and the resolved ones."""
        engine = self.engine
        slots = table.slots
        if not ranked:
            return list(filter(None, slots))
        resolved = engine._make_findings(ranked)
        placed: list[Finding] = []
        starts = table.layout.starts
        at = 0
        count = len(slots)
        for finding in resolved:
            # Cells before this finding's start, then the finding.
            until = bisect_right(starts, finding.start)
            placed.extend(f for f in slots[at:until] if f is not None)
            at = max(at, until)
            placed.append(finding)
        placed.extend(f for f in slots[at:count] if f is not None)
        return placed


_ = Callable  # re-exported name used in annotations only
