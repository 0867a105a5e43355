"""The agent's state directory: the credential file is private, written atomically, and a
readable one is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spillguard.devices.agent import state as state_module
from spillguard.devices.agent.state import (
    AgentState,
    InsecureCredential,
    NotEnrolled,
    atomic_write,
)

SECRET = "sgd_" + "x" * 43


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credential_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask must not widen the file
    try:
        state = AgentState(tmp_path / "agent")
        state.save_credential(42, SECRET)
    finally:
        os.umask(old)
    assert mode(state.credential_path) == 0o600
    assert mode(state.root) == 0o700
    loaded = state.load_credential()
    assert (loaded.device_id, loaded.secret) == (42, SECRET)


def test_an_existing_wide_directory_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "agent"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    AgentState(root).save_credential(1, SECRET)
    assert mode(root) == 0o700


@pytest.mark.parametrize("wide", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_credential_others_can_read_or_change_is_refused(tmp_path: Path, wide: int) -> None:
    state = AgentState(tmp_path / "agent")
    state.save_credential(42, SECRET)
    state.credential_path.chmod(wide)
    with pytest.raises(InsecureCredential) as refused:
        state.load_credential()
    assert f"{wide:04o}" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_missing_credential_says_how_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="spillguard agent enroll"):
        AgentState(tmp_path / "nothing").load_credential()


def test_a_failed_write_leaves_the_old_credential_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = AgentState(tmp_path / "agent")
    state.save_credential(42, SECRET)
    before = state.credential_path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        state.save_credential(43, "sgd_" + "y" * 43)
    assert state.credential_path.read_bytes() == before
    assert sorted(p.name for p in state.root.iterdir()) == ["credential"]


def test_atomic_write_never_exposes_the_new_content_with_a_wide_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file already has mode 0600 when the secret is written into it."""
    seen: list[int] = []
    real_replace = os.replace

    def check(src: str, dst: str) -> None:
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(state_module.os, "replace", check)
    target = tmp_path / "credential"
    atomic_write(target, b"secret")
    assert seen == [0o600]
    assert target.read_bytes() == b"secret" and mode(target) == 0o600


def test_forget_credential_deletes_it(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "agent")
    state.save_credential(42, SECRET)
    assert state.forget_credential() is True
    assert not state.credential_path.exists()
    assert state.forget_credential() is False


def test_pending_results_round_trip_and_clear(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "agent")
    state.create()
    assert state.pending_results() == []
    state.save_pending_results([{"command_id": 7, "status": "acknowledged"}])
    assert state.pending_results() == [{"command_id": 7, "status": "acknowledged"}]
    assert mode(state.path("pending-results.json")) == 0o600
    state.save_pending_results([])
    assert state.pending_results() == []
