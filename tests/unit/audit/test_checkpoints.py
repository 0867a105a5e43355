"""Checkpoint text: the signed-note format round-trips, every defect is refused, and the
documented openssl procedure verifies a real checkpoint."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spillguard.audit.checkpoints import (
    CheckpointError,
    LogKey,
    Signer,
    checkpoint_body,
    checkpoint_text,
    origin_for,
    parse_checkpoint,
    parse_checkpoints,
)
from spillguard.core.keys import KeyRing

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"
SIGNER = Signer(KeyRing(bytes(range(32))))
ROOT = bytes(range(100, 132))
WHEN = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)


def note(size: int = 1234, origin: str = "spillguard/acme", signer: Signer = SIGNER) -> str:
    body = checkpoint_body(origin, size, ROOT, WHEN)
    return checkpoint_text(body, signer.key, origin, signer.sign(body.encode()))


def test_a_checkpoint_round_trips_and_verifies() -> None:
    text = note()
    lines = text.splitlines()
    assert lines[:4] == [
        "spillguard/acme",
        "1234",
        base64.b64encode(ROOT).decode(),
        "time 2026-11-23T18:00:00Z",
    ]
    assert lines[4] == "" and lines[5].startswith("\u2014 spillguard/acme ")
    parsed = parse_checkpoint(text)
    assert (parsed.size, parsed.root, parsed.created_at) == (1234, ROOT, WHEN)
    parsed.verify(SIGNER.key)
    assert parse_checkpoints(text + "\n" + note(1300))[1].size == 1300
    assert origin_for(None) == "spillguard" and origin_for("acme") == "spillguard/acme"


def test_key_identifiers() -> None:
    key = SIGNER.key
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id)
    name, hash_hex, encoded = key.note_verifier_key("spillguard").split("+", 2)
    assert name == "spillguard" and bytes.fromhex(hash_hex) == key.note_key_hash("spillguard")
    assert base64.b64decode(encoded) == b"\x01" + key.public_key
    # The same master key always gives the same log key; another gives another.
    assert Signer(KeyRing(bytes(range(32)))).key == key
    assert Signer(KeyRing(bytes(32))).key != key


def tamper(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_a_changed_checkpoint_does_not_verify() -> None:
    text = note()
    for changed in (
        tamper(text, "\n1234\n", "\n1235\n"),
        tamper(text, "18:00:00Z", "18:00:01Z"),
        tamper(text, "spillguard/acme\n", "spillguard/acmf\n"),
    ):
        with pytest.raises(CheckpointError):
            parse_checkpoint(changed).verify(SIGNER.key)
    forged = note(signer=Signer(KeyRing(bytes(32))))
    with pytest.raises(CheckpointError, match="different key"):
        parse_checkpoint(forged).verify(SIGNER.key)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("spillguard\n1\nAAAA\n", "no blank line"),
        ("spillguard\n1\n\n\u2014 x y\n", "4 lines"),
        ("spillguard\n01\n{root}\ntime 2026-11-23T18:00:00Z\n\n\u2014 x y\n", "not a decimal"),
        ("spillguard\n1\n!!\ntime 2026-11-23T18:00:00Z\n\n\u2014 x y\n", "not base64"),
        ("spillguard\n1\nAAAA\ntime 2026-11-23T18:00:00Z\n\n\u2014 x y\n", "32 bytes"),
        ("spillguard\n1\n{root}\nwhen 2026\n\n\u2014 x y\n", "fourth line"),
        ("spillguard\n1\n{root}\ntime yesterday\n\n\u2014 x y\n", "bad time"),
        ("spillguard\n1\n{root}\ntime 2026-11-23T18:00:00Z\n\n- x y\n", "signature line"),
        ("spillguard\n1\n{root}\ntime 2026-11-23T18:00:00Z\n\n\u2014 x %%\n", "not base64"),
        ("spillguard\n1\n{root}\ntime 2026-11-23T18:00:00Z\n\n\u2014 x AAAA\n", "wrong length"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, reason: str) -> None:
    text = text.replace("{root}", base64.b64encode(ROOT).decode())
    with pytest.raises(CheckpointError, match=reason):
        parse_checkpoint(text)


def test_a_file_cut_in_the_middle_is_refused() -> None:
    with pytest.raises(CheckpointError, match="middle of a checkpoint"):
        parse_checkpoints(note() + "\n" + note(2000).split("\n\n")[0])


def test_the_documented_openssl_check_verifies_a_checkpoint(tmp_path: Path) -> None:
    assert shutil.which("openssl"), "openssl is needed to test the documented procedure"
    doc = DOC.read_text()
    section = doc.split("### Checking a checkpoint's signature", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    assert commands, "docs/audit.md lost its openssl procedure"
    (tmp_path / "log-key.pem").write_text(SIGNER.key.pem)

    def run(text: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "checkpoint.txt").write_text(text)
        return subprocess.run(
            ["sh", "-e", "-c", commands.group(1)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    good = run(note())
    assert good.returncode == 0 and "Signature Verified Successfully" in good.stdout, good
    bad = run(tamper(note(), "\n1234\n", "\n1235\n"))
    assert bad.returncode != 0 and "Verified Successfully" not in bad.stdout


def test_log_key_pem_is_the_public_key() -> None:
    from cryptography.hazmat.primitives import serialization

    loaded = serialization.load_pem_public_key(SIGNER.key.pem.encode())
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert LogKey(raw) == SIGNER.key
