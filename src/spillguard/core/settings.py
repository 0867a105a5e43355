"""One settings class for the whole server, read when the app or a CLI command starts.

Values come from ``SPILLGUARD_*`` environment variables and, optionally, a TOML config
file named by ``SPILLGUARD_CONFIG`` (or ``config.toml`` in the data directory).
Environment variables win over the file.  Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line meant for the operator."""


_WITNESS_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


class Settings(BaseSettings):
    """Every tunable of a Spillguard server."""

    model_config = SettingsConfigDict(env_prefix="SPILLGUARD_", extra="ignore")

    home: Path = Field(default=Path(".spillguard"), description="Data directory.")
    config: Path | None = Field(default=None, description="Optional TOML config file.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<home>/spillguard.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    public_url: str | None = Field(
        default=None, description="Externally visible base URL, used in printed links."
    )
    master_key: SecretStr | None = Field(
        default=None, description="Base64 master key (32 bytes); else the key file is used."
    )
    master_key_file: Path | None = Field(
        default=None, description="Path of the master key file; default <home>/master.key."
    )
    log_level: str = "INFO"
    log_json: bool = True
    session_hours: float = Field(default=12.0, gt=0)
    session_idle_minutes: float = Field(default=60.0, gt=0)
    login_max_failures_account: int = Field(default=5, ge=1)
    login_max_failures_address: int = Field(default=20, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    setup_link_minutes: int = Field(default=60, ge=1)
    housekeeping_interval_seconds: float = Field(default=300.0, gt=0)
    scheduler_enabled: bool = True
    trust_proxy_headers: bool = Field(
        default=False,
        description="Honour X-Forwarded-For/-Proto from a reverse proxy in front of the server.",
    )
    proxy_addresses: str = Field(
        default="127.0.0.1",
        description="Comma-separated addresses (or CIDR networks) of the reverse proxies whose "
        "X-Forwarded-* headers are honoured when trust_proxy_headers is on.",
    )
    device_checkin_interval_seconds: int = Field(
        default=900, ge=10, le=86400, description="How often devices are told to check in."
    )
    device_clock_skew_seconds: int = Field(
        default=300, ge=0, le=3600, description="How far ahead of the server a device clock may be."
    )
    device_max_body_bytes: int = Field(
        default=262_144, ge=4096, le=16 * 1024 * 1024, description="Device protocol body cap."
    )
    device_command_ttl_seconds: int = Field(
        default=7 * 86400, ge=60, le=90 * 86400, description="Default lifetime of a command."
    )
    device_command_retention_days: float = Field(
        default=30.0, gt=0, le=3650, description="Finished commands are deleted after this."
    )
    device_history_retention_days: float = Field(
        default=365.0, gt=0, le=3650, description="Posture history and locations kept this long."
    )
    device_maintenance_interval_seconds: float = Field(default=300.0, gt=0)
    inspection_max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest file or text POST /api/v1/inspections and the Inspect page accept.",
    )
    customers_import_max_upload_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest customer CSV imported over the API or console (the CLI has no cap).",
    )
    installation: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Name of this installation; the audit log's origin is spillguard/<name>.",
    )
    audit_sequence_interval_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="How often new audit events join the log."
    )
    audit_checkpoint_interval_seconds: float = Field(
        default=60.0, ge=0, le=86400, description="Least time between two signed checkpoints."
    )
    audit_witness_dir: Path | None = Field(
        default=None,
        description="Directory where every new checkpoint is also appended to a file.",
    )
    audit_witness_emails: list[str] = Field(
        default=[],
        max_length=20,
        description="E-mail addresses (outside the operator's reach) that every signed "
        "checkpoint is mailed to, as an attachment `spillguard audit verify --against` "
        "reads; a JSON list in the environment: '[\"witness@auditor.example\"]'.",
    )
    audit_witness_email_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=86400,
        description="How often the checkpoints made since the last mail go out to the "
        "witnesses (one message, or several of at most 500).",
    )
    # Honeytoken customers (audit.honeytokens; docs/audit.md "Honeytokens") ----------------
    honeytoken_email_domain: str | None = Field(
        default=None,
        max_length=253,
        description="Mail domain the organisation controls (MX to the mail filter) for "
        "honeytoken customers' e-mail addresses; required to create honeytokens.",
    )
    honeytoken_phone_range: str = Field(
        default="07700900000-07700900999",
        max_length=60,
        description="START-END of the phone numbers honeytokens get (default: Ofcom's drama "
        "range, which a careful insider could recognise; use a range you own).",
    )
    honeytoken_id_prefix: str | None = Field(
        default=None,
        max_length=20,
        description="Prefix of honeytoken customer ids (unset: the directory's own prefix).",
    )
    # Insider-risk detectors (audit.detect; docs/audit.md) ---------------------------------
    insider_baseline_days: int = Field(
        default=20, ge=3, le=365, description="Active days an actor's own baseline uses."
    )
    insider_baseline_lookback_days: int = Field(
        default=60, ge=7, le=730, description="Calendar days searched for those active days."
    )
    insider_baseline_min_days: int = Field(
        default=5, ge=2, le=365, description="Active days needed before the baseline is used."
    )
    insider_volume_mad_k: float = Field(
        default=8.0, gt=0, le=100, description="Volume alert above median + k x spread."
    )
    insider_volume_min_ratio: float = Field(
        default=3.0, ge=1, le=1000, description="...and at least this many times the median."
    )
    insider_volume_min_records: int = Field(
        default=200, ge=1, description="...and at least this many records in the day."
    )
    insider_spread_floor: float = Field(
        default=10.0, ge=0, description="Smallest spread (records) a baseline is given."
    )
    insider_spread_floor_ratio: float = Field(
        default=0.25, ge=0, le=10, description="Smallest spread as a fraction of the median."
    )
    insider_peer_mad_k: float = Field(
        default=10.0, gt=0, le=100, description="Peer alert above team median + k x spread."
    )
    insider_peer_min_ratio: float = Field(
        default=5.0, ge=1, le=1000, description="...and at least this many times the team's."
    )
    insider_peer_min_records: int = Field(
        default=300, ge=1, description="...and at least this many records in the day."
    )
    insider_peer_min_size: int = Field(
        default=5, ge=2, le=10_000, description="Team members with history needed."
    )
    insider_after_hours_min_records: int = Field(
        default=100, ge=1, description="Records outside working hours in a day to alert."
    )
    insider_after_hours_mad_k: float = Field(
        default=8.0, gt=0, le=100, description="...and above own median + k x spread."
    )
    insider_export_event_records: int = Field(
        default=1000, ge=1, description="Records exported or printed in one event to alert."
    )
    insider_export_day_records: int = Field(
        default=2000, ge=1, description="Records exported or printed in a day to alert."
    )
    insider_export_baseline_factor: float = Field(
        default=5.0, ge=1, le=1000, description="Daily export alert also above own median x this."
    )
    insider_off_duty_min_records: int = Field(
        default=50, ge=1, description="Records outside the actor's duties in a day to alert."
    )
    insider_off_duty_mad_k: float = Field(
        default=8.0, gt=0, le=100, description="...and above own median + k x spread."
    )
    insider_departing_days: int = Field(
        default=30, ge=0, le=365, description="An actor leaving within this many days is watched."
    )
    insider_departing_volume_ratio: float = Field(
        default=2.5, ge=1, le=1000, description="Departing: records above own median x this."
    )
    insider_departing_min_records: int = Field(
        default=100, ge=1, description="...and at least this many records in the day."
    )
    insider_departing_export_records: int = Field(
        default=50, ge=1, description="Departing: records exported or printed in a day."
    )
    insider_default_timezone: str = Field(
        default="Europe/London", description="Time zone of an actor HR has no record of."
    )
    insider_default_work_start: str = Field(
        default="07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Their day's start."
    )
    insider_default_work_end: str = Field(
        default="19:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Their day's end."
    )
    insider_default_work_days: str = Field(
        default="12345", pattern=r"^[1-7]{1,7}$", description="Their ISO weekdays (1 = Monday)."
    )
    access_ingest_rate: float = Field(
        default=20_000.0,
        ge=0,
        le=10_000_000,
        description="Access events per second each source may send, per server process "
        "(0: no limit).",
    )
    access_ingest_burst: int = Field(
        default=100_000,
        ge=1,
        le=100_000_000,
        description="Access events a source may send at once above its rate (token bucket).",
    )
    exposure_retention_days: int = Field(
        default=0,
        ge=0,
        le=36500,
        description="Days the exposure ledger keeps a delivery (0 keeps every delivery).",
    )
    exposure_prune_interval_seconds: float = Field(
        default=3600.0, gt=0, le=86400, description="How often expired deliveries are pruned."
    )
    exposure_inventory_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="How often documents reported on phones are matched with inspected content.",
    )
    exposure_store_dir: Path | None = Field(
        default=None,
        description="Directory for held documents (encrypted); default: in the database.",
    )
    gateway_link_days: int = Field(
        default=14, ge=1, le=365, description="Days a gateway link works after it is made."
    )
    mail_filter_listen: str = Field(
        default="127.0.0.1:10025",
        pattern=r"^\S+:\d{1,5}$",
        description="host:port where `spillguard mail-filter` accepts mail from the mail "
        "server (Postfix content_filter).",
    )
    mail_filter_next_hop: str = Field(
        default="127.0.0.1:10026",
        pattern=r"^\S+:\d{1,5}$",
        description="host:port of the SMTP server the mail filter re-injects mail into.",
    )
    mail_filter_next_hop_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long the mail filter waits for each reply of the next hop.",
    )
    mail_filter_protected_label: str = Field(
        default="confidential",
        pattern=r"^(public|internal|confidential|restricted)$",
        description="Content at or above this label reaches an internal recipient only if "
        "every phone of theirs is compliant.",
    )
    mail_filter_external_label: str = Field(
        default="restricted",
        pattern=r"^(public|internal|confidential|restricted)$",
        description="Mail to an outside recipient with content at or above this label is "
        "quarantined and the sender told.",
    )
    mail_filter_internal_action: str = Field(
        default="link",
        pattern=r"^(link|quarantine)$",
        description="What happens to protected content for an internal recipient whose "
        "phone fails: 'link' (replace it with a gateway link) or 'quarantine'.",
    )
    mail_filter_internal_domains: str = Field(
        default="",
        description="Comma-separated mail domains whose recipients are internal even "
        "without a Spillguard account.",
    )
    mail_filter_max_message_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest message the mail filter accepts (larger: 552).",
    )
    # Outgoing mail (customer notices, escalations, breach-clock reminders) --------------
    mail_backend: str = Field(
        default="smtp",
        pattern=r"^(smtp|memory)$",
        description="'smtp' sends through smtp_host (unset: nothing is sent, notices stay "
        "queued); 'memory' keeps messages in the process (tests, demo).",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for outgoing mail.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = Field(
        default="spillguard@localhost",
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
        description="Envelope sender and From address of outgoing mail.",
    )
    smtp_starttls: bool = Field(default=False, description="Require STARTTLS before sending.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="How long to wait for each SMTP reply."
    )
    notice_rate_per_second: float = Field(
        default=50.0, gt=0, le=10_000, description="Most customer notices sent per second."
    )
    notice_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts before a notice is marked failed."
    )
    notice_retry_base_seconds: float = Field(
        default=60.0, gt=0, le=86400, description="First retry delay; doubles each attempt."
    )
    notice_retry_max_seconds: float = Field(
        default=6 * 3600.0, gt=0, le=7 * 86400, description="Longest delay between attempts."
    )
    notice_lease_seconds: float = Field(
        default=300.0, ge=5, le=86400, description="How long a sender holds claimed notices."
    )
    notice_worker_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often the server drains the outbox."
    )
    organisation_name: str | None = Field(
        default=None,
        max_length=200,
        description="The organisation's name, pre-filled in regulator reports and notices.",
    )
    # Incidents (breach clock) -------------------------------------------------------------
    organisation_is_communications_provider: bool = Field(
        default=False,
        description="The organisation provides a public electronic communications service: "
        "the regulator must hear of a breach within 24 hours (PECR reg 5A), not 72 (GDPR).",
    )
    breach_clock_reminders_hours: list[int] = Field(
        default=[48, 24, 6],
        description="Hours before the regulator deadline at which the owner and the dpo are "
        "reminded by e-mail (points beyond the deadline's length are skipped).",
    )
    breach_clock_interval_seconds: float = Field(
        default=300.0, gt=0, le=86400, description="How often breach-clock reminders are due."
    )
    authz_backstop_strict: bool = Field(
        default=False,
        description="Turn a route that skipped its authorisation check into an error (tests).",
    )
    demo_mailbox_dir: Path | None = Field(
        default=None,
        description="`spillguard demo` only: directory of the local SMTP sink's .eml files, "
        "shown at /demo/mail (unset: no such page).",
    )

    @field_validator("audit_witness_emails")
    @classmethod
    def _witnesses(cls, value: list[str]) -> list[str]:
        addresses = [v.strip() for v in value]
        for address in addresses:
            if not _WITNESS_ADDRESS.fullmatch(address):
                raise ValueError(f"{address!r} is not an e-mail address (name@domain)")
        return addresses

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    # Derived values ------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'spillguard.db').resolve()}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.home / "master.key"

    @property
    def database_kind(self) -> str:
        url = self.resolved_database_url
        return "postgresql" if url.startswith("postgresql") else url.split(":", 1)[0].split("+")[0]

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host  # noqa: S104
        if ":" in host and not host.startswith("["):  # an IPv6 address goes in brackets
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


