"""The strict RFC 5424 parser (property-tested: what is built from valid parts parses back
to those parts; any bytes either parse or raise SyslogParseError) and how a message
becomes an access event (SD-ELEMENT access@32473, or JSON in MSG)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spillguard.audit.ingest import Unparsed
from spillguard.audit.syslog import SyslogParseError, event_of, parse_listen, parse_rfc5424

PRINTUSASCII = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1)
SD_NAME = st.text(
    alphabet=[chr(c) for c in range(0x21, 0x7F) if chr(c) not in '= ]"'], min_size=1, max_size=32
)


def nil_or(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), strategy.filter(lambda s: s != "-"))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
    ),
    st.integers(1970, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".1", ".123456"]),
    st.sampled_from(["Z", "+01:00", "-05:30"]),
)
elements = st.lists(
    st.tuples(SD_NAME, st.lists(st.tuples(SD_NAME, st.text(max_size=20)), max_size=3)),
    max_size=3,
)


@given(
    pri=st.integers(0, 191),
    timestamp=st.one_of(st.none(), timestamps),
    hostname=nil_or(PRINTUSASCII.filter(lambda s: len(s) <= 255)),
    app=nil_or(PRINTUSASCII.filter(lambda s: len(s) <= 48)),
    procid=nil_or(PRINTUSASCII.filter(lambda s: len(s) <= 128)),
    msgid=nil_or(PRINTUSASCII.filter(lambda s: len(s) <= 32)),
    sd=elements,
    msg=st.one_of(st.none(), st.binary(max_size=50)),
)
def test_a_message_built_from_valid_parts_parses_back(
    pri: int,
    timestamp: str | None,
    hostname: str | None,
    app: str | None,
    procid: str | None,
    msgid: str | None,
    sd: list[tuple[str, list[tuple[str, str]]]],
    msg: bytes | None,
) -> None:
    header = " ".join(
        v if v is not None else "-" for v in (timestamp, hostname, app, procid, msgid)
    )
    data = (
        "".join(
            f"[{sd_id}" + "".join(f' {n}="{escape(v)}"' for n, v in params) + "]"
            for sd_id, params in sd
        )
        or "-"
    )
    raw = f"<{pri}>1 {header} {data}".encode()
    if msg is not None:
        raw += b" " + msg
    parsed = parse_rfc5424(raw)
    assert (parsed.pri, parsed.version, parsed.timestamp) == (pri, 1, timestamp)
    assert (parsed.hostname, parsed.app_name, parsed.procid, parsed.msgid) == (
        hostname,
        app,
        procid,
        msgid,
    )
    assert parsed.structured_data == [(i, list(p)) for i, p in sd]
    assert parsed.msg == msg


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_parse_error(data: bytes) -> None:
    with contextlib.suppress(SyslogParseError):
        parse_rfc5424(data)


@given(st.binary(max_size=120))
def test_any_bytes_after_a_valid_header_parse_or_raise_a_parse_error(tail: bytes) -> None:
    try:
        message = parse_rfc5424(b"<14>1 2026-02-02T08:00:00Z host crm - - " + tail)
    except SyslogParseError:
        return
    event = event_of(message)
    assert isinstance(event, dict | Unparsed)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"hello", "no RFC 5424 header"),
        (b"<192>1 - - - - - -", "PRI is above 191"),
        (b"<013>1 - - - - - -", "no RFC 5424 header"),
        (b"<13>2 - - - - - -", "VERSION is not 1"),
        (b"<13>1 2026-02-02 08:00:00Z h a - - -", "TIMESTAMP is not an RFC 5424"),
        (b"<13>1 2026-02-30T08:00:00Z h a - - -", "TIMESTAMP is not a valid"),
        (b"<13>1 2026-02-02T08:00:00 h a - - -", "TIMESTAMP is not an RFC 5424"),
        (b"<13>1 - h " + b"a" * 49 + b" - - -", "APP-NAME is not 1-48"),
        (b"<13>1 - h a - - [x@1 k=v]", "PARAM-VALUE is not quoted"),
        (b'<13>1 - h a - - [x@1 k="v]', "']' inside a PARAM-VALUE"),
        (b'<13>1 - h a - - [x@1 k="v"', "SD-ELEMENT is not closed"),
        (b"<13>1 - h a - - -msg", "no space between"),
        (b"<13>1 - h a - -", "message ends inside MSGID"),
    ],
)
def test_invalid_messages_say_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(SyslogParseError, match=reason):
        parse_rfc5424(raw)


def test_the_sd_element_form_with_escapes_and_repeated_customer_ids() -> None:
    raw = (
        b'<110>1 2026-02-02T08:00:00.5+01:00 crm-01 crm 4711 ACCESS [access@32473 id="e-1" '
        b'actor="ann@example.co.uk" action="export" system="crm" record_type="contract-renewal" '
        b'customer_id="C1" customer_id="C2" query="name \\"Smith\\" \\] x"][meta x="1"]'
    )
    event = event_of(parse_rfc5424(raw))
    assert event == {
        "id": "e-1",
        "actor": "ann@example.co.uk",
        "action": "export",
        "system": "crm",
        "record_type": "contract-renewal",
        "query": 'name "Smith" ] x',
        "customer_ids": ["C1", "C2"],
        "time": "2026-02-02T08:00:00.5+01:00",
    }


def test_the_json_form_keeps_its_own_time_and_takes_the_header_time_otherwise() -> None:
    own = {"id": "j-1", "time": "2026-02-01T00:00:00Z", "actor": "a", "action": "view"}
    raw = b"<14>1 2026-02-02T08:00:00Z h crm - - - \xef\xbb\xbf" + json.dumps(own).encode()
    assert event_of(parse_rfc5424(raw)) == own
    bare = {"id": "j-2", "actor": "a", "action": "view", "system": "crm"}
    raw = b"<14>1 2026-02-02T08:00:00Z h crm - - - " + json.dumps(bare).encode()
    assert event_of(parse_rfc5424(raw))["time"] == "2026-02-02T08:00:00Z"  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"<14>1 - h crm - - - not json", "MSG is not JSON"),
        (b"<14>1 - h crm - - - [1, 2]", "MSG is not a JSON object"),
        (b"<14>1 - h crm - - -", "no MSG and no access@32473"),
        (b'<14>1 - h crm - - [access@32473 id="1" id="2"]', "parameter 'id' repeated"),
    ],
)
def test_messages_without_an_event_are_refused(raw: bytes, reason: str) -> None:
    event = event_of(parse_rfc5424(raw))
    assert isinstance(event, Unparsed) and reason in event.reason


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:6514", "--tcp") == ("127.0.0.1", 6514)
    assert parse_listen("[::1]:514", "--udp") == ("::1", 514)
    for bad in ("6514", "host:", "host:99999", ":514", "host:²", "host:٣"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad, "--tcp")
