"""The scan engine: one pass for candidates, validation only of candidates, fail closed.

:class:`InspectionEngine` compiles every detector's candidate pattern into one
multi-pattern database (hyperscan when importable, else google-re2), then for each
text:

1. folds look-alike characters one-for-one (no-break spaces, Unicode dashes,
   full-width digits) so offsets stay those of the original text;
2. finds every candidate in one pass of the backend;
3. refines, validates and scores only the candidates (context words, confidence);
4. resolves overlapping findings, preferring higher confidence, then the longer span.

Fail closed: when the per-call deadline passes, the candidate limit is exceeded or the
engine fails in any way, the result is ``uninspected`` with a reason — never ``clean``.

A :class:`Finding` shows its value masked.  Its ``value`` (the normalised plaintext)
exists only in memory, for exact data match against the customer list; it is left out
of ``repr`` and :meth:`Finding.public`, and must never be logged, stored or returned.
An engine is safe to share between threads (hyperscan scans take turns on one scratch).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from itertools import accumulate, chain, repeat
from operator import add
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import structlog

from spillguard.inspection.backends import (
    BACKENDS,
    BackendUnavailable,
    Deadline,
    PatternError,
    RawMatch,
    ScanBackend,
    ScanTimeout,
    TooManyCandidates,
    hyperscan_available,
)
from spillguard.inspection.context import ContextIndex, ContextTable, ContextWords, context_words
from spillguard.inspection.detectors import Detector, DetectorSettings, build_detectors
from spillguard.inspection.detectors.base import TOKEN_CHARS, is_glued, separator_subspans
from spillguard.inspection.masking import mask

if TYPE_CHECKING:
    from spillguard.inspection.tables import TableScanner

__all__ = [
    "BackendUnavailable",
    "Finding",
    "InspectionEngine",
    "Layout",
    "PatternError",
    "ScanResult",
    "ScanStatus",
    "TableScanResult",
    "TableText",
    "fold_text",
    "lay_out",
    "make_findings",
    "table_text",
]

log = structlog.get_logger(__name__)

BackendChoice = Literal["auto", "hyperscan", "re2"]

DEFAULT_TIMEOUT = 30.0
MAX_HEADER_LABEL = 40
DEFAULT_MAX_CANDIDATES = 2_000_000
_CHECK_EVERY = 512
Ranked = tuple[float, int, int, int, int, int, bool, str]
"""A candidate that is a finding: ``(-confidence, start - end, start, detector, order,
end, context, value)``; sorted, the ranking of overlap resolution."""
# A text with more candidates than one per this many characters has its context words
# found once for the whole text (:class:`ContextIndex`) rather than once per candidate.
_DENSE_CHARS_PER_CANDIDATE = 64


class _Unset:
    pass


_UNSET = _Unset()

# One character for one character, so offsets in the folded text are offsets in the
# original.  Lone surrogates become "?" when the text is encoded (also one for one).
_FOLD = str.maketrans(
    {
        **dict.fromkeys(
            [
                "\u00a0",
                "\u2002",
                "\u2003",
                "\u2004",
                "\u2005",
                "\u2006",
                "\u2007",
                "\u2008",
                "\u2009",
                "\u200a",
                "\u202f",
                "\u205f",
                "\u3000",
            ],
            " ",
        ),
        **dict.fromkeys(
            ["\u2010", "\u2011", "\u2012", "\u2013", "\u2212", "\ufe63", "\uff0d"], "-"
        ),
        **{chr(0xFF10 + n): str(n) for n in range(10)},
        "\uff20": "@",
        "\uff0b": "+",
    }
)


def fold_text(text: str) -> str:
    """``text`` with look-alike spaces, dashes and digits replaced one-for-one by ASCII.

    Lone surrogates (text decoded with ``surrogateescape``) become ``?``.
    """
    if text.isascii():
        return text
    folded = text.translate(_FOLD)
    return folded.encode("utf-8", "replace").decode("utf-8")


class ScanStatus(StrEnum):
    """The outcome of inspecting one text."""

    CLEAN = "clean"
    FINDINGS = "findings"
    UNINSPECTED = "uninspected"


class _FindingFields(NamedTuple):
    entity: str
    detector: str
    start: int
    end: int
    confidence: float
    context: bool
    value: str
    region: str = "GB"


class Finding(_FindingFields):
    """One validated identifier in the text: what, where, how sure, and masked.

    ``value`` is the normalised plaintext (E.164 phone, compact IBAN…), kept in memory
    only for exact data match.  Never log it, store it or return it to a client; use
    :attr:`masked` or :meth:`public`.  The masked form is computed when first asked
    for: a dense export holds thousands of findings that are counted and matched but
    never shown, and masking a phone number costs a libphonenumber format.

    A finding is an immutable tuple of its fields (so that a table column's findings
    are made by C-level maps, a few hundred nanoseconds each, where a dataclass costs
    a dictionary per finding).  It compares and hashes as the frozen dataclass it
    replaces did: by its fields other than ``region``, and only with other findings
    of the same class (never with a plain tuple).
    """

    @cached_property
    def masked(self) -> str:
        """The value masked for display (``07700 9•••21``), computed once on first use."""
        return mask(self.value, self.entity, region=self.region)

    def __eq__(self, other: object) -> bool:
        # False, not NotImplemented, for anything else: tuple's own comparison would
        # otherwise answer for a plain tuple of the same fields.
        return other.__class__ is self.__class__ and self[:7] == other[:7]  # type: ignore[index]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:7])

    def __repr__(self) -> str:
        return (
            f"Finding(entity={self.entity!r}, detector={self.detector!r}, start={self.start}, "
            f"end={self.end}, confidence={self.confidence}, masked={self.masked!r}, "
            f"context={self.context})"
        )

    def public(self) -> dict[str, Any]:
        """The finding as a plain mapping, without the plaintext value."""
        return {
            "entity": self.entity,
            "detector": self.detector,
            "start": self.start,
            "end": self.end,
            "confidence": self.confidence,
            "context": self.context,
            "masked": self.masked,
        }


_new_tuple = tuple.__new__
FINDING_FIELDS = _FindingFields._fields
"""The names of a finding's fields, in order."""