_TABLES = frozenset({"inspection"})  # tables other modules read from the same file


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the optional TOML config file (keys named like the settings, without prefix)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = self._load()

    def _load(self) -> dict[str, Any]:
        explicit = os.environ.get("SPILLGUARD_CONFIG")
        home = Path(os.environ.get("SPILLGUARD_HOME", ".spillguard"))
        path = Path(explicit) if explicit else home / "config.toml"
        if not path.exists():
            if explicit:
                raise ConfigError(f"config file {path} does not exist")
            return {}
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
        nested = data.get("spillguard", {})
        if not isinstance(nested, dict):
            raise ConfigError(f"config file {path}: [spillguard] must be a table")
        # Settings may sit at the top level and under [spillguard], both at once; the
        # [inspection] table is read by spillguard.inspection.config.
        top = {k: v for k, v in data.items() if k != "spillguard"}
        twice = sorted(set(top) & set(nested))
        if twice:
            raise ConfigError(
                f"config file {path}: {twice[0]!r} is set both at the top level and under "
                "[spillguard]"
            )
        section = {**top, **nested}
        known = set(self.settings_cls.model_fields) | _TABLES
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown setting {unknown[0]!r} (settings are named as "
                "in docs/operations.md, without the SPILLGUARD_ prefix)"
            )
        return section

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and config file, turning errors into ConfigError."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from exc
    except SettingsError as exc:  # a list or table setting whose text is not JSON
        match = re.search(r'field "([^"]+)"', str(exc))
        name = match.group(1) if match else "settings"
        raise ConfigError(
            f"invalid setting {name}: not JSON (give a list as JSON, e.g. "
            f"SPILLGUARD_{name.upper()}='[\"a\", \"b\"]')"
        ) from exc
