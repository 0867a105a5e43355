"""Inputs as blobs: a head for sniffing, chunked reading, and materialising with a cap."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from spillguard.inspection.extract.budget import Budget, Skip, size_text
from spillguard.inspection.extract.model import UnscannableCode

__all__ = ["CHUNK", "HEAD", "Blob"]

HEAD = 64 * 1024
CHUNK = 1024 * 1024


class Blob:
    """One item's bytes: a seekable file, in-memory bytes, or a one-way stream.

    ``head`` holds the first bytes for sniffing.  A one-way stream is never read whole
    unless a format needs random access, and then only up to ``max_member_bytes``.
    """

    def __init__(self, stream: BinaryIO, *, size: int | None = None) -> None:
        self._stream = stream
        try:
            self.seekable = bool(stream.seekable())
        except (AttributeError, OSError, ValueError):
            self.seekable = False
        if self.seekable:
            stream.seek(0)
            self.head = _read_upto(stream, HEAD)
            if size is None:
                size = stream.seek(0, io.SEEK_END)
            stream.seek(0)
        else:
            self.head = _read_upto(stream, HEAD)
        self.size = size
        self._consumed = False

    @classmethod
    def of_bytes(cls, data: bytes) -> Blob:
        return cls(io.BytesIO(data), size=len(data))

    def chunks(self, budget: Budget, size: int = CHUNK) -> Iterator[bytes]:
        """The whole content in chunks, checking the time budget between chunks."""
        if self.seekable:
            self._stream.seek(0)
        else:
            if self._consumed:
                raise Skip(UnscannableCode.UNREADABLE, "stream already consumed")
            self._consumed = True
            if self.head:
                yield self.head
        while True:
            budget.check_time()
            chunk = self._stream.read(size)
            if not chunk:
                return
            yield chunk

    def random_access(self, budget: Budget) -> BinaryIO:
        """A seekable stream over the content, materialising a one-way stream up to a cap."""
        if self.seekable:
            self._stream.seek(0)
            return self._stream
        cap = budget.limits.max_member_bytes
        buffer = io.BytesIO()
        for chunk in self.chunks(budget):
            buffer.write(chunk)
            if buffer.tell() > cap:
                raise _over(cap)
        self.size = buffer.tell()
        self._stream = buffer
        self.seekable = True
        buffer.seek(0)
        return buffer

    def read_all(self, budget: Budget) -> bytes:
        """The whole content as bytes, refused past ``max_member_bytes``."""
        cap = budget.limits.max_member_bytes
        if self.size is not None and self.size > cap:
            raise _over(cap)
        stream = self.random_access(budget)
        data = stream.read(cap + 1)
        if len(data) > cap:
            raise _over(cap)
        return data


def _over(cap: int) -> Skip:
    return Skip(
        UnscannableCode.TOO_LARGE,
        f"over {size_text(cap)}, the limit for one item held in memory",
    )


def _read_upto(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
