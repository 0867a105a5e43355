"""The evaluation corpus, its scorer, and the issue #4 accuracy targets on this engine."""

from __future__ import annotations

import os
import random

import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn

from spillguard.core.keys import KeyRing
from spillguard.inspection import InspectionEngine
from spillguard.inspection.corpus import (
    DOCUMENT_KINDS,
    EntityScore,
    Span,
    f_beta,
    generate_corpus,
    generate_documents,
    generate_edm_corpus,
    overlap,
    score_edm,
    score_spans,
)
from spillguard.inspection.corpus import identifiers as ids
from spillguard.inspection.corpus.evaluate import build_index, evaluate_edm, evaluate_engine

# -- generator -------------------------------------------------------------------------


def test_same_seed_same_corpus_other_seed_other_corpus():
    first = generate_corpus({"email": 5, "csv": 2, "prose": 2, "negative": 2}, seed=7)
    again = generate_corpus({"email": 5, "csv": 2, "prose": 2, "negative": 2}, seed=7)
    other = generate_corpus({"email": 5, "csv": 2, "prose": 2, "negative": 2}, seed=8)
    assert first == again
    assert [d.text for d in first] != [d.text for d in other]
    assert generate_edm_corpus(20, 20, seed=3) == generate_edm_corpus(20, 20, seed=3)


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus({kind: 15 for kind in DOCUMENT_KINDS}, seed=11)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isalnum()).upper()


def test_every_kind_is_generated_and_labelled(corpus):
    kinds = {d.kind for d in corpus}
    assert kinds == set(DOCUMENT_KINDS)
    labelled = {s.entity for d in corpus for s in d.spans}
    assert labelled >= {"phone_number", "email_address", "uk_postcode", "payment_card", "iban"}
    assert labelled >= {"uk_nino", "nhs_number", "date_of_birth", "ip_address"}
    tables = [d for d in corpus if d.kind in ("csv", "sheet")]
    assert all(d.rows and len(d.rows) > 20 for d in tables)


def test_labels_point_at_exactly_a_valid_value(corpus):
    """Each label's text is a value of its entity, by rules independent of the detectors."""
    checked = 0
    for doc in corpus:
        for span in doc.spans:
            value = doc.text[span.start : span.end]
            assert value == value.strip() and value, (doc.id, span)
            compact = _digits(value)
            if span.entity == "payment_card":
                assert luhn.is_valid(compact) and len(compact) in (15, 16)
            elif span.entity == "iban":
                assert stdnum_iban.is_valid(compact), value
            elif span.entity == "uk_nino":
                assert ids.nino_prefix_valid(compact[:2]) and compact[8] in "ABCD"
            elif span.entity == "nhs_number":
                assert ids.nhs_valid(compact), value
            elif span.entity == "email_address":
                assert value.count("@") == 1
            elif span.entity == "phone_number":
                assert compact.lstrip("+")[:2] in ("07", "44", "00", "02", "01")
            checked += 1
    assert checked > 500


def test_table_rows_hold_the_labelled_cells(corpus):
    for doc in (d for d in corpus if d.rows):
        cells = {cell for row in doc.rows[1:] for cell in row}
        for span in doc.spans:
            value = doc.text[span.start : span.end]
            if span.entity == "uk_bank_account":
                assert all(part in cells for part in value.replace("\t", ",").split(","))
            else:
                assert value in cells


def test_hard_negatives_hold_no_labelled_span_and_are_invalid(corpus):
    negatives = 0
    for doc in corpus:
        for neg in doc.negatives:
            negatives += 1
            assert not any(overlap(neg, s) > 0 for s in doc.spans), (doc.id, neg)
            value = doc.text[neg.start : neg.end]
            compact = _digits(value)
            if neg.entity == "invalid_nino":
                assert not ids.nino_prefix_valid(compact[:2])
            elif neg.entity == "invalid_nhs":
                assert not ids.nhs_valid(compact)
            elif neg.entity == "luhn_non_card":
                assert luhn.is_valid(compact) and compact[0] in "139"
            elif neg.entity == "luhn_invalid_card":
                assert not luhn.is_valid(compact)
            elif neg.entity == "invalid_iban":
                assert not stdnum_iban.is_valid(compact)
    negative_docs = [d for d in corpus if d.kind == "negative"]
    assert all(not d.spans and d.negatives for d in negative_docs)
    assert negatives > 50


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown document kind"):
        generate_documents("fax", 1)


def test_edm_corpus_variants_write_the_value_differently():
    edm = generate_edm_corpus(10, 10, seed=5)
    by_id = {c.id: c for c in edm.customers}
    for case in edm.cases:
        c = by_id[case.customer_id]
        if case.variant == "email_upper":
            assert c.email.upper() in case.text and c.email not in case.text
        elif case.variant == "phone_plus44":
            assert f"+44 {c.phone[1:5]}" in case.text
        elif case.variant == "postcode_lower_nospace":
            assert c.postcode.replace(" ", "").lower() in case.text
        elif case.variant == "dob_iso":
            assert c.dob.isoformat() in case.text
    assert all(c.email not in text for c in edm.customers for text in edm.unrelated)


# -- scorer ------------------------------------------------------------------------------


def test_overlap_is_intersection_over_union():
    assert overlap(Span("x", 0, 10), Span("x", 0, 10)) == 1.0
    assert overlap(Span("x", 0, 10), Span("x", 10, 20)) == 0.0
    assert overlap(Span("x", 0, 10), Span("x", 5, 15)) == pytest.approx(5 / 15)


