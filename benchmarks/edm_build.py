"""Exact data match: time and memory to build the index for N customers, and lookup rates.

Generates N customers quickly and deterministically (Faker is far too slow at a
million rows: its en_GB first-name, last-name and street-suffix lists seed a scheme
driven by one 64-bit random number per row), each with an id, first and last name,
e-mail, mobile number (written in four formats), postcode, address line, date of
birth (dd/mm/yyyy) and loyalty number, then feeds them to
:class:`~spillguard.customers.edm.EdmIndexBuilder` and builds the index.

    .venv/bin/python benchmarks/edm_build.py [--customers 1000000] [--lookups 100000]
                                             [--workers NPROC]

Prints: generation time alone (a separate pass), build time (normalise + hash + add for
every row, generation included, then ``build()``), the CPU time that took in this
process and in the hashing workers (on a shared machine, what the build itself cost),
peak RSS of the process
(``resource.getrusage``), the index's array bytes, lookups per second of primary
values, and ``match_text`` calls per second on a short note holding a record match.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time
from collections.abc import Iterator

from faker.providers.address.en_GB import Provider as AddressProvider
from faker.providers.person.en_GB import Provider as PersonProvider

from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndexBuilder, FieldKind
from spillguard.customers.fields import normalise_email
from spillguard.inspection import InspectionEngine

FIRST = tuple(PersonProvider.first_names_female) + tuple(PersonProvider.first_names_male)
LAST = tuple(PersonProvider.last_names)
SUFFIX = tuple(AddressProvider.street_suffixes)
# Postcode letters allowed in the first, second position and the inward code.
AREA1 = "ABCDEFGHIJKLMNOPRSTUWYZ"
AREA2 = "ABCDEFGHKLMNOPQRSTUVWXY"
INWARD = "ABDEFGHJLNPQRSTUWXYZ"
PHONE_FORMATS = ("0{0} {1}", "+44 {0} {1}", "0{0}-{1}", "0044 {0}{1}")
# Mobile ranges libphonenumber holds valid for the whole block (07[1-3]xx, 075xx, 07[89]xx).
MOBILE_BLOCKS = ("71", "72", "73", "75", "78", "79")


def customers(count: int, seed: int = 20261123) -> Iterator[tuple[str, dict[FieldKind, str]]]:
    """``count`` deterministic customers as (id, raw values per kind)."""
    rng = random.Random(seed)
    for i in range(count):
        r = rng.getrandbits(64)
        first = FIRST[r % len(FIRST)]
        r //= len(FIRST)
        last = LAST[r % len(LAST)]
        r //= len(LAST)
        block = MOBILE_BLOCKS[r % 6]
        r //= 6
        phone = PHONE_FORMATS[i % 4].format(block + f"{r % 100:02d}", f"{(r // 100) % 1000000:06d}")
        r //= 100_000_000
        postcode = (
            f"{AREA1[r % 23]}{AREA2[(r >> 5) % 23]}{(r >> 10) % 10}{(r >> 14) % 10} "
            f"{(r >> 18) % 10}{INWARD[(r >> 22) % 20]}{INWARD[(r >> 27) % 20]}"
        )
        street = (
            f"{(r >> 32) % 200 + 1} {LAST[(r >> 40) % len(LAST)]} {SUFFIX[(r >> 50) % len(SUFFIX)]}"
        )
        dob = f"{i % 28 + 1:02d}/{i % 12 + 1:02d}/{1940 + i % 65}"
        yield (
            f"C{i:08d}",
            {
                FieldKind.FIRST_NAME: first,
                FieldKind.LAST_NAME: last,
                FieldKind.EMAIL: f"{first}.{last}{i}@example.co.uk",
                FieldKind.PHONE: phone,
                FieldKind.POSTCODE: postcode,
                FieldKind.ADDRESS: street,
                FieldKind.DATE_OF_BIRTH: dob,
                FieldKind.LOYALTY_NUMBER: f"LC {i:012d}",
            },
        )


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU seconds so far of this process and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="hashing processes"
    )
    args = parser.parse_args()
    n = args.customers

    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    rss_start = peak_rss_mib()

    started = time.perf_counter()
    for _row in customers(n):
        pass
    generation = time.perf_counter() - started

    keyring = KeyRing(os.urandom(32))
    builder = EdmIndexBuilder(keyring)
    cpu_before = cpu_seconds()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    builder.add_many(customers(n), workers=args.workers)
    added = time.perf_counter() - started
    index = builder.build()
    build = time.perf_counter() - started
    cpu_parent, cpu_workers = (a - b for a, b in zip(cpu_seconds(), cpu_before, strict=True))
    load_after = os.getloadavg()[0]
    rss_built = peak_rss_mib()

    print(f"customers: {n:,}")
    print(f"generation alone: {generation:.1f} s")
    print(f"build: {build:.1f} s (add {added:.1f} s, build() {build - added:.1f} s)")
    print(
        f"CPU time of the build: parent {cpu_parent:.1f} s (generation included), workers "
        f"{cpu_workers:.1f} s in all; load average {load_before:.2f} before, "
        f"{load_after:.2f} after"
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: {rss_built:.0f} MiB (at start {rss_start:.0f} MiB)")
    print(f"workers: {args.workers}; largest worker peak RSS: {children:.0f} MiB")
    print(f"hash arrays: {index.nbytes() / 2**20:.0f} MiB; stats: {index.stats}")

    sample = [values for _id, values in customers(min(args.lookups, n))]
    emails = [normalise_email(v[FieldKind.EMAIL]) or "" for v in sample]
    started = time.perf_counter()
    hits = sum(1 for e in emails if index.candidates(FieldKind.EMAIL, e))
    lookup = time.perf_counter() - started
    print(f"primary lookups: {len(emails) / lookup:,.0f}/s ({hits:,} of {len(emails):,} found)")

    engine = InspectionEngine()
    notes = [
        f"Spoke to {v[FieldKind.FIRST_NAME]} {v[FieldKind.LAST_NAME]} today; she asked us to "
        f"update {v[FieldKind.EMAIL]} on file. Ticket closed."
        for v in sample[:2000]
    ]
    scans = [(note, engine.scan_text(note).findings) for note in notes]
    started = time.perf_counter()
    matched = sum(1 for note, found in scans if index.match_text(note, found).records)
    text_rate = len(scans) / (time.perf_counter() - started)
    print(f"match_text on notes with a record match: {text_rate:,.0f}/s ({matched:,} matched)")
    print(f"final peak RSS: {peak_rss_mib():.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
