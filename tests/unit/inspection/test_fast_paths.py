"""The fast paths of the engine give the answers of the slow ones they stand in for.

Phone numbers read against the +44 numbering plan instead of libphonenumber's parser,
IBANs checked with a per-country rule cache instead of python-stdnum's registry walk,
hyperscan regions taken as they are instead of re-searched by RE2, masking done when a
finding is shown rather than when it is found, and tables laid out with their headers.
Then: context words found once per dense text (``inspection.context``) instead of per
candidate window, the engine's inlined candidate loop instead of ``_confirm``, ranked
tuples instead of findings until overlaps are resolved, and the card, NHS and Luhn
checks without generic helpers.
"""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn

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


# --- per-text context index, the engine's inlined loop, validators ---------------------

_CONTEXT_PIECES = [
    "phone",
    "Phone Number",
    "tel",
    "telephone",
    "mob",
    "mobile",
    "e-mail",
    "email",
    "date of birth",
    "date_of_birth",
    "DOB",
    "born",
    "stubborn",
    "sort code",
    "sort-code",
    "a/c",
    "NHS",
    "nhs no",
    "iban",
    "card",
    "xphone",
    "phonex",
    "07700 900123",
    "4111 1111 1111 1111",
    "12-34-56",
    ": ",
    "\t",
    "\n",
    " ",
    "-",
    "_",
    "/",
    "a",
    "9",
    "é",
]


def _reference_has_context(detector, text: str, low: int, high: int) -> bool:
    """Detector.has_context's window search, for any window."""
    window = text[max(0, low) : high]
    return detector._context_re is not None and detector._context_re.search(window) is not None


def _custom_detector():
    from spillguard.inspection.detectors import Detector

    return Detector(
        name="loyalty",
        entity="loyalty_number",
        pattern=r"\bLC\d{6}\b",
        validate=lambda candidate: candidate,
        context_words=("loyalty card", "member no", "rewards", "club-card"),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.sampled_from(_CONTEXT_PIECES), min_size=1, max_size=40),
    windows=st.lists(st.tuples(st.integers(-60, 400), st.integers(1, 120)), max_size=25),
)
def test_context_index_answers_as_the_window_search_does(pieces, windows):
    from spillguard.inspection.context import ContextIndex, ContextTable, context_words
    from spillguard.inspection.detectors import build_detectors

    detectors = (*build_detectors(), _custom_detector())
    prepared = [context_words(d.context_words) for d in detectors]
    text = "".join(pieces)
    if not text.isascii():
        text = text.encode("ascii", "replace").decode()
    index = ContextIndex(text.lower(), ContextTable(prepared))
    for slot, detector in enumerate(detectors):
        for low, width in windows:
            if low + width <= 0:  # the engine's windows end after the candidate
                continue
            answer = index.has_context(slot, low, low + width)
            if answer is not None:
                assert answer is _reference_has_context(detector, text, low, low + width), (
                    detector.name,
                    text,
                    low,
                    width,
                )


def test_context_index_decides_most_windows_of_a_dense_export_itself():
    from spillguard.inspection.context import ContextIndex, ContextTable, context_words
    from spillguard.inspection.detectors import build_detectors

    detectors = build_detectors()
    table = ContextTable([context_words(d.context_words) for d in detectors])
    decided = undecided = 0
    for doc in generate_documents("csv", 4, seed=12):
        text = table_text(doc.rows).text
        index = ContextIndex(text.lower(), table)
        for slot, detector in enumerate(detectors):
            for start in range(0, len(text) - 12, 7):
                low, high = start - detector.context_before, start + 12 + detector.context_after
                answer = index.has_context(slot, low, high)
                if answer is None:
                    undecided += 1
                    continue
                decided += 1
                assert answer is _reference_has_context(detector, text, low, high)
    assert decided > 5 * undecided  # the fast answer is the common one


def test_words_the_index_cannot_prepare_are_left_to_the_window_search():
    from spillguard.inspection.context import context_words

    assert context_words(()) is None
    assert context_words(("no.",)) is None  # does not end with a letter or digit
    assert context_words(("#ref",)) is None
    assert context_words(("née",)) is None  # not ASCII
    words = context_words(("Phone number", "e-mail", "tel"))
    assert words is not None
    assert words.firsts == ("e", "phone", "tel") and words.lasts == ("mail", "number", "tel")


def _slow_engine(**kwargs):
    engine = InspectionEngine(**kwargs)
    engine._plans = tuple(None for _ in engine._plans)  # every candidate through _confirm
    return engine


