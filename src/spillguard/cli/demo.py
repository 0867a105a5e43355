"""`spillguard demo`: story 1 staged on a throwaway data directory, and the server on it."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn

from spillguard.cli.common import CliError, one_line_errors, out, upgrade_and_audit
from spillguard.cli.serve import check_can_listen
from spillguard.core import db as dbmod
from spillguard.core.db import transaction
from spillguard.core.keys import load_or_create_key_ring
from spillguard.core.logging import configure_logging
from spillguard.core.settings import Settings, load_settings
from spillguard.demo.mailbox import LOOPBACK, MailSink
from spillguard.demo.phones import PhoneFleet
from spillguard.demo.stage import ORGANISATION, SPREADSHEET, StagedStory, stage_story


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ignore(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal that stopped it once its own handlers are gone."""


def demo_settings(home: Path, port: int, smtp_port: int) -> Settings:
    """Settings of a demo server: SQLite in ``home``, mail to the local sink."""
    return load_settings(
        home=home,
        config=None,
        database_url=f"sqlite:///{(home / 'spillguard.db').resolve()}",
        master_key=None,
        master_key_file=home / "master.key",
        host=LOOPBACK,
        port=port,
        workers=1,
        public_url=None,
        log_level="WARNING",
        log_json=False,
        scheduler_enabled=True,
        mail_backend="smtp",
        smtp_host=LOOPBACK,
        smtp_port=smtp_port,
        smtp_starttls=False,
        smtp_username=None,
        smtp_password=None,
        smtp_from=f"privacy@{ORGANISATION.split()[0].lower()}.example",
        organisation_name=ORGANISATION,
        demo_mailbox_dir=home / "mail",
        device_checkin_interval_seconds=10,
        notice_worker_interval_seconds=5.0,
        exposure_inventory_interval_seconds=10.0,
        # The scheduler ticks every quarter of this: queued notices leave within seconds.
        housekeeping_interval_seconds=20.0,
    )


def _banner(settings: Settings, story: StagedStory, home: Path, keep: bool) -> None:
    base = settings.base_url
    phone = story.marketing_phone
    out.print(
        f"[bold]Spillguard demo[/]: {story.organisation}, data in {home}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"  {story.customers:,} synthetic customers; {len(story.phones)} phones enrolled; "
        f"{SPREADSHEET} ({story.spreadsheet_customers:,} customers) delivered to "
        f"{phone.name!r}, which is {'compliant' if phone.compliant else 'NOT compliant'}: "
        + "; ".join(phone.reasons),
        highlight=False,
        soft_wrap=True,
    )
    out.print("Logins (one password for all, shown only now):", highlight=False)
    for purpose, email in story.logins.items():
        out.print(f"  {email:<40} {purpose}", highlight=False, soft_wrap=True)
    out.print(f"  password: {story.password}", highlight=False)
    out.print("What to do next:", highlight=False)
    steps = [
        f"log in as security@… at {base}/login and open Devices → {phone.name!r} "
        f"(device {phone.device_id}): note why it is not compliant;",
        'press "Report lost": an incident opens and lost mode, lock and locate are queued; '
        "the phones check in every few seconds, so watch them acknowledged on the incident "
        "timeline (a wipe is for helpdesk@… or admin@…: the device page's Wipe button);",
        "open the incident: the exposure assessment names 1,000 customers, risk high;",
        "log in as dpo@…: fill in the regulator report, then notify the customers;",
        f"read the notices as they arrive in the demo mailbox: {base}/demo/mail",
    ]
    for n, step in enumerate(steps, 1):
        out.print(f"  {n}. {step}", highlight=False, soft_wrap=True)
    out.print(
        f"The data directory is {'kept' if keep else 'removed'} when the server stops (Ctrl-C).",
        highlight=False,
    )
    out.print(f"Spillguard demo is running at {base}", highlight=False, soft_wrap=True)


def _data_directory(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="spillguard-demo-"))
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise CliError(f"{keep} is not an empty directory; give a new or empty one to --keep")
    keep.mkdir(mode=0o700, parents=True, exist_ok=True)
    return keep


@one_line_errors
def demo(
    port: Annotated[int, typer.Option(help="Port of the demo server", min=1, max=65535)] = 8000,
    keep: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's data in this new (or empty) directory"),
    ] = None,
) -> None:
    """Start a server with story 1 staged on a throwaway data directory: a company, its
    policy, 5,000 synthetic customers, enrolled simulated phones, the exposure ledger and
    a local SMTP sink whose mail the console shows."""
    check_can_listen(LOOPBACK, port)
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    home = _data_directory(keep)
    sink: MailSink | None = None
    fleet: PhoneFleet | None = None
    try:
        home.chmod(0o700)
        out.print(f"Staging story 1 in {home} (about ten seconds)…", highlight=False)
        sink = MailSink(home / "mail").start()
        settings = demo_settings(home, port, sink.port)
        configure_logging(settings.log_level, settings.log_json)
        keys = load_or_create_key_ring(settings)
        engine = dbmod.make_engine(settings.resolved_database_url)
        try:
            upgrade_and_audit(engine)
            with transaction(dbmod.make_session_factory(engine)) as session:
                story = stage_story(session, keys, settings, home / "phones")
        finally:
            engine.dispose()
        from spillguard.core.app import create_app

        app = create_app(settings, keys)
        _banner(settings, story, home, keep is not None)
        fleet = PhoneFleet([p.state_dir for p in story.phones], interval=3.0).start()
        common: dict[str, Any] = {
            "host": settings.host,
            "port": settings.port,
            "log_config": None,
            "access_log": False,
            "server_header": False,
        }
        signal.signal(signal.SIGTERM, _ignore)
        previous_int = signal.signal(signal.SIGINT, _ignore)
        try:
            uvicorn.run(app, **common)
        finally:
            signal.signal(signal.SIGINT, previous_int)
    finally:
        if fleet is not None:
            fleet.stop()
        if sink is not None:
            sink.stop()
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)
    out.print(
        "Demo stopped" + (f"; its data is kept in {home}" if keep else "; data removed"),
        highlight=False,
        soft_wrap=True,
    )
