"""Settings from SPILLGUARD_* environment variables and the optional TOML config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from spillguard.core.settings import ConfigError, Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Start from no SPILLGUARD_* variables, in an empty working directory."""
    for name in list(os.environ):
        if name.startswith("SPILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_without_environment_or_file(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.home == Path(".spillguard")
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.master_key is None
    assert settings.resolved_master_key_file == Path(".spillguard") / "master.key"
    assert settings.login_max_failures_account == 5
    assert settings.login_max_failures_address == 20
    assert settings.trust_proxy_headers is False


def test_default_database_is_a_sqlite_file_in_the_data_directory(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPILLGUARD_HOME", "data")
    settings = load_settings()
    expected = (clean_env / "data" / "spillguard.db").resolve()
    assert settings.resolved_database_url == f"sqlite:///{expected}"
    assert settings.database_kind == "sqlite"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("postgresql+psycopg://spillguard@db/spillguard", "postgresql"),
        ("postgresql://u:p@127.0.0.1:5432/x", "postgresql"),
        ("sqlite:////var/lib/spillguard/spillguard.db", "sqlite"),
        ("sqlite+pysqlite:///relative.db", "sqlite"),
    ],
)
def test_database_kind(clean_env: Path, url: str, kind: str) -> None:
    settings = load_settings(database_url=url)
    assert settings.resolved_database_url == url
    assert settings.database_kind == kind


def test_environment_variables_are_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SPILLGUARD_HOME": str(clean_env / "h"),
        "SPILLGUARD_DATABASE_URL": "postgresql+psycopg://spillguard@db/spillguard",
        "SPILLGUARD_HOST": "0.0.0.0",
        "SPILLGUARD_PORT": "8443",
        "SPILLGUARD_WORKERS": "4",
        "SPILLGUARD_MASTER_KEY": "c2VjcmV0",
        "SPILLGUARD_TRUST_PROXY_HEADERS": "true",
        "SPILLGUARD_SESSION_HOURS": "1.5",
        "SPILLGUARD_LOGIN_MAX_FAILURES_ACCOUNT": "3",
        "SPILLGUARD_LOG_LEVEL": "debug",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.home == clean_env / "h"
    assert settings.database_kind == "postgresql"
    assert settings.host == "0.0.0.0"
    assert settings.port == 8443
    assert settings.workers == 4
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(settings)  # the key never shows in a repr or a log line
    assert settings.trust_proxy_headers is True
    assert settings.session_hours == 1.5
    assert settings.login_max_failures_account == 3
    assert settings.log_level == "DEBUG"
    assert settings.resolved_master_key_file == clean_env / "h" / "master.key"
    # A wildcard bind address still prints a link a browser can open.
    assert settings.base_url == "http://127.0.0.1:8443"


def test_an_ipv6_bind_address_is_bracketed_in_printed_links(clean_env: Path) -> None:
    assert load_settings(host="::1", port=8001).base_url == "http://[::1]:8001"
    assert load_settings(host="::", port=8001).base_url == "http://127.0.0.1:8001"
    assert load_settings(host="localhost").base_url == "http://localhost:8000"


def test_public_url_wins_for_printed_links(clean_env: Path) -> None:
    settings = load_settings(public_url="https://spillguard.example.org/")
    assert settings.base_url == "https://spillguard.example.org"


