"""Classification: labels from configurable rules, fail-closed statuses, masked reports only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spillguard.customers.edm import CustomerMatch
from spillguard.customers.fields import FieldKind
from spillguard.inspection import InspectionEngine
from spillguard.inspection.classify import (
    FindingLocation,
    ItemStatus,
    Label,
    LabelRules,
    classify,
    load_label_rules,
    parse_label,
)

ENGINE = InspectionEngine()


def found(text: str) -> list:
    result = ENGINE.scan_text(text)
    assert result.inspected
    return [
        (f, FindingLocation("x.txt", f.start, f.end, line=1, column=f.start + 1))
        for f in result.findings
    ]


def customers(count: int) -> list[CustomerMatch]:
    return [
        CustomerMatch(f"C{i:04d}", frozenset({FieldKind.EMAIL}), frozenset({FieldKind.NAME}))
        for i in range(count)
    ]


def test_label_order_and_parsing():
    assert Label.PUBLIC < Label.INTERNAL < Label.CONFIDENTIAL < Label.RESTRICTED
    assert max(Label.INTERNAL, Label.RESTRICTED, Label.PUBLIC) is Label.RESTRICTED
    assert parse_label(" Confidential ") is Label.CONFIDENTIAL
    with pytest.raises(ValueError, match="public, internal, confidential, restricted"):
        parse_label("secret")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Minutes of the meeting: nothing to report.", Label.PUBLIC),
        ("Reply to jo.bloggs@example.org or call 07700 900123", Label.INTERNAL),
        ("Card on file 4111 1111 1111 1111", Label.CONFIDENTIAL),
        ("National insurance number AB 12 34 56 C", Label.CONFIDENTIAL),
        ("NHS number 943 476 5919", Label.CONFIDENTIAL),
    ],
)
def test_default_labels_from_entities(text, label):
    report = classify("x.txt", sha256="0" * 64, findings=found(text))
    assert report.label is label
    assert report.status is (ItemStatus.CLEAN if label is Label.PUBLIC else ItemStatus.FINDINGS)


def test_customer_thresholds():
    assert classify("a", sha256=None, records=customers(1)).label is Label.CONFIDENTIAL
    assert classify("a", sha256=None, records=customers(9)).label is Label.CONFIDENTIAL
    assert classify("a", sha256=None, records=customers(10)).label is Label.RESTRICTED
    rules = LabelRules(restricted_customers=3)
    assert classify("a", sha256=None, records=customers(3), rules=rules).label is Label.RESTRICTED


def test_customers_merged_and_primary_only_counted_apart():
    records = [
        CustomerMatch("C1", frozenset({FieldKind.EMAIL}), frozenset({FieldKind.NAME})),
        CustomerMatch("C1", frozenset({FieldKind.PHONE}), frozenset({FieldKind.POSTCODE})),
    ]
    alone = [
        CustomerMatch("C1", frozenset({FieldKind.CARD})),
        CustomerMatch("C2", frozenset({FieldKind.PHONE})),
    ]
    report = classify("a", sha256=None, records=records, primary_only=alone)
    assert report.customer_ids == ["C1"]
    assert report.customers[0].primary == ("email", "phone")
    assert report.customers[0].supporting == ("name", "postcode")
    assert report.primary_only == ("C2",)
    assert report.label is Label.CONFIDENTIAL
    only = classify("a", sha256=None, primary_only=alone[1:])
    assert only.label is Label.INTERNAL
    assert only.status is ItemStatus.FINDINGS


def test_incomplete_items_are_never_clean():
    unscannable = classify(
        "z.zip", sha256=None, unscannable=[("z.zip/a", "unscannable: encrypted")]
    )
    assert unscannable.status is ItemStatus.UNSCANNABLE
    assert unscannable.label is Label.CONFIDENTIAL
    assert unscannable.reasons == ["unscannable: encrypted"]
    both = classify(
        "z.zip",
        sha256=None,
        findings=found("07700 900123"),
        unscannable=[("z.zip/a", "unscannable: encrypted")],
        uninspected=[("z.zip/b", "uninspected: timeout: not finished within 1 s")],
    )
    assert both.status is ItemStatus.UNINSPECTED
    assert both.categories == {"phone_number": 1}
    lenient = LabelRules(incomplete_label=Label.INTERNAL)
    assert (
        classify("z", sha256=None, unscannable=[("z", "u")], rules=lenient).label is Label.INTERNAL
    )


def test_rules_from_mapping_and_restricted_findings():
    rules = LabelRules.from_mapping(
        {
            "restricted_customers": 2,
            "restricted_findings": 3,
            "entity_labels": {"email_address": "confidential"},
            "primary_only_label": "confidential",
        }
    )
    assert rules.restricted_customers == 2
    assert rules.entity_labels["email_address"] is Label.CONFIDENTIAL
    assert rules.entity_labels["payment_card"] is Label.CONFIDENTIAL  # defaults kept
    text = "cards 4111 1111 1111 1111, 5555 5555 5555 4444 and 4012 8888 8888 1881"
    assert classify("a", sha256=None, findings=found(text), rules=rules).label is Label.RESTRICTED
    assert classify("a", sha256=None, findings=found(text)).label is Label.CONFIDENTIAL
    for bad, message in [
        ({"restricted_customer": 1}, "unknown"),
        ({"restricted_customers": "ten"}, "integer"),
        ({"restricted_customers": 0}, "at least 1"),
        ({"incomplete_label": "secret"}, "unknown label"),
        ({"entity_labels": ["x"]}, "table"),
    ]:
        with pytest.raises(ValueError, match=message):
            LabelRules.from_mapping(bad)


def test_rules_loaded_from_the_config_file(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SPILLGUARD_CONFIG", raising=False)
    assert load_label_rules(home=tmp_path) == LabelRules()
    (tmp_path / "config.toml").write_text(
        "[inspection.labels]\nrestricted_customers = 5\n"
        '[inspection.labels.entity_labels]\nip_address = "public"\n'
    )
    rules = load_label_rules(home=tmp_path)
    assert rules.restricted_customers == 5
    assert rules.entity_labels["ip_address"] is Label.PUBLIC
    other = tmp_path / "other.toml"
    other.write_text("[spillguard.inspection.labels]\nconfidential_customers = 2\n")
    assert load_label_rules(other).confidential_customers == 2
    other.write_text("[inspection.labels]\nwhat = 1\n")
    with pytest.raises(ValueError, match="unknown"):
        load_label_rules(other)


def test_report_holds_masked_values_only_and_caps_findings():
    email, phone, card = "kate.morris@example.co.uk", "07700 900461", "4111 1111 1111 1111"
    text = f"{email} {phone} card {card}\n" * 5
    report = classify("x.txt", sha256=None, findings=found(text), max_findings=4)
    assert report.categories == {"email_address": 5, "phone_number": 5, "payment_card": 5}
    assert len(report.findings) == 4
    assert report.findings_truncated
    dumped = json.dumps(report.to_dict(), ensure_ascii=False) + repr(report)
    for plain in (email, phone, card, card.replace(" ", ""), "+447700900461", "07700900461"):
        assert plain not in dumped
    assert "k•••@example.co.uk" in dumped
    for finding in report.findings:
        assert not hasattr(finding, "value")
