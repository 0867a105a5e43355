"""Agent backends: what each command does to a simulated phone, and how the linux backend
reads a host (from fixture files, so the tests do not depend on this machine)."""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from spillguard.devices.agent.backends import make_backend
from spillguard.devices.agent.backends.base import Backend, Command
from spillguard.devices.agent.backends.linux import LinuxBackend, RunResult, parse_os_release
from spillguard.devices.agent.backends.simulated import SimulatedBackend, initial_state
from spillguard.devices.posture import Posture


@pytest.fixture
def phone(tmp_path: Path) -> SimulatedBackend:
    return SimulatedBackend.create(tmp_path)


def run(backend: Backend, kind: str, **params: Any) -> Any:
    return backend.execute(Command(1, kind, params))


# --- simulated ---------------------------------------------------------------------------


def test_simulated_posture_is_a_valid_protocol_posture(phone: SimulatedBackend) -> None:
    posture = Posture.model_validate(phone.collect_posture())
    assert posture.passcode.type == "pin" and posture.storage_encrypted
    assert {d.file_name for d in posture.managed_documents} == {"customers.xlsx", "price-list.pdf"}


def test_lock_sets_locked_with_the_message(phone: SimulatedBackend) -> None:
    result = run(phone, "lock", message="Call IT", phone="+44 20 7946 0000")
    assert result.status == "acknowledged"
    state = phone.load()
    assert state["locked"] is True
    assert (state["lock_message"], state["lock_phone"]) == ("Call IT", "+44 20 7946 0000")


def test_lost_mode_on_locks_reports_location_and_off_stops_it(phone: SimulatedBackend) -> None:
    assert phone.current_location() is None
    on = run(phone, "lost_mode_on", message="Lost")
    assert on.status == "acknowledged" and on.location is not None
    assert on.location["latitude"] == pytest.approx(51.5072)
    assert datetime.fromisoformat(on.location["captured_at"]).tzinfo is not None
    assert phone.load()["locked"] and phone.in_lost_mode()
    assert phone.current_location() is not None
    off = run(phone, "lost_mode_off")
    assert off.status == "acknowledged" and off.location is None
    assert not phone.in_lost_mode() and phone.load()["location_reporting"] is False
    assert phone.current_location() is None


def test_locate_answers_only_in_lost_mode(phone: SimulatedBackend) -> None:
    outside = run(phone, "locate")
    assert outside.status == "error" and outside.location is None
    state = phone.load()
    state["fake_location"] = {"latitude": 53.4808, "longitude": -2.2426, "accuracy_m": 10.0}
    phone.save(state)
    run(phone, "lost_mode_on", message="Lost")
    inside = run(phone, "locate")
    assert inside.status == "acknowledged"
    assert (inside.location["latitude"], inside.location["longitude"]) == (53.4808, -2.2426)


def test_play_sound_is_recorded(phone: SimulatedBackend) -> None:
    run(phone, "play_sound")
    run(phone, "play_sound")
    assert phone.load()["sounds_played"] == 2


def test_wipe_clears_every_document_and_marks_wiped(phone: SimulatedBackend) -> None:
    assert run(phone, "wipe").status == "acknowledged"
    state = phone.load()
    assert state["wiped"] is True and state["wiped_at"]
    assert state["managed_documents"] == [] and state["personal_files"] == []
    assert phone.collect_posture()["managed_documents"] == []


def test_selective_wipe_clears_managed_documents_only(phone: SimulatedBackend) -> None:
    assert run(phone, "selective_wipe").status == "acknowledged"
    state = phone.load()
    assert state["managed_documents"] == []
    assert [f["file_name"] for f in state["personal_files"]] == ["holiday.jpg"]
    assert state["wiped"] is False


def test_retire_asks_the_agent_to_forget_its_credential(phone: SimulatedBackend) -> None:
    result = run(phone, "retire")
    assert result.status == "acknowledged" and result.forget_credential is True
    assert phone.load()["retired"] is True


def test_unknown_command_is_an_error_not_a_crash(phone: SimulatedBackend) -> None:
    result = run(phone, "self_destruct")
    assert result.status == "error" and "self_destruct" in (result.reason or "")


def test_profiles_change_the_posture() -> None:
    assert initial_state("swipe")["posture"]["passcode"] == {"type": "swipe", "length": None}
    assert initial_state("unencrypted")["posture"]["storage_encrypted"] is False
    assert initial_state("rooted")["posture"]["rooted"] is True
    with pytest.raises(ValueError, match="unknown profile"):
        initial_state("haunted")


def test_both_backends_meet_the_interface(tmp_path: Path) -> None:
    for name in ("simulated", "linux"):
        assert isinstance(make_backend(name, tmp_path), Backend)


# --- linux, from fixture files ----------------------------------------------------------

DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""


