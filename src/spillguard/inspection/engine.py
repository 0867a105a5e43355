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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

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

__all__ = [
    "BackendUnavailable",
    "Finding",
    "InspectionEngine",
    "PatternError",
    "ScanResult",
    "ScanStatus",
    "TableText",
    "fold_text",
    "table_text",
]

log = structlog.get_logger(__name__)

BackendChoice = Literal["auto", "hyperscan", "re2"]

DEFAULT_TIMEOUT = 30.0
MAX_HEADER_LABEL = 40
DEFAULT_MAX_CANDIDATES = 2_000_000
_CHECK_EVERY = 512
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


@dataclass(frozen=True, repr=False)
class Finding:
    """One validated identifier in the text: what, where, how sure, and masked.

    ``value`` is the normalised plaintext (E.164 phone, compact IBAN…), kept in memory
    only for exact data match.  Never log it, store it or return it to a client; use
    :attr:`masked` or :meth:`public`.  The masked form is computed when first asked
    for: a dense export holds thousands of findings that are counted and matched but
    never shown, and masking a phone number costs a libphonenumber format.
    """

    entity: str
    detector: str
    start: int
    end: int
    confidence: float
    context: bool
    value: str
    region: str = field(default="GB", compare=False)

    @cached_property
    def masked(self) -> str:
        """The value masked for display (``07700 9•••21``), computed once on first use."""
        return mask(self.value, self.entity, region=self.region)

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


_new_object = object.__new__
_set_attribute = object.__setattr__


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
    """A :class:`Finding` equal to ``Finding(entity=…, …)``, without the frozen
    dataclass's field-by-field ``__init__`` (a dense export makes thousands)."""
    finding = _new_object(Finding)
    _set_attribute(
        finding,
        "__dict__",
        {
            "entity": entity,
            "detector": detector,
            "start": start,
            "end": end,
            "confidence": confidence,
            "context": context,
            "value": value,
            "region": region,
        },
    )
    return finding


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
            offsets = None
        else:
            offsets = _char_offsets(data, (o for _i, s, e in raw for o in (s, e)))
        index: ContextIndex | None = None
        if (
            self._context_table.leading is not None
            and len(raw) * _DENSE_CHARS_PER_CANDIDATE > len(text)
            and text.isascii()
        ):
            index = ContextIndex(text.lower(), self._context_table)
        plans = self._plans
        length = len(text)
        minimum = self.min_confidence
        # (-confidence, start - end, start, detector index, order, end, context, value):
        # sorted, the ranking of _resolve_overlaps, ties kept in the order found.
        found: list[tuple[float, int, int, int, int, int, bool, str]] = []
        for count, (number, byte_start, byte_end) in enumerate(raw, 1):
            if count % _CHECK_EVERY == 0:
                deadline.check()
            if offsets is None:
                start, end = byte_start, byte_end
            else:
                start, end = offsets[byte_start], offsets[byte_end]
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
        kept = _resolve_ranked(found)
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


@dataclass
class TableText:
    """A table laid out for one engine pass, and the way back from offsets to cells.

    Each row is one line, its cells joined by tabs, and when the first row looks like a
    header every later cell is preceded by ``"Header: "``: a ``NHS No``, ``DOB`` or
    ``Sort code`` column header is then context for every cell below it, not only for
    the first rows within reach of the header line.
    """

    text: str
    starts: tuple[int, ...]
    cells: tuple[tuple[int, int, int], ...]  # row, cell, length (0-based)

    def locate(self, offset: int) -> tuple[int, int, int, int] | None:
        """``(row, cell, offset in cell, cell length)`` of a text offset; ``None``
        inside a header label or a separator."""
        at = bisect.bisect_right(self.starts, offset) - 1
        if at < 0:
            return None
        row, cell, length = self.cells[at]
        inside = offset - self.starts[at]
        if inside >= max(length, 1):
            return None
        return row, cell, inside, length


def table_text(rows: Sequence[Sequence[str]]) -> TableText:
    """``rows`` as one text for :meth:`InspectionEngine.scan_text`; see :class:`TableText`."""
    labels = header_labels(rows)
    pieces: list[str] = []
    starts: list[int] = []
    cells: list[tuple[int, int, int]] = []
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
    return TableText("".join(pieces), tuple(starts), tuple(cells))


def header_labels(rows: Sequence[Sequence[str]]) -> list[str] | None:
    """``"Header: "`` per column when the first row looks like a header (no digits, no
    ``@``, short cells, at least one non-empty), else ``None``."""
    if len(rows) < 2 or not rows[0]:
        return None
    header = rows[0]
    if not any(cell.strip() for cell in header):
        return None
    for cell in header:
        if len(cell) > MAX_HEADER_LABEL or "@" in cell or any(ch.isdigit() for ch in cell):
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


def _resolve_ranked(
    found: list[tuple[float, int, int, int, int, int, bool, str]],
) -> list[tuple[float, int, int, int, int, int, bool, str]]:
    """:func:`_resolve_overlaps` over the engine's candidate tuples
    ``(-confidence, start - end, start, detector, order, end, context, value)``: the
    same ranking (the order breaks ties as a stable sort would), the same choices."""
    starts: list[int] = []
    ends: list[int] = []
    kept: list[tuple[float, int, int, int, int, int, bool, str]] = []
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
