"""Dense CSV inspection, two versions of the code alternated in one process.

Usage::

    git archive <commit> src | tar -x -C /tmp/old
    flock /tmp/bench.lock .venv/bin/python benchmarks/scan_pair.py /tmp/old/src --passes 30

On a shared VM whose speed changes from minute to minute, one pass of the benchmark's
CSV corpus per version (``benchmarks/scan.py``) cannot resolve a change of 10-20 %.
This script copies the old ``spillguard`` package under another name
(``spillguard_old``, its imports rewritten), checks that both versions give the same
findings on the benchmark's dense exports (``--csv-kb``, seeds as in ``scan.py``), then
times ``engine.scan_table`` over all of them, old and new pass by pass (the order
swapped every round), by process CPU time, and prints each version's median and best,
and the median (and range) of the paired old/new ratios.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_FIELDS = ("entity", "detector", "start", "end", "confidence", "context", "value")


def _old_package(src: Path, into: Path) -> None:
    """``src/spillguard`` copied to ``into/spillguard_old`` with its imports renamed."""
    target = into / "spillguard_old"
    shutil.copytree(src / "spillguard", target)
    pattern = re.compile(r"\bspillguard(?=[.\s])")
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(pattern.sub("spillguard_old", text), encoding="utf-8")


def _fields(findings: Any) -> list[tuple[Any, ...]]:
    return [tuple(getattr(f, name) for name in _FIELDS) for f in findings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_src", type=Path, help="the old tree's src directory")
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--csv-kb", type=int, default=256)
    args = parser.parse_args()
    if not (args.old_src / "spillguard" / "__init__.py").is_file():
        sys.exit(f"{args.old_src}: no spillguard package there")

    from spillguard.inspection.corpus import Document, generate_documents
    from spillguard.inspection.engine import InspectionEngine

    with tempfile.TemporaryDirectory() as scratch:
        _old_package(args.old_src, Path(scratch))
        sys.path.insert(0, scratch)
        from spillguard_old.inspection.engine import (  # type: ignore[import-not-found]
            InspectionEngine as OldEngine,
        )

        docs: list[Document] = []
        batch = 0
        while sum(d.size for d in docs) < args.csv_kb * 1024:
            docs.extend(generate_documents("csv", 20, seed=1000 + batch))
            batch += 1
        size = sum(d.size for d in docs) / 1e6
        engines = {"old": OldEngine(), "new": InspectionEngine()}
        for doc in docs:
            old = engines["old"].scan_table(doc.rows).findings
            new = engines["new"].scan_table(doc.rows).findings
            if _fields(old) != _fields(new):
                sys.exit(f"{doc.id}: the two versions give different findings")
        seconds: dict[str, list[float]] = {"old": [], "new": []}
        for round_ in range(args.passes):
            for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                engine = engines[name]
                started = time.process_time()
                for doc in docs:
                    engine.scan_table(doc.rows)
                seconds[name].append(time.process_time() - started)
    print(f"{len(docs)} exports, {size:.3f} MB, {args.passes} passes each, CPU time")
    for name, values in seconds.items():
        median, best = statistics.median(values), min(values)
        print(
            f"{name}: median {median * 1000:.1f} ms ({size / median:.2f} MB/s), "
            f"best {best * 1000:.1f} ms ({size / best:.2f} MB/s)"
        )
    ratios = sorted(o / n for o, n in zip(seconds["old"], seconds["new"], strict=True))
    print(
        f"paired old/new: median {statistics.median(ratios):.3f} "
        f"(range {ratios[0]:.3f}-{ratios[-1]:.3f})"
    )


if __name__ == "__main__":
    main()
