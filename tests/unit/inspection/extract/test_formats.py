"""Every supported format yields its text, and tables keep their rows."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from faker import Faker

from spillguard.inspection.extract import ExtractLimits, PartKind, UnscannableCode, extract
from tests.unit.inspection.extract import builders


@pytest.fixture
def fake() -> Faker:
    faker = Faker("en_GB")
    faker.seed_instance(4)
    return faker


def _customers(fake: Faker, n: int = 5) -> list[list[str]]:
    return [[fake.name(), fake.email(), fake.postcode(), fake.phone_number()] for _ in range(n)]


HEADER = ["name", "email", "postcode", "phone"]


def _part(result, path):
    matches = [p for p in result.parts if p.path == path]
    assert matches, f"no part {path!r} in {[p.path for p in result.parts]}"
    return matches[0]


def test_xlsx_sheets_keep_rows_and_dates(fake):
    rows = _customers(fake)
    born = dt.date(1985, 3, 12)
    data = builders.xlsx(
        {"Customers": [[*HEADER, "date_of_birth"], *[[*r, born] for r in rows]], "Empty": []}
    )
    result = extract(data, "customers.xlsx")
    assert result.format == "xlsx" and result.complete
    sheet = _part(result, "customers.xlsx/Customers")
    assert sheet.kind is PartKind.TABLE
    assert sheet.rows[0] == [*HEADER, "date_of_birth"]
    assert sheet.rows[1:] == [[*r, "1985-03-12"] for r in rows]
    assert rows[2][1] in sheet.text and "postcode\tphone" in sheet.text


def test_xlsx_far_apart_cells_do_not_allocate_the_rectangle(fake):
    """calamine aborts the process on this 9 KB file; here it is two small rows."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet["A1"] = fake.email()
    sheet["XFD1048576"] = fake.postcode()
    buffer = io.BytesIO()
    workbook.save(buffer)
    result = extract(buffer.getvalue(), "sparse.xlsx")
    rows = result.parts[0].rows
    assert rows == [[sheet["A1"].value], [sheet["XFD1048576"].value]]


def test_xlsm_by_content_even_with_a_wrong_name(fake):
    rows = _customers(fake, 2)
    result = extract(builders.xlsx({"S": [HEADER, *rows]}), "notes.txt")
    assert result.format == "xlsx"
    assert _part(result, "notes.txt/S").rows == [HEADER, *rows]


def test_ods_tables(fake):
    rows = _customers(fake, 3)
    rows[1][2] = ""  # an empty cell keeps its column
    result = extract(builders.ods({"Export": [HEADER, *rows]}), "export.ods")
    assert result.format == "ods" and result.complete
    table = _part(result, "export.ods/Export").rows
    assert table[0] == HEADER
    assert table[2][:2] == rows[1][:2] and rows[1][3] in table[2]
    assert table[3] == rows[2]


def test_docx_paragraphs_tables_and_footer(fake):
    name, email = fake.name(), fake.email()
    table = [["name", "email"], [name, email]]
    result = extract(builders.docx_file([f"Dear {name},", "Call 07700 900021."], table), "l.docx")
    assert result.format == "docx" and result.complete
    body = _part(result, "l.docx")
    assert f"Dear {name}," in body.text and "07700 900021" in body.text
    assert email not in body.text  # table cells live in the table part only
    assert _part(result, "l.docx/table 1").rows == table
    assert "Spillguard Ltd" in _part(result, "l.docx/footer1.xml").text


def test_pdf_text(fake):
    email, postcode = fake.email(), fake.postcode()
    result = extract(builders.pdf([f"Email: {email}", f"Postcode: {postcode}"]), "letter.pdf")
    assert result.format == "pdf" and result.complete
    text = _part(result, "letter.pdf").text
    assert email in text and postcode in text


