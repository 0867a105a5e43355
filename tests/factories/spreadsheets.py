"""Spreadsheets holding customers, as a person would export them (xlsx via openpyxl)."""

from __future__ import annotations

import io

import openpyxl

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
