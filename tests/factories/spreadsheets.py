"""Spreadsheets holding customers, as a person would export them (xlsx via openpyxl),
and varied or hand-written workbooks for comparing the two xlsx readers."""

from __future__ import annotations

import datetime
import io
import random
import zipfile

import openpyxl
from faker import Faker
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from tests.factories.customers import Person


def customers_xlsx(rows: list[Person]) -> bytes:
    """An xlsx export of ``rows``: name, e-mail address and postcode per customer."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Export"
    sheet.append(["Name", "E-mail address", "Postcode"])
    for person in rows:
        sheet.append([person.name, person.email, person.postcode])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- varied workbooks for comparing the two xlsx readers -----------------------------

_FORMATS = [
    "General",
    "0.00",
    "dd/mm/yyyy",
    "yyyy-mm-dd hh:mm:ss",
    "hh:mm",
    "[h]:mm:ss",
    "@",
    '"Due "d mmm',
    "#,##0",
]


def _value(rng: random.Random, fake: Faker) -> object:
    kind = rng.randrange(16)
    if kind == 0:
        return rng.randint(-(10**6), 10**6)
    if kind == 1:
        return rng.choice([0, -1, 2**31, 2**53 - 1, 2**53 + 1, 10**15, 10**17, 7700900123])
    if kind == 2:
        return round(rng.uniform(-1000, 1000), rng.randrange(0, 6))
    if kind == 3:
        return rng.choice([0.1 + 0.2, 1e-7, 1.5e-5, 1e20, -0.0, 3.0, 2.5e15, 1 / 3, 123456.789])
    if kind == 4:
        return rng.random() > 0.5
    if kind == 5:
        return fake.date_between("-90y", "today")
    if kind == 6:
        moment = fake.date_time_between("-30y", "now")
        return moment.replace(microsecond=rng.choice([0, 0, 500_000, 999_999]))
    if kind == 7:
        return datetime.time(rng.randrange(24), rng.randrange(60), rng.randrange(60))
    if kind == 8:
        return rng.choice(["007", "0044 7700 900123", " lead", "trail ", "a\nb", "x & <y>"])
    if kind == 9:
        return rng.choice(["", " ", "=A1+1", "=SUM(A1:A3)", "Zoë Brontë", "€ 5", "TRUE"])
    if kind == 10:
        # A run of bare white space sends its workbook to the streamed reader: rarely.
        between = " " if rng.random() < 0.03 else rng.choice(["-", ", ", " & "])
        return CellRichText([TextBlock(InlineFont(b=True), fake.first_name()), between, "x"])
    if kind == 11:
        return None
    if kind == 12:
        return fake.phone_number()
    if kind == 13:
        return fake.postcode()
    if kind == 14:
        return fake.email()
    return fake.name()


def varied_xlsx(seed: int) -> bytes:
    """A workbook of 1-3 sheets (some hidden) with numbers, dates, times, booleans,
    formulas, rich and plain strings, number formats, gaps and very wide rows."""
    rng = random.Random(seed)
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    if rng.random() < 0.2:
        book.epoch = CALENDAR_MAC_1904
    for number in range(rng.randint(1, 3)):
        sheet = book.create_sheet(f"Sheet {number} {fake.word()}")
        if number and rng.random() < 0.3:
            sheet.sheet_state = rng.choice(["hidden", "veryHidden"])
        rows = rng.randint(0, 40)
        for row in range(1, rows + 1):
            if rng.random() < 0.15:
                continue  # a gap
            width = rng.choice([1, 3, 6, 12])
            start = rng.choice([1, 1, 1, 2, 5])
            for column in range(start, start + width):
                if rng.random() < 0.2:
                    continue
                cell = sheet.cell(row=row, column=column, value=_value(rng, fake))  # type: ignore[arg-type]
                if rng.random() < 0.25:
                    cell.number_format = rng.choice(_FORMATS)
            if rng.random() < 0.05:
                far = rng.choice([1025, 1100, 2000, 16384])
                sheet.cell(row=row, column=far, value=fake.postcode())
    if not book.sheetnames:
        book.create_sheet("Empty")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def raw_xlsx(
    sheet_data: str,
    *,
    shared: list[str] | None = None,
    styles: str = "",
    worksheet: str | None = None,
    shared_xml: str | None = None,
) -> bytes:
    """An xlsx written by hand: ``sheet_data`` is the inside of ``<sheetData>``;
    ``shared`` are ``<si>`` bodies; ``styles`` the inside of ``<styleSheet>``."""
    sheet = worksheet or (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_MAIN}">'
        f"<sheetData>{sheet_data}</sheetData></worksheet>"
    )
    rels = (
        f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
        f'<Relationship Id="rId3" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
        )
        package.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        package.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="Raw" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        package.writestr("xl/_rels/workbook.xml.rels", rels)
        package.writestr("xl/worksheets/sheet1.xml", sheet)
        if shared is not None or shared_xml is not None:
            body = "".join(f"<si>{s}</si>" for s in shared or [])
            package.writestr(
                "xl/sharedStrings.xml", shared_xml or f'<sst xmlns="{_MAIN}">{body}</sst>'
            )
        package.writestr("xl/styles.xml", f'<styleSheet xmlns="{_MAIN}">{styles}</styleSheet>')
    return buffer.getvalue()