class Host:
    """A fake host: /etc/os-release, /proc/mounts, /sys/block, /dev and programs."""

    def __init__(self, root: Path, mounts: str, os_release: str = DEBIAN) -> None:
        self.root = root
        (root / "etc").mkdir(parents=True)
        (root / "etc/os-release").write_text(os_release)
        (root / "proc").mkdir()
        (root / "proc/mounts").write_text(mounts)
        (root / "sys/block").mkdir(parents=True)
        (root / "dmi").mkdir()
        (root / "dmi/product_name").write_text("ThinkPad X1 Carbon Gen 11\n")
        (root / "dev/mapper").mkdir(parents=True)
        self.programs: dict[str, Any] = {}
        self.calls: list[list[str]] = []

    def dm(self, node: str, uuid: str, slaves: tuple[str, ...] = ()) -> None:
        base = self.root / "sys/block" / node
        (base / "dm").mkdir(parents=True)
        (base / "dm/uuid").write_text(uuid + "\n")
        (base / "slaves").mkdir()
        for slave in slaves:
            (base / "slaves" / slave).mkdir()

    def mapper(self, name: str, node: str) -> None:
        (self.root / "dev" / node).touch()
        (self.root / "dev/mapper" / name).symlink_to(f"../{node}")

    def run(self, args: list[str]) -> RunResult:
        self.calls.append(args)
        answer = self.programs.get(" ".join(args))
        if answer is None:
            return RunResult(1, "", "No such schema")
        return answer if isinstance(answer, RunResult) else RunResult(0, answer, "")

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if any(k.startswith(name) for k in self.programs) else None

    def backend(self) -> LinuxBackend:
        return LinuxBackend(
            self.root / "state",
            os_release=self.root / "etc/os-release",
            proc_mounts=self.root / "proc/mounts",
            sys_block=self.root / "sys/block",
            dmi=self.root / "dmi",
            dev=self.root / "dev",
            run=self.run,
            which=self.which,
        )


LVM_ON_LUKS = """sysfs /sys sysfs rw,nosuid 0 0
/dev/mapper/vg-root / ext4 rw,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw 0 0
"""


def test_lvm_on_luks_root_is_encrypted(tmp_path: Path) -> None:
    host = Host(tmp_path, LVM_ON_LUKS)
    host.mapper("vg-root", "dm-1")
    host.dm("dm-1", "LVM-abcdef", slaves=("dm-0",))
    host.dm("dm-0", "CRYPT-LUKS2-0123456789abcdef-nvme0n1p3_crypt")
    posture = host.backend().collect_posture()
    assert posture["storage_encrypted"] is True
    assert posture["os_version"] == "12"
    assert posture["model"] == "ThinkPad X1 Carbon Gen 11"
    assert posture["platform"] == "linux" and posture["rooted"] is False
    Posture.model_validate(posture)


def test_plain_lvm_root_is_not_encrypted(tmp_path: Path) -> None:
    host = Host(tmp_path, LVM_ON_LUKS)
    host.mapper("vg-root", "dm-0")
    host.dm("dm-0", "LVM-abcdef", slaves=("nvme0n1p3",))
    assert host.backend().collect_posture()["storage_encrypted"] is False


@pytest.mark.parametrize(
    "mounts",
    [
        "/dev/sda2 / ext4 rw 0 0\n",
        "overlay / overlay rw,lowerdir=/x 0 0\n",
        "proc /proc proc rw 0 0\n",  # no root mount at all
    ],
)
def test_root_without_dm_crypt_is_not_encrypted(tmp_path: Path, mounts: str) -> None:
    assert Host(tmp_path, mounts).backend().root_encrypted() is False


def test_last_root_mount_wins_and_escapes_are_decoded(tmp_path: Path) -> None:
    mounts = "/dev/sda1 / ext4 rw 0 0\n/dev/mapper/my\\040root / ext4 rw 0 0\n"
    host = Host(tmp_path, mounts)
    host.mapper("my root", "dm-0")
    host.dm("dm-0", "CRYPT-LUKS1-feed-my_root")
    assert host.backend().root_encrypted() is True


def test_lsblk_is_asked_when_sysfs_has_no_device(tmp_path: Path) -> None:
    host = Host(tmp_path, "/dev/mapper/root / ext4 rw 0 0\n")
    tree = {"blockdevices": [{"name": "root", "type": "crypt",
                              "children": [{"name": "sda2", "type": "part"}]}]}  # fmt: skip
    host.programs["lsblk -J -s -o NAME,TYPE /dev/mapper/root"] = json.dumps(tree)
    assert host.backend().root_encrypted() is True


def test_os_release_fallbacks() -> None:
    assert parse_os_release('NAME="Arch Linux"\nBUILD_ID=rolling\n')["BUILD_ID"] == "rolling"
    assert parse_os_release("# comment\nVERSION_ID='24.04'\n")["VERSION_ID"] == "24.04"