@pytest.mark.parametrize("min_confidence", [0.0, 0.8])
def test_engine_fast_loop_gives_the_findings_of_confirm(min_confidence):
    fast = InspectionEngine(min_confidence=min_confidence)
    slow = _slow_engine(min_confidence=min_confidence)
    documents = [
        doc
        for kind, count in (
            ("csv", 5),
            ("email", 30),
            ("negative", 20),
            ("sheet", 3),
            ("call_note", 20),
        )
        for doc in generate_documents(kind, count, seed=41)
    ]
    found = 0
    for doc in documents:
        texts = [doc.text] + ([table_text(doc.rows).text] if doc.rows else [])
        for text in texts:
            ours = fast.scan_text(text, timeout=None).findings
            assert ours == slow.scan_text(text, timeout=None).findings, doc.id
            assert [vars(f) for f in ours] == [
                vars(f) for f in slow.scan_text(text, timeout=None).findings
            ]
            found += len(ours)
    assert found > 2000


def test_a_detector_subclass_with_its_own_context_rule_is_honoured():
    from spillguard.inspection.detectors import Detector

    class Always(Detector):
        def has_context(self, text: str, start: int, end: int) -> bool:
            return True

    detector = Always(
        name="ref",
        entity="reference",
        pattern=r"\bREF\d{4}\b",
        validate=lambda c: c,
        context_words=("reference",),
        confidence=0.5,
        context_boost=0.3,
    )
    (finding,) = InspectionEngine([detector]).scan_text("see REF1234 today").findings
    assert finding.context is True and finding.confidence == 0.8


def test_findings_made_by_the_fast_constructor_are_ordinary_findings():
    from spillguard.inspection.engine import Finding, _make_finding

    args = ("phone_number", "phone", 5, 17, 0.9, True, "+447700900123", "GB")
    fast = _make_finding(*args)
    slow = Finding(*args)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert fast.masked == slow.masked and fast.public() == slow.public()
    with pytest.raises(AttributeError):
        fast.start = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(fast)) == slow


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["phone_number", "email_address", "uk_nino"]),
    st.integers(0, 500),
    st.integers(1, 40),
    st.sampled_from([0.5, 0.85, 0.95]),
    st.booleans(),
    st.text(min_size=1, max_size=30),
    st.sampled_from(["GB", "IE"]),
    st.integers(0, 20),
)
def test_findings_are_values_compared_as_the_dataclass_was(
    entity: str,
    start: int,
    width: int,
    confidence: float,
    context: bool,
    value: str,
    region: str,
    count: int,
) -> None:
    """Findings are tuples (made in bulk by C-level maps) that behave as the frozen
    dataclass they replaced: equal and hashed by their fields but the region, never
    equal to a plain tuple, immutable, pickled as findings."""
    from spillguard.inspection.engine import Finding, make_findings

    finding = Finding(entity, "d", start, start + width, confidence, context, value, region)
    other_region = Finding(entity, "d", start, start + width, confidence, context, value, "US")
    assert finding == other_region and hash(finding) == hash(other_region)
    assert (finding != other_region) is False
    assert finding != tuple(finding) and tuple(finding) != finding
    assert finding != Finding(entity, "d", start, start + width + 1, confidence, context, value)
    assert finding.end - finding.start == width and finding.region == region
    with pytest.raises(AttributeError):
        finding.value = "x"  # type: ignore[misc]
    copied = pickle.loads(pickle.dumps(finding))
    assert type(copied) is Finding and copied == finding and copied.region == region
    starts = [start + 50 * i for i in range(count)]
    ends = [s + width for s in starts]
    values = [f"{value}{i}" for i in range(count)]
    made = make_findings(entity, "d", starts, ends, confidence, context, values, region)
    plain = [
        Finding(entity, "d", s, e, confidence, context, v, region)
        for s, e, v in zip(starts, ends, values, strict=True)
    ]
    assert made == plain and all(type(f) is Finding for f in made)
    assert [tuple(f) for f in made] == [tuple(f) for f in plain]
    with pytest.raises(ValueError):
        make_findings(entity, "d", starts + [0] * 8, ends, confidence, context, values, region)


