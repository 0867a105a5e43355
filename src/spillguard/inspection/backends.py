"""Multi-pattern scan backends: every candidate pattern in one pass over the text.

Two implementations of one contract (:class:`ScanBackend`):

* :class:`HyperscanBackend` compiles all patterns into one hyperscan stream database
  (``HS_FLAG_SOM_LEFTMOST`` for start offsets, ``HS_FLAG_UTF8``) and scans in 1 MiB
  chunks, so a deadline is honoured between chunks and matches that straddle a chunk
  border are still found.  Hyperscan reports every (leftmost start, end) pair; the
  exact spans are then fixed by RE2 inside those small regions only.
* :class:`RE2Backend` (where hyperscan is unavailable: non-x86 CPUs, missing wheel)
  asks an ``re2.Set`` which patterns occur at all, then runs only those.

Both return, per pattern, RE2's leftmost-longest non-overlapping matches, so the two
backends give the same candidates.  Offsets are byte offsets into UTF-8.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

RawMatch = tuple[int, int, int]
"""(pattern index, byte start, byte end)."""

CHUNK_BYTES = 1 << 20
_CHECK_EVERY = 1024


class PatternError(ValueError):
    """A candidate pattern cannot be compiled by a backend (a configuration error)."""

    def __init__(self, index: int, backend: str, message: str) -> None:
        super().__init__(f"pattern {index} is not supported by {backend}: {message}")
        self.index = index
        self.backend = backend


class BackendUnavailable(RuntimeError):
    """The requested scan backend cannot be imported on this machine."""


class ScanTimeout(Exception):
    """The per-call deadline passed before the scan finished."""


class TooManyCandidates(Exception):
    """The text produced more candidates than the engine's limit allows."""


class Deadline:
    """A point in time after which a scan gives up (``None`` seconds: never)."""

    def __init__(self, seconds: float | None, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._at = None if seconds is None else clock() + seconds

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._at is not None and self._clock() >= self._at

    def check(self) -> None:
        """Raise :class:`ScanTimeout` once the deadline has passed."""
        if self.expired():
            raise ScanTimeout


class ScanBackend(Protocol):
    """Finds candidate spans for a fixed list of patterns in one pass."""

    name: str

    def scan(self, data: bytes, deadline: Deadline, limit: int) -> list[RawMatch]:
        """Leftmost-longest matches of every pattern in ``data``, in no particular order.

        Raises :class:`ScanTimeout` when ``deadline`` passes and
        :class:`TooManyCandidates` beyond ``limit`` matches.
        """
        ...


def _re2_options() -> Any:
    import re2

    options = re2.Options()
    options.longest_match = True
    options.max_mem = 64 << 20
    return options


def _compile_re2(patterns: Sequence[str], backend: str) -> list[Any]:
    import re2

    options = _re2_options()
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re2.compile(pattern.encode(), options))
        except re2.error as exc:
            raise PatternError(index, backend, str(exc)) from None
    return compiled


class RE2Backend:
    """google-re2: an ``re2.Set`` says which patterns occur, then only those run."""

    name = "re2"

    def __init__(self, patterns: Sequence[str]) -> None:
        try:
            import re2
        except ImportError as exc:  # pragma: no cover - google-re2 is a dependency
            raise BackendUnavailable("google-re2 is not installed") from exc
        self._regexes = _compile_re2(patterns, self.name)
        self._set = re2.Set.SearchSet(_re2_options())
        for pattern in patterns:
            self._set.Add(pattern.encode())
        self._set.Compile()

    def scan(self, data: bytes, deadline: Deadline, limit: int) -> list[RawMatch]:
        present = self._set.Match(data) or []
        deadline.check()
        found: list[RawMatch] = []
        for index in sorted(present):
            for count, match in enumerate(self._regexes[index].finditer(data), 1):
                start, end = match.span()
                found.append((index, start, end))
                if len(found) > limit:
                    raise TooManyCandidates
                if count % _CHECK_EVERY == 0:
                    deadline.check()
            deadline.check()
        return found


