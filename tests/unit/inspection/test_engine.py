"""The scan engine: both backends agree, findings are right, and failures fail closed."""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import count, pairwise

import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillguard.inspection import (
    BackendUnavailable,
    CustomIdentifier,
    DetectorSettings,
    Entity,
    InspectionEngine,
    PatternError,
    ScanStatus,
)
from spillguard.inspection.backends import CHUNK_BYTES, hyperscan_available
from spillguard.inspection.detectors.base import Detector
from spillguard.inspection.engine import fold_text
from tests.factories import identifiers as ids

NO_HYPERSCAN = "hyperscan has no wheel for this platform (x86-64 only); the RE2 backend covers it"
BACKENDS = [
    pytest.param(
        "hyperscan",
        id="hyperscan",
        marks=pytest.mark.skipif(not hyperscan_available(), reason=NO_HYPERSCAN),
    ),
    pytest.param("re2", id="re2"),
]
needs_hyperscan = pytest.mark.skipif(not hyperscan_available(), reason=NO_HYPERSCAN)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest) -> InspectionEngine:
    return InspectionEngine(backend=request.param, timeout=None)


@pytest.fixture(scope="module")
def both() -> tuple[InspectionEngine, InspectionEngine]:
    if not hyperscan_available():
        pytest.skip(NO_HYPERSCAN)
    return InspectionEngine(backend="hyperscan"), InspectionEngine(backend="re2")


