"""Scores against the generated corpus: per-entity precision, recall and F2, and EDM.

**Span overlap** is the Jaccard index of the two character ranges,
``|intersection| / |union|`` (so a prediction one character short of a 10-character
label scores 0.9, and one 10 % too long scores 10/11 ≈ 0.909).  A prediction matches a
label of the same entity when their overlap is at least ``threshold`` (default 0.9);
each label and each prediction is matched at most once (greedy, best overlap first).
Unmatched predictions are false positives, unmatched labels false negatives.

With no predictions precision is 1.0 (nothing wrongly claimed); with no labels recall
is 1.0 (nothing missed).  ``F_beta = (1 + β²)·P·R / (β²·P + R)``; F2 weighs recall four
times as much as precision (missing customer data is worse than a false alarm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spillguard.inspection.corpus.generator import Span

__all__ = [
    "DEFAULT_THRESHOLD",
    "EdmScore",
    "EntityScore",
    "f_beta",
    "match_spans",
    "overlap",
    "score_edm",
    "score_spans",
    "table",
]

DEFAULT_THRESHOLD = 0.9


def overlap(a: Span, b: Span) -> float:
    """Jaccard overlap of two character ranges: |a & b| / |a | b| (0.0 when disjoint)."""
    inter = min(a.end, b.end) - max(a.start, b.start)
    if inter <= 0:
        return 0.0
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union


def f_beta(precision: float, recall: float, beta: float = 2.0) -> float:
    b2 = beta * beta
    denominator = b2 * precision + recall
    return 0.0 if denominator == 0 else (1 + b2) * precision * recall / denominator


@dataclass
class EntityScore:
    """Counts for one entity; rates derived from them."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        claimed = self.tp + self.fp
        return 1.0 if claimed == 0 else self.tp / claimed

    @property
    def recall(self) -> float:
        labelled = self.tp + self.fn
        return 1.0 if labelled == 0 else self.tp / labelled

    @property
    def f2(self) -> float:
        return f_beta(self.precision, self.recall, 2.0)

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def add(self, other: EntityScore) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn


def match_spans(
    gold: Sequence[Span], predicted: Sequence[Span], threshold: float = DEFAULT_THRESHOLD
) -> list[tuple[Span, Span]]:
    """One-to-one pairs (label, prediction) of the same entity with overlap ≥ threshold."""
    pairs = sorted(
        (
            (overlap(g, p), gi, pi)
            for gi, g in enumerate(gold)
            for pi, p in enumerate(predicted)
            if g.entity == p.entity and overlap(g, p) >= threshold
        ),
        key=lambda item: (-item[0], item[1], item[2]),
    )
    used_gold: set[int] = set()
    used_pred: set[int] = set()
    out: list[tuple[Span, Span]] = []
    for _score, gi, pi in pairs:
        if gi in used_gold or pi in used_pred:
            continue
        used_gold.add(gi)
        used_pred.add(pi)
        out.append((gold[gi], predicted[pi]))
    return out


def score_spans(
    documents: Iterable[tuple[Sequence[Span], Sequence[Span]]],
    *,
    entities: Iterable[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, EntityScore]:
    """Per-entity scores over ``(labels, predictions)`` pairs, one pair per document.

    ``entities`` limits scoring to those names (predictions of other entities are
    ignored); by default every entity seen in labels or predictions is scored.
    """
    wanted = set(entities) if entities is not None else None
    scores: dict[str, EntityScore] = {e: EntityScore() for e in wanted or ()}
    for gold, predicted in documents:
        if wanted is not None:
            gold = [s for s in gold if s.entity in wanted]
            predicted = [s for s in predicted if s.entity in wanted]
        matched = match_spans(gold, predicted, threshold)
        hit_gold = {id(g) for g, _p in matched}
        hit_pred = {id(p) for _g, p in matched}
        for g in gold:
            score = scores.setdefault(g.entity, EntityScore())
            if id(g) in hit_gold:
                score.tp += 1
            else:
                score.fn += 1
        for p in predicted:
            if id(p) not in hit_pred:
                scores.setdefault(p.entity, EntityScore()).fp += 1
    return dict(sorted(scores.items()))


@dataclass
class EdmScore:
    """EDM record recall per format variant and false record matches."""

    found: dict[str, int]
    total: dict[str, int]
    false_matches: int
    unrelated_documents: int

    @property
    def recall(self) -> float:
        total = sum(self.total.values())
        return 1.0 if total == 0 else sum(self.found.values()) / total

    def variant_recall(self) -> dict[str, float]:
        return {v: self.found.get(v, 0) / n for v, n in sorted(self.total.items()) if n}

    @property
    def false_matches_per_10k(self) -> float:
        docs = self.unrelated_documents
        return 0.0 if docs == 0 else self.false_matches * 10_000 / docs


def score_edm(
    cases: Iterable[tuple[str, str, Iterable[str]]],
    unrelated: Iterable[Iterable[str]],
) -> EdmScore:
    """``cases``: (variant, expected customer id, matched ids) per document about one
    customer — found when the expected id is among the matched ids; any *other* id
    matched there is a false record match.  ``unrelated``: matched ids per document
    about people outside the directory; every id matched is a false record match."""
    found: dict[str, int] = {}
    total: dict[str, int] = {}
    false = 0
    for variant, expected, matched in cases:
        ids = set(matched)
        total[variant] = total.get(variant, 0) + 1
        if expected in ids:
            found[variant] = found.get(variant, 0) + 1
        false += len(ids - {expected})
    documents = 0
    for matched in unrelated:
        documents += 1
        false += len(set(matched))
    return EdmScore(found, total, false, documents)


def table(scores: Mapping[str, EntityScore]) -> str:
    """A plain-text table of per-entity scores."""
    lines = [f"{'entity':<16} {'support':>7} {'P':>6} {'R':>6} {'F2':>6}  tp/fp/fn"]
    for entity, s in scores.items():
        lines.append(
            f"{entity:<16} {s.support:>7} {s.precision:>6.3f} {s.recall:>6.3f} {s.f2:>6.3f}"
            f"  {s.tp}/{s.fp}/{s.fn}"
        )
    return "\n".join(lines)