def test_rolling_release_reports_its_build_id(tmp_path: Path) -> None:
    host = Host(tmp_path, "", os_release='NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
    assert host.backend().collect_posture()["os_version"] == "rolling"


GNOME = "org.gnome.desktop"


def test_gnome_screen_lock_is_idle_delay_plus_lock_delay(tmp_path: Path) -> None:
    host = Host(tmp_path, "")
    host.programs[f"gsettings get {GNOME}.screensaver lock-enabled"] = "true\n"
    host.programs[f"gsettings get {GNOME}.session idle-delay"] = "uint32 300\n"
    host.programs[f"gsettings get {GNOME}.screensaver lock-delay"] = "uint32 30\n"
    assert host.backend().collect_posture()["auto_lock_seconds"] == 330


@pytest.mark.parametrize(
    ("enabled", "idle"), [("false", "uint32 300"), ("true", "uint32 0")]
)  # fmt: skip
def test_screen_that_never_locks_reports_none(tmp_path: Path, enabled: str, idle: str) -> None:
    host = Host(tmp_path, "")
    host.programs[f"gsettings get {GNOME}.screensaver lock-enabled"] = enabled
    host.programs[f"gsettings get {GNOME}.session idle-delay"] = idle
    host.programs[f"gsettings get {GNOME}.screensaver lock-delay"] = "uint32 0"
    assert host.backend().auto_lock_seconds() is None


def test_without_gsettings_auto_lock_is_unknown_and_passcode_none(tmp_path: Path) -> None:
    posture = Host(tmp_path, "").backend().collect_posture()
    assert posture["auto_lock_seconds"] is None
    assert posture["passcode"] == {"type": "none", "length": None}


def test_linux_lock_runs_loginctl(tmp_path: Path) -> None:
    host = Host(tmp_path, "")
    host.programs["loginctl lock-sessions"] = ""
    assert run(host.backend(), "lock").status == "acknowledged"
    assert host.calls == [["loginctl", "lock-sessions"]]


def test_linux_lock_failure_is_reported(tmp_path: Path) -> None:
    host = Host(tmp_path, "")
    host.programs["loginctl lock-sessions"] = RunResult(1, "", "Access denied\n")
    result = run(host.backend(), "lock")
    assert result.status == "error" and "Access denied" in (result.reason or "")
    missing = Host(tmp_path / "other", "").backend()
    assert "loginctl is not installed" in (run(missing, "lock").reason or "")


def test_linux_wipes_touch_only_the_managed_documents_directory(tmp_path: Path) -> None:
    host = Host(tmp_path, "")
    backend = host.backend()
    backend.documents_dir.mkdir(parents=True)
    (backend.documents_dir / "customers.xlsx").write_bytes(b"rows")
    outside = tmp_path / "state" / "keep.txt"
    outside.write_text("not managed")
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    (backend.documents_dir / "link").symlink_to(elsewhere)
    assert [d["file_name"] for d in backend.collect_posture()["managed_documents"]] == [
        "customers.xlsx"
    ]

    full = run(backend, "wipe")
    assert full.status == "error" and "not supported on linux" in (full.reason or "")
    assert not backend.documents_dir.exists()
    assert outside.read_text() == "not managed"
    assert (elsewhere / "thesis.tex").read_text() == "years of work"

    backend.documents_dir.mkdir()
    (backend.documents_dir / "a.pdf").write_bytes(b"x")
    assert run(backend, "selective_wipe").status == "acknowledged"
    assert not backend.documents_dir.exists() and outside.exists()


def test_linux_lost_mode_is_remembered_and_locate_is_unsupported(tmp_path: Path) -> None:
    host = Host(tmp_path, "")
    host.programs["loginctl lock-sessions"] = ""
    backend = host.backend()
    assert run(backend, "lost_mode_on", message="Lost").status == "acknowledged"
    assert backend.in_lost_mode() and backend.current_location() is None
    assert "not supported on linux" in (run(backend, "locate").reason or "")
    run(backend, "lost_mode_off")
    assert not backend.in_lost_mode()
    assert run(backend, "retire").forget_credential is True


# --- linux, this host ----------------------------------------------------------------


@pytest.mark.skipif(platform.system() != "Linux", reason="reads a real Linux host")
def test_this_hosts_real_posture_has_the_right_shape(tmp_path: Path) -> None:
    posture = LinuxBackend(tmp_path).collect_posture()
    Posture.model_validate(posture)
    assert posture["platform"] == "linux"
    assert isinstance(posture["os_version"], str) and posture["os_version"]
    assert isinstance(posture["storage_encrypted"], bool)
    assert posture["auto_lock_seconds"] is None or isinstance(posture["auto_lock_seconds"], int)