def test_revealing_findings_carry_their_token_and_the_original_fields() -> None:
    from spillguard.inspection.engine import Finding
    from spillguard.inspection.services import _TokenFinding

    original = Finding("phone_number", "phone", 5, 17, 0.9, True, "+447700900123", "GB")
    tokened = _TokenFinding.of(original, "tok-1")
    assert tuple(tokened) == tuple(original) and tokened.masked == "tok-1"
    assert tokened != original and tokened == _TokenFinding.of(original, "tok-1")
    assert tokened != _TokenFinding.of(original, "tok-2")
    assert original.masked == "07700 9\u2022\u2022\u202223"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.5, 0.7, 0.85, 0.9, 0.95]),
            st.integers(0, 80),
            st.integers(1, 20),
            st.integers(0, 3),
        ),
        max_size=30,
    )
)
def test_ranked_overlap_resolution_keeps_what_the_finding_version_keeps(items):
    from spillguard.inspection.engine import Finding, _resolve_overlaps, _resolve_ranked

    findings = [
        (Finding("e", "d", start, start + width, confidence, False, "v"), index)
        for confidence, start, width, index in items
    ]
    ranked = [
        (-f.confidence, f.start - f.end, f.start, index, order, f.end, f.context, f.value)
        for order, (f, index) in enumerate(findings)
    ]
    expected = [(f.start, f.end, f.confidence) for f in _resolve_overlaps(findings)]
    assert [(t[2], t[5], -t[0]) for t in _resolve_ranked(ranked)] == expected


def _reference_card(candidate: str) -> str | None:
    """payment_card.validate as it was before its fast path."""
    from spillguard.inspection.detectors.base import digits_of, single_separator_style
    from spillguard.inspection.detectors.payment_card import SCHEMES

    if not 14 <= len(candidate) - candidate.count(" ") - candidate.count("-") <= 19:
        return None
    if not single_separator_style(candidate):
        return None
    groups = candidate.replace("-", " ").split(" ")
    if len(groups) > 1 and any(not 3 <= len(group) <= 8 for group in groups[:-1]):
        return None
    number = digits_of(candidate)
    scheme = next(
        (
            s
            for s, low, high, lengths in SCHEMES
            if len(number) in lengths and low <= number[: len(low)] <= high
        ),
        None,
    )
    if scheme is None or not (
        number.isdigit() and len(number) >= 2 and stdnum_luhn.is_valid(number)
    ):
        return None
    return number


def _reference_nhs(candidate: str) -> str | None:
    from spillguard.inspection.detectors.base import digits_of

    separators = [ch for ch in candidate if ch in " -"]
    if separators and (len(separators) != 2 or separators[0] != separators[1]):
        return None
    number = digits_of(candidate)
    if len(number) != 10 or len(set(number)) == 1:
        return None
    total = sum(int(d) * w for d, w in zip(number[:-1], range(10, 1, -1), strict=True))
    expected = (11 - total % 11) % 11
    return number if expected != 10 and expected == int(number[-1]) else None


_DIGITISH = st.text(alphabet="0123456789 -x٣", max_size=24)


@settings(max_examples=2000, deadline=None)
@given(_DIGITISH)
def test_card_and_nhs_validators_agree_with_their_reference(candidate):
    from spillguard.inspection.detectors import nhs, payment_card

    assert payment_card.validate(candidate) == _reference_card(candidate)
    assert nhs.validate(candidate) == _reference_nhs(candidate)


def test_card_and_nhs_validators_agree_on_real_and_near_numbers():
    from spillguard.inspection.detectors import nhs, payment_card

    rng = random.Random(6)
    accepted = 0
    for _ in range(3000):
        card = ids.card_number(rng)
        nhs_number = ids.nhs_number(rng)
        for candidate in (card, card[:-1] + rng.choice("0123456789"), card.replace(" ", "-")):
            assert payment_card.validate(candidate) == _reference_card(candidate), candidate
            accepted += payment_card.validate(candidate) is not None
        for candidate in (nhs_number, nhs_number.replace(" ", ""), nhs_number[:-1] + "7"):
            assert nhs.validate(candidate) == _reference_nhs(candidate), candidate
    assert accepted > 3000


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="0123456789", max_size=25) | st.text(max_size=8))
def test_luhn_agrees_with_python_stdnum(value):
    from spillguard.inspection.detectors.checkdigits import luhn

    expected = value.isdigit() and len(value) >= 2 and bool(stdnum_luhn.is_valid(value))
    assert luhn(value) is expected


def _reference_email(candidate: str) -> str | None:
    """email.validate as it was before its character checks became set operations."""
    from spillguard.inspection.detectors.email import _LABEL_CHARS, _LOCAL_CHARS

    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain or len(local) > 64 or len(domain) > 253:
        return None
    if local[0] == "." or local[-1] == "." or ".." in local:
        return None
    if any(ch not in _LOCAL_CHARS for ch in local):
        return None
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return None
    for label in labels:
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return None
        if any(ch not in _LABEL_CHARS for ch in label):
            return None
    if not labels[-1].isalpha():
        return None
    return f"{local.lower()}@{'.'.join(labels)}"


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="aZ09._-+'@é ", max_size=30))
def test_email_validator_agrees_with_its_reference(candidate):
    from spillguard.inspection.detectors.email import validate

    assert validate(candidate) == _reference_email(candidate)