def _make_finding(
    entity: str,
    detector: str,
    start: int,
    end: int,
    confidence: float,
    context: bool,
    value: str,
    region: str,
) -> Finding:
    """A :class:`Finding` equal to ``Finding(entity=…, …)``, without the named tuple's
    Python-level ``__new__`` (a dense export makes thousands)."""
    return _new_tuple(Finding, (entity, detector, start, end, confidence, context, value, region))


_FEW = 8  # below this many findings, the maps' set-up costs more than they save


def make_findings(
    entity: str,
    detector: str,
    starts: Sequence[int],
    ends: Sequence[int],
    confidence: float,
    context: bool,
    values: Sequence[str],
    region: str,
) -> list[Finding]:
    """Findings of one detector, one confidence and one context flag, equal to
    ``Finding(entity=…, start=starts[i], end=ends[i], value=values[i], …)``: a table
    column's worth made with C-level maps, not a Python call per finding."""
    if len(values) < _FEW:
        return [
            _new_tuple(Finding, (entity, detector, start, end, confidence, context, value, region))
            for start, end, value in zip(starts, ends, values, strict=True)
        ]
    if not (len(starts) == len(ends) == len(values)):
        raise ValueError("make_findings needs as many starts, ends and values")
    return list(
        map(
            _new_tuple,
            repeat(Finding),
            zip(
                repeat(entity),
                repeat(detector),
                starts,
                ends,
                repeat(confidence),
                repeat(context),
                values,
                repeat(region),
            ),
        )
    )


@dataclass(frozen=True)
class _Plan:
    """What :meth:`InspectionEngine._findings` needs of one detector, read once."""

    detector: Detector
    entity: str
    refine: Any
    standalone: bool
    validate: Any
    split: bool
    context_re: Any
    words: ContextWords | None
    before: int
    after: int
    requires_context: bool
    with_context: float
    without_context: float


def _plan(detector: Detector) -> _Plan | None:
    """The detector's parts for the fast loop; ``None`` for a subclass that changes how
    context or confidence are decided (it goes through :meth:`_confirm`)."""
    if (
        type(detector).has_context is not Detector.has_context
        or type(detector).score is not Detector.score
    ):
        return None
    return _Plan(
        detector=detector,
        entity=str(detector.entity),
        refine=detector.refine,
        standalone=detector.standalone,
        validate=detector.validate,
        split=detector.split_on_failure,
        context_re=detector._context_re,
        words=context_words(detector.context_words) if detector._context_re else None,
        before=detector.context_before,
        after=detector.context_after,
        requires_context=detector.requires_context,
        with_context=detector.score(True),
        without_context=detector.score(False),
    )