def test_perfect_predictions_score_one():
    gold = [Span("iban", 0, 22), Span("uk_nino", 30, 39)]
    scores = score_spans([(gold, list(gold))])
    assert {e: (s.tp, s.fp, s.fn) for e, s in scores.items()} == {
        "iban": (1, 0, 0),
        "uk_nino": (1, 0, 0),
    }
    assert all(s.precision == s.recall == s.f2 == 1.0 for s in scores.values())


def test_all_wrong_scores_zero():
    gold = [Span("iban", 0, 22)]
    wrong = [Span("iban", 40, 62), Span("uk_nino", 0, 22)]  # elsewhere, and wrong entity
    scores = score_spans([(gold, wrong)])
    assert (scores["iban"].tp, scores["iban"].fp, scores["iban"].fn) == (0, 1, 1)
    assert scores["iban"].precision == scores["iban"].recall == scores["iban"].f2 == 0.0
    assert scores["uk_nino"].fp == 1 and scores["uk_nino"].precision == 0.0


@pytest.mark.parametrize(("predicted_end", "matched"), [(89, False), (90, True), (91, True)])
def test_overlap_threshold_at_point_nine(predicted_end, matched):
    gold = [Span("phone_number", 0, 100)]
    scores = score_spans([(gold, [Span("phone_number", 0, predicted_end)])], threshold=0.9)
    assert scores["phone_number"].tp == int(matched)
    assert scores["phone_number"].fn == int(not matched)


def test_partial_results_and_f2_arithmetic():
    gold = [Span("email_address", i * 20, i * 20 + 10) for i in range(4)]
    predicted = [*gold[:2], Span("email_address", 200, 210)]
    s = score_spans([(gold, predicted)])["email_address"]
    assert (s.tp, s.fp, s.fn) == (2, 1, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(0.5)
    # F2 = 5PR / (4P + R)
    assert s.f2 == pytest.approx(5 * (2 / 3) * 0.5 / (4 * (2 / 3) + 0.5))
    assert f_beta(1.0, 0.0) == 0.0 and EntityScore().f2 == 1.0


def test_one_prediction_matches_one_label_only():
    gold = [Span("iban", 0, 10), Span("iban", 0, 10)]
    s = score_spans([(gold, [Span("iban", 0, 10)])])["iban"]
    assert (s.tp, s.fp, s.fn) == (1, 0, 1)


def test_edm_score_counts_recall_and_false_matches():
    result = score_edm(
        [("a", "K1", ["K1"]), ("a", "K2", []), ("b", "K3", ["K3", "K9"])],
        [[], ["K5"], []],
    )
    assert result.variant_recall() == {"a": 0.5, "b": 1.0}
    assert result.recall == pytest.approx(2 / 3)
    assert result.false_matches == 2  # K9 beside K3, K5 in an unrelated document
    assert result.false_matches_per_10k == pytest.approx(2 * 10_000 / 3)


# -- the accuracy targets on this engine ---------------------------------------------


@pytest.fixture(scope="module")
def scores():
    documents = generate_corpus(
        {
            "email": 150,
            "sms": 200,
            "csv": 10,
            "sheet": 10,
            "call_note": 150,
            "prose": 40,
            "negative": 40,
        },
        seed=2024,
    )
    return evaluate_engine(InspectionEngine(), documents)


@pytest.mark.parametrize("entity", ["payment_card", "iban"])
def test_strict_targets(scores, entity):
    s = scores[entity]
    assert s.support > 100
    assert s.recall >= 0.99 and s.precision >= 0.97, (entity, s)


def test_nhs_number_target(scores):
    # Bare ten-digit NHS numbers deep in a table count through their column header
    # (tables are scanned as scan() scans them: each cell after its header).
    s = scores["nhs_number"]
    assert s.support > 100
    assert s.recall >= 0.99 and s.precision >= 0.97, s


@pytest.mark.parametrize("entity", ["date_of_birth", "uk_bank_account"])
def test_context_gated_entities_in_tables_and_text(scores, entity):
    # No target in the issue; before column headers counted as context, table rows out
    # of reach of the header were missed (recall 0.37 and 0.22).
    s = scores[entity]
    assert s.support > 100
    assert s.recall >= 0.95 and s.precision >= 0.95, (entity, s)


@pytest.mark.parametrize("entity", ["phone_number", "email_address", "uk_postcode", "uk_nino"])
def test_contact_targets(scores, entity):
    s = scores[entity]
    assert s.support > 100
    assert s.recall >= 0.95 and s.precision >= 0.90, (entity, s)


def test_edm_record_recall_across_variants_and_no_false_matches():
    edm = generate_edm_corpus(customers=150, unrelated=1500, seed=2024)
    index = build_index(KeyRing(os.urandom(32)), edm.customers)
    result = evaluate_edm(InspectionEngine(), index, edm)
    assert sum(result.total.values()) >= 1500
    assert result.recall >= 0.98, result.variant_recall()
    assert min(result.variant_recall().values()) >= 0.9, result.variant_recall()
    # Fewer than 1 per 10,000 documents: with 1,500 unrelated documents, none at all.
    assert result.false_matches == 0


def test_identifier_generators_follow_the_rules():
    rng = random.Random(1)
    for _ in range(200):
        assert ids.nhs_valid(ids.nhs_number(rng))
        assert not ids.nhs_valid(ids.invalid_nhs_number(rng))
        assert stdnum_iban.is_valid(ids.iban(rng))
        assert luhn.is_valid(ids.card_number(rng))
        assert ids.nino_prefix_valid(ids.nino_compact(rng)[:2])
        assert not ids.nino_prefix_valid(ids.invalid_nino_compact(rng)[:2])
