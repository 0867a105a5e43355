"""Limits hold under attack; encrypted, corrupt and hostile input become unscannable."""

from __future__ import annotations

import io
import itertools
import os
import re
import struct
import tracemalloc
import zipfile

import pytest
from faker import Faker

from spillguard.inspection.extract import ExtractLimits, UnscannableCode, extract
from tests.unit.inspection.extract import builders

MiB = 1024 * 1024


@pytest.fixture
def fake() -> Faker:
    faker = Faker("en_GB")
    faker.seed_instance(7)
    return faker


def _codes(result):
    return [u.code for u in result.unscannable]


def _nested(depth: int, leaf: bytes) -> bytes:
    data = leaf
    for level in range(depth):
        data = builders.zip_file({f"level{level}.zip" if level else "leaf.txt": data})
    return data


def test_nesting_beyond_the_depth_is_refused_and_reported(fake):
    email = fake.email()
    shallow = extract(_nested(3, email.encode()), "n.zip", ExtractLimits(max_depth=3))
    assert shallow.complete and email in shallow.parts[0].text
    deep = extract(_nested(4, email.encode()), "n.zip", ExtractLimits(max_depth=3))
    assert _codes(deep) == [UnscannableCode.TOO_DEEP]
    assert deep.reasons == ["unscannable: nesting too deep: inside 4 nested containers (limit 3)"]
    assert not any(email in p.text for p in deep.parts)


def test_zip_bomb_member_is_stopped_while_reading():
    """A 20 MB run of zeros (≈20 KB compressed) beside incompressible data."""
    bomb = builders.zip_file({"zeros.bin": bytes(20 * MiB), "noise.bin": os.urandom(300_000)})
    assert len(bomb) < 400_000
    limits = ExtractLimits(max_ratio=100, max_total_ratio=1000)
    result = extract(bomb, "bomb.zip", limits)
    bombs = [u for u in result.unscannable if u.code is UnscannableCode.ZIP_BOMB]
    assert bombs and bombs[0].path == "bomb.zip/zeros.bin"
    assert re.fullmatch(
        r"unscannable: zip bomb: entry zeros\.bin would expand [1-9]\d{0,2}(,\d{3})* times, "
        r"by the sizes it declares \(limit 100\)",
        bombs[0].reason,
    ), bombs[0].reason


def test_zip_bomb_is_caught_on_actual_bytes_when_headers_lie():
    """Central directory and local headers claim 1 KB; zipfile then refuses the data."""
    data = bytearray(builders.zip_file({"zeros.bin": bytes(8 * MiB)}))
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        struct.pack_into("<I", data, at + size_at, 1024)
    result = extract(bytes(data), "liar.zip", ExtractLimits(max_member_bytes=MiB))
    assert result.unscannable and not result.parts
    assert result.reasons == [
        "unscannable: corrupt or truncated zip: entry zeros.bin cannot be decompressed "
        "(BadZipFile)"
    ]


def test_overall_ratio_catches_nested_bombs():
    layer = builders.zip_file({f"z{i}.bin": bytes(2 * MiB) for i in range(4)})
    outer = builders.zip_file({f"inner{i}.zip": layer for i in range(4)})
    limits = ExtractLimits(max_ratio=1000, max_total_ratio=50)
    result = extract(outer, "nested-bomb.zip", limits)
    assert UnscannableCode.ZIP_BOMB in _codes(result)
    assert all(
        re.fullmatch(
            r"unscannable: zip bomb: the zip declares contents [\d,]+ times its size \(limit 50\)",
            reason,
        )
        for reason in result.reasons
    ), result.reasons


def test_overall_ratio_is_also_counted_on_the_bytes_read():
    """Every zip and member stays under the size from which ratios are checked, but ten
    copies of 500 KB of spaces come out of one file of a few kilobytes."""
    inner = builders.zip_file({"spaces.txt": b" " * (500 * 1024)})
    outer = builders.zip_file({f"copy{i}.zip": inner for i in range(10)})
    assert len(outer) < 10_000
    result = extract(outer, "nested-bomb.zip")
    assert _codes(result) == [UnscannableCode.ZIP_BOMB]
    assert re.fullmatch(
        r"unscannable: zip bomb: its contents expand to at least [\d,]+ times the file's size "
        r"\(limit 200\)",
        result.reasons[0],
    ), result.reasons


def test_total_bytes_limit_aborts_the_extraction():
    data = builders.zip_file({f"f{i}.txt": os.urandom(200_000).hex().encode() for i in range(8)})
    result = extract(data, "big.zip", ExtractLimits(max_total_bytes=MiB))
    assert _codes(result)[-1] is UnscannableCode.TOO_LARGE
    assert result.reasons[-1] == (
        "unscannable: too large: stopped after 1 MiB decompressed, the limit for one file"
    )
    assert 0 < len(result.parts) < 8


