"""Extractors: the text and table rows inside files, read safely.

``extract(source, name, limits)`` takes bytes, a path or a binary stream and returns an
:class:`Extraction`: the parts (text, or tables whose rows stay rows for exact data
match's same-row rule), each with its path inside the container
(``report.zip/customers.xlsx/Sheet1``), and the items that could not be inspected,
each with its reason (``unscannable: encrypted``, ``unscannable: zip bomb: entry …
expands 1,032 times (limit 100)``).

Formats are detected from content, not names: txt, csv/tsv, json, html, eml (headers,
bodies, attachments, recursively), zip (recursively), xlsx/xlsm, ods, odt, docx, pptx,
pdf.  Every limit in :class:`ExtractLimits` is counted on what is actually read, so it
holds under attack.  See docs/inspection.md, "Extractors".
"""

from __future__ import annotations

from spillguard.inspection.extract.dispatch import Source, extract, not_a_regular_file
from spillguard.inspection.extract.model import (
    ExtractedPart,
    Extraction,
    ExtractLimits,
    PartKind,
    Unscannable,
    UnscannableCode,
)

__all__ = [
    "ExtractLimits",
    "ExtractedPart",
    "Extraction",
    "PartKind",
    "Source",
    "Unscannable",
    "UnscannableCode",
    "extract",
    "not_a_regular_file",
]
