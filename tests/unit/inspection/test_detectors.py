"""Every detector: true positives, near misses and hard negatives, through the real engine."""

from __future__ import annotations

import ipaddress
import random
from datetime import date

import pytest
from faker import Faker
from pydantic import ValidationError
from stdnum import luhn as stdnum_luhn
from stdnum import verhoeff as stdnum_verhoeff
from stdnum.iso7064 import mod_97_10

from spillguard.inspection import (
    CustomIdentifier,
    DetectorSettings,
    Entity,
    InspectionEngine,
    ScanStatus,
    build_detectors,
)
from spillguard.inspection.detectors import BUILT_IN, CHECK_DIGITS
from spillguard.inspection.detectors.base import context_pattern, is_glued
from spillguard.inspection.detectors.checkdigits import mod11
from spillguard.inspection.detectors.custom import CheckDigitName
from spillguard.inspection.detectors.dob import parse_birth_date
from spillguard.inspection.detectors.nino import valid_prefix
from tests.factories import identifiers as ids


@pytest.fixture(scope="module")
def engine() -> InspectionEngine:
    return InspectionEngine(timeout=None)


def found(engine: InspectionEngine, text: str) -> list[tuple[str, str, str]]:
    """(entity, normalised value, text at the span) of every finding."""
    result = engine.scan_text(text)
    assert result.inspected, result.reason
    return [(f.entity, f.value, text[f.start : f.end]) for f in result.findings]


def values(engine: InspectionEngine, text: str, entity: str) -> list[str]:
    return [value for kind, value, _span in found(engine, text) if kind == entity]


# --- phone numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("Call me on 07700 900123 tonight", "+447700900123"),
        ("mobile: +44 7700 900123", "+447700900123"),
        ("office +44 (0)20 7946 0958", "+442079460958"),
        ("from abroad dial 0044 20 7946 0958", "+442079460958"),
        ("switchboard (020) 7946 0958", "+442079460958"),
        ("fax 020-7946-0958", "+442079460958"),
        ("Manchester 0161 496 0000", "+441614960000"),
        ("real mobile range 07911 123456", "+447911123456"),
        ("freephone 0800 123 4567", "+448001234567"),
        ("US office +1 415 555 2671", "+14155552671"),
    ],
)
def test_phone_numbers_are_found_and_normalised_to_e164(engine, text, e164):
    assert values(engine, text, Entity.PHONE) == [e164]


@pytest.mark.parametrize(
    "text",
    [
        "ref 0123456789",  # too short for any UK number
        "call 07700 90012",  # a digit missing
        "id 2024011510",  # no trunk prefix: a national number must start with 0
        "code +44 1234",  # far too short
        "premium 09 123 456",  # not a number plan entry
    ],
)
def test_phone_near_misses_are_not_reported(engine, text):
    assert values(engine, text, Entity.PHONE) == []


def test_phone_context_word_raises_confidence(engine):
    bare = engine.scan_text("07700 900123").findings[0]
    near = engine.scan_text("Mobile: 07700 900123").findings[0]
    assert near.context and not bare.context
    assert near.confidence > bare.confidence


def test_phone_region_is_configurable():
    us = InspectionEngine(
        settings=DetectorSettings(phone_region="US", phone_requires_trunk_prefix=False)
    )
    gb = InspectionEngine()
    text = "Call (415) 555-2671 today"
    assert [f.value for f in us.scan_text(text).findings] == ["+14155552671"]
    assert gb.scan_text(text).findings == ()


def test_unknown_phone_region_is_a_configuration_error():
    with pytest.raises(ValidationError, match="unknown phone region"):
        DetectorSettings(phone_region="XX")


def test_drama_numbers_can_be_switched_off():
    strict = InspectionEngine(settings=DetectorSettings(phone_accept_drama_numbers=False))
    assert strict.scan_text("07700 900123").findings == ()
    assert [f.value for f in strict.scan_text("07911 123456").findings] == ["+447911123456"]