def test_csv_and_tsv_rows(fake):
    rows = _customers(fake, 4)
    rows[0][0] = 'Smith, "Jo"'
    csv_text = "\r\n".join(
        ",".join('"' + c.replace('"', '""') + '"' for c in r) for r in [HEADER, *rows]
    )
    result = extract(csv_text.encode(), "export.csv")
    assert result.format == "csv"
    assert _part(result, "export.csv").rows == [HEADER, *rows]
    tsv = "\n".join("\t".join(r) for r in [HEADER, *rows[1:]]).encode()
    result = extract(tsv, "export.tsv")
    assert _part(result, "export.tsv").rows == [HEADER, *rows[1:]]


def test_unlabelled_csv_is_recognised_as_a_table(fake):
    rows = _customers(fake, 5)
    data = "\n".join(";".join(r) for r in [HEADER, *rows]).encode()
    result = extract(data)
    assert result.format == "csv"
    assert result.parts[0].rows == [HEADER, *rows]


def test_html_skips_scripts_and_styles_and_keeps_tables(fake):
    email, name = fake.email(), fake.name()
    page = (
        "<!DOCTYPE html><html><head><title>Export</title><style>.x{color:red}</style>"
        "<script>var secret = 'script-only-text';</script></head><body>"
        f"<p>Contact <a href='mailto:{email}'>us</a></p>"
        f"<table><tr><th>name</th><th>email</th></tr><tr><td>{name}</td><td>{email}</td></tr>"
        "</table><template>template-only</template></body></html>"
    )
    result = extract(page.encode(), "page.bin")
    assert result.format == "html"
    text = _part(result, "page.bin").text
    assert email in text and "Export" in text  # the e-mail of the mailto: link
    assert name not in text  # the table's cells are in the table part only
    assert "script-only-text" not in text and "color:red" not in text
    assert "template-only" not in text
    assert _part(result, "page.bin/table 1").rows == [["name", "email"], [name, email]]


def test_html_text_outside_tables_and_each_cell_once(fake):
    """Omitted end tags, a table inside a cell and a table left open lose nothing and
    count nothing twice: every piece of text is in exactly one part."""
    words = [fake.unique.email() for _ in range(9)]
    page = (
        f"<html><body><p>Before {words[0]}</p>"
        f"<table><caption>{words[1]}</caption>"
        f"<tr><th>a<th>b"  # end tags omitted, as HTML allows
        f"<tr><td>{words[2]}<td>{words[3]}"
        f"<tr><td>{words[4]} <table><tr><td>{words[5]}</td></tr></table> {words[6]}</td>"
        f"<td title='{words[7]}'>x</td></tr></table>"
        f"<p>After</p><table><tr><td>{words[8]}"  # never closed
    )
    result = extract(page.encode(), "page.html")
    assert result.complete and result.format == "html"
    everything = "\n".join(part.text for part in result.parts)
    for word in words:
        assert everything.count(word) == 1, word
    assert _part(result, "page.html").text == f"Before {words[0]}\n{words[1]}\nAfter"
    tables = sorted(part.rows for part in result.parts if part.rows is not None)
    assert tables == sorted(
        [
            [["a", "b"], [words[2], words[3]], [f"{words[4]} {words[6]}", f"{words[7]} x"]],
            [[words[5]]],
            [[words[8]]],
        ]
    )


def test_json_values_with_keys_and_lists_of_objects_as_tables(fake):
    people = [{"name": fake.name(), "date_of_birth": "1985-03-12"} for _ in range(3)]
    document = {"account": {"owner_email": fake.email()}, "customers": people}
    result = extract(json.dumps(document).encode(), "dump.json")
    assert result.format == "json"
    text = _part(result, "dump.json").text
    assert f"account.owner_email: {document['account']['owner_email']}" in text
    table = _part(result, "dump.json/$.customers").rows
    assert table[0] == ["name", "date_of_birth"]
    assert table[1:] == [[p["name"], p["date_of_birth"]] for p in people]


