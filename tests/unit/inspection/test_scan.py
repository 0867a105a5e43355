"""The scanning API: bytes, paths and streams; tables with EDM same-row matching; fail
closed; a process pool and a local Dask cluster giving the same reports as one process."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from faker import Faker

from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndex, EdmIndexBuilder, FieldKind
from spillguard.inspection import InspectionEngine, scan
from spillguard.inspection.classify import ItemStatus, Label
from spillguard.inspection.scan import iter_files, scan_paths, scan_paths_dask

KEY = KeyRing(bytes(range(32)))


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    email: str
    phone: str
    postcode: str
    card: str


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    return "".join(map(str, digits))


def make_customers(count: int, seed: int = 7) -> list[Customer]:
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    return [
        Customer(
            id=f"C{i:05d}",
            name=fake.name(),
            email=fake.unique.email(),
            phone=f"07700 900{i % 1000:03d}" if i % 2 else fake.phone_number(),
            postcode=fake.postcode(),
            card=luhn_card(rng),
        )
        for i in range(count)
    ]


def build_index(people: list[Customer]) -> EdmIndex:
    builder = EdmIndexBuilder(KEY)
    for p in people:
        builder.add(
            p.id,
            {
                FieldKind.NAME: p.name,
                FieldKind.EMAIL: p.email,
                FieldKind.PHONE: p.phone,
                FieldKind.POSTCODE: p.postcode,
                FieldKind.CARD: p.card,
            },
        )
    return builder.build()


def workbook(people: list[Customer]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Export"
    sheet.append(["Full name", "Email", "Mobile", "Postcode"])
    for p in people:
        sheet.append([p.name, p.email.upper(), p.phone, p.postcode.lower()])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def people() -> list[Customer]:
    return make_customers(500)


@pytest.fixture(scope="module")
def index(people) -> EdmIndex:
    return build_index(people)


@pytest.fixture(scope="module")
def engine() -> InspectionEngine:
    return InspectionEngine()


def test_spreadsheet_of_100_customers_is_restricted_with_their_ids(people, index, engine):
    chosen = random.Random(3).sample(people, 100)
    report = scan(workbook(chosen), name="export.xlsx", engine=engine, edm_index=index)
    assert report.format == "xlsx"
    assert report.status is ItemStatus.FINDINGS
    assert report.customer_ids == sorted(p.id for p in chosen)
    assert report.label is Label.RESTRICTED
    assert report.categories["email_address"] == 100
    assert report.categories["phone_number"] >= 50  # half are Ofcom drama numbers
    first = next(f for f in report.findings if f.entity == "email_address")
    assert first.location.part == "export.xlsx/Export"
    assert (first.location.row, first.location.cell) == (2, 2)
    dumped = json.dumps(report.to_dict(), ensure_ascii=False)
    for p in chosen:
        assert p.email not in dumped and p.email.upper() not in dumped
        assert p.card not in dumped


def test_prose_record_match_and_masked_canary(people, index, engine):
    p = people[11]
    text = (
        f"Hi team, {p.name} called from {p.phone} about the order; email {p.email}, "
        f"card {p.card[:4]} {p.card[4:8]} {p.card[8:12]} {p.card[12:]}. Postcode {p.postcode}."
    )
    report = scan(text.encode(), name="note.txt", engine=engine, edm_index=index)
    assert report.customer_ids == [p.id]
    assert report.label is Label.CONFIDENTIAL
    assert {"email_address", "payment_card"} <= set(report.categories)
    dumped = json.dumps(report.to_dict(), ensure_ascii=False) + repr(report)
    for plain in (p.email, p.phone, p.card, text[text.index("card ") + 5 :][:19]):
        assert plain not in dumped
    card = next(f for f in report.findings if f.entity == "payment_card")
    assert card.masked.endswith(p.card[-4:]) and card.masked.count("•") == 12
    assert card.location.line == 1


def test_primary_value_alone_is_counted_apart(people, index, engine):
    report = scan(f"ping {people[3].email}".encode(), engine=engine, edm_index=index)
    assert report.customer_ids == []
    assert report.primary_only == (people[3].id,)
    assert report.label is Label.INTERNAL


def test_bytes_path_and_stream_give_the_same_report(tmp_path, people, index, engine):
    data = workbook(people[:20])
    path = tmp_path / "c.xlsx"
    path.write_bytes(data)

    class OneWay(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._inner.read(min(len(buffer), 1000))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    reports = [
        scan(data, name="c.xlsx", engine=engine, edm_index=index),
        scan(path, name="c.xlsx", engine=engine, edm_index=index),
        scan(io.BytesIO(data), name="c.xlsx", engine=engine, edm_index=index),
        scan(OneWay(data), name="c.xlsx", engine=engine, edm_index=index),
    ]
    assert all(r == reports[0] for r in reports[1:])
    assert len(reports[0].customer_ids) == 20
    assert reports[0].sha256 is not None and len(reports[0].sha256) == 64
    assert reports[0].size == len(data)


def test_unscannable_parts_propagate_and_are_never_clean(tmp_path, engine):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok.txt", "nothing to see")
        archive.writestr("broken.xlsx", b"PK\x03\x04 not really a workbook")
    report = scan(buffer.getvalue(), name="bundle.zip", engine=engine)
    assert report.status is ItemStatus.UNSCANNABLE
    assert report.label is Label.CONFIDENTIAL
    assert any(e.part == "bundle.zip/broken.xlsx" for e in report.incomplete)
    missing = scan(tmp_path / "missing.csv", engine=engine)
    assert missing.status is ItemStatus.UNSCANNABLE
    assert missing.reasons == ["unscannable: unreadable: No such file or directory"]
    assert missing.sha256 is None


def test_truncated_workbook_is_reported_as_an_xlsx(people, engine):
    data = workbook(people[:50])
    report = scan(data[: len(data) // 2], name="export.xlsx", engine=engine)
    assert report.format == "xlsx"
    assert report.status is ItemStatus.UNSCANNABLE and report.label >= Label.CONFIDENTIAL
    assert report.reasons == [
        "unscannable: corrupt or truncated xlsx: its table of contents cannot be read "
        "(BadZipFile)"
    ]


def test_pipes_and_devices_are_unscannable_not_read(tmp_path, engine):
    """A named pipe blocks on open and /dev/zero never ends: both are reported at once
    (they hung the scan, before and after hashing), and the files beside them scanned."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "a.txt").write_text("write to jo@example.org")
    for special in (fifo, Path("/dev/zero")):
        report = scan(special, engine=engine)
        assert report.status is ItemStatus.UNSCANNABLE
        assert report.reasons == [
            "unscannable: unreadable: not a regular file (a pipe, socket or device)"
        ]
        assert report.sha256 is None
    reports = list(scan_paths([tmp_path], workers=1))
    assert [r.status for r in reports] == [ItemStatus.FINDINGS, ItemStatus.UNSCANNABLE]


