"""The Linux host the agent runs on: real posture, and the few commands Linux allows.

What it reads (each source is a path or a command runner given to the constructor, so
tests feed it fixture files instead of this host's):

- **OS version**: ``VERSION_ID`` of ``/etc/os-release`` (``BUILD_ID`` on rolling
  distributions, else ``unknown``); the model from ``/sys/class/dmi/id/product_name``.
- **Storage encryption**: the device mounted at ``/`` in ``/proc/mounts``, resolved to
  its ``dm-N`` node; encrypted when it, or any device under it (``slaves/``, so LVM on
  LUKS counts), has a device-mapper UUID starting with ``CRYPT-`` in
  ``/sys/block/dm-N/dm/uuid``.  Without sysfs, ``lsblk -J -s`` is asked for a ``crypt``
  ancestor.  Anything not provably encrypted (a plain partition, an overlay root in a
  container) is reported as **not encrypted**.
- **Screen lock**: with ``gsettings`` (GNOME): ``org.gnome.desktop.screensaver
  lock-enabled`` and ``lock-delay`` plus ``org.gnome.desktop.session idle-delay``;
  auto-lock is idle-delay + lock-delay seconds, ``None`` (never locks) when locking is
  off or idle-delay is 0.  Without gsettings the setting is unknown and reported as
  ``None``, which a policy with a maximum auto-lock treats as "never locks".
- **Passcode**: Linux gives an unprivileged agent no honest way to tell the strength of
  the account password that unlocks the screen, so the passcode is reported as
  ``none`` (length unknown).  A policy that requires a PIN will therefore flag Linux
  hosts; assign them a policy without a passcode rule.
- **Rooted**: always false (the notion does not apply to a computer its owner
  administers).

Commands: ``lock`` and ``lost_mode_on`` run ``loginctl lock-sessions``; lost mode is
remembered in ``linux.json``; ``locate`` fails (no location source on a computer);
``play_sound`` fails (not supported); ``selective_wipe`` deletes the agent's own
managed-documents directory and nothing else; ``wipe`` deletes that same directory and
reports an error, because wiping a Linux computer is not supported; ``retire`` is
acknowledged and the agent forgets its credential.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from spillguard.devices.agent import AGENT_VERSION
from spillguard.devices.agent.backends.base import (
    Command,
    CommandResult,
    now_iso,
    safe_document_name,
    scan_documents,
)
from spillguard.devices.agent.state import StateError, read_json, write_json

STATE_FILE: Final = "linux.json"
NOT_SUPPORTED: Final = "not supported on linux"
Runner = Callable[[list[str]], "RunResult"]


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_command(args: list[str]) -> RunResult:
    """Run a program without a shell, briefly; a missing program is exit code 127."""
    try:
        # A fixed argument list chosen by this module (loginctl, gsettings, lsblk), no shell.
        done = subprocess.run(  # noqa: S603
            args, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        return RunResult(127, "", f"{args[0]}: not found")
    except (subprocess.TimeoutExpired, OSError) as exc:
        return RunResult(1, "", str(exc))
    return RunResult(done.returncode, done.stdout, done.stderr)


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines of os-release(5), with shell quoting removed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value.replace('\\"', '"').replace("\\\\", "\\")
    return values


def os_version(release: dict[str, str]) -> str:
    version = release.get("VERSION_ID") or release.get("BUILD_ID") or "unknown"
    return _label(version, 64) or "unknown"


def _label(text: str, limit: int) -> str:
    cleaned = "".join(ch for ch in text if ord(ch) >= 0x20 and ord(ch) != 0x7F).strip()
    return cleaned[:limit]


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040 …).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def root_source(mounts_text: str) -> tuple[str, str] | None:
    """(device, filesystem type) mounted at ``/``; the last mount there wins."""
    found: tuple[str, str] | None = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and _unescape_mount(fields[1]) == "/":
            found = (_unescape_mount(fields[0]), fields[2])
    return found


def parse_gsettings_number(text: str) -> int | None:
    """``uint32 300`` or ``300`` → 300."""
    parts = text.strip().split()
    if not parts:
        return None
    try:
        return int(parts[-1])
    except ValueError:
        return None


def lsblk_has_crypt(data: Any) -> bool:
    """True if any node of ``lsblk -J -s`` output (an inverse tree) has type ``crypt``."""
    stack = list(data.get("blockdevices", [])) if isinstance(data, dict) else []
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if node.get("type") == "crypt":
            return True
        stack.extend(node.get("children") or [])
    return False


class LinuxBackend:
    """Posture of, and commands on, the Linux host (sources injectable for tests)."""

    name = "linux"

    def __init__(
        self,
        state_dir: Path,
        *,
        os_release: Path = Path("/etc/os-release"),
        proc_mounts: Path = Path("/proc/mounts"),
        sys_block: Path = Path("/sys/block"),
        dmi: Path = Path("/sys/class/dmi/id"),
        dev: Path = Path("/dev"),
        run: Runner = run_command,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.documents_dir = self.state_dir / "documents"
        self.os_release = os_release
        self.proc_mounts = proc_mounts
        self.sys_block = sys_block
        self.dmi = dmi
        self.dev = dev
        self.run = run
        self.which = which

    # posture -------------------------------------------------------------------------
    def collect_posture(self) -> dict[str, Any]:
        return {
            "platform": "linux",
            "os_version": self.read_os_version(),
            "model": self.read_model(),
            "serial": None,
            "passcode": {"type": "none", "length": None},
            "storage_encrypted": self.root_encrypted(),
            "auto_lock_seconds": self.auto_lock_seconds(),
            "rooted": False,
            "agent_version": AGENT_VERSION,
            "managed_documents": scan_documents(self.documents_dir),
            "reported_at": now_iso(),
        }

    def read_os_version(self) -> str:
        try:
            text = self.os_release.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown"
        return os_version(parse_os_release(text))

    def read_model(self) -> str:
        for name in ("product_name", "board_name"):
            try:
                value = _label((self.dmi / name).read_text(errors="replace"), 128)
            except OSError:
                continue
            if value:
                return value
        return "Linux computer"

    def root_encrypted(self) -> bool:
        try:
            source = root_source(self.proc_mounts.read_text(errors="replace"))
        except OSError:
            return False
        if source is None or not source[0].startswith("/"):
            return False  # overlay, tmpfs, a network root: nothing provable
        node = self._dm_node(source[0])
        if node is not None and (self.sys_block / node).exists():
            return self._crypt_below(node, depth=0)
        return self._lsblk_crypt(source[0])

    def _dm_node(self, device: str) -> str | None:
        """``dm-N`` for a device path (``/dev/mapper/x`` is a symlink to ``../dm-N``)."""
        path = Path(device)
        if not path.is_absolute():
            return None
        try:
            relative = path.relative_to("/dev")
        except ValueError:
            return None
        resolved = (self.dev / relative).resolve()
        name = resolved.name
        return name if name.startswith("dm-") else None

    def _crypt_below(self, node: str, depth: int) -> bool:
        if depth > 8:
            return False
        base = self.sys_block / node
        try:
            uuid = (base / "dm" / "uuid").read_text().strip()
        except OSError:
            uuid = ""
        if uuid.startswith("CRYPT-"):
            return True
        slaves = base / "slaves"
        if not slaves.is_dir():
            return False
        return any(self._crypt_below(s.name, depth + 1) for s in slaves.iterdir())

    def _lsblk_crypt(self, device: str) -> bool:
        if self.which("lsblk") is None:
            return False
        done = self.run(["lsblk", "-J", "-s", "-o", "NAME,TYPE", device])
        if done.returncode != 0:
            return False
        try:
            return lsblk_has_crypt(json.loads(done.stdout))
        except ValueError:
            return False

    def auto_lock_seconds(self) -> int | None:
        """Seconds of idle time before the screen locks; None if never or unknown."""
        if self.which("gsettings") is None:
            return None

        def get(schema: str, key: str) -> str | None:
            done = self.run(["gsettings", "get", schema, key])
            return done.stdout.strip() if done.returncode == 0 else None

        enabled = get("org.gnome.desktop.screensaver", "lock-enabled")
        if enabled != "true":
            return None  # off, or no GNOME schema: unknown
        idle = parse_gsettings_number(get("org.gnome.desktop.session", "idle-delay") or "")
        delay = parse_gsettings_number(get("org.gnome.desktop.screensaver", "lock-delay") or "")
        if not idle:
            return None  # 0: the session never goes idle, so it never locks by itself
        return min(idle + (delay or 0), 7 * 24 * 3600)

    # commands ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            data = read_json(self.state_dir / STATE_FILE)
        except FileNotFoundError:
            return {"lost_mode": False}
        return data if isinstance(data, dict) else {"lost_mode": False}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(self.state_dir / STATE_FILE, state)

    def in_lost_mode(self) -> bool:
        return bool(self._state().get("lost_mode"))

    def current_location(self) -> dict[str, Any] | None:
        return None  # a computer has no location source the agent could use

    def lock(self) -> CommandResult:
        if self.which("loginctl") is None:
            return CommandResult.failed("cannot lock: loginctl is not installed")
        done = self.run(["loginctl", "lock-sessions"])
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            return CommandResult.failed(
                "loginctl lock-sessions failed: " + (why[0] if why else f"exit {done.returncode}")
            )
        return CommandResult.ok()

    def receive_document(self, name: str, data: bytes) -> str:
        """Write the document into the managed-documents directory (0600), never over an
        existing file: ``name (2).ext`` and so on."""
        self.documents_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        base = Path(safe_document_name(name))
        for n in range(1, 1000):
            candidate = base.name if n == 1 else f"{base.stem} ({n}){base.suffix}"
            target = self.documents_dir / candidate
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return str(target)
        raise StateError(f"too many documents called {base.name} in {self.documents_dir}")

    def remove_documents(self) -> None:
        """Delete the agent's managed-documents directory: nothing outside it, ever."""
        target = self.documents_dir
        if target.is_symlink():
            target.unlink()  # remove the link itself, never what it points to
        elif target.is_dir():
            shutil.rmtree(target)

    def execute(self, command: Command) -> CommandResult:
        kind = command.type
        if kind == "lock":
            return self.lock()
        if kind == "lost_mode_on":
            state = self._state()
            state.update(lost_mode=True, message=command.params.get("message"), since=now_iso())
            self._save_state(state)
            locked = self.lock()
            if locked.status != "acknowledged":
                return CommandResult.failed(f"lost mode on, but {locked.reason}")
            return CommandResult.ok()  # no location source to report from
        if kind == "lost_mode_off":
            self._save_state({**self._state(), "lost_mode": False})
            return CommandResult.ok()
        if kind == "locate":
            return CommandResult.failed(f"{NOT_SUPPORTED}: this computer has no location source")
        if kind == "play_sound":
            return CommandResult.failed(NOT_SUPPORTED)
        if kind == "selective_wipe":
            self.remove_documents()
            return CommandResult.ok()
        if kind == "wipe":
            self.remove_documents()
            return CommandResult.failed(
                f"full wipe {NOT_SUPPORTED}; the agent's managed documents were deleted"
            )
        if kind == "retire":
            self._save_state({**self._state(), "lost_mode": False, "retired_at": now_iso()})
            return CommandResult.ok(forget_credential=True)
        return CommandResult.failed(f"unknown command type {kind!r}")


def host_is_linux() -> bool:
    return os.uname().sysname == "Linux"
