"""The [inspection] table of the config file (spillguard.inspection.config): what it
sets, where it may sit, and a one-line error naming the key for anything unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from spillguard.core.settings import Settings
from spillguard.customers.fields import LoyaltyFormat
from spillguard.inspection.classify import Label, LabelRules, load_label_rules
from spillguard.inspection.config import (
    InspectionConfig,
    inspection_config_for,
    load_inspection_config,
)
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.engine import InspectionEngine
from spillguard.inspection.extract.model import ExtractLimits

EXAMPLE = r"""
[inspection]
phone_region = "ie"
phone_requires_trunk_prefix = true
disabled = ["ipv4", "ipv6"]

[[inspection.custom_identifiers]]
name = "loyalty_number"
pattern = '\bLC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}\b'
check_digit = "luhn"
context_words = ["loyalty", "rewards", "member"]

[[inspection.custom_identifiers]]
name = "contract_number"
pattern = '\bCN-\d{8}\b'
requires_context = true
context_words = ["contract"]

[inspection.labels]
restricted_customers = 5

[inspection.limits]
max_depth = 3
time_budget = 20

[inspection.edm]
window = 120
loyalty_entity = "loyalty_number"
loyalty = { pattern = 'LC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}', check_digit = "luhn" }
"""


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.delenv("SPILLGUARD_CONFIG", raising=False)
    monkeypatch.delenv("SPILLGUARD_HOME", raising=False)


def test_no_file_or_no_table_gives_the_defaults(tmp_path: Path):
    assert load_inspection_config(home=tmp_path) == InspectionConfig()
    (tmp_path / "config.toml").write_text('[spillguard]\nlog_level = "INFO"\n')
    config = load_inspection_config(home=tmp_path)
    assert config.detectors == DetectorSettings()
    assert config.labels == LabelRules()
    assert config.limits == ExtractLimits()
    assert config.edm_settings().phone_region == "GB"
    assert config.source == tmp_path / "config.toml"


def test_every_part_of_the_table_is_read(tmp_path: Path):
    (tmp_path / "config.toml").write_text(EXAMPLE)
    config = load_inspection_config(home=tmp_path)
    detectors = config.detectors
    assert detectors.phone_region == "IE"
    assert detectors.disabled == frozenset({"ipv4", "ipv6"})
    assert [c.name for c in detectors.custom_identifiers] == ["loyalty_number", "contract_number"]
    assert detectors.custom_identifiers[1].requires_context
    assert config.labels.restricted_customers == 5
    assert config.limits.max_depth == 3 and config.limits.time_budget == 20
    edm = config.edm_settings()
    assert edm.window == 120
    assert edm.phone_region == "IE"  # customers' numbers are read as the scans read them
    assert edm.loyalty == LoyaltyFormat(
        pattern=r"LC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}", check_digit="luhn"
    )
    # The label rules' own loader reads the same table.
    assert load_label_rules(home=tmp_path) == config.labels

    engine = InspectionEngine(settings=detectors)
    found = engine.scan_text(
        "Rewards member card LC 4821-0937-5519, contract CN-20261204, from 10.1.2.3"
    ).findings
    assert sorted(f.entity for f in found) == ["contract_number", "loyalty_number"]
    failed = engine.scan_text("member card LC 4821-0937-5512").findings  # Luhn fails
    assert "loyalty_number" not in {f.entity for f in failed}


def test_the_table_may_sit_under_spillguard_and_the_file_be_named(tmp_path: Path, monkeypatch):
    named = tmp_path / "elsewhere.toml"
    named.write_text('[spillguard.inspection]\ndisabled = ["ipv4", "iban"]\n')
    assert load_inspection_config(named).detectors.disabled == {"ipv4", "iban"}
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(named))
    assert load_inspection_config(home=tmp_path / "unused").detectors.disabled == {"ipv4", "iban"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[inspection]\nphone_regoin = 'GB'\n", "unknown [inspection] key 'phone_regoin'"),
        ("[inspection]\nphone_region = 'XX'\n", "[inspection] phone_region: unknown phone region"),
        ("[inspection]\ndisabled = ['sms']\n", "[inspection] disabled: unknown detectors: sms"),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = '(?<=a)b'\n",
            "[inspection] custom_identifiers.0.pattern: pattern is not valid RE2 syntax",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = 'a*'\n",
            "custom_identifiers.0.pattern: pattern matches the empty string",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'Bad Name'\npattern = 'ab'\n",
            "custom_identifiers.0.name",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'email'\npattern = 'ab'\n",
            "custom identifier names must be unique and new",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = 'ab'\ncolour = 1\n",
            "custom_identifiers.0.colour",
        ),
        ("[inspection]\nlabels = 3\n", "[inspection.labels] must be a table"),
        ("[inspection.labels]\nrestricted_customers = 'ten'\n", "must be an integer"),
        ("[inspection.limits]\nmax_depht = 3\n", "unknown [inspection.limits] key 'max_depht'"),
        ("[inspection.limits]\nmax_depth = 2.5\n", "max_depth must be an integer"),
        ("[inspection.limits]\ntime_budget = 'soon'\n", "time_budget must be a number"),
        ("[inspection.limits]\nmax_entries = -1\n", "max_entries must not be negative"),
        ("[inspection.edm]\nwindow = 0\n", "[inspection.edm] window:"),
        ("[inspection.edm]\nphone_region = 'GB'\n", "set phone_region in [inspection]"),
        ("[inspection.edm]\nloyalty = { pattern = '(' }\n", "loyalty.pattern"),
        (
            "[inspection.edm]\nloyalty_entity = 'club_card'\n",
            "loyalty_entity 'club_card' names no [[inspection.custom_identifiers]] entry",
        ),
        ("[inspection\n", "cannot be read"),
        ("inspection = 'on'\n", "[inspection] must be a table"),
        (
            "[inspection]\nphone_region = 'GB'\n[spillguard.inspection]\nphone_region = 'IE'\n",
            "both [inspection] and [spillguard.inspection]",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = 'ab'\n"
            "requires_context = true\n",
            "requires_context = true needs context_words",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = '\\b\\d*'\n",
            "pattern can match an empty string inside a text",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = '\\pN{6}'\n",
            "not in the syntax both scan backends accept",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'phone_number'\npattern = 'ab'\n",
            "custom identifier names must be unique and new: ['phone_number']",
        ),
        (
            "[[inspection.custom_identifiers]]\nname = 'x'\npattern = 'ab'\nignore_case = 'yes'\n",
            "custom_identifiers.0 ignore_case must be true or false",
        ),
        (
            '[[inspection.custom_identifiers]]\nname = \'x\'\npattern = """a\nb("""\n',
            "pattern is not valid RE2 syntax",
        ),
        ("[inspection]\ncustom_identifiers = 'x'\n", "[[inspection.custom_identifiers]] table"),
        ("[inspection]\nphone_requires_trunk_prefix = 'no'\n", "must be true or false"),
        ("[inspection]\ndisabled = 'email'\n", "disabled must be a list of strings"),
        ("[inspection.edm]\nwindow = '300'\n", "[inspection.edm] window must be an integer"),
        (
            "[inspection.labels]\nrestricted_customers = -1\n",
            "[inspection.labels] customer thresholds must be at least 1",
        ),
        (
            "[inspection.labels]\nrestricted_findings = -1\n",
            "[inspection.labels] restricted_findings must not be negative",
        ),
        (
            "[inspection.labels]\nconfidential_customers = 20\n",
            "confidential_customers must not be above restricted_customers",
        ),
        ("[inspection.labels]\nincomplete_label = 'public'\n", "incomplete_label cannot be public"),
        (
            "[inspection.labels.entity_labels]\nloyalty_numbr = 'restricted'\n",
            "[inspection.labels.entity_labels] 'loyalty_numbr' is not an entity",
        ),
        ("[inspection.labels.entity_labels]\nipv4 = 'public'\n", "'ipv4' is not an entity"),
    ],
)
def test_an_unusable_table_is_one_line_naming_the_key(tmp_path: Path, toml: str, message: str):
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ValueError) as raised:
        load_inspection_config(home=tmp_path)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text


def test_entity_labels_name_custom_identifiers(tmp_path: Path):
    (tmp_path / "config.toml").write_text(
        EXAMPLE.replace(
            "[inspection.labels]\nrestricted_customers = 5\n",
            "[inspection.labels]\n[inspection.labels.entity_labels]\n"
            'loyalty_number = "confidential"\n',
        )
    )
    config = load_inspection_config(home=tmp_path)
    assert config.labels.entity_labels["loyalty_number"] is Label.CONFIDENTIAL


def test_other_spillguard_settings_do_not_hide_the_table(tmp_path: Path):
    (tmp_path / "config.toml").write_text(
        '[spillguard]\nlog_level = "INFO"\n\n[inspection]\nphone_region = "IE"\n'
    )
    assert load_inspection_config(home=tmp_path).detectors.phone_region == "IE"


def test_a_named_file_must_exist(tmp_path: Path, monkeypatch):
    with pytest.raises(ValueError, match="does not exist"):
        load_inspection_config(tmp_path / "nope.toml")
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ValueError, match="does not exist"):
        load_inspection_config(home=tmp_path)


def test_a_process_reads_the_table_once(tmp_path: Path):
    (tmp_path / "config.toml").write_text('[inspection]\nphone_region = "IE"\n')
    settings = Settings(home=tmp_path)
    first = inspection_config_for(settings)
    (tmp_path / "config.toml").write_text("[inspection\n")  # broken after the start
    assert inspection_config_for(settings) is first
    assert first.detectors.phone_region == "IE"