def test_engine_timeout_is_uninspected(engine):
    ticks = itertools.count(step=1000)
    slow = InspectionEngine(timeout=1.0, clock=lambda: float(next(ticks)))
    report = scan(b"call 07700 900123", name="n.txt", engine=slow)
    assert report.status is ItemStatus.UNINSPECTED
    assert report.reasons[0].startswith("uninspected: timeout")
    assert report.label >= Label.CONFIDENTIAL


def test_table_header_gives_context_to_every_row(engine):
    rows = ["customer,date_of_birth,sort_code,account"]
    rows += [f"C{i},0{i % 9 + 1}/03/1985,12-34-5{i % 10},1234567{i % 10}" for i in range(40)]
    report = scan("\n".join(rows).encode(), name="bank.csv", engine=engine)
    assert report.categories == {"date_of_birth": 40, "uk_bank_account": 40}
    last = [f for f in report.findings if f.location.row == 41]
    assert {f.entity for f in last} == {"date_of_birth", "uk_bank_account"}
    assert {f.location.cell for f in last} == {2, 3}


def test_html_table_is_counted_once(people, index, engine):
    """An HTML page holding a table of customers finds what the same table as a CSV finds:
    the cells are in the table part only, not also in the page's text."""
    chosen = people[40:60]
    header = ["Full name", "Email", "Mobile", "Postcode", "Card"]
    rows = [[p.name, p.email, p.phone, p.postcode, p.card] for p in chosen]

    def cells(tag: str, row: list[str]) -> str:
        return "<tr>" + "".join(f"<{tag}>{value}</{tag}>" for value in row) + "</tr>"

    page = (
        "<!doctype html><html><body><h1>Customer export</h1><table>"
        + cells("th", header)
        + "".join(cells("td", row) for row in rows)
        + "</table><p>Questions: help@example.org</p></body></html>"
    )
    csv = "\n".join(",".join(row) for row in [header, *rows])
    html_report = scan(page.encode(), name="export.html", engine=engine, edm_index=index)
    csv_report = scan(csv.encode(), name="export.csv", engine=engine, edm_index=index)
    assert html_report.format == "html" and csv_report.format == "csv"
    expected = dict(csv_report.categories)
    expected["email_address"] += 1  # the help address outside the table
    assert html_report.categories == expected
    assert expected["email_address"] == 21 and expected["payment_card"] == 20
    assert html_report.customer_ids == csv_report.customer_ids == sorted(p.id for p in chosen)
    in_table = [f for f in html_report.findings if f.location.part == "export.html/table 1"]
    assert len(in_table) == sum(csv_report.categories.values())


