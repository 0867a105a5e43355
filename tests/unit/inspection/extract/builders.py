"""Builders for every extractor format, generated in memory (no fixture files)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from email.message import EmailMessage

import docx
import openpyxl
from pypdf import PdfReader, PdfWriter


def xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def docx_file(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.sections[0].footer.paragraphs[0].text = "Footer: Spillguard Ltd"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _escape_pdf(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf(lines: list[str]) -> bytes:
    """A minimal one-page PDF with Helvetica text, offsets computed for a valid xref."""
    ops = ["BT", "/F1 11 Tf", "72 760 Td", "14 TL"]
    ops += [f"({_escape_pdf(line)}) Tj T*" for line in lines]
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypted_pdf(lines: list[str], password: str = "s3cret-Pa55") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(lines))))
    writer.encrypt(user_password=password, owner_password=password + "!", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def zip_file(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def set_encrypted_flag(data: bytes) -> bytes:
    """Mark every member as traditionally encrypted (zipfile cannot write encryption)."""
    out = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (at := out.find(signature, start)) >= 0:
            out[at + flag_at] |= 0x01
            start = at + 4
    return bytes(out)


_ODS_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)


def ods(tables: dict[str, list[list[str]]], *, encrypted: bool = False) -> bytes:
    """A hand-built OpenDocument spreadsheet: mimetype, content.xml, manifest."""
    from xml.sax.saxutils import escape, quoteattr

    body = []
    for name, rows in tables.items():
        body.append(f"<table:table table:name={quoteattr(name)}>")
        for row in rows:
            body.append("<table:table-row>")
            for value in row:
                if not value:
                    body.append('<table:table-cell table:number-columns-repeated="3"/>')
                    continue
                body.append(
                    '<table:table-cell office:value-type="string">'
                    f"<text:p>{escape(value)}</text:p></table:table-cell>"
                )
            body.append("</table:table-row>")
        body.append("</table:table>")
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {_ODS_NS}>'
        f"<office:body><office:spreadsheet>{''.join(body)}</office:spreadsheet>"
        "</office:body></office:document-content>"
    )
    entry = (
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        + (
            '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
            if encrypted
            else ""
        )
        + "</manifest:file-entry>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        f"{entry}</manifest:manifest>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def email_message(
    sender: str,
    to: str,
    body: str,
    *,
    html: str | None = None,
    attachments: dict[str, bytes] | None = None,
    attached_message: EmailMessage | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Customer export"
    message["Date"] = "Tue, 01 Apr 2025 09:30:00 +0100"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, data in (attachments or {}).items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    if attached_message is not None:
        message.add_attachment(attached_message)
    return message


def today() -> dt.date:
    return dt.date(2025, 4, 1)
