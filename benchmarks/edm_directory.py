"""The customer directory end to end, as an operator runs it: import N customers with
`spillguard customers import`, re-import with a few changes, and load the directory's
EDM index in `spillguard scan`, on SQLite and on PostgreSQL.

Each step is a real `spillguard` process; the script reports its wall time and peak
resident memory (``RUSAGE_CHILDREN`` of a small wrapper around the one child). The
directory's load time is the difference between `scan NOTE` (loads the index from the
database, then scans a one-line note) and `scan --no-edm NOTE` (same process start and
scan, no index).

    .venv/bin/python benchmarks/edm_directory.py [--customers 1000000]
        [--databases sqlite,postgresql] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Customers come from benchmarks/edm_build.py's fast deterministic generator (Faker's
en_GB name and street lists). The re-import changes the e-mail of 1 % of them, drops
0.5 % and adds 0.5 % new ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from edm_build import cpu_model, customers  # noqa: E402
from tests.functional.live import COMMAND, spillguard_env, throwaway_postgres_database  # noqa: E402

from spillguard.customers import FieldKind  # noqa: E402

HEADER = [
    "Customer ID",
    "First name",
    "Surname",
    "Email",
    "Mobile",
    "Postcode",
    "Address",
    "Date of birth",
    "Loyalty number",
]
KINDS = [
    FieldKind.FIRST_NAME,
    FieldKind.LAST_NAME,
    FieldKind.EMAIL,
    FieldKind.PHONE,
    FieldKind.POSTCODE,
    FieldKind.ADDRESS,
    FieldKind.DATE_OF_BIRTH,
    FieldKind.LOYALTY_NUMBER,
]
MEASURE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "took = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "sys.stdout.write(done.stdout)\n"
    "sys.stderr.write(done.stderr)\n"
    "print(f'MEASURED {took:.3f} {peak}', file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def write_lists(folder: Path, count: int) -> tuple[Path, Path, dict[str, str]]:
    """The first import's CSV, the re-import's CSV, and one customer's values for a note."""
    first, second = folder / "customers.csv", folder / "customers-2.csv"
    changed_every, dropped_every = 100, 200
    sample: dict[str, str] = {}
    with first.open("w", newline="") as a, second.open("w", newline="") as b:
        wa, wb = csv.writer(a), csv.writer(b)
        wa.writerow(HEADER)
        wb.writerow(HEADER)
        extra = count // 200
        for n, (cid, values) in enumerate(customers(count + extra)):
            row = [cid, *(values[k] for k in KINDS)]
            if n >= count:  # only in the second list: new customers
                wb.writerow(row)
                continue
            wa.writerow(row)
            if n == count // 2:
                sample = {"name": f"{row[1]} {row[2]}", "email": row[3], "postcode": row[5]}
            if n % dropped_every == 7:
                continue
            if n % changed_every == 3:
                row[3] = "new." + row[3]
            wb.writerow(row)
    return first, second, sample


def measured(args: list[str], env: dict[str, str]) -> tuple[float, float, str, str]:
    """(seconds, peak RSS MiB, stdout, stderr) of one `spillguard` process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    line = done.stderr.rsplit("MEASURED ", 1)[-1].split()
    if done.returncode not in (0, 1) or len(line) != 2:
        raise SystemExit(f"`spillguard {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
    return float(line[0]), int(line[1]) / 1024, done.stdout, done.stderr


@contextmanager
def database(kind: str, postgres_url: str, home: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{home / 'directory.db'}"
    else:
        with throwaway_postgres_database(postgres_url, prefix="spillguard_bench") as url:
            yield url


def run(kind: str, args: argparse.Namespace, folder: Path, files: tuple[Path, Path, dict]) -> None:
    first, second, sample = files
    home = folder / f"home-{kind}"
    home.mkdir()
    with database(kind, args.postgres_url, home) as url:
        env = spillguard_env(home, url)
        note = folder / "note.txt"
        note.write_text(
            f"{sample['name']} ({sample['email']}) moved to {sample['postcode']} last week.\n"
        )
        imp = ["customers", "import", "--id-column", "Customer ID"]
        took, peak, _, _ = measured([*imp, str(first)], env)
        print(f"[{kind}] import of {args.customers:,}: {took:.1f} s, "
              f"{args.customers / took:,.0f} customers/s, peak RSS {peak:.0f} MiB", flush=True)
        took, peak, out, _ = measured([*imp, str(second)], env)
        print(f"[{kind}] re-import (1 % changed, 0.5 % removed, 0.5 % added): {took:.1f} s, "
              f"peak RSS {peak:.0f} MiB", flush=True)
        print("    " + " | ".join(
            line.strip() for line in out.splitlines()
            if any(w in line for w in ("added", "changed", "removed", "unchanged"))
        ), flush=True)
        base, base_peak, _, _ = measured(["scan", "--no-edm", "--format", "json", str(note)], env)
        took, peak, out, err = measured(["scan", "--format", "json", str(note)], env)
        (report,) = json.loads(out)
        print(f"[{kind}] scan --no-edm of a note: {base:.2f} s, peak RSS {base_peak:.0f} MiB",
              flush=True)
        print(f"[{kind}] scan with the directory: {took:.2f} s, peak RSS {peak:.0f} MiB; "
              f"directory load ≈ {took - base:.2f} s, +{peak - base_peak:.0f} MiB; "
              f"matched {report['customer_ids']}", flush=True)
        print("    " + next(x for x in err.splitlines() if "exact data match" in x), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {sys.version.split()[0]}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="spillguard-edm-dir-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        files = write_lists(folder, args.customers)
        print(f"generated the lists in {time.perf_counter() - started:.1f} s "
              f"({files[0].stat().st_size / 1e6:.0f} MB)", flush=True)
        for kind in args.databases.split(","):
            run(kind.strip(), args, folder, files)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
