"""Table rows matched from the inspection's findings (``match_rows(rows, findings)``).

The pattern finds the primary, the hash confirms it: a scan hands ``match_rows`` the
findings it already has, located in their cells, instead of ``match_rows`` reading every
cell again as each primary kind.  On exports whose cells each hold one value the two
ways give the same matches; a primary written inside a longer cell ("Tel: 07700 …") is
found only from the findings.
"""

from __future__ import annotations

import pytest

from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndexBuilder, FieldKind
from spillguard.inspection import InspectionEngine, scan
from spillguard.inspection.corpus import generate_documents, generate_edm_corpus
from spillguard.inspection.corpus.evaluate import customer_rows
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.detectors.custom import CustomIdentifier
from tests.unit.customers.test_edm_tables import _tables

KEY = KeyRing(bytes(range(32)))
LOYALTY = CustomIdentifier(
    name="loyalty_number",
    pattern=r"\bLC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}\b",
    ignore_case=True,
    context_words=("loyalty",),
)


@pytest.fixture(scope="module")
def corpus():
    return generate_edm_corpus(customers=300, unrelated=0, seed=11)


@pytest.fixture(scope="module")
def index(corpus):
    builder = EdmIndexBuilder(KEY)
    builder.add_many(customer_rows(corpus.customers))
    return builder.build()


@pytest.fixture(scope="module")
def engine():
    return InspectionEngine(settings=DetectorSettings(custom_identifiers=(LOYALTY,)))


def _cells(rows):
    return [[c if isinstance(c, str) else "" for c in row] for row in rows]


def test_findings_give_the_matches_of_reading_every_cell(index, corpus, engine):
    matched = 0
    for seed in (3, 5):
        for rows in _tables(corpus, seed):
            found = engine.scan_table(_cells(rows)).in_cells(index.primary_entities)
            result = index.match_rows(rows, found)
            assert result == index.match_rows(rows)
            matched += len(result.records)
    assert matched > 500
    for doc in generate_documents("csv", 10, seed=1000):  # strangers: nobody matches
        found = engine.scan_table(doc.rows).in_cells(index.primary_entities)
        assert index.match_rows(doc.rows, found) == index.match_rows(doc.rows)


def test_loyalty_number_primary_comes_from_the_custom_detector(engine):
    builder = EdmIndexBuilder(KEY)
    builder.add(
        "C-7",
        {FieldKind.NAME: "Rhiannon Price", FieldKind.LOYALTY_NUMBER: "LC 4821-0937-5512"},
    )
    index = builder.build()
    rows = [["Member", "Loyalty card"], ["Rhiannon Price", "lc482109375512"]]
    found = engine.scan_table(rows).in_cells(index.primary_entities)
    assert [f.entity for _r, _c, f in found] == ["loyalty_number"]
    result = index.match_rows(rows, found)
    assert result.customer_ids == ["C-7"]
    assert result.records[0].primary == {FieldKind.LOYALTY_NUMBER}
    # Without the custom detector there is no loyalty finding, so no primary.
    plain = InspectionEngine().scan_table(rows).in_cells(index.primary_entities)
    assert index.match_rows(rows, plain).customer_ids == []


def _one_customer():
    builder = EdmIndexBuilder(KEY)
    builder.add(
        "C-1",
        {
            FieldKind.FIRST_NAME: "Imogen",
            FieldKind.LAST_NAME: "Hartley-Vane",
            FieldKind.PHONE: "07700 900123",
            FieldKind.POSTCODE: "LS1 4AB",
        },
    )
    return builder.build()


def test_a_primary_inside_a_longer_cell_is_found_from_the_findings():
    index = _one_customer()
    rows = [
        ["Surname", "Contact", "Postcode"],
        ["Hartley-Vane", "mobile 07700 900123 (after 6pm)", "ls1 4ab"],
    ]
    found = InspectionEngine().scan_table(rows).in_cells(index.primary_entities)
    result = index.match_rows(rows, found)
    assert result.customer_ids == ["C-1"]
    assert result.records[0].supporting == {FieldKind.LAST_NAME, FieldKind.POSTCODE}
    assert index.match_rows(rows).customer_ids == []  # a cell is read whole without findings


def test_scan_of_a_csv_file_matches_from_its_findings():
    index = _one_customer()
    data = b"Surname,Contact,Postcode\nHartley-Vane,mobile 07700 900123 (after 6pm),LS1 4AB\n"
    report = scan(data, name="contacts.csv", edm_index=index)
    assert report.customer_ids == ["C-1"]


def test_findings_of_other_entities_are_not_primaries():
    index = _one_customer()
    rows = [["Postcode", "Phone"], ["LS1 4AB", "07700 900123"]]
    found = InspectionEngine().scan_table(rows).in_cells()
    entities = {f.entity for _r, _c, f in found}
    assert "uk_postcode" in entities and "phone_number" in entities
    without_phone = [item for item in found if item[2].entity != "phone_number"]
    assert index.match_rows(rows, without_phone).customer_ids == []
    assert index.match_rows(rows, found).customer_ids == ["C-1"]


def test_a_finding_outside_the_table_is_refused():
    index = _one_customer()
    rows = [["Phone"], ["07700 900123"]]
    (row, cell, finding), *_ = InspectionEngine().scan_table(rows).in_cells()
    with pytest.raises(ValueError, match="outside the table"):
        index.match_rows(rows, [(row, cell + 1, finding)])
    with pytest.raises(ValueError, match="outside the table"):
        index.match_rows(rows, [(5, 0, finding)])
