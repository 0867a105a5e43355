"""The mail filter's pure decisions, without a database or a network: who gets the message
as sent, who gets gateway links, who is held back; the headers; the keys that make a
retried message count once; the words people read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spillguard.exposure.access import DeviceVerdict
from spillguard.exposure.ledger import Destination
from spillguard.exposure.mail_policy import (
    WHOLE_MESSAGE,
    AddressError,
    InternalAction,
    MailAction,
    MailPolicy,
    PartSummary,
    QuarantineKind,
    Recipient,
    decide,
    delivery_source_id,
    group_recipients,
    header_value,
    link_ref,
    link_text,
    message_key,
    parse_hostport,
    quarantine_ref,
    sender_notice,
    split_message,
    strip_own_headers,
    verdict_headers,
    with_headers,
)
from spillguard.inspection.classify import Label

GOOD = DeviceVerdict(1, "Work phone", "active", True, False)
SWIPE = DeviceVerdict(
    2, "Old phone", "active", False, False, ("Passcode is a swipe; policy requires a PIN",)
)
POLICY = MailPolicy()
BODY = PartSummary(0, Label.PUBLIC)
SHEET = PartSummary(1, Label.RESTRICTED)
MEMO = PartSummary(2, Label.CONFIDENTIAL)
NOTE = PartSummary(3, Label.INTERNAL)


def user(*devices: DeviceVerdict, uid: int = 7) -> Recipient:
    return Recipient("jo@corp.example", "corp.example", uid, tuple(devices))


OUTSIDER = Recipient("buyer@partner.example", "partner.example")


def test_a_user_whose_phones_all_pass_gets_everything_recorded_per_phone() -> None:
    both = DeviceVerdict(3, "Tablet", "active", True, False)
    outcome = decide(user(GOOD, both), [BODY, SHEET], POLICY)
    assert outcome.action is MailAction.DELIVER and outcome.linked == ()
    assert outcome.destinations == (Destination.device(1, 7), Destination.device(3, 7))


def test_below_the_protected_label_anyone_inside_gets_it() -> None:
    outcome = decide(user(SWIPE), [BODY, NOTE], POLICY)
    assert outcome.action is MailAction.DELIVER
    assert outcome.destinations == (Destination.device(2, 7),)  # it reached that phone
    nobody = decide(user(), [BODY, NOTE], POLICY)
    assert nobody.destinations == (Destination.user(7),)  # no phone: recorded to the person


def test_a_failing_phone_gets_links_for_the_protected_parts_only() -> None:
    outcome = decide(user(GOOD, SWIPE), [BODY, SHEET, NOTE, MEMO], POLICY)
    assert outcome.action is MailAction.LINK
    assert outcome.linked == (1, 2)  # the sheet and the memo
    assert outcome.destinations == (Destination.user(7),)  # what was still delivered
    assert outcome.reason.startswith("Old phone: Passcode is a swipe")
    no_phone = decide(user(), [BODY, SHEET], POLICY)
    assert no_phone.action is MailAction.LINK and "no enrolled phone" in no_phone.reason


def test_a_protected_part_that_cannot_be_cut_out_links_the_whole_message() -> None:
    subject = PartSummary(0, Label.CONFIDENTIAL, replaceable=False)
    outcome = decide(user(SWIPE), [subject, PartSummary(1, Label.PUBLIC)], POLICY)
    assert outcome.linked == (WHOLE_MESSAGE,) and outcome.destinations == ()
    only = decide(user(SWIPE), [PartSummary(0, Label.CONFIDENTIAL)], POLICY)
    assert only.linked == (0,) and only.destinations == ()  # nothing else was delivered


def test_quarantine_instead_of_links_when_configured() -> None:
    policy = MailPolicy(internal_action=InternalAction.QUARANTINE)
    outcome = decide(user(SWIPE), [BODY, SHEET], policy)
    assert outcome.action is MailAction.QUARANTINE and outcome.kind is QuarantineKind.INTERNAL
    assert "Passcode" in outcome.reason


def test_outsiders_get_it_below_the_outbound_limit_and_nothing_at_or_above() -> None:
    allowed = decide(OUTSIDER, [BODY, MEMO], POLICY)
    assert allowed.action is MailAction.DELIVER
    assert allowed.destinations == (Destination.external("buyer@partner.example"),)
    held = decide(OUTSIDER, [BODY, SHEET], POLICY)
    assert held.action is MailAction.QUARANTINE and held.kind is QuarantineKind.EXTERNAL
    assert "restricted" in held.reason and "outside" in held.reason
    strict = MailPolicy(external_label=Label.CONFIDENTIAL)
    assert decide(OUTSIDER, [BODY, MEMO], strict).action is MailAction.QUARANTINE


def test_an_internal_domain_without_an_account_cannot_get_a_link() -> None:
    policy = MailPolicy.from_values(
        protected_label="confidential",
        external_label="restricted",
        internal_action="link",
        internal_domains=" Corp.Example , ,",
    )
    assert policy.internal_domains == frozenset({"corp.example"})
    assert policy.is_internal_domain("mail.corp.example")
    assert not policy.is_internal_domain("notcorp.example")
    colleague = Recipient("new@corp.example", "corp.example", internal_domain=True)
    assert decide(colleague, [BODY, NOTE], policy).action is MailAction.DELIVER
    held = decide(colleague, [BODY, MEMO], policy)
    assert held.action is MailAction.QUARANTINE and held.kind is QuarantineKind.INTERNAL
    assert decide(colleague, [SHEET], policy).action is MailAction.QUARANTINE


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        MailPolicy.from_values(
            protected_label="secret", external_label="restricted", internal_action="link"
        )
    with pytest.raises(ValueError):
        MailPolicy.from_values(
            protected_label="confidential", external_label="restricted", internal_action="drop"
        )


def test_recipients_are_grouped_by_the_copy_they_get() -> None:
    outcomes = [
        ("a@corp.example", decide(user(GOOD), [BODY, SHEET], POLICY)),
        ("b@corp.example", decide(user(SWIPE), [BODY, SHEET], POLICY)),
        ("c@partner.example", decide(OUTSIDER, [BODY, SHEET], POLICY)),
        ("d@corp.example", decide(user(GOOD), [BODY, SHEET], POLICY)),
        ("e@corp.example", decide(user(), [BODY, SHEET], POLICY)),
    ]
    groups = group_recipients(outcomes)
    assert [(g.action, g.recipients) for g in groups] == [
        (MailAction.QUARANTINE, ["c@partner.example"]),
        (MailAction.DELIVER, ["a@corp.example", "d@corp.example"]),
        (MailAction.LINK, ["b@corp.example"]),
        (MailAction.LINK, ["e@corp.example"]),
    ]
    assert group_recipients([]) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:10025", ("127.0.0.1", 10025)),
        ("[::1]:25", ("::1", 25)),
        ("mail.corp.example:10026", ("mail.corp.example", 10026)),
    ],
)
def test_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(value) == expected


@pytest.mark.parametrize("value", ["", "10025", "host:", ":25", "host:0", "host:70000", "a b:25"])
def test_bad_host_and_port(value: str) -> None:
    with pytest.raises(AddressError):
        parse_hostport(value)


RAW = (
    b"Received: from a\r\n by b\r\nX-Spillguard-Action: deliver\r\nSubject: Hi\r\n"
    b"x-spillguard-label:\r\n public\r\nMessage-ID:  <m1@corp.example> \r\n\r\n"
    b"X-Spillguard-Action: body text stays\r\n"
)


def test_forged_verdict_headers_are_stripped_and_ours_added_on_top() -> None:
    fields, rest = split_message(RAW)
    assert len(fields) == 5 and rest.startswith(b"\r\nX-Spillguard-Action: body")
    clean = strip_own_headers(RAW)
    assert clean == (
        b"Received: from a\r\n by b\r\nSubject: Hi\r\nMessage-ID:  <m1@corp.example> \r\n\r\n"
        b"X-Spillguard-Action: body text stays\r\n"
    )
    assert strip_own_headers(clean) is clean  # nothing to strip: the same bytes
    headers = verdict_headers(complete=False, label=Label.RESTRICTED, customers=12, action="link")
    stamped = with_headers(RAW, headers)
    assert stamped.startswith(
        b"X-Spillguard-Verdict: incomplete\r\nX-Spillguard-Label: restricted\r\n"
        b"X-Spillguard-Customers: 12\r\nX-Spillguard-Action: link\r\nReceived:"
    )
    assert stamped.count(b"X-Spillguard-Action") == 2  # ours, and the body line
    assert header_value(RAW, "Message-ID") == "<m1@corp.example>"
    assert header_value(RAW, "x-spillguard-label") == "public"
    assert header_value(RAW, "Cc") is None


def test_headerless_and_bare_lf_messages_split() -> None:
    assert split_message(b"no header here\r\n") == ([], b"no header here\r\n")
    fields, rest = split_message(b"A: 1\nB: 2\n\nbody")
    assert fields == [b"A: 1\n", b"B: 2\n"] and rest == b"\nbody"


@given(st.binary(max_size=300))
def test_stripping_never_raises_and_leaves_no_verdict_header(raw: bytes) -> None:
    clean = strip_own_headers(raw)
    assert all(not f.lower().startswith(b"x-spillguard-") for f in split_message(clean)[0])


def test_retries_get_the_same_keys_and_other_messages_others() -> None:
    key = message_key("<m1@corp.example>", b"one")
    assert key == message_key(" <m1@corp.example> ", b"other bytes")  # by Message-ID
    assert key != message_key("<m2@corp.example>", b"one")
    no_id = message_key(None, b"bytes as received")
    assert no_id == message_key("", b"bytes as received") != message_key(None, b"other")
    device = Destination.device(4, 7)
    assert delivery_source_id(key, "a@x.example", 1, device) != delivery_source_id(
        key, "b@x.example", 1, device
    )
    assert len(delivery_source_id(key, "a" * 64 + "@" + "d" * 250, 499, device)) <= 500
    assert link_ref(key, "a@x.example", 1) != link_ref(key, "a@x.example", 2)
    assert len(link_ref(key, "a@x.example", WHOLE_MESSAGE)) == 64
    first = quarantine_ref(key, QuarantineKind.EXTERNAL, ["b@x.example", "a@x.example"])
    assert first == quarantine_ref(key, QuarantineKind.EXTERNAL, ["a@x.example", "b@x.example"])
    assert first != quarantine_ref(key, QuarantineKind.INTERNAL, ["a@x.example", "b@x.example"])


def test_the_words_name_the_file_the_reason_and_the_link_but_no_values() -> None:
    when = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    text = link_text(
        name="top customers.xlsx",
        label=Label.RESTRICTED,
        customers=1000,
        reason="Old phone: Passcode is a swipe. Fix this on your phone, then try again.",
        url="https://sg.corp.example/gateway/abc",
        expires_at=when,
    )
    assert "“top customers.xlsx” (restricted, naming 1,000 customers)" in text
    assert "Why: Old phone: Passcode" in text
    assert "https://sg.corp.example/gateway/abc\n" in text and "2026-12-03 09:30 UTC" in text
    whole = link_text(
        name="message.eml",
        label=Label.CONFIDENTIAL,
        customers=0,
        reason="",
        url="u",
        expires_at=when,
        whole_message=True,
    )
    assert whole.startswith("This message (confidential) was held") and "Why" not in whole
    subject, notice = sender_notice(
        quarantine_id=42,
        message_id="<m1@corp.example>",
        received_at=when,
        recipients=[f"r{i}@partner.example" for i in range(12)],
        label=Label.RESTRICTED,
        customers=1,
        reason="Content labelled restricted may not be sent outside the organisation.",
    )
    assert subject == "Your message was held by Spillguard"
    assert "r9@partner.example and 2 more" in notice and "r10@" not in notice
    assert "<m1@corp.example>" in notice and "restricted, naming 1 customer." in notice
    assert "Quarantine reference: 42" in notice


@pytest.mark.parametrize("message_id", [None, "", "  "])
def test_a_notice_without_a_message_id_names_the_quarantine_and_the_time(
    message_id: str | None,
) -> None:
    _, notice = sender_notice(
        quarantine_id=7,
        message_id=message_id,
        received_at=datetime(2026, 12, 3, 9, 30, tzinfo=UTC),
        recipients=["buyer@partner.example"],
        label=Label.RESTRICTED,
        customers=3,
        reason="Content labelled restricted may not be sent outside the organisation.",
    )
    assert "Message-ID" not in notice and "(none)" not in notice
    assert "Sent: 2026-12-03 09:30 UTC\nQuarantine reference: 7\n" in notice
    assert "quoting the quarantine reference 7." in notice
