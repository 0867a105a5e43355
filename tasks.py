#!/usr/bin/env python3
"""The two commands of the README, needing nothing but Python 3.11+ and git.

    python3 tasks.py run    create .venv, install (pinned), start the server on SQLite
    python3 tasks.py test   create .venv, install (pinned), run lint, types and every test

Extra arguments after `test` go to pytest; after `run` they go to `spillguard serve`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".spillguard-installed"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create the virtual environment and install the pinned dependencies when they changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"error: Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("Creating the virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("Installing Spillguard and its pinned dependencies ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", "constraints.txt", "-e", ".[test]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def run(args: list[str]) -> int:
    ensure_environment()
    return subprocess.call([str(BIN / "spillguard"), "serve", *args], cwd=ROOT)


def test(args: list[str]) -> int:
    ensure_environment()
    steps = [
        [str(BIN / "ruff"), "check", "src", "tests", "benchmarks", "tasks.py"],
        [str(BIN / "mypy")],
        [str(BIN / "pytest"), "-n", "2", *args],
    ]
    for step in steps:
        print("$", " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)),
              flush=True)
        code = subprocess.call(step, cwd=ROOT)
        if code != 0:
            return code
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__.strip())
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    try:
        return run(rest) if command == "run" else test(rest)
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(map(str, exc.cmd[:4]))} ... failed with exit code "
              f"{exc.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