def uk_paragraph(seed: int) -> tuple[str, set[tuple[str, str]]]:
    """A customer-service note with planted identifiers, and what should be found."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    mobile = ids.drama_mobile(rng)
    landline = f"020 7946 0{rng.randrange(1000):03d}"
    email = fake.email()
    postcode = fake.postcode()
    card = fake.credit_card_number(card_type="mastercard")
    iban = fake.iban()
    nino = ids.nino(rng)
    nhs = ids.nhs_number(rng)
    born = fake.date_of_birth(minimum_age=18, maximum_age=90)
    ip = fake.ipv4_public()
    sort_code, account = ids.sort_code(rng), ids.account_number(rng)
    text = (
        f"Dear {fake.name()},\n\n{fake.sentence()} Your mobile {mobile} and home line "
        f"{landline} are on file, as is {email}. We will write to {fake.street_address()}, "
        f"{fake.city()} {postcode}. {fake.paragraph()} The card {ids.grouped(card)} was "
        f"charged £{rng.randrange(5, 500)}.{rng.randrange(10, 99)} on order "
        f"ORD-{rng.randrange(10**6):06d}. Refunds go to IBAN {ids.grouped(iban)} (sort code "
        f"{sort_code}, account {account}). NI number {nino}; NHS number {nhs}; date of birth "
        f"{born:%d/%m/%Y}. Last login from {ip} at {fake.time()}. {fake.paragraph()}\n"
    )
    expected = {
        (Entity.PHONE, "+44" + mobile.replace(" ", "")[1:]),
        (Entity.PHONE, "+44" + landline.replace(" ", "")[1:]),
        (Entity.EMAIL, email.lower()),
        (Entity.POSTCODE, postcode),
        (Entity.PAYMENT_CARD, card),
        (Entity.IBAN, iban),
        (Entity.UK_BANK_ACCOUNT, f"{sort_code} {account}"),
        (Entity.NINO, nino.replace(" ", "")),
        (Entity.NHS_NUMBER, nhs.replace(" ", "")),
        (Entity.DATE_OF_BIRTH, born.isoformat()),
        (Entity.IP_ADDRESS, ip),
    }
    return text, {(str(entity), value) for entity, value in expected}


def assert_well_formed(engine: InspectionEngine, text: str, result) -> None:
    """Spans lie in the text and the text at each span normalises to the value."""
    folded = fold_text(text)
    assert len(folded) == len(text)
    by_name = {d.name: d for d in engine.detectors}
    for finding in result.findings:
        assert 0 <= finding.start < finding.end <= len(text)
        assert by_name[finding.detector].validate(folded[finding.start : finding.end]) == (
            finding.value
        )
        assert finding.entity == by_name[finding.detector].entity
        assert 0.0 < finding.confidence <= 1.0
    spans = sorted((f.start, f.end) for f in result.findings)
    assert all(a_end <= b_start for (_s, a_end), (b_start, _e) in pairwise(spans))


# --- findings ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_uk_paragraph_yields_exactly_the_planted_identifiers(engine, seed):
    text, expected = uk_paragraph(seed)
    result = engine.scan_text(text)
    assert result.status is ScanStatus.FINDINGS
    assert {(f.entity, f.value) for f in result.findings} == expected
    assert_well_formed(engine, text, result)
    assert result.counts()[Entity.PHONE] == 2


def test_a_text_without_identifiers_is_clean(engine):
    fake = Faker("en_GB")
    fake.seed_instance(1)
    result = engine.scan_text(" ".join(fake.paragraphs(5)))
    assert result.status is ScanStatus.CLEAN
    assert result.inspected and result.findings == () and result.reason is None


def test_empty_text_is_clean(engine):
    assert engine.scan_text("").status is ScanStatus.CLEAN


def test_offsets_are_characters_not_bytes(engine):
    text = "😀 Émilie — “emilie@example.fr”, ☎ 07700 900123, café 4111 1111 1111 1111"
    result = engine.scan_text(text)
    assert [text[f.start : f.end] for f in result.findings] == [
        "emilie@example.fr",
        "07700 900123",
        "4111 1111 1111 1111",
    ]


FULLWIDTH_DIGITS = str.maketrans({str(d): chr(0xFF10 + d) for d in range(10)})


def test_look_alike_spaces_dashes_and_digits_are_folded(engine):
    wide = "07700 900123".translate(FULLWIDTH_DIGITS)
    text = f"Call {wide} or 07700\u00a0900456; sort code 12\u201334\u201356 acct 12345678"
    result = engine.scan_text(text)
    assert [(f.entity, f.value, text[f.start : f.end]) for f in result.findings] == [
        (Entity.PHONE, "+447700900123", wide),
        (Entity.PHONE, "+447700900456", "07700\u00a0900456"),
        (Entity.UK_BANK_ACCOUNT, "12-34-56 12345678", "12\u201334\u201356 acct 12345678"),
    ]


def test_lone_surrogates_do_not_break_the_scan(engine):
    text = "\udce9 bad byte then 07700 900123"
    result = engine.scan_text(text)
    assert [f.value for f in result.findings] == ["+447700900123"]


def test_a_match_across_the_scan_chunk_border_is_found(engine):
    phone = "07700 900123"
    padding = "x " * ((CHUNK_BYTES - 6) // 2)
    text = padding + phone + " end"
    result = engine.scan_text(text)
    [finding] = result.findings
    assert finding.start == len(padding)
    assert finding.start < CHUNK_BYTES < finding.end


def test_overlapping_findings_keep_the_more_confident_longer_one(engine):
    text = "reply to 07700900123@sms.example.com"
    result = engine.scan_text(text)
    assert [(f.entity, text[f.start : f.end]) for f in result.findings] == [
        (Entity.EMAIL, "07700900123@sms.example.com")
    ]


def test_min_confidence_drops_weaker_findings():
    strict = InspectionEngine(min_confidence=0.8)
    assert strict.scan_text("from 192.168.1.25").findings == ()
    assert [f.entity for f in strict.scan_text("client IP 192.168.1.25").findings] == [
        Entity.IP_ADDRESS
    ]


def test_findings_show_masked_values_and_hide_the_plaintext(engine):
    result = engine.scan_text("Mobile 07700 900021, card 4242 4242 4242 4242")
    phone, card = result.findings
    assert phone.masked == "07700 9•••21"
    assert card.masked == "•••• •••• •••• 4242"
    for finding in result.findings:
        assert finding.value not in repr(finding)
        assert "value" not in finding.public()
        assert finding.public()["masked"] == finding.masked
    assert "900021" not in repr(result)


def test_engine_is_safe_to_share_between_threads(engine):
    texts = [uk_paragraph(seed)[0] for seed in range(12)] * 3
    expected = [engine.scan_text(t).findings for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: engine.scan_text(t).findings, texts))
    assert got == expected


# --- both backends agree -------------------------------------------------------------


def parity_corpus() -> list[str]:
    rng = random.Random(99)
    texts = [uk_paragraph(seed)[0] for seed in range(10, 20)]
    texts += ids.HARD_NEGATIVES
    cards = [ids.luhn_number(rng, rng.choice(["4", "51", "9"]), 16) for _ in range(200)]
    texts.append(" ".join(ids.grouped(card, rng.randint(3, 5)) for card in cards))
    texts.append("1234 5678 9012 3456 78 9012 3456 7890 1234 0 07700 900123 45 4111 1111")
    rows = (f"{i},{ids.drama_mobile(rng)},{ids.nhs_number(rng, spaced=False)}" for i in range(300))
    texts.append("\n".join(rows))
    return texts


def test_both_backends_give_the_same_findings(both):
    hyperscan, re2 = both
    assert (hyperscan.backend, re2.backend) == ("hyperscan", "re2")
    for text in parity_corpus():
        assert hyperscan.scan_text(text).findings == re2.scan_text(text).findings


NOISY = st.text(
    alphabet=st.sampled_from(list("0123456789 -+()@.:/\n,#_aAbBcCdDeEfFgGLSWXZé€\u00a0")),
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(NOISY, st.text(max_size=300)))
def test_backends_agree_on_arbitrary_text(both, text):
    hyperscan, re2 = both
    assert hyperscan.scan_text(text).findings == re2.scan_text(text).findings


# --- properties ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(NOISY, st.text(max_size=400)))
def test_any_text_is_inspected_and_findings_are_well_formed(engine, text):
    result = engine.scan_text(text)
    assert result.status in (ScanStatus.CLEAN, ScanStatus.FINDINGS)
    assert_well_formed(engine, text, result)


PLANTED = st.sampled_from(
    [
        (Entity.PHONE, "07700 900123", "+447700900123"),
        (Entity.EMAIL, "jane.doe@example.co.uk", "jane.doe@example.co.uk"),
        (Entity.POSTCODE, "SW1A 1AA", "SW1A 1AA"),
        (Entity.PAYMENT_CARD, "4111 1111 1111 1111", "4111111111111111"),
        (Entity.IBAN, "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
        (Entity.NINO, "AB 12 34 56 C", "AB123456C"),
        (Entity.NHS_NUMBER, "943 476 5919", "9434765919"),
    ]
)
PROSE = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz ,;!?\n")), max_size=80)


@settings(max_examples=100, deadline=None)
@given(before=PROSE, planted=PLANTED, after=PROSE)
def test_an_identifier_in_any_prose_is_found_where_it_is(engine, before, planted, after):
    entity, written, value = planted
    text = f"{before} {written} {after}"
    result = engine.scan_text(text)
    assert [(f.entity, f.value, f.start) for f in result.findings] == [
        (entity, value, len(before) + 1)
    ]


# --- fail closed ---------------------------------------------------------------------


def test_zero_deadline_is_uninspected_never_clean(engine):
    result = engine.scan_text("nothing to see here", timeout=0)
    assert result.status is ScanStatus.UNINSPECTED
    assert not result.inspected
    assert result.reason is not None and result.reason.startswith("timeout")
    assert result.findings == ()


def test_a_tiny_deadline_on_a_large_text_is_uninspected(engine):
    text = uk_paragraph(0)[0] * 2000
    result = engine.scan_text(text, timeout=1e-6)
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason.startswith("timeout")


@pytest.mark.parametrize("backend", BACKENDS)
def test_deadline_passing_mid_scan_is_uninspected(backend):
    text = "\n".join(f"row {i}: user{i}@example.com" for i in range(5000))
    ticks = count()
    # A clock that moves one second each time it is read, so "time" is the number of
    # checks made: measure a full scan, then allow only half of it.
    clock = lambda: float(next(ticks))  # noqa: E731
    full = InspectionEngine(backend=backend, timeout=1e9, clock=clock)
    before = next(ticks)
    assert full.scan_text(text).status is ScanStatus.FINDINGS
    checks = next(ticks) - before - 1
    assert checks > 4  # the deadline is looked at during the scan, not only around it
    half = InspectionEngine(backend=backend, timeout=checks // 2, clock=clock)
    result = half.scan_text(text)
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason == f"timeout: not finished within {checks // 2} s"
    assert result.findings == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_failure_is_uninspected(backend, monkeypatch):
    engine = InspectionEngine(backend=backend)

    def broken(*_args, **_kwargs):
        raise RuntimeError("scratch space corrupted")

    monkeypatch.setattr(engine._backend, "scan", broken)
    result = engine.scan_text("07700 900123")
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason == "engine error: RuntimeError"


@pytest.mark.parametrize("backend", BACKENDS)
def test_validator_failure_is_uninspected_and_does_not_leak_the_text(backend):
    def explode(candidate: str) -> str | None:
        raise ValueError(f"cannot handle {candidate}")

    detector = Detector(name="fragile", entity="fragile", pattern=r"\b\d{6}\b", validate=explode)
    engine = InspectionEngine([detector], backend=backend)
    result = engine.scan_text("secret 424242")
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason == "engine error: ValueError"
    assert "424242" not in repr(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_many_candidates_is_uninspected(backend):
    engine = InspectionEngine(backend=backend, max_candidates=10)
    text = " ".join(f"user{i}@example.com" for i in range(50))
    result = engine.scan_text(text)
    assert result.status is ScanStatus.UNINSPECTED
    assert result.reason == "too many candidates: more than 10"
    assert InspectionEngine(backend=backend).scan_text(text).counts() == {Entity.EMAIL: 50}


# --- backend selection ---------------------------------------------------------------


@needs_hyperscan
def test_auto_prefers_hyperscan():
    engine = InspectionEngine()
    assert engine.backend == "hyperscan" and engine.fallback_reason is None


@needs_hyperscan
def test_auto_falls_back_to_re2_for_a_pattern_hyperscan_refuses():
    # Bounded repeats this wide are too large for hyperscan's start-of-match tracking.
    # A declaration in the config file refuses such a pattern (tests/unit/inspection/
    # test_config.py); the fallback still covers one made in code without validation.
    wide = CustomIdentifier.model_construct(
        name="wide_id", pattern=r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,255}\.[A-Za-z]{2,24}"
    )
    settings_ = DetectorSettings(disabled=frozenset({"email"}), custom_identifiers=(wide,))
    engine = InspectionEngine(settings=settings_)
    assert engine.backend == "re2"
    assert engine.fallback_reason is not None and "wide_id" in engine.fallback_reason
    assert [f.entity for f in engine.scan_text("x a@b.example y").findings] == ["wide_id"]
    with pytest.raises(PatternError, match="hyperscan"):
        InspectionEngine(settings=settings_, backend="hyperscan")


def test_auto_uses_re2_when_hyperscan_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperscan", None)
    engine = InspectionEngine()
    assert engine.backend == "re2"
    assert engine.fallback_reason == "hyperscan is not installed"
    assert [f.value for f in engine.scan_text("07700 900123").findings] == ["+447700900123"]
    with pytest.raises(BackendUnavailable):
        InspectionEngine(backend="hyperscan")


def test_unknown_backend_and_empty_or_duplicate_detectors_are_refused():
    with pytest.raises(ValueError, match="unknown scan backend"):
        InspectionEngine(backend="pcre")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        InspectionEngine([])
    detector = InspectionEngine().detectors[0]
    with pytest.raises(ValueError, match="unique"):
        InspectionEngine([detector, detector])
