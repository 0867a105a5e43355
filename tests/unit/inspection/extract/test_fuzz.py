"""Fuzz: random bytes and mutated valid files never raise and never break a limit.

Any input that once crashed ``extract`` is kept in tests/data/extract-regressions/
and replayed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillguard.inspection.extract import Extraction, ExtractLimits, extract
from tests.unit.inspection.extract import builders

REGRESSIONS = Path(__file__).parents[3] / "data" / "extract-regressions"
LIMITS = ExtractLimits(
    max_depth=3,
    max_total_bytes=2 * 1024 * 1024,
    max_member_bytes=1024 * 1024,
    max_entries=200,
    max_part_chars=20_000,
    time_budget=10.0,
)

SEEDS = {
    "xlsx": builders.xlsx({"S": [["name", "email"], ["Jo Bloggs", "jo@example.org"]]}),
    "docx": builders.docx_file(["Dear Jo"], [["email"], ["jo@example.org"]]),
    "pdf": builders.pdf(["Email jo@example.org"]),
    "zip": builders.zip_file({"a.txt": b"jo@example.org", "b.csv": b"a,b\n1,2\n"}),
    "ods": builders.ods({"S": [["name"], ["Jo"]]}),
    "eml": builders.email_message(
        "a@example.org", "b@example.org", "hi", attachments={"x.csv": b"a,b\n1,2\n"}
    ).as_bytes(),
}


def _check(result: Extraction) -> None:
    assert isinstance(result, Extraction)
    for part in result.parts:
        assert len(part.text) <= LIMITS.max_part_chars * 2 + 1  # table text adds separators
        if part.rows is not None:
            assert sum(len(c) for row in part.rows for c in row) <= LIMITS.max_part_chars
    for entry in result.unscannable:
        assert entry.reason.startswith("unscannable: ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), name=st.sampled_from([None, "x.txt", "x.csv", "x.json"]))
def test_random_bytes_never_raise(data, name):
    _check(extract(data, name, LIMITS))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        min_size=1,
        max_size=8,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_valid_files_never_raise(kind, flips, cut):
    data = bytearray(SEEDS[kind])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _check(extract(bytes(data), f"fuzz.{kind}", LIMITS))


def _regressions() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.name)
def test_regression_inputs_never_raise(path):
    _check(extract(path.read_bytes(), path.name, LIMITS))


def test_regression_corpus_is_present():
    assert _regressions(), f"no regression inputs in {REGRESSIONS}"
