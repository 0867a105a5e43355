"""Taking a message apart and putting copies together, without a database: the parts the
filter inspects, broken and hostile MIME, copies with parts replaced by links, the notice
that stands in for a whole message, and inspection of the parts (fail closed)."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.exposure.mailfilter import (
    MAX_MULTIPARTS,
    inspect_parts,
    notice_message,
    parse_mail,
    replaced_copy,
)
from spillguard.inspection.classify import Label, LabelRules
from spillguard.inspection.scan import default_engine
from tests.factories.customers import people, to_csv

ROWS = people(12, seed=8)


def message(*, body: str = "Hello,\nsee attached.\n", html: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@corp.example"
    msg["To"] = "b@corp.example"
    msg["Subject"] = "Figures"
    msg["Message-ID"] = "<m1@corp.example>"
    msg.set_content(body)
    if html:
        msg.add_alternative(f"<p>{body}</p>", subtype="html")
    return msg


def raw(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=policy.SMTP)


def test_subject_bodies_and_attachments_are_parts() -> None:
    msg = message(html=True)
    msg.make_mixed()
    msg.add_attachment(to_csv(ROWS), maintype="text", subtype="csv", filename="../../list.csv")
    inner = message(body="forwarded")
    msg.add_attachment(inner)
    parsed = parse_mail(raw(msg))
    assert parsed.problem is None and parsed.message_id == "<m1@corp.example>"
    kinds = [(p.kind, p.name, p.media_type) for p in parsed.parts]
    assert kinds == [
        ("subject", "subject", "text/plain"),
        ("body", "message text.txt", "text/plain"),
        ("body", "message text 2.html", "text/html"),
        ("attachment", "list.csv", "text/csv"),  # no path from the sender's name
        ("attachment", "message 2.eml", "message/rfc822"),
    ]
    assert parsed.parts[3].data == to_csv(ROWS)
    assert b"forwarded" in parsed.parts[4].data
    assert [p.index for p in parsed.parts] == list(range(5))
    assert parsed.parts[1].path == (0, 0) and parsed.parts[3].path == (1,)


def test_broken_structure_is_one_part_and_named_why() -> None:
    no_boundary = b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nbody\r\n"
    parsed = parse_mail(no_boundary)
    assert [p.kind for p in parsed.parts] == ["message"]
    assert parsed.problem is not None and "NoBoundaryInMultipartDefect" in parsed.problem
    assert parsed.inspect_whole
    empty = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n"
    assert parse_mail(empty).problem is not None
    deep = b"".join(
        f"Content-Type: multipart/mixed; boundary=n{i}\r\n\r\n--n{i}\r\n".encode()
        for i in range(MAX_MULTIPARTS + 1)
    )
    too_deep = parse_mail(deep)
    assert too_deep.problem is not None and "nesting too deep" in too_deep.problem
    assert not too_deep.inspect_whole


def test_many_parts_are_not_taken_apart() -> None:
    msg = message()
    msg.make_mixed()
    for n in range(501):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{n}")
    parsed = parse_mail(raw(msg))
    assert parsed.problem is not None and "too many entries" in parsed.problem


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    parsed = parse_mail(data)
    assert parsed.parts  # there is always something to inspect


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_any_mime_looking_text_parses_without_raising(text: str) -> None:
    data = ("Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n" + text).encode()
    assert parse_mail(data).parts


def test_a_part_is_replaced_by_a_text_and_the_rest_stays() -> None:
    msg = message()
    msg.make_mixed()
    msg.add_attachment(to_csv(ROWS), maintype="text", subtype="csv", filename="list.csv")
    msg.add_attachment(b"%PDF-1.4 other", maintype="application", subtype="pdf", filename="a.pdf")
    parsed = parse_mail(raw(msg))
    csv_part = next(p for p in parsed.parts if p.name == "list.csv")
    copy = email.message_from_bytes(
        replaced_copy(parsed, {csv_part.index: "The attachment “list.csv” was held."}),
        policy=policy.default,
    )
    names = [p.get_filename() for p in copy.walk() if p.get_filename()]
    assert names == ["a.pdf"]
    texts = [
        p.get_content().replace("\r\n", "\n")
        for p in copy.walk()
        if p.get_content_type() == "text/plain"
    ]
    assert texts == ["Hello,\nsee attached.\n", "The attachment “list.csv” was held.\n"]
    assert copy["Message-ID"] == "<m1@corp.example>"
    for person in ROWS:
        assert person.email not in copy.as_string()


def test_a_single_part_message_is_replaced_in_place() -> None:
    parsed = parse_mail(raw(message(body="Card 4111 1111 1111 1111")))
    body = next(p for p in parsed.parts if p.kind == "body")
    assert body.path == ()
    copy = email.message_from_bytes(
        replaced_copy(parsed, {body.index: "held"}), policy=policy.default
    )
    assert copy.get_content().strip() == "held"  # type: ignore[attr-defined]
    assert copy.get_all("Content-Type") == ['text/plain; charset="utf-8"']


def test_the_notice_keeps_addressing_and_drops_everything_else() -> None:
    original = raw(message(body="secret body"))
    notice = notice_message(
        original, "Open it on your phone: https://x/gateway/t", keep_subject=False
    )
    parsed = email.message_from_bytes(notice, policy=policy.default)
    assert parsed["From"] == "a@corp.example" and parsed["Message-ID"] == "<m1@corp.example>"
    assert parsed["Subject"] == "Message held by Spillguard"
    assert "secret body" not in notice.decode()
    assert "https://x/gateway/t" in parsed.get_content()  # type: ignore[attr-defined]
    kept = email.message_from_bytes(
        notice_message(original, "t", keep_subject=True), policy=policy.default
    )
    assert kept["Subject"] == "Figures"


def test_parts_are_inspected_and_a_broken_message_counts_as_incomplete() -> None:
    msg = message(body="Please call Jo on 07700 900123.")
    msg.make_mixed()
    msg.add_attachment(to_csv(ROWS), maintype="text", subtype="csv", filename="list.csv")
    rules = LabelRules()
    found = inspect_parts(
        parse_mail(raw(msg)), engine=default_engine(), edm_index=None, rules=rules
    )
    labels = {p.part.name: p.label for p in found}
    assert labels["subject"] is Label.PUBLIC and not found[0].worth_recording
    assert labels["message text.txt"] is Label.INTERNAL
    assert labels["list.csv"] >= Label.INTERNAL
    assert all(p.report.complete for p in found)

    broken = b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nnothing sensitive\r\n"
    (whole,) = inspect_parts(
        parse_mail(broken), engine=default_engine(), edm_index=None, rules=rules
    )
    assert whole.label is Label.CONFIDENTIAL and not whole.report.complete
    assert whole.report.status.value == "unscannable" and whole.worth_recording
    deep = b"Content-Type: multipart/mixed; boundary=a\r\n" * (MAX_MULTIPARTS + 1)
    (skipped,) = inspect_parts(
        parse_mail(deep), engine=default_engine(), edm_index=None, rules=rules
    )
    assert skipped.label is Label.CONFIDENTIAL
    assert "nesting too deep" in skipped.report.reasons[0]


def test_reports_are_reused_for_the_same_content_and_index_only() -> None:
    from dataclasses import replace

    from spillguard.exposure.mailfilter import ReportCache
    from spillguard.inspection.classify import ItemStatus

    msg = message(body="Call 07700 900123")
    parsed = parse_mail(raw(msg))
    cache = ReportCache(size=2)
    index = None  # no customer directory: the index is None, and so is the key
    first = inspect_parts(
        parsed, engine=default_engine(), edm_index=index, rules=LabelRules(), cache=cache
    )
    again = inspect_parts(
        parsed, engine=default_engine(), edm_index=index, rules=LabelRules(), cache=cache
    )
    assert [a.report for a in again] == [f.report for f in first]
    assert all(a.report is f.report for a, f in zip(again, first, strict=True))  # not rescanned
    body = first[1]
    sha = body.report.sha256 or ""
    assert cache.get(sha, body.part.name, object()) is None  # another directory: rescan
    subject_sha = first[0].report.sha256 or ""
    cache.put("x", "y", index, body.report)  # evicts the least recently used: the subject
    assert cache.get(subject_sha, "subject", index) is None
    assert cache.get(sha, body.part.name, index) is body.report
    gave_up = replace(body.report, status=ItemStatus.UNINSPECTED)
    cache.put("z", "z", index, gave_up)
    assert cache.get("z", "z", index) is None  # never reuse a scan that gave up
