"""What a platform backend is: where posture comes from and how commands are carried out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from spillguard.devices.posture import MAX_MANAGED_DOCUMENTS

Status = Literal["acknowledged", "error", "not_now"]


@dataclass(frozen=True)
class Command:
    """A command as the server sends it at check-in."""

    id: int
    type: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        return cls(int(data["id"]), str(data["type"]), dict(data.get("params") or {}))


@dataclass(frozen=True)
class CommandResult:
    """What happened: ``acknowledged``, ``error`` (with a reason) or ``not_now``.

    ``location`` is set only by ``locate`` / ``lost_mode_on`` on a device in lost mode;
    ``forget_credential`` tells the agent to delete its credential once the result is
    delivered (retire).
    """

    status: Status
    reason: str | None = None
    location: dict[str, Any] | None = None
    forget_credential: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.reason:
            body["reason"] = self.reason[:500]
        if self.location is not None:
            body["location"] = self.location
        return body

    @classmethod
    def ok(cls, **kwargs: Any) -> CommandResult:
        return cls("acknowledged", **kwargs)

    @classmethod
    def failed(cls, reason: str) -> CommandResult:
        return cls("error", reason=reason)


@runtime_checkable
class Backend(Protocol):
    """A platform backend.  ``collect_posture`` returns the posture of docs/devices.md
    (every field of ``spillguard.devices.posture.Posture``, ``reported_at`` included);
    ``execute`` carries out one command and must be idempotent (the server re-sends a
    command until it gets a final result)."""

    name: str

    def collect_posture(self) -> dict[str, Any]: ...

    def execute(self, command: Command) -> CommandResult: ...

    def in_lost_mode(self) -> bool: ...

    def current_location(self) -> dict[str, Any] | None:
        """A fresh location fix while in lost mode; None outside it or without a source."""
        ...

    def receive_document(self, name: str, data: bytes) -> str:
        """Keep a document fetched through the gateway among the managed documents (so the
        next check-in reports it); say where it went."""
        ...


def safe_document_name(name: str) -> str:
    """A file name that stays inside the managed-documents directory."""
    cleaned = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    cleaned = "".join(ch for ch in cleaned if ch.isprintable() and ch not in "/\0")
    return cleaned[:200] or "document"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def scan_documents(directory: Path) -> list[dict[str, Any]]:
    """The managed documents in ``directory`` (regular files at its top level)."""
    documents: list[dict[str, Any]] = []
    if not directory.is_dir():
        return documents
    for entry in sorted(directory.iterdir()):
        if len(documents) >= MAX_MANAGED_DOCUMENTS:
            break
        if entry.is_symlink() or not entry.is_file():
            continue
        digest = hashlib.sha256()
        with entry.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        documents.append(
            {"sha256": digest.hexdigest(), "file_name": entry.name, "size": entry.stat().st_size}
        )
    return documents