def write_tree(root: Path, people: list[Customer]) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.xlsx").write_bytes(workbook(people[:15]))
    (root / "sub" / "notes.txt").write_text(f"{people[20].name} {people[20].email}")
    (root / "sub" / "deeper" / "clean.txt").write_text("lunch at noon")
    (root / "sub" / "deeper" / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    (root / "z.csv").write_text("email\n" + "\n".join(p.email for p in people[30:40]))


def test_iter_files_is_recursive_and_ordered(tmp_path, people):
    write_tree(tmp_path, people)
    files = list(iter_files([tmp_path, tmp_path / "nope"]))
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "a.xlsx",
        "z.csv",
        "sub/notes.txt",
        "sub/deeper/bad.pdf",
        "sub/deeper/clean.txt",
        "nope",
    ]


def test_two_workers_give_the_same_reports_as_one(tmp_path, people, index):
    write_tree(tmp_path, people)
    one = list(scan_paths([tmp_path], workers=1, edm_index=index))
    two = list(scan_paths([tmp_path], workers=2, edm_index=index))
    assert one == two
    by_name = {Path(r.path).name: r for r in one}
    assert len(by_name["a.xlsx"].customer_ids) == 15
    assert by_name["notes.txt"].customer_ids == [people[20].id]
    assert by_name["clean.txt"].status is ItemStatus.CLEAN
    assert by_name["bad.pdf"].status is ItemStatus.UNSCANNABLE
    assert len(by_name["z.csv"].primary_only) == 10


def test_local_dask_cluster_gives_the_same_reports(tmp_path, people, index):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    write_tree(tmp_path, people)
    expected = list(scan_paths([tmp_path], edm_index=index))
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        got = list(
            scan_paths_dask([tmp_path], cluster.scheduler_address, edm_index=index, edm_keyring=KEY)
        )
        with distributed.Client(cluster, set_as_default=False) as client:
            again = list(scan_paths_dask([tmp_path], client, in_flight=1))
    assert got == expected
    assert [r.path for r in again] == [r.path for r in expected]
    assert all(r.customer_ids == [] for r in again)
    with pytest.raises(ValueError, match="edm_keyring"):
        next(scan_paths_dask([tmp_path], "tcp://127.0.0.1:1", edm_index=index))