@dataclass(frozen=True)
class ScanResult:
    """The inspection of one text: status, findings, and why if it was not inspected."""

    status: ScanStatus
    findings: tuple[Finding, ...] = ()
    reason: str | None = None
    backend: str = ""
    elapsed: float = 0.0

    @property
    def inspected(self) -> bool:
        """False when the text could not be inspected: treat it as not clean."""
        return self.status is not ScanStatus.UNINSPECTED

    def counts(self) -> dict[str, int]:
        """Number of findings per entity."""
        return dict(Counter(f.entity for f in self.findings))


@dataclass(frozen=True)
class TableScanResult(ScanResult):
    """The inspection of a table (:meth:`InspectionEngine.scan_table`), and its layout:
    finding offsets are offsets of ``table.text``; ``table.locate`` maps them to cells."""

    table: TableText | None = field(default=None, compare=False, repr=False)

    def in_cells(self, entities: Collection[str] | None = None) -> list[tuple[int, int, Finding]]:
        """``(row, cell, finding)`` of each finding inside a cell (both counted from 0),
        as :meth:`spillguard.customers.edm.EdmIndex.match_rows` takes them; only those
        of ``entities`` when given."""
        table = self.table
        if table is None:
            return []
        out = []
        findings = self.findings
        if entities is not None:
            findings = tuple(f for f in findings if f.entity in entities)
        for finding in findings:
            where = table.locate(finding.start)
            if where is not None:
                out.append((where[0], where[1], finding))
        return out


