"""A simulated phone whose whole state is one JSON file.

Nothing on the host is touched: the posture, the managed documents, the lock screen and
lost mode live in ``simulated.json`` in the agent's state directory, and commands change
that file.  Edit the file (say, set ``passcode`` to a swipe) to watch compliance change
at the next check-in.  The fleet simulator uses the same postures (:data:`PROFILES`).

Command effects:

- ``lock``: ``locked`` true, with the lock-screen message and phone;
- ``lost_mode_on``: locked, lost mode on, location reporting on; the result carries the
  configured fake location; ``lost_mode_off``: lost mode and location reporting off;
- ``locate``: the configured fake location, only in lost mode (else an error: a device
  must not collect location outside lost mode);
- ``play_sound``: counted in ``sounds_played``;
- ``wipe``: every document (managed and personal) gone, ``wiped`` true;
- ``selective_wipe``: managed documents gone, personal files kept;
- ``retire``: acknowledged, then the agent forgets its credential.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Final

from spillguard.devices.agent import AGENT_VERSION
from spillguard.devices.agent.backends.base import (
    Command,
    CommandResult,
    now_iso,
    safe_document_name,
)
from spillguard.devices.agent.state import StateError, read_json, write_json

STATE_FILE: Final = "simulated.json"

_COMPLIANT: Final[dict[str, Any]] = {
    "platform": "android",
    "os_version": "14",
    "model": "Pixel 8",
    "serial": None,
    "passcode": {"type": "pin", "length": 6},
    "storage_encrypted": True,
    "auto_lock_seconds": 60,
    "rooted": False,
}

# Realistic postures (the fleet simulator mixes them).  "stale" is a compliant phone that
# stops checking in; the difference is in the simulator, not in the posture.
PROFILES: Final[dict[str, dict[str, Any]]] = {
    "compliant": _COMPLIANT,
    "swipe": {**_COMPLIANT, "passcode": {"type": "swipe", "length": None}},
    "unencrypted": {**_COMPLIANT, "storage_encrypted": False},
    "rooted": {**_COMPLIANT, "rooted": True},
    "stale": _COMPLIANT,
}

DEFAULT_LOCATION: Final[dict[str, Any]] = {
    "latitude": 51.5072,
    "longitude": -0.1276,
    "accuracy_m": 25.0,
}


def _document(file_name: str, content: bytes) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(content).hexdigest(),
        "file_name": file_name,
        "size": len(content),
    }


def initial_state(profile: str = "compliant") -> dict[str, Any]:
    """A fresh simulated phone of the given profile, with two managed documents."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; one of {', '.join(PROFILES)}")
    return {
        "profile": profile,
        "posture": copy.deepcopy(PROFILES[profile]),
        "managed_documents": [
            _document("customers.xlsx", b"simulated customer list\n"),
            _document("price-list.pdf", b"simulated price list\n"),
        ],
        "personal_files": [_document("holiday.jpg", b"simulated photo\n")],
        "locked": False,
        "lock_message": None,
        "lock_phone": None,
        "lost_mode": False,
        "location_reporting": False,
        "fake_location": dict(DEFAULT_LOCATION),
        "sounds_played": 0,
        "wiped": False,
        "wiped_at": None,
        "retired": False,
        "log": [],
    }


def simulated_posture(state: dict[str, Any]) -> dict[str, Any]:
    """The protocol posture of a simulated phone's state."""
    posture = dict(state["posture"])
    posture["agent_version"] = AGENT_VERSION
    posture["managed_documents"] = list(state.get("managed_documents", []))
    posture["reported_at"] = now_iso()
    return posture


class SimulatedBackend:
    """The simulated phone kept in ``<state dir>/simulated.json``."""

    name = "simulated"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, state_dir: Path, profile: str = "compliant") -> SimulatedBackend:
        backend = cls(Path(state_dir) / STATE_FILE)
        if not backend.path.exists():
            write_json(backend.path, initial_state(profile))
        return backend

    def load(self) -> dict[str, Any]:
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            raise StateError(f"the simulated device state {self.path} is missing") from None
        if not isinstance(data, dict) or "posture" not in data:
            raise StateError(f"the simulated device state {self.path} is damaged")
        return data

    def save(self, state: dict[str, Any]) -> None:
        write_json(self.path, state)

    def collect_posture(self) -> dict[str, Any]:
        return simulated_posture(self.load())

    def in_lost_mode(self) -> bool:
        return bool(self.load().get("lost_mode"))

    def current_location(self) -> dict[str, Any] | None:
        state = self.load()
        if not (state.get("lost_mode") and state.get("location_reporting")):
            return None
        return _fix(state)

    def execute(self, command: Command) -> CommandResult:
        state = self.load()
        result = apply_command(state, command)
        self.save(state)
        return result

    def receive_document(self, name: str, data: bytes) -> str:
        """The simulated phone keeps the document's hash, name and size (not its bytes)."""
        state = self.load()
        name = safe_document_name(name)
        kept = [d for d in state.get("managed_documents", []) if d.get("file_name") != name]
        state["managed_documents"] = [*kept, _document(name, data)]
        self.save(state)
        return f"the simulated phone's managed documents ({name})"


def apply_command(state: dict[str, Any], command: Command) -> CommandResult:
    """Change a simulated phone's ``state`` as ``command`` would; the result to report."""
    params = command.params
    kind = command.type
    state.setdefault("log", []).append({"at": now_iso(), "command": command.id, "type": kind})
    del state["log"][:-50]  # keep the file small
    if kind == "lock":
        state.update(
            locked=True, lock_message=params.get("message"), lock_phone=params.get("phone")
        )
        return CommandResult.ok()
    if kind == "lost_mode_on":
        state.update(
            locked=True,
            lost_mode=True,
            location_reporting=True,
            lock_message=params.get("message"),
            lock_phone=params.get("phone"),
        )
        return CommandResult.ok(location=_fix(state))
    if kind == "lost_mode_off":
        state.update(lost_mode=False, location_reporting=False)
        return CommandResult.ok()
    if kind == "locate":
        if not state.get("lost_mode"):
            return CommandResult.failed("not in lost mode: this device collects no location")
        return CommandResult.ok(location=_fix(state))
    if kind == "play_sound":
        state["sounds_played"] = int(state.get("sounds_played", 0)) + 1
        return CommandResult.ok()
    if kind == "wipe":
        state.update(
            managed_documents=[],
            personal_files=[],
            wiped=True,
            wiped_at=now_iso(),
            locked=False,
            lost_mode=False,
            location_reporting=False,
        )
        return CommandResult.ok()
    if kind == "selective_wipe":
        state["managed_documents"] = []
        return CommandResult.ok()
    if kind == "retire":
        state.update(retired=True, lost_mode=False, location_reporting=False)
        return CommandResult.ok(forget_credential=True)
    return CommandResult.failed(f"unknown command type {kind!r}")


def _fix(state: dict[str, Any]) -> dict[str, Any]:
    location = dict(state.get("fake_location") or DEFAULT_LOCATION)
    location["captured_at"] = now_iso()
    return location