def test_deeply_nested_json_falls_back_to_text():
    data = ("[" * 100_000 + "]" * 100_000).encode()
    result = extract(data, "deep.json")
    assert result.parts and result.parts[0].kind is PartKind.TEXT


def test_eml_headers_bodies_and_nested_attachments(fake):
    inner_email, csv_email, zip_email = fake.email(), fake.email(), fake.email()
    inner = builders.email_message(fake.email(), inner_email, f"Inner note for {inner_email}")
    attachment_zip = builders.zip_file({"deep/list.txt": f"contact {zip_email}".encode()})
    message = builders.email_message(
        fake.email(),
        "ops@example.org",
        "Plain body 07700 900021",
        html="<html><body><p>HTML body</p><script>nope()</script></body></html>",
        attachments={
            "export.csv": f"name,email\n{fake.name()},{csv_email}\n".encode(),
            "bundle.zip": attachment_zip,
        },
        attached_message=inner,
    )
    result = extract(message.as_bytes(), "mail.eml")
    assert result.format == "eml" and result.complete, result.reasons
    assert "ops@example.org" in _part(result, "mail.eml/headers").text
    assert "Plain body 07700 900021" in _part(result, "mail.eml/body").text
    html = _part(result, "mail.eml/body 2.html").text
    assert "HTML body" in html and "nope" not in html
    assert _part(result, "mail.eml/export.csv").rows[1][1] == csv_email
    assert zip_email in _part(result, "mail.eml/bundle.zip/deep/list.txt").text
    assert inner_email in _part(result, "mail.eml/message 3.eml/headers").text
    assert inner_email in _part(result, "mail.eml/message 3.eml/body").text


def test_zip_recursion_paths(fake):
    rows = _customers(fake, 2)
    inner = builders.zip_file({"customers.xlsx": builders.xlsx({"Sheet1": [HEADER, *rows]})})
    data = builders.zip_file({"inner.zip": inner, "readme.txt": b"nothing here"})
    result = extract(data, "report.zip")
    assert result.format == "zip" and result.complete
    assert _part(result, "report.zip/inner.zip/customers.xlsx/Sheet1").rows == [HEADER, *rows]
    assert _part(result, "report.zip/readme.txt").text == "nothing here"


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("cp1252", b""), ("latin-1", b""), ("utf-16", b""), ("utf-8-sig", b"")],
)
def test_encodings_are_detected_not_assumed(fake, encoding, prefix):
    text = "\n".join(
        f"{fake.name()} paid £{n}.50 at the café in {fake.city()} — reçu" for n in range(30)
    )
    if encoding == "latin-1":
        text = text.replace("—", "-")
    data = prefix + text.encode(encoding)
    result = extract(data, "notes.txt")
    assert result.parts[0].text == text


def test_non_utf8_after_a_long_ascii_start_is_not_lost():
    data = b"a" * 200_000 + "\nfee £5 café\n".encode("cp1252")
    result = extract(data, "late.txt")
    assert "£5 caf" in result.parts[0].text


def test_paths_and_streams_are_sources(tmp_path, fake):
    email = fake.email()
    target = tmp_path / "mail.txt"
    target.write_text(f"reply to {email}")
    from_path = extract(target)
    assert from_path.name == "mail.txt" and email in from_path.parts[0].text
    with target.open("rb") as handle:
        assert email in extract(handle, "x.txt").parts[0].text


def test_unreadable_path_is_an_entry_not_an_exception(tmp_path):
    result = extract(tmp_path / "missing.csv")
    assert [u.code for u in result.unscannable] == [UnscannableCode.UNREADABLE]
    assert result.reasons[0].startswith("unscannable: unreadable")
    directory = extract(tmp_path)
    assert directory.unscannable[0].code is UnscannableCode.UNREADABLE


def test_limits_validate():
    with pytest.raises(ValueError):
        ExtractLimits(max_depth=-1)
    with pytest.raises(ValueError):
        ExtractLimits(time_budget=0)
