"""`spillguard serve`: prepare the data directory, key and schema, then run the server."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from spillguard.cli.common import CliError, one_line_errors, out, upgrade_and_audit
from spillguard.core import db as dbmod
from spillguard.core.db import transaction
from spillguard.core.keys import load_or_create_key_ring
from spillguard.core.roles import Principal
from spillguard.core.sessions import LoginService
from spillguard.core.settings import ConfigError, load_settings
from spillguard.inspection.config import inspection_config_for


def check_can_listen(host: str, port: int) -> None:
    """Fail early, in one line, if the address is taken or cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CliError(f"cannot resolve bind address {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def fresh_metrics_directory(home: Path) -> Path:
    """An empty directory for the workers' Prometheus samples (left over ones removed)."""
    path = home / "run" / "metrics"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


@one_line_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default 8000]", min=1, max=65535)] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes", min=1, max=64)] = None,
) -> None:
    """Run the Spillguard server (API, console, scheduler) after applying migrations."""
    overrides = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
    }
    settings = load_settings(**overrides)
    try:  # the [inspection] table is read when inspecting; refuse a bad one now
        inspection_config_for(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_can_listen(settings.host, settings.port)
    dbmod.check_sqlite_location(settings.resolved_database_url)
    keys = load_or_create_key_ring(settings)
    engine = dbmod.make_engine(settings.resolved_database_url)
    upgrade_and_audit(engine)
    factory = dbmod.make_session_factory(engine)
    with transaction(factory) as session:
        setup_secret = LoginService(
            session, Principal.system("serve"), keys, settings
        ).create_setup_link()
    engine.dispose()

    base = settings.base_url
    out.print(f"Spillguard is starting on [bold]{base}[/]  (database: {settings.database_kind})")
    if setup_secret:
        out.print(
            "No users yet. Create the first administrator in a browser, within "
            f"{settings.setup_link_minutes} minutes, at this one-time link:"
        )
        out.print(f"  {base}/setup?key={setup_secret}", soft_wrap=True, highlight=False)
        out.print("or from a shell: spillguard users create EMAIL --role admin")
    else:
        out.print(f"Log in at {base}/login")

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": settings.trust_proxy_headers,
        "forwarded_allow_ips": settings.proxy_addresses if settings.trust_proxy_headers else None,
        "server_header": False,
    }
    if settings.workers == 1:
        from spillguard.core.app import create_app

        uvicorn.run(create_app(settings, keys), **common)
    else:
        # Worker processes build their own app from the environment.
        for key, value in overrides.items():
            os.environ[f"SPILLGUARD_{key.upper()}"] = str(value)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_directory(settings.home))
        uvicorn.run(
            "spillguard.core.app:create_app_from_environment",
            factory=True,
            workers=settings.workers,
            **common,
        )