def test_size_limits_name_the_limit():
    member = os.urandom(700 * 1024).hex().encode()  # 1.4 MiB, incompressible enough
    data = builders.zip_file({"big.txt": member, "ok.txt": b"hello"})
    limits = ExtractLimits(max_member_bytes=MiB)
    result = extract(data, "m.zip", limits)
    assert result.reasons == [
        "unscannable: too large: entry big.txt declares 1.4 MiB (limit 1 MiB per entry)"
    ]
    assert [p.path for p in result.parts] == ["m.zip/ok.txt"]
    one_way = extract(io.BufferedReader(_OneWay(data + bytes(MiB))), "m.zip", limits)
    assert one_way.reasons == [
        "unscannable: too large: over 1 MiB, the limit for one item held in memory"
    ]


def test_too_many_entries():
    data = builders.zip_file({f"f{i}.txt": b"x" for i in range(50)})
    result = extract(data, "many.zip", ExtractLimits(max_entries=20))
    assert _codes(result) == [UnscannableCode.TOO_MANY_ENTRIES]
    assert result.reasons == ["unscannable: too many entries: the zip declares 50 (limit 20)"]


def test_entries_are_counted_across_nested_containers():
    inner = builders.zip_file({f"f{i}.txt": b"x" for i in range(15)})
    outer = builders.zip_file({"a.zip": inner, "b.zip": inner})
    result = extract(outer, "o.zip", ExtractLimits(max_entries=20))
    assert UnscannableCode.TOO_MANY_ENTRIES in _codes(result)
    assert result.reasons == [
        "unscannable: too many entries: stopped after 20 archive entries and attachments, "
        "the limit for one file"
    ]


def test_time_limit_keeps_what_was_found_and_reports_the_rest():
    data = builders.zip_file({f"f{i}.txt": f"file {i}".encode() for i in range(40)})
    ticks = itertools.count()
    result = extract(data, "slow.zip", ExtractLimits(time_budget=25), clock=lambda: next(ticks))
    assert _codes(result) == [UnscannableCode.TIME_LIMIT]
    assert result.reasons == [
        "unscannable: time limit: not finished within 25 s, the limit for one file"
    ]
    assert 0 < len(result.parts) < 40


