"""Run this project's engine (and EDM index) over the corpus and score it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndex, EdmIndexBuilder, FieldKind
from spillguard.inspection.corpus.edm import EdmCorpus, EdmCustomer
from spillguard.inspection.corpus.generator import Document, Span
from spillguard.inspection.corpus.score import (
    DEFAULT_THRESHOLD,
    EdmScore,
    EntityScore,
    score_edm,
    score_spans,
)
from spillguard.inspection.engine import Finding, InspectionEngine, TableText

__all__ = [
    "build_index",
    "evaluate_edm",
    "evaluate_engine",
    "predict",
    "predict_document",
    "predict_table",
    "table_spans",
]


def predict(engine: InspectionEngine, text: str) -> list[Span]:
    """The engine's findings as spans.  An uninspected text predicts nothing."""
    return [Span(f.entity, f.start, f.end) for f in engine.scan_text(text).findings]


def predict_table(engine: InspectionEngine, text: str, rows: Sequence[Sequence[str]]) -> list[Span]:
    """Findings in a table scanned as :func:`spillguard.inspection.scan` scans one
    (:meth:`~spillguard.inspection.engine.InspectionEngine.scan_table`: the findings of
    each cell after its column header), as spans of ``text``, the table as written.

    ``rows`` must be the cells of ``text`` in order.  A finding that spans cells (sort
    code and account number) runs from its first cell to its last.
    """
    result = engine.scan_table(rows)
    assert result.table is not None
    return table_spans(text, rows, result.table, result.findings)


def table_spans(
    text: str, rows: Sequence[Sequence[str]], table: TableText, findings: Iterable[Finding]
) -> list[Span]:
    """``findings`` in ``table`` (the layout of ``rows``) as spans of ``text``."""
    cell_at: dict[tuple[int, int], int] = {}
    position = 0
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            found = text.find(cell, position)
            if found < 0:
                raise ValueError(f"row {r + 1} cell {c + 1} is not in the text")
            cell_at[r, c] = found
            position = found + len(cell)
    spans = []
    for finding in findings:
        first = table.locate(finding.start)
        last = table.locate(finding.end - 1)
        if first is None or last is None:
            continue
        start = cell_at[first[0], first[1]] + first[2]
        end = cell_at[last[0], last[1]] + last[2] + 1
        spans.append(Span(finding.entity, start, end))
    return spans


def predict_document(engine: InspectionEngine, document: Document) -> list[Span]:
    """Findings in ``document``: tables through the table path, other text as is."""
    if document.rows:
        return predict_table(engine, document.text, document.rows)
    return predict(engine, document.text)


def evaluate_engine(
    engine: InspectionEngine,
    documents: Sequence[Document],
    *,
    entities: Iterable[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, EntityScore]:
    pairs = [(doc.spans, predict_document(engine, doc)) for doc in documents]
    return score_spans(pairs, entities=entities, threshold=threshold)


def customer_rows(
    customers: Iterable[EdmCustomer],
) -> Iterable[tuple[str, dict[FieldKind, str]]]:
    for c in customers:
        yield c.id, {FieldKind(k): v for k, v in c.directory_values().items()}


def build_index(keyring: KeyRing, customers: Iterable[EdmCustomer]) -> EdmIndex:
    builder = EdmIndexBuilder(keyring)
    builder.add_many(customer_rows(customers))
    return builder.build()


def evaluate_edm(engine: InspectionEngine, index: EdmIndex, corpus: EdmCorpus) -> EdmScore:
    """Record recall per variant, and false record matches (wrong customer in a case,
    any customer in an unrelated document)."""

    def matched_text(text: str) -> list[str]:
        return index.match_text(text, engine.scan_text(text).findings).customer_ids

    def matched_rows(rows: Sequence[Sequence[str]]) -> list[str]:
        return index.match_rows(rows, engine.scan_table(rows).in_cells()).customer_ids

    cases = [
        (
            case.variant,
            case.customer_id,
            matched_rows(case.rows) if case.rows else matched_text(case.text),
        )
        for case in corpus.cases
    ]
    return score_edm(cases, (matched_text(text) for text in corpus.unrelated))
