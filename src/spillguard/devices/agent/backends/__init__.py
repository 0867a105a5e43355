"""Platform backends of the agent: ``simulated`` and ``linux`` (see base.Backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from spillguard.devices.agent.backends.base import Backend, Command, CommandResult
from spillguard.devices.agent.backends.linux import LinuxBackend
from spillguard.devices.agent.backends.simulated import SimulatedBackend
from spillguard.devices.agent.state import StateError

BACKENDS: Final = ("simulated", "linux")

__all__ = ["BACKENDS", "Backend", "Command", "CommandResult", "make_backend"]


def make_backend(name: str, state_dir: Path) -> Backend:
    """The backend called ``name`` working in ``state_dir``."""
    if name == "simulated":
        return SimulatedBackend.create(state_dir)
    if name == "linux":
        return LinuxBackend(state_dir)
    raise StateError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
