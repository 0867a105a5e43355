"""Counting against the limits while extracting, and the two ways of stopping."""

from __future__ import annotations

import time
from collections.abc import Callable

from spillguard.inspection.extract.model import ExtractLimits, UnscannableCode

__all__ = ["Abort", "Budget", "Skip", "size_text"]

_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def size_text(n: float) -> str:
    """A byte count as an operator reads it in a reason: ``512 MiB``, ``1.5 KiB``, ``900 bytes``."""
    for unit, scale in _UNITS:
        if n >= scale:
            return f"{n / scale:,.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:,.0f} bytes"


class Skip(Exception):
    """This item cannot be inspected; its siblings still are."""

    def __init__(self, code: UnscannableCode, detail: str = "") -> None:
        super().__init__(code.value, detail)
        self.code = code
        self.detail = detail


class Abort(Exception):
    """A limit on the whole extraction was reached: stop everything, keep what was found."""

    def __init__(self, code: UnscannableCode, detail: str = "") -> None:
        super().__init__(code.value, detail)
        self.code = code
        self.detail = detail
        self.path: str | None = None


class Budget:
    """Bytes decompressed, entries opened and time spent by one extraction.

    Every counter is fed from what was actually read, so a header that lies about
    sizes changes nothing.
    """

    def __init__(
        self,
        limits: ExtractLimits,
        *,
        input_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.input_size = input_size
        self.clock = clock
        self.deadline = clock() + limits.time_budget
        self.total_bytes = 0
        self.entries = 0

    def check_time(self) -> None:
        """Abort once the wall-clock budget is spent."""
        if self.clock() > self.deadline:
            raise Abort(
                UnscannableCode.TIME_LIMIT,
                f"not finished within {self.limits.time_budget:g} s, the limit for one file",
            )

    def count_bytes(self, n: int) -> None:
        """Add ``n`` decompressed bytes; abort past the total size or the overall ratio."""
        self.total_bytes += n
        limits = self.limits
        if self.total_bytes > limits.max_total_bytes:
            raise Abort(
                UnscannableCode.TOO_LARGE,
                f"stopped after {size_text(limits.max_total_bytes)} decompressed, "
                "the limit for one file",
            )
        if self.input_size and self.total_bytes > limits.ratio_floor_bytes:
            ratio = self.total_bytes / self.input_size
            if ratio > limits.max_total_ratio:
                raise Abort(
                    UnscannableCode.ZIP_BOMB,
                    f"its contents expand to at least {ratio:,.0f} times the file's size "
                    f"(limit {limits.max_total_ratio:,g})",
                )

    def add_entry(self) -> None:
        """Count one archive member or attachment; abort past the limit."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise Abort(
                UnscannableCode.TOO_MANY_ENTRIES,
                f"stopped after {self.limits.max_entries:,} archive entries and attachments, "
                "the limit for one file",
            )