class HyperscanBackend:
    """Hyperscan stream database over every pattern; RE2 fixes spans in the hit regions."""

    name = "hyperscan"

    def __init__(self, patterns: Sequence[str]) -> None:
        try:
            import hyperscan
        except ImportError as exc:
            raise BackendUnavailable("hyperscan is not installed") from exc
        self._hs = hyperscan
        self._count = len(patterns)
        self._regexes = _compile_re2(patterns, self.name)
        flags = hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8
        self._db = hyperscan.Database(
            mode=hyperscan.HS_MODE_STREAM | hyperscan.HS_MODE_SOM_HORIZON_LARGE
        )
        try:
            self._db.compile(
                expressions=[p.encode() for p in patterns],
                ids=list(range(len(patterns))),
                elements=len(patterns),
                flags=[flags] * len(patterns),
            )
        except hyperscan.error as exc:
            raise PatternError(self._culprit(patterns, flags), self.name, str(exc)) from None
        # The database's scratch space serves one scan at a time; python-hyperscan's
        # per-call scratch breaks when a stream is closed, so scans take turns instead.
        self._lock = threading.Lock()

    def _culprit(self, patterns: Sequence[str], flags: int) -> int:
        """Index of the first pattern hyperscan refuses on its own (-1 if none does)."""
        for index, pattern in enumerate(patterns):
            probe = self._hs.Database(
                mode=self._hs.HS_MODE_STREAM | self._hs.HS_MODE_SOM_HORIZON_LARGE
            )
            try:
                probe.compile(expressions=[pattern.encode()], ids=[0], elements=1, flags=[flags])
            except self._hs.error:
                return index
        return -1

    def scan(self, data: bytes, deadline: Deadline, limit: int) -> list[RawMatch]:
        regions: list[list[tuple[int, int]]] = [[] for _ in range(self._count)]
        state = _Progress()

        def on_match(index: int, start: int, end: int, _flags: int, _ctx: object) -> bool:
            spans = regions[index]
            # Ends arrive in ascending order: a repeated start only grows its region.
            if spans and spans[-1][0] == start:
                spans[-1] = (start, end)
                return False
            spans.append((start, end))
            state.count += 1
            if state.count > limit:
                state.stop = TooManyCandidates
                return True
            if state.count % _CHECK_EVERY == 0 and deadline.expired():
                state.stop = ScanTimeout
                return True
            return False

        with self._lock:
            try:
                with self._db.stream(match_event_handler=on_match) as stream:
                    for offset in range(0, len(data), CHUNK_BYTES):
                        stream.scan(data[offset : offset + CHUNK_BYTES])
                        deadline.check()
            except self._hs.ScanTerminated:
                if state.stop is not None:
                    raise state.stop from None
                raise
        deadline.check()
        return self._confirm(data, regions, deadline, limit)

    def _confirm(
        self,
        data: bytes,
        regions: list[list[tuple[int, int]]],
        deadline: Deadline,
        limit: int,
    ) -> list[RawMatch]:
        """RE2's leftmost-longest matches, searched only inside hyperscan's regions.

        Every match is contained in some (leftmost start, end) region hyperscan
        reported, so searching the merged regions in order, carrying the position on
        as a whole-text search would, gives exactly the whole-text result.  RE2 sees
        the whole text as context, so word boundaries at region edges are right.
        """
        found: list[RawMatch] = []
        for index, spans in enumerate(regions):
            if not spans:
                continue
            regex = self._regexes[index]
            position = 0
            for low, high, alone in _merge(spans):
                if alone:
                    # One (start, longest end) pair that overlaps nothing else of this
                    # pattern: the leftmost-longest match there is that pair itself.
                    found.append((index, low, high))
                    position = high
                    if len(found) > limit:
                        raise TooManyCandidates
                    continue
                cursor = max(position, low)
                while cursor < high:
                    match = regex.search(data, cursor, high)
                    if match is None:
                        break
                    start, end = match.span()
                    found.append((index, start, end))
                    position = cursor = end if end > start else end + 1
                    if len(found) > limit:
                        raise TooManyCandidates
                    if len(found) % _CHECK_EVERY == 0:
                        deadline.check()
            deadline.check()
        return found


class _Progress:
    """What the hyperscan match callback has seen, and why it stopped the scan."""

    def __init__(self) -> None:
        self.count = 0
        self.stop: type[Exception] | None = None


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """Overlapping or touching spans merged, in order, each with whether it was alone
    (one span, merged with nothing)."""
    spans.sort()
    merged: list[tuple[int, int, bool]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), False)
        else:
            merged.append((start, end, True))
    return merged


def hyperscan_available() -> bool:
    """Whether hyperscan can be imported here."""
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS: dict[str, Callable[[Sequence[str]], ScanBackend]] = {
    "hyperscan": HyperscanBackend,
    "re2": RE2Backend,
}