class InspectionEngine:
    """Detectors compiled into one multi-pattern database, ready to scan texts.

    ``backend`` is ``"hyperscan"``, ``"re2"`` or ``"auto"`` (hyperscan when importable
    and able to compile every pattern, else RE2; :attr:`fallback_reason` says why).
    ``timeout`` is the default per-call deadline in seconds (``None``: no deadline).
    ``max_candidates`` bounds the work one text can cause.  ``min_confidence`` drops
    weaker findings.  ``clock`` exists so tests can move time.
    """

    def __init__(
        self,
        detectors: Sequence[Detector] | None = None,
        *,
        settings: DetectorSettings | None = None,
        backend: BackendChoice = "auto",
        timeout: float | None = DEFAULT_TIMEOUT,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        min_confidence: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = settings or DetectorSettings()
        self.detectors: tuple[Detector, ...] = (
            tuple(detectors) if detectors is not None else build_detectors(settings)
        )
        if not self.detectors:
            raise ValueError("an inspection engine needs at least one detector")
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError("detector names must be unique")
        if backend not in ("auto", *BACKENDS):
            raise ValueError(f"unknown scan backend {backend!r}")
        self.region = settings.phone_region
        self.timeout = timeout
        self.max_candidates = max_candidates
        self.min_confidence = min_confidence
        self._clock = clock
        self.fallback_reason: str | None = None
        self._backend = self._make_backend(backend, [d.pattern for d in self.detectors])
        self._plans = tuple(_plan(d) for d in self.detectors)
        self._entities = tuple(str(d.entity) for d in self.detectors)
        self._names = tuple(d.name for d in self.detectors)
        self._context_table = ContextTable([p.words if p else None for p in self._plans])
        self._table_scanner: TableScanner | None = None

    def _make_backend(self, choice: BackendChoice, patterns: list[str]) -> ScanBackend:
        if choice != "auto":
            return BACKENDS[choice](patterns)
        if not hyperscan_available():
            self.fallback_reason = "hyperscan is not installed"
            return BACKENDS["re2"](patterns)
        try:
            return BACKENDS["hyperscan"](patterns)
        except PatternError as exc:
            if exc.index < 0:
                raise
            self.fallback_reason = f"detector {self.detectors[exc.index].name}: {exc}"
        except BackendUnavailable as exc:
            self.fallback_reason = str(exc)
        return BACKENDS["re2"](patterns)

    @property
    def backend(self) -> str:
        """The name of the backend in use."""
        return self._backend.name

    def scan_text(self, text: str, *, timeout: float | _Unset | None = _UNSET) -> ScanResult:
        """Inspect ``text``; on timeout or engine failure the result is ``uninspected``."""
        seconds = self.timeout if isinstance(timeout, _Unset) else timeout
        started = self._clock()
        deadline = Deadline(seconds, self._clock)
        try:
            deadline.check()
            folded = fold_text(text)
            data = folded.encode("utf-8")
            raw = self._backend.scan(data, deadline, self.max_candidates)
            deadline.check()
            findings = self._findings(folded, data, raw, deadline)
            deadline.check()
        except ScanTimeout:
            return self._uninspected(f"timeout: not finished within {seconds} s", started)
        except TooManyCandidates:
            return self._uninspected(
                f"too many candidates: more than {self.max_candidates}", started
            )
        except Exception as exc:
            # The message may quote the text being scanned: only its type is reported.
            return self._uninspected(f"engine error: {type(exc).__name__}", started)
        status = ScanStatus.FINDINGS if findings else ScanStatus.CLEAN
        return ScanResult(
            status=status,
            findings=tuple(findings),
            backend=self.backend,
            elapsed=self._clock() - started,
        )

    def scan_table(
        self, rows: Sequence[Sequence[str]], *, timeout: float | _Unset | None = _UNSET
    ) -> TableScanResult:
        """Inspect a table: the findings of ``scan_text(table_text(rows).text)``, with the
        :class:`TableText` their offsets refer to (:attr:`TableScanResult.table`).

        Cells are read column by column (:mod:`spillguard.inspection.tables`): where a
        cell's shape decides what the engine would find in it, it is decided without
        the candidate loop, a whole column at a time.  On timeout or engine failure
        the result is ``uninspected``, as for :meth:`scan_text`.
        """
        seconds = self.timeout if isinstance(timeout, _Unset) else timeout
        started = self._clock()
        deadline = Deadline(seconds, self._clock)
        layout = lay_out(rows)
        table = layout.table()
        try:
            deadline.check()
            scanner = self._table_scanner
            if scanner is None:
                from spillguard.inspection.tables import TableScanner

                scanner = self._table_scanner = TableScanner(self)
            findings = scanner.scan(layout, deadline)
            deadline.check()
        except ScanTimeout:
            reason = f"timeout: not finished within {seconds} s"
        except TooManyCandidates:
            reason = f"too many candidates: more than {self.max_candidates}"
        except Exception as exc:
            # The message may quote the text being scanned: only its type is reported.
            reason = f"engine error: {type(exc).__name__}"
        else:
            return TableScanResult(
                status=ScanStatus.FINDINGS if findings else ScanStatus.CLEAN,
                findings=tuple(findings),
                backend=self.backend,
                elapsed=self._clock() - started,
                table=table,
            )
        uninspected = self._uninspected(reason, started)
        return TableScanResult(
            status=uninspected.status,
            reason=uninspected.reason,
            backend=uninspected.backend,
            elapsed=uninspected.elapsed,
            table=table,
        )

    def _uninspected(self, reason: str, started: float) -> ScanResult:
        log.warning("inspection.uninspected", reason=reason, backend=self.backend)
        return ScanResult(
            status=ScanStatus.UNINSPECTED,
            reason=reason,
            backend=self.backend,
            elapsed=self._clock() - started,
        )

    def _findings(
        self, text: str, data: bytes, raw: list[RawMatch], deadline: Deadline
    ) -> list[Finding]:
        if len(data) == len(text):
            spans: Iterable[RawMatch] = raw
        else:
            offsets = _char_offsets(data, (o for _i, s, e in raw for o in (s, e)))
            spans = [(number, offsets[start], offsets[end]) for number, start, end in raw]
        index: ContextIndex | None = None
        if (
            self._context_table.leading is not None
            and len(raw) * _DENSE_CHARS_PER_CANDIDATE > len(text)
            and text.isascii()
        ):
            index = ContextIndex(text.lower(), self._context_table)
        return self._make_findings(_resolve_ranked(self._rank(text, spans, deadline, index)))

    def _rank(
        self,
        text: str,
        spans: Iterable[RawMatch],
        deadline: Deadline,
        index: ContextIndex | None = None,
    ) -> list[Ranked]:
        """Refine, validate and score candidates ``(detector, start, end)`` (character
        offsets of ``text``): the candidates that are findings, as ranked tuples
        ``(-confidence, start - end, start, detector, order, end, context, value)``
        (sorted, the ranking of :func:`_resolve_overlaps`, ties kept in the order found).
        """
        plans = self._plans
        length = len(text)
        minimum = self.min_confidence
        found: list[Ranked] = []
        for count, (number, start, end) in enumerate(spans, 1):
            if count % _CHECK_EVERY == 0:
                deadline.check()
            plan = plans[number]
            if plan is None:
                finding = self._confirm(self.detectors[number], text, start, end)
                if finding is not None:
                    found.append(
                        (
                            -finding.confidence,
                            finding.start - finding.end,
                            finding.start,
                            number,
                            len(found),
                            finding.end,
                            finding.context,
                            finding.value,
                        )
                    )
                continue
            # The steps of _confirm, with the detector's parts read once.
            if plan.refine is not None:
                span = plan.refine(text, start, end)
                if span is None:
                    continue
                start, end = span
            if (
                plan.standalone
                and (
                    (start > 0 and text[start - 1] in TOKEN_CHARS)
                    or (end < length and text[end] in TOKEN_CHARS)
                )
                and is_glued(text, start, end)
            ):
                continue
            candidate = text[start:end]
            value = plan.validate(candidate)
            if value is None:
                if not plan.split:
                    continue
                for sub_start, sub_end in separator_subspans(candidate):
                    value = plan.validate(candidate[sub_start:sub_end])
                    if value is not None:
                        start, end = start + sub_start, start + sub_end
                        break
                if value is None:
                    continue
            context = False
            if plan.context_re is not None:
                low = start - plan.before
                high = end + plan.after
                answer = None
                if index is not None:
                    answer = index.has_context(number, low, high)
                if answer is None:
                    window = text[max(0, low) : high]
                    answer = plan.context_re.search(window) is not None
                context = answer
            if context:
                confidence = plan.with_context
            elif plan.requires_context:
                continue
            else:
                confidence = plan.without_context
            if confidence < minimum:
                continue
            found.append((-confidence, start - end, start, number, len(found), end, context, value))
        return found

    def _make_findings(self, kept: Iterable[Ranked]) -> list[Finding]:
        """The findings of ranked tuples kept by :func:`_resolve_ranked`, in order."""
        region = self.region
        entities = self._entities
        names = self._names
        return [
            _make_finding(
                entities[number],
                names[number],
                start,
                end,
                -negative,
                context,
                value,
                region,
            )
            for negative, _length, start, number, _order, end, context, value in kept
        ]

    def _confirm(self, detector: Detector, text: str, start: int, end: int) -> Finding | None:
        """Refine, validate and score one candidate; ``None`` when it is not a finding."""
        if detector.refine is not None:
            span = detector.refine(text, start, end)
            if span is None:
                return None
            start, end = span
        if detector.standalone and is_glued(text, start, end):
            return None
        candidate = text[start:end]
        value = detector.validate(candidate)
        if value is None and detector.split_on_failure:
            for sub_start, sub_end in separator_subspans(candidate):
                value = detector.validate(candidate[sub_start:sub_end])
                if value is not None:
                    start, end = start + sub_start, start + sub_end
                    break
        if value is None:
            return None
        context = detector.has_context(text, start, end)
        if detector.requires_context and not context:
            return None
        confidence = detector.score(context)
        if confidence < self.min_confidence:
            return None
        return Finding(
            entity=str(detector.entity),
            detector=detector.name,
            start=start,
            end=end,
            confidence=confidence,
            context=context,
            value=value,
            region=self.region,
        )


class TableText:
    """A table laid out for one engine pass, and the way back from offsets to cells.

    Each row is one line, its cells joined by tabs, and when the first row looks like a
    header every later cell is preceded by ``"Header: "``: a ``NHS No``, ``DOB`` or
    ``Sort code`` column header is then context for every cell below it, not only for
    the first rows within reach of the header line.  :attr:`text` is built when first
    read (the column-wise scan seldom needs it).
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._text: str | None = None
        self.starts: Sequence[int] = layout.starts
        """The offset of every cell in :attr:`text`, row after row."""
        self.lengths: Sequence[int] = layout.lengths
        """The length of every cell, in the same order."""
        self.row_starts: Sequence[int] = layout.row_starts
        """For each row, the position in :attr:`starts` of its first cell (and one more)."""

    @property
    def text(self) -> str:
        """The laid-out table."""
        if self._text is None:
            self._text = self._layout.text
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        # Setting it (to "" once the offsets are all that is needed) also lets the
        # layout's copy go.
        self._text = value
        self._layout.forget_text()

    @property
    def cells(self) -> tuple[tuple[int, int, int], ...]:
        """``(row, cell, length)`` of every cell, in the order of :attr:`starts`."""
        rows = self.row_starts
        return tuple(
            (r, at - rows[r], self.lengths[at])
            for r in range(len(rows) - 1)
            for at in range(rows[r], rows[r + 1])
        )

    def locate(self, offset: int) -> tuple[int, int, int, int] | None:
        """``(row, cell, offset in cell, cell length)`` of a text offset; ``None``
        inside a header label or a separator."""
        at = bisect.bisect_right(self.starts, offset) - 1
        if at < 0:
            return None
        length = self.lengths[at]
        inside = offset - self.starts[at]
        if inside >= max(length, 1):
            return None
        row = bisect.bisect_right(self.row_starts, at) - 1
        return row, at - self.row_starts[row], inside, length


_CHUNK_ROWS = 4096


class Layout:
    """A table laid out (see :class:`TableText`), with what the column-wise scan needs:
    every cell, row after row, its offset and length, and the header labels.

    Every cell is preceded in the text by its *prefix* (the tab or line break before it,
    then its label); the text is the prefixes and cells in turn, and a final line break.
    """

    def __init__(
        self,
        cells: list[str],
        prefixes: list[str],
        starts: list[int],
        lengths: list[int],
        labels: list[str] | None,
        widths: list[int],
        row_starts: list[int],
        text: str | None = None,
    ) -> None:
        self.cells = cells
        self.starts = starts
        self.lengths = lengths
        self.labels = labels
        self.widths = widths
        self.row_starts = row_starts
        self._prefixes = prefixes
        self._text = text

    def prefix(self, position: int) -> str:
        """What precedes cell ``position`` in the text: the tab (or the line break that
        ends the row before) and its label."""
        if self._prefixes:
            return self._prefixes[position]
        end = self.starts[position]
        start = self.starts[position - 1] + self.lengths[position - 1] if position else 0
        return self.text[start:end]

    @property
    def text(self) -> str:
        """The laid-out table, built on first use."""
        if self._text is None:
            self._text = "".join(chain.from_iterable(zip(self._prefixes, self.cells, strict=True)))
            self._text += "\n"
        return self._text

    def forget_text(self) -> None:
        """Drop the built text (it is built again if asked for)."""
        if self._prefixes:
            self._text = None

    def table(self) -> TableText:
        """The laid-out table (shares this layout's lists)."""
        return TableText(self)

    def columns(self) -> Iterator[tuple[int | None, list[str], Sequence[int]]]:
        """``(column, cells, positions)``: the header row first (column ``None``) when
        there are labels, then each column of the other rows, in blocks of rows."""
        widths = self.widths
        rows = self.row_starts
        cells = self.cells
        first = 0
        if self.labels is not None and widths:
            first = 1
            yield None, cells[: widths[0]], range(widths[0])
        for top in range(first, len(widths), _CHUNK_ROWS):
            bottom = min(len(widths), top + _CHUNK_ROWS)
            block = widths[top:bottom]
            width = block[0]
            base, end = rows[top], rows[bottom]
            if block.count(width) == len(block):
                for column in range(width):
                    yield (
                        column,
                        cells[base + column : end : width],
                        range(base + column, end, width),
                    )
                continue
            for column in range(max(block)):
                positions = [rows[r] + column for r in range(top, bottom) if widths[r] > column]
                yield column, [cells[p] for p in positions], positions


def table_text(rows: Sequence[Sequence[str]]) -> TableText:
    """``rows`` as one text for :meth:`InspectionEngine.scan_text`; see :class:`TableText`."""
    return lay_out(rows).table()


def lay_out(rows: Sequence[Sequence[str]]) -> Layout:
    """``rows`` laid out as :func:`table_text` does, keeping every cell's place."""
    labels = header_labels(rows)
    widths = list(map(len, rows))
    cells: list[str] = list(chain.from_iterable(rows))
    lengths = list(map(len, cells))
    row_starts = list(accumulate(widths, initial=0))
    count = len(rows)
    if not count or not all(widths):
        return _lay_out_slowly(rows, labels, widths, cells, lengths, row_starts)
    # The prefix of a cell: the tab before it (the line break ending the row before,
    # for a row's first cell but the table's), then its label.
    first = [""] + ["\t"] * (widths[0] - 1)
    if labels is None:
        label_of = [""] * max(widths)
    else:
        label_of = labels + [""] * max(0, max(widths) - len(labels))
    after = ["\n" + label_of[0]] + ["\t" + label for label in label_of[1:]]
    if widths.count(widths[0]) == count:
        prefixes = first + after[: widths[0]] * (count - 1)
        # The rows repeat their prefixes: so do the prefixes' lengths.
        prefix_lengths = list(map(len, first)) + list(map(len, after[: widths[0]])) * (count - 1)
    else:
        prefixes = first.copy()
        for width in widths[1:]:
            prefixes += after[:width]
        prefix_lengths = list(map(len, prefixes))
    # A cell starts after every prefix up to its own and every cell before it: the
    # running sum of (its prefix's length + the length of the cell before it).
    starts = list(accumulate(map(add, prefix_lengths, chain((0,), lengths))))
    return Layout(cells, prefixes, starts, lengths, labels, widths, row_starts)


def _lay_out_slowly(
    rows: Sequence[Sequence[str]],
    labels: list[str] | None,
    widths: list[int],
    cells: list[str],
    lengths: list[int],
    row_starts: list[int],
) -> Layout:
    """:func:`lay_out` cell by cell (a table with an empty row, or no rows)."""
    pieces: list[str] = []
    starts: list[int] = []
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
            pieces.append(cell)
            position += len(cell)
        pieces.append("\n")
        position += 1
    text = "".join(pieces)
    return Layout(cells, [], starts, lengths, labels, widths, row_starts, text)


def header_labels(rows: Sequence[Sequence[str]]) -> list[str] | None:
    """``"Header: "`` per column when the first row looks like a header (no digits, no
    ``@``, short cells, at least one non-empty), else ``None``."""
    if len(rows) < 2 or not rows[0]:
        return None
    header = rows[0]
    if not any(cell.strip() for cell in header):
        return None
    for cell in header:
        if len(cell) > MAX_HEADER_LABEL or "@" in cell or any(map(str.isdigit, cell)):
            return None
    return [f"{cell.strip()}: " if cell.strip() else "" for cell in header]


def _char_offsets(data: bytes, offsets: Iterable[int]) -> dict[int, int]:
    """Map byte offsets into UTF-8 ``data`` to character offsets (one pass)."""
    mapping: dict[int, int] = {}
    previous_byte = previous_char = 0
    for offset in sorted(set(offsets)):
        previous_char += len(data[previous_byte:offset].decode("utf-8"))
        previous_byte = offset
        mapping[offset] = previous_char
    return mapping


def _resolve_ranked(found: list[Ranked]) -> list[Ranked]:
    """:func:`_resolve_overlaps` over the engine's candidate tuples
    ``(-confidence, start - end, start, detector, order, end, context, value)``: the
    same ranking (the order breaks ties as a stable sort would), the same choices."""
    starts: list[int] = []
    ends: list[int] = []
    kept: list[Ranked] = []
    for item in sorted(found):
        start = item[2]
        end = item[5]
        at = bisect.bisect_left(starts, start)
        if at > 0 and ends[at - 1] > start:
            continue
        if at < len(kept) and starts[at] < end:
            continue
        starts.insert(at, start)
        ends.insert(at, end)
        kept.insert(at, item)
    return kept


def _resolve_overlaps(found: list[tuple[Finding, int]]) -> list[Finding]:
    """Keep the best of overlapping findings: confident first, then longer, then earlier.

    The same text can be two things at once (a phone number inside an e-mail address,
    an NHS number that also passes as a phone number): one span counts once.
    """
    ranked = sorted(
        found,
        key=lambda item: (-item[0].confidence, item[0].start - item[0].end, item[0].start, item[1]),
    )
    starts: list[int] = []
    kept: list[Finding] = []
    for finding, _order in ranked:
        at = bisect.bisect_left(starts, finding.start)
        if at > 0 and kept[at - 1].end > finding.start:
            continue
        if at < len(kept) and kept[at].start < finding.end:
            continue
        starts.insert(at, finding.start)
        kept.insert(at, finding)
    return kept