class _OneWay(io.RawIOBase):
    """``data`` as a stream that cannot seek (an upload, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _Endless(io.RawIOBase):
    """A one-way stream of ``size`` bytes with no new line, generated on demand."""

    def __init__(self, size: int, prefix: bytes) -> None:
        self.left = size
        self.prefix = prefix
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        if n <= 0:
            return 0
        chunk = (self.prefix + b"a" * n)[:n] if self.served == 0 else b"a" * n
        buffer[:n] = chunk
        self.left -= n
        self.served += n
        return n


def test_huge_single_line_stream_is_cut_at_the_cap_in_bounded_memory(fake):
    email = fake.email()
    stream = _Endless(50 * MiB, f"{email} ".encode())
    tracemalloc.start()
    try:
        result = extract(stream, "line.txt", ExtractLimits(max_part_chars=MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    part = result.parts[0]
    assert part.truncated and len(part.text) == MiB and part.text.startswith(email)
    assert result.reasons == [
        "unscannable: too large: text cut at 1,048,576 characters, the limit for one part"
    ]
    assert stream.served <= 3 * MiB  # stopped reading soon after the cap
    assert peak < 16 * MiB


def test_encrypted_zip_member(fake):
    data = builders.set_encrypted_flag(builders.zip_file({"c.txt": fake.email().encode()}))
    result = extract(data, "locked.zip")
    assert result.encrypted and result.reasons == [
        "unscannable: encrypted: password-protected zip member"
    ]


def test_encrypted_pdf(fake):
    email = fake.email()
    result = extract(builders.encrypted_pdf([email]), "locked.pdf")
    assert result.encrypted and not any(email in p.text for p in result.parts)


def test_encrypted_ooxml_and_ods():
    cfb = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(500)
        + "EncryptionInfo".encode("utf-16-le")
        + bytes(100)
    )
    assert extract(cfb, "locked.xlsx").encrypted
    legacy = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    assert _codes(extract(legacy, "old.doc")) == [UnscannableCode.UNSUPPORTED]
    assert extract(builders.ods({"S": [["a"]]}, encrypted=True), "locked.ods").encrypted


CORRUPTIBLE = {
    "xlsx": lambda: builders.xlsx({"S": [["name", "email"], ["Jo", "jo@example.org"]]}),
    "docx": lambda: builders.docx_file(["hello"]),
    "ods": lambda: builders.ods({"S": [["hello"]]}),
    "zip": lambda: builders.zip_file({"a.txt": b"hello" * 1000}),
    "pdf": lambda: builders.pdf(["hello"]),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIBLE))
def test_truncated_files_are_unscannable_or_partial(kind):
    data = CORRUPTIBLE[kind]()
    result = extract(data[: len(data) // 2], f"broken.{kind}")
    assert result.unscannable, f"truncated {kind} reported as complete"
    if kind in {"xlsx", "docx", "ods", "zip"}:
        assert result.reasons[0].startswith("unscannable: corrupt")


TRUNCATABLE = {
    "xlsx": (CORRUPTIBLE["xlsx"], "xlsx"),
    "xlsm": (CORRUPTIBLE["xlsx"], "xlsx"),  # a macro workbook is read as a workbook
    "docx": (CORRUPTIBLE["docx"], "docx"),
    "ods": (CORRUPTIBLE["ods"], "ods"),
}


@pytest.mark.parametrize("cut", [0.05, 0.5, 0.99])
@pytest.mark.parametrize("suffix", sorted(TRUNCATABLE))
def test_a_truncated_office_file_is_reported_as_its_format(suffix, cut):
    """Cut short, an Office or OpenDocument file has lost the zip's table of contents at
    its end; it is still reported as what its first entries or its name say it is."""
    build, kind = TRUNCATABLE[suffix]
    data = build()
    result = extract(data[: int(len(data) * cut)], f"report.{suffix}")
    assert result.format == kind
    assert result.reasons == [
        f"unscannable: corrupt or truncated {kind}: its table of contents cannot be read "
        "(BadZipFile)"
    ]


@pytest.mark.parametrize("suffix", sorted(TRUNCATABLE))
def test_a_truncated_office_file_is_recognised_without_its_name(suffix):
    build, kind = TRUNCATABLE[suffix]
    data = build()
    for name in ("upload.bin", None):
        result = extract(data[: len(data) * 3 // 4], name)
        assert result.format == kind, name
        assert result.reasons[0].startswith(f"unscannable: corrupt or truncated {kind}: ")


def test_a_truncated_plain_zip_is_still_a_zip():
    data = CORRUPTIBLE["zip"]()
    result = extract(data[: len(data) // 2], "bundle.zip")
    assert result.format == "zip"
    assert result.reasons == [
        "unscannable: corrupt or truncated zip: its table of contents cannot be read "
        "(BadZipFile)"
    ]


def test_corrupt_xml_inside_a_valid_xlsx():
    data = builders.xlsx({"S": [["a"]]})
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = body[: len(body) // 2] + b"<<<"
            target.writestr(info, body)
    result = extract(out.getvalue(), "bad.xlsx")
    assert result.reasons[0].startswith("unscannable: corrupt xlsx: XML ")


def test_xml_entities_are_refused():
    data = builders.xlsx({"S": [["a"]]})
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><sst>&b;</sst>'
    )
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("xl/sharedStrings.xml", laughs)
    result = extract(out.getvalue(), "laughs.xlsx")
    assert result.reasons == ["unscannable: unsupported: XML with a document type declaration"]


@pytest.mark.parametrize(
    "data",
    [os.urandom(5000), b"\x00\x01\x02\x03" * 1000, b"\x89PNG\r\n\x1a\n" + os.urandom(100)],
    ids=["random", "zeros", "png"],
)
def test_binary_garbage_is_unscannable(data):
    result = extract(data, "thing.txt")
    assert _codes(result) == [UnscannableCode.UNSUPPORTED] and not result.parts


def test_one_bad_member_does_not_stop_its_siblings(fake):
    email = fake.email()
    data = builders.zip_file(
        {"a.xlsx": b"PK\x03\x04 not really", "b.txt": email.encode(), "c.pdf": b"%PDF-1.4 junk"}
    )
    result = extract(data, "mixed.zip")
    assert any(email in p.text for p in result.parts)
    assert {u.path for u in result.unscannable} >= {"mixed.zip/a.xlsx", "mixed.zip/c.pdf"}


def test_broken_pdf_content_never_reaches_the_logs(fake, caplog):
    email = fake.email()
    data = builders.pdf(["hello"]).replace(b"/Type /Pages", f"/Type {email}".encode())
    with caplog.at_level("DEBUG"):
        result = extract(data, "broken.pdf")
    assert email not in caplog.text
    assert all(email not in reason for reason in result.reasons)
