"""Keep a long-running process's long-lived objects out of the garbage collector's way.

CPython's cyclic garbage collector now and then makes a *full* collection, which walks
every tracked object the process holds. A process that has loaded the inspection engine
and an EDM index holds a great many of them, and inspecting a dense table creates tens of
thousands of findings that live until the table is done, which is exactly what triggers
full collections. Measured on the benchmark's CSV exports: one full collection cost
30-130 ms, about as much as scanning the whole 0.3 MB corpus, and halved the throughput
(docs/benchmarks.md, "Content inspection").

:func:`settle` moves everything alive at that moment into the permanent generation
(:func:`gc.freeze`), which collections skip. Objects freed by reference counting are
still freed at once; only a reference cycle among the frozen objects would stay in
memory, so call it once the process's lasting state is built (engine, index), in
processes that exist for one job: ``spillguard scan`` and ``spillguard mail-filter``.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then exempt every surviving object from later
    collections (see the module's docstring)."""
    gc.collect()
    gc.freeze()


__all__ = ["settle"]
