"""`spillguard audit verify --workers 2` as a real process on SQLite and PostgreSQL: worker
processes verify ranges of the log at once, pass an untouched log, and name the first
bad position of an edited log exactly as one process does.

The log is split for workers only above ``verify.PARALLEL_MIN_ENTRIES`` entries per range
(400,000: a log of 800,000 events, minutes to fill on this machine). The process is the
real CLI started with ``python -c`` and a bootstrap that lowers that threshold and the
batch size (the two constants ``verify._chunks`` reads) before running ``spillguard``'s
own entry point, and writes how many ranges ``_chunks`` cut to a file, so the test knows
the parallel path ran. Nothing else of the command changes.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, select, update

from spillguard.audit.models import LogLeaf
from spillguard.core.models import AuditEvent
from tests.functional.live import one_line_error, run_spillguard
from tests.functional.test_cli_audit import add_events, ok

EVENTS = 1_200
BOOTSTRAP = """
import json, os, sys
import spillguard.audit.verify as verify

assert hasattr(verify, "PARALLEL_MIN_ENTRIES") and hasattr(verify, "BATCH"), "verify changed"
verify.PARALLEL_MIN_ENTRIES = 100
verify.BATCH = 50
cut = verify._chunks

def _chunks(*args, **kwargs):
    parts = cut(*args, **kwargs)
    with open(os.environ["CHUNKS_FILE"], "a") as handle:
        handle.write(json.dumps([[lo, hi] for _, lo, hi in parts]) + "\\n")
    return parts

verify._chunks = _chunks
sys.argv = ["spillguard", *sys.argv[1:]]
from spillguard.cli.main import main
main()
"""


def verify_cli(
    args: list[str], env: dict[str, str], chunks: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, "audit", "verify", *args],
        env={**env, "CHUNKS_FILE": str(chunks)},
        input="",
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def ranges(chunks: Path) -> list[list[list[int]]]:
    return [json.loads(line) for line in chunks.read_text().splitlines()]


def test_workers_pass_an_untouched_log_and_name_the_first_edited_row(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    ids = add_events(engine, EVENTS)
    ok(["audit", "sequence"], env)
    chunks = tmp_path / "chunks.jsonl"

    passed = verify_cli(["--workers", "2"], env, chunks)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.strip() == f"ok: {EVENTS} entries, 1 checkpoints"
    [cut] = ranges(chunks)
    assert len(cut) >= 4 and cut[0][0] == 0 and cut[-1][1] == EVENTS  # ranges for 2 workers
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cut))

    # Two edited rows in different ranges: the lower one is named, by any worker count.
    early, late = ids[310], ids[1_010]
    with engine.begin() as conn:
        for event_id in (late, early):
            conn.execute(
                update(AuditEvent.__table__)
                .where(AuditEvent.__table__.c.id == event_id)
                .values(details={"email": "someone-else@example.com"})
            )
        position = conn.scalar(select(LogLeaf.position).where(LogLeaf.event_id == early))
        later = conn.scalar(select(LogLeaf.position).where(LogLeaf.event_id == late))
    assert position is not None and later is not None
    assert sum(lo <= position < hi for lo, hi in cut) == 1
    assert not any(lo <= position < hi and lo <= later < hi for lo, hi in cut)
    expected = f"position {position} (event {early}): leaf does not match the event row (edited?)"
    chunks.unlink()
    assert one_line_error(verify_cli(["--workers", "2"], env, chunks)) == expected
    assert len(ranges(chunks)[0]) == len(cut)
    assert one_line_error(verify_cli(["--workers", "1"], env, chunks)) == expected
    assert ranges(chunks)[1] == [[0, EVENTS]]  # one process: one range
    # The plain command (default workers, real thresholds) agrees.
    assert one_line_error(run_spillguard(["audit", "verify"], env)) == expected
