"""PDF text with pypdf, page by page under the time budget; encrypted PDFs refused."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, BinaryIO

from pypdf import PdfReader

from spillguard.inspection.extract.budget import Abort, Skip
from spillguard.inspection.extract.model import UnscannableCode

if TYPE_CHECKING:
    from spillguard.inspection.extract.dispatch import Context

__all__ = ["extract_pdf"]

# pypdf's log messages quote bytes of the document being parsed, which may be customer
# data; nothing scanned may reach a log, so its logger is silenced.
logging.getLogger("pypdf").setLevel(logging.CRITICAL + 1)


def extract_pdf(ctx: Context, stream: BinaryIO, path: str) -> None:
    """The text of every page as one part (pages separated by form feeds).

    A PDF that opens with the empty user password (owner password only) is read; any
    other encrypted PDF is ``unscannable: encrypted``.  pypdf caps each decoded stream
    (75 MB by default), so a compressed-stream bomb fails the page, not the process.
    """
    cap = ctx.limits.max_part_chars
    pages: list[str] = []
    used = 0
    truncated = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = PdfReader(stream, strict=False)
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))
            except Exception:  # unsupported algorithm, broken dictionary
                opened = False
            if not opened:
                raise Skip(UnscannableCode.ENCRYPTED, "password-protected PDF")
        for number, page in enumerate(reader.pages, 1):
            ctx.budget.check_time()
            try:
                text = page.extract_text() or ""
            except (Abort, Skip):
                raise
            except Exception as exc:  # pypdf raises many types on broken content
                ctx.unscannable(
                    f"{path}/page {number}", UnscannableCode.CORRUPT, f"pdf: {type(exc).__name__}"
                )
                continue
            if used + len(text) > cap:
                pages.append(text[: cap - used])
                truncated = True
                break
            pages.append(text)
            used += len(text) + 1
    ctx.add_text(path, "\n\f".join(pages).strip(), "pdf", truncated)