# --- e-mail --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "span"),
    [
        (
            "Write to Jane.Doe+news@Example.CO.UK today",
            "jane.doe+news@example.co.uk",
            "Jane.Doe+news@Example.CO.UK",
        ),
        ("<mailto:bob@example.org>", "bob@example.org", "bob@example.org"),
        ("(write to a.b@example.com.)", "a.b@example.com", "a.b@example.com"),
        ("o'brien@example.ie", "o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_email_addresses_are_found_with_exact_spans(engine, text, address, span):
    assert found(engine, text) == [(Entity.EMAIL, address, span)]


@pytest.mark.parametrize(
    "text",
    [
        "jane..doe@example.com",
        "jane@example",
        "jane@-example.com",
        "@example.com",
        "jane@example.c0m",
        "jane@exa_mple.com",
        "user." + "x" * 70 + "@example.com",
    ],
)
def test_malformed_email_addresses_are_not_reported(engine, text):
    assert values(engine, text, Entity.EMAIL) == []


# --- UK postcode ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "postcode"),
    [
        ("SW1A 1AA", "SW1A 1AA"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("W1A 0AX", "W1A 0AX"),
        ("M1 1AE", "M1 1AE"),
        ("B33 8TH", "B33 8TH"),
        ("CR2 6XH", "CR2 6XH"),
        ("DN55 1PT", "DN55 1PT"),
        ("SW1A1AA", "SW1A 1AA"),
        ("GIR 0AA", "GIR 0AA"),
        ("ASCN 1ZZ", "ASCN 1ZZ"),
    ],
)
def test_uk_postcodes_are_found_in_canonical_form(engine, text, postcode):
    assert values(engine, f"Address: 1 High St, London {text}.", Entity.POSTCODE) == [postcode]


@pytest.mark.parametrize(
    "text",
    [
        "QA1 1AA",  # Q never first
        "VA1 1AA",  # V never first
        "AI1 1AA",  # I never second
        "AZ1 1AA",  # Z never second
        "W1Z 1AA",  # Z not allowed third in A9A
        "EC1C 1BB",  # C not allowed fourth in AA9A
        "SW1A 1CA",  # C never in the inward code
        "SW1A 1AK",  # K never in the inward code
        "GIR 1AA",  # GIR only with 0AA
        "ASCN 2ZZ",  # territories only with 1ZZ
    ],
)
def test_postcodes_breaking_format_rules_are_not_reported(engine, text):
    assert values(engine, f"at {text} ok", Entity.POSTCODE) == []


def test_faker_postcodes_are_found():
    fake = Faker("en_GB")
    fake.seed_instance(7)
    engine = InspectionEngine()
    for _ in range(50):
        postcode = fake.postcode()
        assert values(engine, f"Send it to {postcode} please", Entity.POSTCODE) == [postcode]


# --- payment cards -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("Visa 4111 1111 1111 1111", "4111111111111111"),
        ("visa 4111-1111-1111-1111", "4111111111111111"),
        ("mastercard 5555555555554444", "5555555555554444"),
        ("2-series 2223 0031 2200 3222", "2223003122003222"),
        ("amex 3782 822463 10005", "378282246310005"),
        ("discover 6011 1111 1111 1117", "6011111111111117"),
        ("jcb 3530 1113 3330 0000", "3530111333300000"),
        ("maestro 6759 6498 2643 8453", "6759649826438453"),
        ("unionpay 6200 0000 0000 0005", "6200000000000005"),
        ("card 4111 1111 1111 1111 cvv 123", "4111111111111111"),
        ("card 4111 1111 1111 1111 123", "4111111111111111"),
    ],
)
def test_payment_cards_are_found(engine, text, digits):
    assert values(engine, text, Entity.PAYMENT_CARD) == [digits]


