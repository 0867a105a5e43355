"""The master key: where it comes from, how it is protected, and the keys derived from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest

from spillguard.core import keys as keys_module
from spillguard.core.keys import (
    MASTER_KEY_BYTES,
    KeyPurpose,
    KeyRing,
    load_or_create_key_ring,
)
from spillguard.core.settings import ConfigError, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SPILLGUARD_* variable and no stray config file can leak into these tests."""
    for name in list(os.environ):
        if name.startswith("SPILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _settings(home: Path, **extra: object) -> Settings:
    return Settings(home=home, **extra)  # type: ignore[arg-type]


def _write_key_file(path: Path, key: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(base64.b64encode(key).decode() + "\n")
    path.chmod(mode)


def _rfc5869_hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF written out from RFC 5869 (no salt = HashLen zero bytes), independent of the code."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


# Derivation and digests ----------------------------------------------------------------


def test_derive_is_rfc5869_hkdf_with_the_purpose_as_info() -> None:
    master = secrets.token_bytes(MASTER_KEY_BYTES)
    ring = KeyRing(master)
    for purpose in KeyPurpose:
        assert ring.derive(purpose) == _rfc5869_hkdf_sha256(master, purpose.value.encode())


def test_derive_is_deterministic_per_purpose() -> None:
    master = secrets.token_bytes(MASTER_KEY_BYTES)
    first, second = KeyRing(master), KeyRing(bytes(master))
    for purpose in KeyPurpose:
        assert first.derive(purpose) == second.derive(purpose)
        assert len(first.derive(purpose)) == 32


def test_each_purpose_gets_a_different_key_and_none_is_the_master() -> None:
    master = secrets.token_bytes(MASTER_KEY_BYTES)
    ring = KeyRing(master)
    derived = {purpose: ring.derive(purpose) for purpose in KeyPurpose}
    assert len(set(derived.values())) == len(KeyPurpose)
    assert master not in derived.values()


def test_another_master_key_derives_other_keys() -> None:
    one = KeyRing(secrets.token_bytes(MASTER_KEY_BYTES))
    two = KeyRing(secrets.token_bytes(MASTER_KEY_BYTES))
    for purpose in KeyPurpose:
        assert one.derive(purpose) != two.derive(purpose)


def test_digest_is_hmac_sha256_under_the_derived_key() -> None:
    ring = KeyRing(secrets.token_bytes(MASTER_KEY_BYTES))
    value = "sgt_" + secrets.token_urlsafe(32)
    for purpose in KeyPurpose:
        expected = hmac.new(ring.derive(purpose), value.encode(), hashlib.sha256).hexdigest()
        assert ring.digest(purpose, value) == expected
        assert ring.digest(purpose, value.encode()) == expected


def test_digest_of_one_value_differs_between_purposes() -> None:
    ring = KeyRing(secrets.token_bytes(MASTER_KEY_BYTES))
    digests = {ring.digest(purpose, "same value") for purpose in KeyPurpose}
    assert len(digests) == len(KeyPurpose)


def test_key_ring_repr_does_not_show_the_master_key() -> None:
    master = secrets.token_bytes(MASTER_KEY_BYTES)
    text = repr(KeyRing(master))
    assert master.hex() not in text
    assert repr(master) not in text


# The key file --------------------------------------------------------------------------


def test_first_start_creates_a_0600_key_file_and_the_next_start_reuses_it(
    clean_env: Path,
) -> None:
    home = clean_env / "home"
    first = load_or_create_key_ring(_settings(home))
    key_file = home / "master.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert base64.b64decode(key_file.read_text().strip()) == first.master
    assert len(first.master) == MASTER_KEY_BYTES

    again = load_or_create_key_ring(_settings(home))
    assert again.master == first.master


def test_two_data_directories_get_different_keys(clean_env: Path) -> None:
    one = load_or_create_key_ring(_settings(clean_env / "one"))
    two = load_or_create_key_ring(_settings(clean_env / "two"))
    assert one.master != two.master


def test_master_key_file_setting_chooses_the_file(clean_env: Path) -> None:
    path = clean_env / "elsewhere" / "key.b64"
    ring = load_or_create_key_ring(_settings(clean_env / "home", master_key_file=path))
    assert base64.b64decode(path.read_text()) == ring.master
    assert not (clean_env / "home" / "master.key").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(clean_env: Path, mode: int) -> None:
    home = clean_env / "home"
    _write_key_file(home / "master.key", secrets.token_bytes(MASTER_KEY_BYTES), mode)
    with pytest.raises(ConfigError) as caught:
        load_or_create_key_ring(_settings(home))
    message = str(caught.value)
    assert "chmod 600" in message
    assert f"{mode:04o}" in message
    assert "\n" not in message


def test_an_owner_only_key_file_is_accepted(clean_env: Path) -> None:
    home = clean_env / "home"
    key = secrets.token_bytes(MASTER_KEY_BYTES)
    _write_key_file(home / "master.key", key, 0o400)
    assert load_or_create_key_ring(_settings(home)).master == key


@pytest.mark.parametrize(
    "content",
    [
        "not base64 at all!",
        "@@@@",
        base64.b64encode(b"short").decode(),
        base64.b64encode(bytes(MASTER_KEY_BYTES + 1)).decode(),
        "",
    ],
    ids=["garbage", "symbols", "too-short", "too-long", "empty"],
)
def test_a_corrupt_key_file_is_a_config_error(clean_env: Path, content: str) -> None:
    path = clean_env / "home" / "master.key"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_or_create_key_ring(_settings(clean_env / "home"))
    assert str(path) in str(caught.value)
    # The corrupt file is left alone for the operator to inspect, never replaced.
    assert path.read_text() == content


def test_the_master_key_setting_wins_over_the_file(clean_env: Path) -> None:
    home = clean_env / "home"
    on_disk = secrets.token_bytes(MASTER_KEY_BYTES)
    configured = secrets.token_bytes(MASTER_KEY_BYTES)
    _write_key_file(home / "master.key", on_disk)
    ring = load_or_create_key_ring(
        _settings(home, master_key=base64.b64encode(configured).decode())
    )
    assert ring.master == configured


def test_the_master_key_from_the_environment_creates_no_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = secrets.token_bytes(MASTER_KEY_BYTES)
    monkeypatch.setenv("SPILLGUARD_MASTER_KEY", base64.b64encode(configured).decode())
    monkeypatch.setenv("SPILLGUARD_HOME", str(clean_env / "home"))
    ring = load_or_create_key_ring(Settings())
    assert ring.master == configured
    assert not (clean_env / "home" / "master.key").exists()


@pytest.mark.parametrize(
    "value",
    ["%%% not base64", base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(64)).decode()],
    ids=["garbage", "16-bytes", "64-bytes"],
)
def test_a_bad_master_key_setting_is_a_config_error(clean_env: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="SPILLGUARD_MASTER_KEY"):
        load_or_create_key_ring(_settings(clean_env / "home", master_key=value))


def test_an_unwritable_data_directory_is_a_config_error(clean_env: Path) -> None:
    blocker = clean_env / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create master key file"):
        load_or_create_key_ring(_settings(blocker / "home"))


def test_losing_the_creation_race_uses_the_winners_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writes the key file between our existence check and our create."""
    home = clean_env / "home"
    winner = secrets.token_bytes(MASTER_KEY_BYTES)
    real_token_bytes = secrets.token_bytes

    class OtherProcessWinsFirst:
        token_hex = staticmethod(secrets.token_hex)

        @staticmethod
        def token_bytes(n: int) -> bytes:
            _write_key_file(home / "master.key", winner)
            return real_token_bytes(n)

    monkeypatch.setattr(keys_module, "secrets", OtherProcessWinsFirst)
    ring = load_or_create_key_ring(_settings(home))
    assert ring.master == winner
    assert base64.b64decode((home / "master.key").read_text()) == winner


def test_the_creation_race_loser_still_refuses_a_readable_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = clean_env / "home"

    class OtherProcessWritesLoosely:
        token_hex = staticmethod(secrets.token_hex)

        @staticmethod
        def token_bytes(n: int) -> bytes:
            _write_key_file(home / "master.key", bytes(n), 0o644)
            return bytes(n)

    monkeypatch.setattr(keys_module, "secrets", OtherProcessWritesLoosely)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_key_ring(_settings(home))


def test_processes_starting_together_agree_on_one_key(clean_env: Path) -> None:
    """Many first starts at once: every one ends up with the same key, none fails."""
    for attempt in range(20):
        home = clean_env / f"home{attempt}"
        barrier = threading.Barrier(6)
        results: list[bytes] = []
        errors: list[BaseException] = []

        def start(home: Path = home, barrier: threading.Barrier = barrier) -> None:
            settings = _settings(home)
            barrier.wait()
            try:
                results.append(load_or_create_key_ring(settings).master)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(results)) == 1
        assert base64.b64decode((home / "master.key").read_text()) == results[0]
        assert [p.name for p in home.iterdir()] == ["master.key"]  # no temporary files left
