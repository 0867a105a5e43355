"""`spillguard scan` on hostile files as a real process, with its peak memory measured:
a 1 GiB file that is one single line, a 1 GiB sparse file of NUL bytes, and a zip bomb,
next to a normal file that must still be scanned. Issue 4: bounded memory (under
512 MB whatever the input) and time, an "unscannable" entry, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import TEST_MASTER_KEY
from tests.functional.live import COMMAND, spillguard_env

GiB = 1 << 30
# Runs the scan as a child and reports the child's peak resident set (KiB on Linux).
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def test_gigabyte_inputs_are_reported_in_bounded_memory(tmp_path: Path) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    line = folder / "one-line.txt"
    with line.open("wb") as handle:
        handle.write(b"contact jo.bloggs@example.org ")
        block = b"a" * (16 << 20)
        for _ in range(GiB // len(block)):
            handle.write(block)
    sparse = folder / "zeros.bin"
    with sparse.open("wb") as handle:
        handle.truncate(GiB)
    with zipfile.ZipFile(folder / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner.txt", b"0" * (200 << 20))
    (folder / "note.txt").write_text("Please call 07700 900123 about the renewal.\n")

    env = spillguard_env(tmp_path / "home", master_key=TEST_MASTER_KEY)
    result = measured(["scan", str(folder), "--format", "json", "--no-edm"], env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    reports = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert set(reports) == {"one-line.txt", "zeros.bin", "bomb.zip", "note.txt"}
    assert reports["note.txt"]["status"] == "findings"
    assert reports["note.txt"]["categories"] == {"phone_number": 1}
    big = reports["one-line.txt"]
    assert big["categories"].get("email_address") == 1  # the start was still inspected
    assert any("too large" in reason for reason in big["reasons"]), big["reasons"]
    assert reports["zeros.bin"]["status"] == "unscannable"
    zeros = reports["zeros.bin"]["reasons"]
    assert zeros == ["unscannable: unsupported: unrecognised binary content"]
    assert reports["bomb.zip"]["status"] == "unscannable"
    assert reports["bomb.zip"]["reasons"][0].startswith("unscannable: zip bomb")

    peak_kib = int(result.stderr.rsplit("maxrss", 1)[1].split()[0])
    assert peak_kib * 1024 < 512 * (1 << 20), f"peak RSS {peak_kib} KiB"


def measured(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``spillguard ARGS`` under MEASURE: its stderr ends with the peak RSS."""
    return subprocess.run(
        [sys.executable, "-c", MEASURE, *COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