@pytest.mark.parametrize(
    ("prefix", "length"),
    [
        ("4", 16),
        ("4", 19),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("2720", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("65", 19),
        ("3528", 16),
        ("3589", 19),
        ("62", 17),
        ("6759", 18),
        ("36", 14),
    ],
)
def test_generated_cards_of_every_scheme_are_found(engine, prefix, length):
    rng = random.Random(f"{prefix}-{length}")
    for _ in range(5):
        number = ids.luhn_number(rng, prefix, length)
        assert values(engine, f"PAN: {ids.grouped(number)}", Entity.PAYMENT_CARD) == [number]


@pytest.mark.parametrize(
    ("prefix", "length", "why"),
    [
        ("4", 13, "13-digit Visa is no longer issued"),
        ("2220", 16, "just below the Mastercard 2-series"),
        ("2721", 16, "just above the Mastercard 2-series"),
        ("34", 16, "Amex is 15 digits"),
        ("51", 15, "Mastercard is 16 digits"),
        ("1", 16, "no scheme issues 1"),
        ("9", 16, "no scheme issues 9"),
        ("0", 16, "no scheme issues 0"),
        ("3590", 16, "past the JCB range"),
        ("6759", 12, "short Maestro looks like a parcel number"),
    ],
)
def test_luhn_valid_numbers_of_the_wrong_iin_or_length_are_not_cards(engine, prefix, length, why):
    rng = random.Random(f"{prefix}-{length}")
    for _ in range(5):
        number = ids.luhn_number(rng, prefix, length)
        assert stdnum_luhn.is_valid(number)
        assert values(engine, f"ref {number}", Entity.PAYMENT_CARD) == [], why


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111 1111-1111 1111",  # mixed separators
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",  # not printed like a card
        "SKU-4111111111111111",  # part of a product code
    ],
)
def test_card_near_misses_are_not_reported(engine, text):
    assert values(engine, text, Entity.PAYMENT_CARD) == []


# --- IBAN and UK bank account --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        ("IBAN GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"),
        ("NO93 8601 1117 947 ok", "NO9386011117947"),
    ],
)
def test_ibans_are_found_compact(engine, text, iban):
    assert values(engine, text, Entity.IBAN) == [iban]


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",  # mod 97 fails
        "GB82WEST123456987654",  # wrong length for GB
        "XX82WEST12345698765432",  # no such country
    ],
)
def test_invalid_ibans_are_not_reported(engine, text):
    assert values(engine, text, Entity.IBAN) == []


def test_faker_ibans_are_found(engine):
    fake = Faker("en_GB")
    fake.seed_instance(11)
    for _ in range(20):
        iban = fake.iban()
        assert values(engine, f"Pay to {ids.grouped(iban)} by Friday", Entity.IBAN) == [iban]


@pytest.mark.parametrize(
    "template",
    [
        "Sort code: {sc} Account number: {acc}",
        "Please pay sort code {sc}, account {acc}.",
        "Account no. {acc} (sort code {sc})",
        "bank details {sc} / {acc}",
    ],
)
def test_sort_code_with_account_number_is_found_beside_a_banking_word(engine, template):
    rng = random.Random(template)
    sc, acc = ids.sort_code(rng), ids.account_number(rng)
    assert values(engine, template.format(sc=sc, acc=acc), Entity.UK_BANK_ACCOUNT) == [
        f"{sc} {acc}"
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Ref 12-34-56 then 12345678", "no banking word: a sort code needs context"),
        ("Sort code 12-34-56 only", "no account number nearby"),
        ("Sort code 12-34-56, account 123456789", "nine digits is not an account number"),
        ("Sort code 12-34 56, account 12345678", "mixed separators"),
        ("Sort code 00-00-00, account 12345678", "all-zero sort code"),
    ],
)
def test_sort_code_candidates_without_all_parts_are_not_reported(engine, text, why):
    assert values(engine, text, Entity.UK_BANK_ACCOUNT) == [], why


# --- National Insurance number -------------------------------------------------------


def test_generated_ninos_are_valid_and_found(engine):
    rng = random.Random(4)
    prefixes = set()
    for _ in range(200):
        spaced = ids.nino(rng)
        compact = spaced.replace(" ", "")
        prefixes.add(compact[:2])
        assert valid_prefix(compact[:2])
        assert values(engine, f"NI number {spaced}", Entity.NINO) == [compact]
        assert values(engine, f"nino {compact}", Entity.NINO) == [compact]
    assert len(prefixes) > 100  # the generator covers the allowed prefix space


def test_lower_case_nino_is_found(engine):
    assert values(engine, "ni no ab 12 34 56 c", Entity.NINO) == ["AB123456C"]


@pytest.mark.parametrize("prefix", sorted(ids.NINO_UNALLOCATED))
def test_unallocated_nino_prefixes_are_not_reported(engine, prefix):
    assert values(engine, f"NI number {prefix} 12 34 56 A", Entity.NINO) == []