def test_config_file_named_by_spillguard_config(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "etc" / "spillguard.toml"
    config.parent.mkdir()
    config.write_text('port = 9000\nhost = "10.0.0.5"\nsession_idle_minutes = 15\n')
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    settings = load_settings()
    assert (settings.host, settings.port) == ("10.0.0.5", 9000)
    assert settings.session_idle_minutes == 15


def test_config_file_in_the_data_directory_under_a_spillguard_table(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = clean_env / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[spillguard]\nworkers = 3\ndatabase_url = "postgresql+psycopg://app@db/app"\n'
    )
    monkeypatch.setenv("SPILLGUARD_HOME", str(home))
    settings = load_settings()
    assert settings.workers == 3
    assert settings.database_kind == "postgresql"


def test_default_config_file_is_found_in_the_default_data_directory(clean_env: Path) -> None:
    (clean_env / ".spillguard").mkdir()
    (clean_env / ".spillguard" / "config.toml").write_text("port = 8181\n")
    assert load_settings().port == 8181


def test_environment_wins_over_the_config_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "spillguard.toml"
    config.write_text("port = 9000\nworkers = 2\n")
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    monkeypatch.setenv("SPILLGUARD_PORT", "9100")
    settings = load_settings()
    assert settings.port == 9100  # from the environment
    assert settings.workers == 2  # from the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 9001\nprot = 9002\n", "unknown setting 'prot'"),
        ('[spillguard]\nport = 9001\nsomething_else = "x"\n', "unknown setting 'something_else'"),
        ('[inspections]\nphone_region = "IE"\n', "unknown setting 'inspections'"),
        ("port = 9001\n[spillguard]\nport = 9002\n", "'port' is set both at the top level"),
    ],
)
def test_an_unknown_or_doubled_key_in_the_config_file_is_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    """A typo must not silently leave a setting at its default."""
    config = clean_env / "spillguard.toml"
    config.write_text(text)
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_settings_at_the_top_level_and_under_spillguard_are_read_together(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "spillguard.toml"
    config.write_text(
        'port = 9001\n[spillguard]\nhost = "10.0.0.9"\n[inspection]\nphone_region = "GB"\n'
    )
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    settings = load_settings()
    assert (settings.host, settings.port) == ("10.0.0.9", 9001)


def test_a_missing_explicit_config_file_is_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = clean_env / "nope.toml"
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(missing))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(missing) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_an_unparsable_config_file_is_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "broken.toml"
    config.write_text("port = = 9000\n")
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings()


def test_a_spillguard_key_that_is_not_a_table_is_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "odd.toml"
    config.write_text('spillguard = "yes"\n')
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("SPILLGUARD_PORT", "eighty", "port"),
        ("SPILLGUARD_PORT", "0", "port"),
        ("SPILLGUARD_PORT", "70000", "port"),
        ("SPILLGUARD_WORKERS", "0", "workers"),
        ("SPILLGUARD_LOG_LEVEL", "loud", "log_level"),
        ("SPILLGUARD_SESSION_HOURS", "0", "session_hours"),
        ("SPILLGUARD_LOGIN_MAX_FAILURES_ACCOUNT", "0", "login_max_failures_account"),
        ("SPILLGUARD_TRUST_PROXY_HEADERS", "perhaps", "trust_proxy_headers"),
        # list settings are JSON in the environment: plain text is not, and says so
        ("SPILLGUARD_AUDIT_WITNESS_EMAILS", "witness@auditor.example", "audit_witness_emails"),
        ("SPILLGUARD_AUDIT_WITNESS_EMAILS", '["not an address"]', "audit_witness_emails"),
        ("SPILLGUARD_BREACH_CLOCK_REMINDERS_HOURS", "24,6", "breach_clock_reminders_hours"),
    ],
)
def test_invalid_values_give_a_one_line_config_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {field}:")
    assert "\n" not in message


def test_invalid_values_in_the_config_file_give_a_config_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "spillguard.toml"
    config.write_text('workers = "many"\n')
    monkeypatch.setenv("SPILLGUARD_CONFIG", str(config))
    with pytest.raises(ConfigError, match="invalid setting workers"):
        load_settings()


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(port=st.integers(min_value=-(10**6), max_value=10**6))
def test_port_from_the_environment(clean_env: Path, port: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPILLGUARD_PORT", str(port))
        if 1 <= port <= 65535:
            assert load_settings().port == port
        else:
            with pytest.raises(ConfigError, match="invalid setting port"):
                load_settings()


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")))
@example(text="8080")
@example(text=" 8080 ")
@example(text="8_080")
@example(text="8080.0")
@example(text="80.5")
@example(text="0x50")
@example(text="")
def test_any_port_text_is_a_port_or_a_config_error(clean_env: Path, text: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPILLGUARD_PORT", text)
        try:
            port = load_settings().port
        except ConfigError as exc:
            assert str(exc).startswith("invalid setting port")
        else:
            assert 1 <= port <= 65535
            assert float(text.strip()) == port  # e.g. "8080", " 8080 ", "8_080", "8080.0"


def test_settings_are_read_when_asked_not_at_import(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPILLGUARD_PORT", "8001")
    first = load_settings()
    monkeypatch.setenv("SPILLGUARD_PORT", "8002")
    assert (first.port, load_settings().port) == (8001, 8002)


def test_explicit_arguments_win_over_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPILLGUARD_PORT", "8001")
    assert Settings(port=8123).port == 8123
