"""Evaluation corpus: labelled synthetic documents and the scores computed on them.

* ``identifiers`` — valid NINO, NHS, card, IBAN, sort code, phone, postcode generators
  (from the published rules, not from the detectors) and invalid look-alikes;
* ``generator`` — e-mails, SMS, CSV exports, spreadsheet rows, call notes, prose with
  sparse findings and hard-negative documents, with labelled spans;
* ``edm`` — a customer directory and documents about its customers in format variants,
  plus documents about unrelated people;
* ``score`` — span overlap, precision / recall / F2 per entity, EDM record recall;
* ``evaluate`` — runs :class:`~spillguard.inspection.InspectionEngine` (and an EDM
  index) over the corpus.

Used by ``tests/unit/inspection/test_corpus.py`` and ``benchmarks/scan.py``; see the
"Content inspection (issue 4)" section of docs/benchmarks.md.
"""

from __future__ import annotations

from spillguard.inspection.corpus.edm import EdmCase, EdmCorpus, EdmCustomer, generate_edm_corpus
from spillguard.inspection.corpus.generator import (
    DOCUMENT_KINDS,
    ENTITIES,
    Document,
    Span,
    generate_corpus,
    generate_documents,
)
from spillguard.inspection.corpus.score import (
    EdmScore,
    EntityScore,
    f_beta,
    match_spans,
    overlap,
    score_edm,
    score_spans,
)

__all__ = [
    "DOCUMENT_KINDS",
    "ENTITIES",
    "Document",
    "EdmCase",
    "EdmCorpus",
    "EdmCustomer",
    "EdmScore",
    "EntityScore",
    "Span",
    "f_beta",
    "generate_corpus",
    "generate_documents",
    "generate_edm_corpus",
    "match_spans",
    "overlap",
    "score_edm",
    "score_spans",
]