@pytest.mark.parametrize("letter", list("DFIQUV"))
def test_nino_first_letter_rules(engine, letter):
    assert values(engine, f"NI number {letter}A 12 34 56 A", Entity.NINO) == []


@pytest.mark.parametrize("letter", list("DFIOQUV"))
def test_nino_second_letter_rules(engine, letter):
    assert values(engine, f"NI number A{letter} 12 34 56 A", Entity.NINO) == []


def test_nino_o_is_allowed_first_but_not_second(engine):
    assert values(engine, "OA 12 34 56 A", Entity.NINO) == ["OA123456A"]
    assert values(engine, "AO 12 34 56 A", Entity.NINO) == []


@pytest.mark.parametrize("suffix", list("EFZ"))
def test_nino_suffix_must_be_a_to_d(engine, suffix):
    assert values(engine, f"NI number AB 12 34 56 {suffix}", Entity.NINO) == []


# --- NHS number ----------------------------------------------------------------------


def test_mod11_matches_the_published_example():
    assert mod11("9434765919")
    assert not mod11("9434765918")


def test_nhs_numbers_with_check_digit_ten_do_not_exist():
    payload = next(
        f"{n:09d}"
        for n in range(400_000_000, 400_100_000)
        if ids.nhs_check_digit(f"{n:09d}") is None
    )
    assert not any(mod11(payload + str(d)) for d in range(10))


def test_generated_nhs_numbers_are_found_spaced_and_with_context(engine):
    rng = random.Random(8)
    for _ in range(100):
        spaced = ids.nhs_number(rng)
        digits = spaced.replace(" ", "")
        assert values(engine, f"ref {spaced}", Entity.NHS_NUMBER) == [digits]
        assert values(engine, f"NHS no: {digits}", Entity.NHS_NUMBER) == [digits]


def test_unspaced_nhs_number_needs_a_health_word(engine):
    assert values(engine, "Parcel 9434765919 dispatched", Entity.NHS_NUMBER) == []
    assert values(engine, "Patient 9434765919 seen", Entity.NHS_NUMBER) == ["9434765919"]


@pytest.mark.parametrize(
    "text",
    [
        "NHS number 943 476 5918",  # wrong check digit
        "NHS number 111 111 1111",  # placeholder passes mod 11 but is never issued
        "NHS number 943 476-5919",  # mixed separators
        "NHS number 9434 765 919",  # wrong grouping
    ],
)
def test_nhs_near_misses_are_not_reported(engine, text):
    assert values(engine, text, Entity.NHS_NUMBER) == []


# --- date of birth -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("DOB: 12/03/1985", "1985-03-12"),
        ("D.O.B. 12.03.1985", "1985-03-12"),
        ("Date of birth 1985-03-12", "1985-03-12"),
        ("born on 3rd March 1985", "1985-03-03"),
        ("Birthday: March 3, 1985", "1985-03-03"),
        ("date_of_birth,12/03/1985", "1985-03-12"),
        ("DOB 12/03/85", "1985-03-12"),
        ("dob 1 Sept 1990", "1990-09-01"),
    ],
)
def test_dates_of_birth_are_found_beside_a_birth_word(engine, text, iso):
    assert values(engine, text, Entity.DATE_OF_BIRTH) == [iso]


@pytest.mark.parametrize(
    "text",
    [
        "Meeting on 12/03/1985 at noon",  # a date, but nothing says birth
        "Invoice date 2024-01-15",
        "DOB 31/02/1985",  # no such day
        "DOB 01/01/2999",  # in the future
        "DOB 01/01/1850",  # before 1900
        "DOB 12/03-1985",  # mixed separators
        "stubborn 12/03/1985",  # "born" inside another word is not context
    ],
)
def test_dates_without_birth_context_or_impossible_dates_are_not_reported(engine, text):
    assert values(engine, text, Entity.DATE_OF_BIRTH) == []


def test_two_digit_years_fall_in_the_last_hundred_years():
    today = date(2026, 6, 1)
    assert parse_birth_date("01/01/26", lambda: today) == date(2026, 1, 1)
    assert parse_birth_date("01/01/27", lambda: today) == date(1927, 1, 1)


