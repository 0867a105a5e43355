"""What an extraction returns, and the limits it runs under."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ExtractLimits",
    "ExtractedPart",
    "Extraction",
    "PartKind",
    "Unscannable",
    "UnscannableCode",
]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """Limits that hold whatever the input claims about itself.

    Sizes are counted as bytes are actually read or decompressed, never taken from
    headers alone; declared sizes are only used to refuse early.
    """

    max_depth: int = 5
    """Containers (zip, e-mail, attachment) that may enclose an item; deeper is refused."""
    max_total_bytes: int = 512 * MiB
    """Bytes read or decompressed over the whole extraction, all members together."""
    max_member_bytes: int = 64 * MiB
    """Bytes of one item held in memory (a zip member, an attachment, a PDF from a stream)."""
    max_ratio: float = 100.0
    """Decompressed / compressed size of one zip member (zip bombs)."""
    max_total_ratio: float = 200.0
    """Bytes decompressed over the whole extraction / size of the outer input."""
    ratio_floor_bytes: int = 1 * MiB
    """Ratios are only enforced past this many decompressed bytes (tiny files compress well)."""
    max_entries: int = 10_000
    """Archive members and attachments over the whole extraction."""
    time_budget: float = 60.0
    """Wall-clock seconds for one extraction (one top-level file)."""
    max_part_chars: int = 16 * MiB
    """Characters of text (or of table cells) kept for one part; the rest is cut."""

    def __post_init__(self) -> None:
        for name in (
            "max_depth",
            "max_total_bytes",
            "max_member_bytes",
            "max_entries",
            "max_part_chars",
            "ratio_floor_bytes",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_ratio <= 0 or self.max_total_ratio <= 0 or self.time_budget <= 0:
            raise ValueError("ratios and the time budget must be positive")


class PartKind(StrEnum):
    """Running text, or a table whose rows must stay rows (EDM's same-row matching)."""

    TEXT = "text"
    TABLE = "table"


@dataclass(slots=True)
class ExtractedPart:
    """One piece of content: its path inside the container, its text, and table rows.

    For a table, ``text`` is the rows joined with tabs and new lines (so detectors see
    the header words) and ``rows`` keeps every row as a list of cell strings.
    ``truncated`` says the part was cut at ``max_part_chars``.
    """

    path: str
    kind: PartKind
    text: str
    rows: list[list[str]] | None = None
    format: str = ""
    truncated: bool = False

    @classmethod
    def table(
        cls, path: str, rows: list[list[str]], *, format: str, truncated: bool = False
    ) -> ExtractedPart:
        """A table part whose text is its rows, tab-separated, one per line."""
        text = "\n".join("\t".join(row) for row in rows)
        return cls(path, PartKind.TABLE, text, rows, format, truncated)


class UnscannableCode(StrEnum):
    """Why (part of) an item could not be inspected.  Each is a finding of its own."""

    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    CORRUPT_OR_TRUNCATED = "corrupt or truncated"
    """A zip (or an Office or OpenDocument file, which are zips) whose structure or
    compressed data cannot be read: what a file cut short looks like."""
    UNSUPPORTED = "unsupported"
    UNREADABLE = "unreadable"
    TOO_DEEP = "nesting too deep"
    ZIP_BOMB = "zip bomb"
    TOO_MANY_ENTRIES = "too many entries"
    TIME_LIMIT = "time limit"
    TOO_LARGE = "too large"


@dataclass(frozen=True, slots=True)
class Unscannable:
    """An item, or the rest of one, that was not inspected, and why.

    ``reason`` is the text shown to users, e.g. ``unscannable: corrupt xlsx: BadZipFile``;
    it never quotes the content.
    """

    path: str
    code: UnscannableCode
    detail: str = ""

    @property
    def reason(self) -> str:
        """``unscannable: <code>[: <detail>]``, e.g. ``unscannable: corrupt xlsx: BadZipFile``
        or ``unscannable: zip bomb: entry x.bin expands 1,032 times (limit 100)``.

        A limit's reason says in plain words what was met and names the limit."""
        text = f"unscannable: {self.code.value}"
        if not self.detail:
            return text
        if self.code in {UnscannableCode.CORRUPT, UnscannableCode.CORRUPT_OR_TRUNCATED}:
            return f"{text} {self.detail}"  # the detail starts with the format: "corrupt xlsx: …"
        return f"{text}: {self.detail}"


@dataclass(slots=True)
class Extraction:
    """Everything extracted from one input: the parts, and what could not be inspected."""

    name: str
    format: str = ""
    parts: list[ExtractedPart] = field(default_factory=list)
    unscannable: list[Unscannable] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing was left uninspected (no unscannable entry)."""
        return not self.unscannable

    @property
    def encrypted(self) -> bool:
        """True when any item was encrypted or password-protected."""
        return any(u.code is UnscannableCode.ENCRYPTED for u in self.unscannable)

    @property
    def reasons(self) -> list[str]:
        """The unscannable reasons as shown to users."""
        return [u.reason for u in self.unscannable]
