"""Zip containers read defensively: entry counts, declared and actual sizes, ratios."""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from spillguard.inspection.extract.budget import Budget, Skip, size_text
from spillguard.inspection.extract.model import UnscannableCode

__all__ = ["ZipReader", "declared_entries"]

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_READ = 256 * 1024


def declared_entries(stream: BinaryIO, size: int) -> int | None:
    """The entry count in the end-of-central-directory record, read before ``ZipFile``.

    ``zipfile`` loads the whole central directory into memory; a count checked first
    keeps a million-entry archive from doing so.  ``None`` when no record is found.
    """
    tail_len = min(size, 65536 + 22)
    stream.seek(size - tail_len)
    tail = stream.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    entries: int = struct.unpack_from("<H", tail, at + 10)[0]
    if entries == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", tail, at - 20 + 8)
        if 0 <= offset < size:
            stream.seek(offset)
            record = stream.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries = struct.unpack_from("<Q", record, 32)[0]
    return entries


class ZipReader:
    """Members of one zip, each read with its bytes counted as they are decompressed."""

    def __init__(self, stream: BinaryIO, size: int, budget: Budget, kind: str = "zip") -> None:
        limits = budget.limits
        self.budget = budget
        self.kind = kind
        count = declared_entries(stream, size)
        if count is not None and count > limits.max_entries:
            raise Skip(
                UnscannableCode.TOO_MANY_ENTRIES,
                f"the {kind} declares {count:,} (limit {limits.max_entries:,})",
            )
        stream.seek(0)
        try:
            self.zip = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise Skip(
                UnscannableCode.CORRUPT_OR_TRUNCATED,
                f"{kind}: its table of contents cannot be read ({type(exc).__name__})",
            ) from None
        self.members = [info for info in self.zip.infolist() if not info.is_dir()]
        if len(self.members) > limits.max_entries:
            raise Skip(
                UnscannableCode.TOO_MANY_ENTRIES,
                f"the {kind} holds {len(self.members):,} (limit {limits.max_entries:,})",
            )
        declared = sum(info.file_size for info in self.members)
        ratio = declared / max(size, 1)
        if declared > limits.ratio_floor_bytes and ratio > limits.max_total_ratio:
            raise Skip(
                UnscannableCode.ZIP_BOMB,
                f"the {kind} declares contents {ratio:,.0f} times its size "
                f"(limit {limits.max_total_ratio:,g})",
            )
        self.names = {info.filename for info in self.members}

    def info(self, name: str) -> zipfile.ZipInfo | None:
        try:
            return self.zip.getinfo(name)
        except KeyError:
            return None

    def check(self, info: zipfile.ZipInfo) -> None:
        """Refuse a member on what it declares: encryption, size, ratio."""
        limits = self.budget.limits
        if info.flag_bits & 0x1 or info.compress_type == 99:  # 99: WinZip AES
            raise Skip(UnscannableCode.ENCRYPTED, "password-protected zip member")
        if info.file_size > limits.max_member_bytes:
            raise Skip(
                UnscannableCode.TOO_LARGE,
                f"entry {info.filename} declares {size_text(info.file_size)} "
                f"(limit {size_text(limits.max_member_bytes)} per entry)",
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise Skip(
                UnscannableCode.ZIP_BOMB,
                f"entry {info.filename} would expand {ratio:,.0f} times, by the sizes it "
                f"declares (limit {limits.max_ratio:,g})",
            )

    def stream(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's bytes in chunks, counted as read; a bomb is stopped mid-way."""
        self.check(info)
        limits = self.budget.limits
        read = 0
        try:
            with self.zip.open(info) as member:
                while True:
                    self.budget.check_time()
                    chunk = member.read(_READ)
                    if not chunk:
                        return
                    read += len(chunk)
                    self.budget.count_bytes(len(chunk))
                    if read > limits.max_member_bytes:
                        raise Skip(
                            UnscannableCode.TOO_LARGE,
                            f"entry {info.filename} is over "
                            f"{size_text(limits.max_member_bytes)}, the limit per entry",
                        )
                    ratio = read / max(info.compress_size, 1)
                    if read > limits.ratio_floor_bytes and ratio > limits.max_ratio:
                        raise Skip(
                            UnscannableCode.ZIP_BOMB,
                            f"entry {info.filename} expands at least {ratio:,.0f} times "
                            f"(limit {limits.max_ratio:,g})",
                        )
                    yield chunk
        except NotImplementedError:
            raise Skip(
                UnscannableCode.UNSUPPORTED, f"compression method {info.compress_type}"
            ) from None
        except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
            if "encrypt" in str(exc) or "password" in str(exc):
                raise Skip(UnscannableCode.ENCRYPTED, "password-protected zip member") from None
            raise self._unreadable(info, exc) from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise self._unreadable(info, exc) from None

    def _unreadable(self, info: zipfile.ZipInfo, exc: Exception) -> Skip:
        return Skip(
            UnscannableCode.CORRUPT_OR_TRUNCATED,
            f"{self.kind}: entry {info.filename} cannot be decompressed ({type(exc).__name__})",
        )

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """The whole member (bounded by ``max_member_bytes``)."""
        return b"".join(self.stream(info))
