"""The fast paths of the engine give the answers of the slow ones they stand in for.

Phone numbers read against the +44 numbering plan instead of libphonenumber's parser,
IBANs checked with a per-country rule cache instead of python-stdnum's registry walk,
hyperscan regions taken as they are instead of re-searched by RE2, masking done when a
finding is shown rather than when it is found, and tables laid out with their headers.
"""

from __future__ import annotations

import pickle
import random

import pytest
from stdnum import iban as stdnum_iban

from spillguard.inspection import InspectionEngine, mask
from spillguard.inspection.backends import hyperscan_available
from spillguard.inspection.corpus import generate_documents
from spillguard.inspection.corpus import identifiers as ids
from spillguard.inspection.corpus.evaluate import predict_table
from spillguard.inspection.detectors.banking import validate_iban
from spillguard.inspection.detectors.phone import phone_detector
from spillguard.inspection.engine import table_text

NO_HYPERSCAN = "hyperscan has no wheel for this platform (x86-64 only); nothing to compare"


def _phone_shapes(national: str):
    d = national
    yield from (f"0{d}", f"+44{d}", f"0044 {d}", f"+44 (0){d}", f"+44 0{d}", f"00{d}")
    yield from (f"0{d[:4]} {d[4:]}", f"0{d[:3]}-{d[3:6]}-{d[6:]}", f"(0{d[:3]}) {d[3:]}")
    yield from (f"+1 {d}", f"+44 180020{d}", f"0044 (0){d}", f"+44(0) {d[:3]}-{d[3:]}")


@pytest.mark.parametrize("drama", [True, False])
def test_phone_fast_path_agrees_with_libphonenumber(drama):
    fast = phone_detector(accept_drama_numbers=drama).validate
    slow = phone_detector(accept_drama_numbers=drama, fast_path=False).validate
    rng = random.Random(4)
    prefixes = ["7700900", "2079460", "1632960", "7", "20", "800", "845", "871", "56", "1534"]
    checked = accepted = 0
    for _ in range(1200):
        length = rng.randint(1, 14)
        national = "".join(rng.choice("0123456789") for _ in range(length))
        if rng.random() < 0.5:
            prefix = rng.choice(prefixes)
            national = prefix + "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))
        for candidate in _phone_shapes(national):
            expected = slow(candidate)
            assert fast(candidate) == expected, candidate
            checked += 1
            accepted += expected is not None
    assert checked > 15_000 and accepted > 1_000  # both answers well represented


def test_iban_validator_agrees_with_stdnum():
    rng = random.Random(5)
    countries = ["GB", "DE", "ES", "FR", "NL", "IE", "NO", "MT", "IT", "BE", "PL", "XX", "ZZ"]
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    valid = 0
    for _ in range(3000):
        good = ids.iban(rng).replace(" ", "")
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 32)))
        country = rng.choice(countries)
        checked = country + stdnum_iban.calc_check_digits(country + "00" + body) + body
        for candidate in (good, good[:-1] + rng.choice("0123456789"), checked, good[:10]):
            expected = candidate if stdnum_iban.is_valid(candidate) else None
            assert validate_iban(candidate) == expected, candidate
            valid += expected is not None
    assert valid > 3000


@pytest.mark.skipif(not hyperscan_available(), reason=NO_HYPERSCAN)
def test_backends_agree_on_dense_exports_and_prose():
    hyperscan, re2 = InspectionEngine(backend="hyperscan"), InspectionEngine(backend="re2")
    documents = generate_documents("csv", 6, seed=31) + generate_documents("prose", 6, seed=31)
    found = 0
    for doc in documents:
        ours = hyperscan.scan_text(doc.text).findings
        assert ours == re2.scan_text(doc.text).findings, doc.id
        found += len(ours)
    assert found > 500


def test_masked_value_is_computed_on_first_use_and_kept():
    engine = InspectionEngine()
    text = "Call 07700 900123 or card 4111 1111 1111 1111, mail jo.bloggs@example.org"
    findings = engine.scan_text(text).findings
    assert {f.entity for f in findings} == {"phone_number", "payment_card", "email_address"}
    for finding in findings:
        assert "masked" not in vars(finding)  # nothing masked until asked for
        assert finding.masked == mask(finding.value, finding.entity, region="GB")
        assert vars(finding)["masked"] == finding.masked
        assert finding.value not in repr(finding) and finding.masked in repr(finding)
        assert finding.public()["masked"] == finding.masked
        copy = pickle.loads(pickle.dumps(finding))
        assert copy == finding and copy.masked == finding.masked
    phone = next(f for f in findings if f.entity == "phone_number")
    assert phone.masked == "07700 9•••23"


def test_masking_follows_the_engine_region():
    from spillguard.inspection import DetectorSettings

    engine = InspectionEngine(settings=DetectorSettings(phone_region="US"))
    finding = engine.scan_text("call +44 7700 900123 today").findings[0]
    assert finding.region == "US"
    assert finding.masked == mask(finding.value, finding.entity, region="US")
    assert finding.masked.startswith("+44")


def test_table_text_puts_each_header_before_its_cells_and_maps_back():
    rows = [["Name", "NHS No", "DOB"], ["Ann", "9434765919", "01/02/1980"]]
    table = table_text(rows)
    assert table.text == "Name\tNHS No\tDOB\nName: Ann\tNHS No: 9434765919\tDOB: 01/02/1980\n"
    at = table.text.index("9434765919")
    assert table.locate(at) == (1, 1, 0, 10)
    assert table.locate(at + 9) == (1, 1, 9, 10)
    assert table.locate(table.text.index("NHS No: 9")) is None  # inside a header label
    # A first row with digits is data, not a header: no labels.
    assert table_text([["1", "2"], ["3", "4"]]).text == "1\t2\n3\t4\n"


def test_table_cells_far_below_the_header_keep_its_context():
    rng = random.Random(8)
    header = ["Customer", "NHS No", "Date of birth", "Sort code", "Account"]
    rows = [header]
    for i in range(40):
        account = f"{rng.randrange(10**8):08d}"
        rows.append([f"CUST-{i:04d}", ids.nhs_number(rng), "12/03/1981", "20-00-00", account])
    text = "".join(",".join(row) + "\n" for row in rows)
    engine = InspectionEngine()
    spans = predict_table(engine, text, rows)
    counts = {e: sum(s.entity == e for s in spans) for e in {s.entity for s in spans}}
    assert counts == {"nhs_number": 40, "date_of_birth": 40, "uk_bank_account": 40}
    last = rows[-1]
    bank = [s for s in spans if s.entity == "uk_bank_account"][-1]
    assert text[bank.start : bank.end] == f"{last[3]},{last[4]}"
    nhs = [s for s in spans if s.entity == "nhs_number"][-1]
    assert text[nhs.start : nhs.end] == last[1]
    # Scanned as plain text, the rows far below the header have no context at all.
    far = {f.entity for f in engine.scan_text(text).findings if f.start > len(text) - 200}
    assert not far & {"nhs_number", "date_of_birth", "uk_bank_account"}