def test_faker_dates_of_birth_are_found(engine):
    fake = Faker("en_GB")
    fake.seed_instance(3)
    for _ in range(20):
        born = fake.date_of_birth(minimum_age=18, maximum_age=90)
        text = f"Date of birth: {born:%d/%m/%Y}"
        assert values(engine, text, Entity.DATE_OF_BIRTH) == [born.isoformat()]


# --- IP addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("login from 192.168.1.25", "192.168.1.25"),
        ("client=8.8.8.8;", "8.8.8.8"),
        ("http://203.0.113.9/admin", "203.0.113.9"),
        ("remote 2001:db8::8a2e:370:7334 ok", "2001:db8::8a2e:370:7334"),
        ("full 2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
        ("mapped ::ffff:192.0.2.1 here", "::ffff:c000:201"),
    ],
)
def test_ip_addresses_are_found(engine, text, address):
    assert values(engine, text, Entity.IP_ADDRESS) == [address]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "01.2.3.4",  # leading zeros are ambiguous (octal) and refused
        "version 10.0.1.2.5",
        "at 10:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::string and a::b",
        "loopback ::1",
    ],
)
def test_ip_near_misses_are_not_reported(engine, text):
    assert values(engine, text, Entity.IP_ADDRESS) == []


def test_faker_ip_addresses_are_found(engine):
    fake = Faker("en_GB")
    fake.seed_instance(5)
    for _ in range(20):
        v4, v6 = fake.ipv4_public(), fake.ipv6()
        assert values(engine, f"from {v4} and {v6}", Entity.IP_ADDRESS) == [
            v4,
            ipaddress.IPv6Address(v6).compressed,
        ]


# --- custom identifiers --------------------------------------------------------------

LOYALTY = {
    "name": "loyalty_number",
    "pattern": r"\bLC[ \-]?\d{4}[ \-]?\d{4}[ \-]?\d{4}\b",
    "check_digit": "luhn",
    "context_words": ["loyalty", "rewards", "member"],
    "description": "Loyalty card number, LC + 12 digits, Luhn",
}


def loyalty_number(rng: random.Random) -> str:
    digits = ids.luhn_number(rng, "6339", 12)
    return f"LC {digits[:4]} {digits[4:8]} {digits[8:]}"


def test_loyalty_card_declared_as_data_is_found():
    settings = DetectorSettings.model_validate({"custom_identifiers": [LOYALTY]})
    engine = InspectionEngine(settings=settings)
    rng = random.Random(1)
    number = loyalty_number(rng)
    result = engine.scan_text(f"Rewards member {number} joined")
    [finding] = result.findings
    assert finding.entity == "loyalty_number"
    assert finding.value == number.replace(" ", "")
    assert finding.context
    assert finding.confidence == pytest.approx(0.9)
    assert finding.masked.endswith(number[-2:]) and number not in finding.masked


def test_loyalty_number_failing_its_check_digit_is_not_reported():
    engine = InspectionEngine(
        settings=DetectorSettings(custom_identifiers=(CustomIdentifier(**LOYALTY),))
    )
    good = loyalty_number(random.Random(2)).replace(" ", "")
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert engine.scan_text(f"card {bad}").findings == ()
    assert engine.scan_text(f"card {good}").status is ScanStatus.FINDINGS


VERHOEFF_VALID = "236" + stdnum_verhoeff.calc_check_digit("236")
MOD97_VALID = "CUST12" + mod_97_10.calc_check_digits("CUST12")


@pytest.mark.parametrize(
    ("algorithm", "valid", "invalid"),
    [
        ("luhn", "79927398713", "79927398710"),
        ("mod11", "9434765919", "9434765918"),
        ("verhoeff", VERHOEFF_VALID, VERHOEFF_VALID[:-1] + str((int(VERHOEFF_VALID[-1]) + 1) % 10)),
        ("iso7064_mod97_10", MOD97_VALID, MOD97_VALID[:-1] + str((int(MOD97_VALID[-1]) + 1) % 10)),
    ],
)
def test_every_registered_check_digit_algorithm_gates_custom_identifiers(algorithm, valid, invalid):
    spec = CustomIdentifier(name="ref_number", pattern=r"\b[A-Z0-9]{4,12}\b", check_digit=algorithm)
    engine = InspectionEngine([spec.detector()])
    assert [f.value for f in engine.scan_text(f"x {valid} y").findings] == [valid]
    assert engine.scan_text(f"x {invalid} y").findings == ()


