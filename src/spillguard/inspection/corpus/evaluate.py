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
from spillguard.inspection.engine import InspectionEngine

__all__ = ["build_index", "evaluate_edm", "evaluate_engine", "predict"]


def predict(engine: InspectionEngine, text: str) -> list[Span]:
    """The engine's findings as spans.  An uninspected text predicts nothing."""
    return [Span(f.entity, f.start, f.end) for f in engine.scan_text(text).findings]


def evaluate_engine(
    engine: InspectionEngine,
    documents: Sequence[Document],
    *,
    entities: Iterable[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, EntityScore]:
    pairs = [(doc.spans, predict(engine, doc.text)) for doc in documents]
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

    cases = [
        (
            case.variant,
            case.customer_id,
            index.match_rows(case.rows).customer_ids if case.rows else matched_text(case.text),
        )
        for case in corpus.cases
    ]
    return score_edm(cases, (matched_text(text) for text in corpus.unrelated))
