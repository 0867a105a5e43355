"""Context words found once per text, for texts dense with candidates (table exports).

:meth:`Detector.has_context` searches the detector's context pattern in a window
around each candidate: a few microseconds each, which in a dense export (a candidate
every 30 characters) costs more than validation.  :class:`ContextIndex` finds, in one
pass over the lower-cased text, every whole-word occurrence of every detector's
context words, then answers "is there a context word in ``text[a:b]``?" with a binary
search.  It gives the same answer as searching the window, including a word cut by
the window's edge (``tel`` of ``telephone`` when the window ends after ``l``): such
cases, and any text or word it cannot handle (non-ASCII text, a word that does not
start and end with a letter or digit), are left to the window search (``None``).

Why the answers agree: in the window ``text[a:b]`` the context pattern
``(?<![a-z0-9])(?:words)(?![a-z0-9])`` sees the same neighbours as in the whole text
except at ``a`` and ``b``.  An occurrence not touching ``a`` or ``b`` is therefore a
whole-text occurrence inside ``[a, b)``, and every whole-text occurrence inside
``[a, b)`` is one in the window.  Occurrences touching an edge differ only when the
edge falls inside a run of letters and digits and the window begins with the first run
(or ends with the last run) of some context word; those go the slow way.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ContextIndex", "ContextTable", "ContextWords", "context_words"]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_RUN = re.compile(r"[a-z0-9]+")
_PHRASE_GAP = r"[\s_\-]+"  # as in detectors.base.context_pattern


@dataclass(frozen=True)
class ContextWords:
    """One detector's context words, prepared for :class:`ContextIndex`."""

    firsts: tuple[str, ...]
    """The leading run of letters and digits of each word."""
    lasts: tuple[str, ...]
    """The trailing run of letters and digits of each word."""
    by_first: dict[str, tuple[re.Pattern[str], ...]]
    """Leading run -> the words starting with it, as patterns over lower-cased text."""


def context_words(words: Sequence[str]) -> ContextWords | None:
    """``words`` prepared for the index, or ``None`` when one of them cannot be (a
    non-ASCII word, or one that does not start and end with a letter or digit)."""
    cleaned = sorted({w.strip().lower() for w in words if w.strip()})
    if not cleaned:
        return None
    firsts: list[str] = []
    lasts: list[str] = []
    by_first: dict[str, list[re.Pattern[str]]] = {}
    for word in cleaned:
        if not word.isascii() or word[0] not in _ALNUM or word[-1] not in _ALNUM:
            return None
        first = _RUN.match(word)
        last = re.search(r"[a-z0-9]+\Z", word)
        if first is None or last is None:  # pragma: no cover - guarded above
            return None
        body = _PHRASE_GAP.join(re.escape(part) for part in word.split())
        firsts.append(first.group())
        lasts.append(last.group())
        by_first.setdefault(first.group(), []).append(re.compile(body + r"(?![a-z0-9])"))
    return ContextWords(
        firsts=tuple(sorted(set(firsts))),
        lasts=tuple(sorted(set(lasts))),
        by_first={k: tuple(v) for k, v in by_first.items()},
    )


class ContextTable:
    """Every detector's prepared words, for building a :class:`ContextIndex` per text.

    ``prepared[i]`` is detector ``i``'s words (``None``: that detector is not indexed).
    """

    def __init__(self, prepared: Sequence[ContextWords | None]) -> None:
        self.prepared = tuple(prepared)
        # Leading run -> the detectors having it as a whole word, and the detectors with
        # a longer word (a phrase, "e-mail") starting with it, with that word's pattern.
        alone: dict[str, list[int]] = {}
        longer: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for slot, words in enumerate(self.prepared):
            if words is None:
                continue
            for run, patterns in words.by_first.items():
                for pattern in patterns:
                    if pattern.pattern == re.escape(run) + r"(?![a-z0-9])":
                        alone.setdefault(run, []).append(slot)
                    else:
                        longer.setdefault(run, []).append((slot, pattern))
        self.alone = {run: tuple(slots) for run, slots in alone.items()}
        self.longer = {run: tuple(entries) for run, entries in longer.items()}
        self.leading = _leading_pattern({*alone, *longer})


def _leading_pattern(runs: Iterable[str]) -> re.Pattern[str] | None:
    """``(?<![a-z0-9])(?:run|run…)(?![a-z0-9])``, written first letter first.

    Each branch is ``x(?<![a-z0-9].)(?:rest|…)``: the same matches (the look-behind
    tests the character before ``x``), but a branch starting with a literal lets the
    regex engine skip quickly over characters that begin no run (about a third faster).
    """
    by_first: dict[str, list[str]] = {}
    for run in runs:
        by_first.setdefault(run[0], []).append(run[1:])
    if not by_first:
        return None
    branches = []
    for first, rests in sorted(by_first.items()):
        rest = "|".join(re.escape(r) for r in sorted(rests, key=len, reverse=True))
        branches.append(re.escape(first) + r"(?<![a-z0-9].)(?:" + rest + ")")
    return re.compile("(?:" + "|".join(branches) + r")(?![a-z0-9])")


class ContextIndex:
    """Whole-word context occurrences of one text; see the module documentation.

    ``lowered`` is the text lower-cased, and must be ASCII (``str.lower`` keeps ASCII
    offsets); ``table.leading`` must not be ``None``.
    """

    def __init__(self, lowered: str, table: ContextTable) -> None:
        if table.leading is None:
            raise ValueError("no context words to index")
        self._text = lowered
        self._length = len(lowered)
        self._prepared = table.prepared
        starts: list[list[int]] = [[] for _ in table.prepared]
        ends: list[list[int]] = [[] for _ in table.prepared]
        alone = table.alone
        longer = table.longer
        for match in table.leading.finditer(lowered):
            run = match.group()
            start, end = match.span()
            for slot in alone.get(run, ()):
                starts[slot].append(start)
                ends[slot].append(end)
            for slot, pattern in longer.get(run, ()):
                found = pattern.match(lowered, start)
                if found is not None:
                    starts[slot].append(start)
                    ends[slot].append(found.end())
        self._starts = starts
        self._ends = ends

    def has_context(self, slot: int, a: int, b: int) -> bool | None:
        """Whether a context word of detector ``slot`` occurs in ``text[a:b]`` as the
        window search would find it; ``None`` when an edge needs the window search."""
        words = self._prepared[slot]
        if words is None:
            return None
        text = self._text
        if a < 0:
            a = 0
        if b > self._length:
            b = self._length
        if (
            0 < a < b
            and text[a - 1] in _ALNUM
            and text[a] in _ALNUM
            and text.startswith(words.firsts, a, b)
        ):
            return None
        if (
            a < b < self._length
            and text[b] in _ALNUM
            and text[b - 1] in _ALNUM
            and text.endswith(words.lasts, a, b)
        ):
            return None
        starts = self._starts[slot]
        ends = self._ends[slot]
        at = bisect.bisect_left(starts, a)
        count = len(starts)
        while at < count and starts[at] < b:
            if ends[at] <= b:
                return True
            at += 1
        return False