def test_check_digit_registry_and_configuration_vocabulary_agree():
    assert set(CHECK_DIGITS) == set(CheckDigitName.__args__)


def test_custom_identifier_can_require_context():
    spec = CustomIdentifier(
        name="contract_number",
        pattern=r"\bCN\d{6}\b",
        context_words=("contract",),
        requires_context=True,
    )
    engine = InspectionEngine([spec.detector()])
    assert engine.scan_text("CN123456").findings == ()
    assert [f.value for f in engine.scan_text("contract CN123456").findings] == ["CN123456"]


def test_custom_identifier_ignore_case():
    spec = CustomIdentifier(name="member_id", pattern=r"\bMB\d{5}\b", ignore_case=True)
    engine = InspectionEngine([spec.detector()])
    assert [f.value for f in engine.scan_text("id mb12345").findings] == ["MB12345"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x_id", "pattern": r"(?<=a)\d+"}, "not valid RE2"),
        ({"name": "x_id", "pattern": r"\d*"}, "empty string"),
        ({"name": "Bad Name", "pattern": r"\d+"}, "name"),
        ({"name": "x_id", "pattern": r"\d+", "check_digit": "crc32"}, "check_digit"),
        ({"name": "x_id", "pattern": r"\d+", "confidence": 1.5}, "confidence"),
        ({"name": "x_id", "pattern": r"\d+", "colour": "red"}, "colour"),
    ],
)
def test_bad_custom_identifier_declarations_are_configuration_errors(spec, message):
    with pytest.raises(ValidationError, match=message):
        CustomIdentifier.model_validate(spec)


def test_custom_identifier_names_must_not_clash():
    with pytest.raises(ValidationError, match="unique"):
        DetectorSettings(custom_identifiers=(CustomIdentifier(name="phone", pattern=r"\d{5}"),))
    twice = CustomIdentifier(name="dup_id", pattern=r"\d{5}")
    with pytest.raises(ValidationError, match="unique"):
        DetectorSettings(custom_identifiers=(twice, twice))


# --- settings, helpers ---------------------------------------------------------------


def test_built_in_detectors_can_be_disabled():
    detectors = build_detectors(DetectorSettings(disabled=frozenset({"ipv4", "ipv6"})))
    assert [d.name for d in detectors] == [n for n in BUILT_IN if n not in {"ipv4", "ipv6"}]
    engine = InspectionEngine(detectors)
    assert engine.scan_text("login from 192.168.1.25").findings == ()
    with pytest.raises(ValidationError, match="unknown detectors"):
        DetectorSettings(disabled=frozenset({"fingerprints"}))


@pytest.mark.parametrize(
    ("window", "matches"),
    [
        ("Date of birth:", True),
        ("date_of_birth", True),
        ("DATE-OF-BIRTH", True),
        ("stubborn", False),
        ("reborn", False),
        ("born", True),
    ],
)
def test_context_words_match_whole_words_and_header_spellings(window, matches):
    pattern = context_pattern(("date of birth", "born"))
    assert pattern is not None
    assert (pattern.search(window) is not None) is matches


@pytest.mark.parametrize(
    ("text", "candidate", "glued"),
    [
        ("ORD-01234567890", "01234567890", True),
        ("SKU_4111111111111111", "4111111111111111", True),
        ("#A12-07700900123", "07700900123", True),
        ("07700900123/07700900456", "07700900123", False),
        ("07700900123/07700900456", "07700900456", False),
        ("Tel:07700900123", "07700900123", False),
        ("call 07700900123.", "07700900123", False),
    ],
)
def test_candidates_glued_to_wider_identifiers(text, candidate, glued):
    start = text.index(candidate)
    assert is_glued(text, start, start + len(candidate)) is glued


@pytest.mark.parametrize("text", ids.HARD_NEGATIVES)
def test_hard_negatives_produce_no_findings(engine, text):
    assert found(engine, text) == []
