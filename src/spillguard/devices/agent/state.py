"""The agent's state directory: who it is, where its server is, what it still owes.

Layout (all created by ``spillguard agent enroll``)::

    <state dir>/                mode 0700
        credential              mode 0600: {"device_id": 42, "credential": "sgd_…"}
        agent.json              server API root, device id and name, backend, enrolled at
        last-checkin.json       the server's last answer (state, compliance) and when
        pending-results.json    command results not yet delivered (sent at the next check-in)
        simulated.json          the simulated backend's device (posture, lock, documents)
        documents/              managed documents (the linux backend's only wipeable data)

Every file is written atomically (a temporary file in the same directory, flushed and
fsynced, then renamed over the old one), so a crash never leaves half a credential.  The
credential is created with mode 0600 from the start (never chmod-ed afterwards, so there
is no moment where it is readable by others), and the agent refuses to use one that is
readable or writable by its group or by others: someone may have copied it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from spillguard.devices.agent.client import AgentError

CREDENTIAL_FILE: Final = "credential"
CONFIG_FILE: Final = "agent.json"
LAST_CHECKIN_FILE: Final = "last-checkin.json"
PENDING_RESULTS_FILE: Final = "pending-results.json"
DOCUMENTS_DIR: Final = "documents"
ENV_STATE_DIR: Final = "SPILLGUARD_AGENT_STATE_DIR"


class StateError(AgentError):
    """The state directory is missing, unreadable or unsafe."""


class NotEnrolled(StateError):
    """No credential in the state directory."""


class InsecureCredential(StateError):
    """The credential file can be read or written by someone other than its owner."""


def default_state_dir() -> Path:
    """``$SPILLGUARD_AGENT_STATE_DIR``, else ``$XDG_STATE_HOME/spillguard-agent``, else
    ``~/.local/state/spillguard-agent``."""
    if os.environ.get(ENV_STATE_DIR):
        return Path(os.environ[ENV_STATE_DIR])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "spillguard-agent"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` in one step; the file has ``mode`` from creation."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600 already; other modes are set before use
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc


@dataclass(frozen=True)
class Credential:
    device_id: int
    secret: str


@dataclass(frozen=True)
class AgentConfig:
    """What enrollment established: the server, the device and the backend."""

    api_root: str
    device_id: int
    name: str
    backend: str
    enrolled_at: str
    checkin_interval_seconds: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentConfig:
        try:
            return cls(
                api_root=str(data["api_root"]),
                device_id=int(data["device_id"]),
                name=str(data["name"]),
                backend=str(data["backend"]),
                enrolled_at=str(data["enrolled_at"]),
                checkin_interval_seconds=int(data["checkin_interval_seconds"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the agent configuration is damaged: {exc}") from exc


class AgentState:
    """The state directory of one enrolled agent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def credential_path(self) -> Path:
        return self.root / CREDENTIAL_FILE

    @property
    def documents_dir(self) -> Path:
        return self.root / DOCUMENTS_DIR

    def path(self, name: str) -> Path:
        return self.root / name

    def create(self) -> None:
        """Create the directory (mode 0700); tighten an existing one that is wider."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        current = stat.S_IMODE(self.root.stat().st_mode)
        if current & 0o077:
            os.chmod(self.root, 0o700)

    # credential ----------------------------------------------------------------------
    def save_credential(self, device_id: int, secret: str) -> None:
        self.create()
        write_json(self.credential_path, {"device_id": device_id, "credential": secret})

    def load_credential(self) -> Credential:
        """The credential, after checking nobody but its owner can read or change it."""
        path = self.credential_path
        try:
            info = path.stat()
        except FileNotFoundError:
            raise NotEnrolled(
                f"this agent is not enrolled (no {path}); run `spillguard agent enroll URL`"
            ) from None
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise InsecureCredential(
                f"refusing to use {path}: its mode is {mode:04o}, so other users can read or "
                "change it; the credential may be compromised. Ask for the device to be "
                f"retired and enroll again, or if you are sure, run `chmod 600 {path}`"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise InsecureCredential(
                f"refusing to use {path}: it belongs to uid {info.st_uid}, not to this user"
            )
        data = read_json(path)
        try:
            return Credential(int(data["device_id"]), str(data["credential"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"the credential file {path} is damaged") from exc

    def forget_credential(self) -> bool:
        """Delete the credential (retire); True if there was one."""
        try:
            self.credential_path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.root)
        return True

    # configuration and bookkeeping ---------------------------------------------------
    def save_config(self, config: AgentConfig) -> None:
        self.create()
        write_json(self.path(CONFIG_FILE), config.__dict__)

    def load_config(self) -> AgentConfig:
        try:
            data = read_json(self.path(CONFIG_FILE))
        except FileNotFoundError:
            raise NotEnrolled(
                f"no agent state in {self.root}; run `spillguard agent enroll URL` first"
            ) from None
        return AgentConfig.from_json(data)

    def is_enrolled(self) -> bool:
        return self.path(CONFIG_FILE).exists() and self.credential_path.exists()

    def pending_results(self) -> list[dict[str, Any]]:
        try:
            data = read_json(self.path(PENDING_RESULTS_FILE))
        except FileNotFoundError:
            return []
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def save_pending_results(self, results: list[dict[str, Any]]) -> None:
        path = self.path(PENDING_RESULTS_FILE)
        if results:
            write_json(path, results)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def record_checkin(self, answer: dict[str, Any]) -> None:
        write_json(
            self.path(LAST_CHECKIN_FILE),
            {
                "at": datetime.now(UTC).isoformat(),
                "state": answer.get("state"),
                "compliance": answer.get("compliance"),
                "next_checkin_seconds": answer.get("next_checkin_seconds"),
                "commands": [c.get("type") for c in answer.get("commands", [])],
            },
        )

    def last_checkin(self) -> dict[str, Any] | None:
        try:
            data = read_json(self.path(LAST_CHECKIN_FILE))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None
