"""`spillguard notices`: drain the customer-notice outbox.

``spillguard notices worker`` sends queued e-mail notices through the configured SMTP
server at ``notice_rate_per_second`` until stopped (``--once``: until none is due).  The
server's scheduler does the same every ``notice_worker_interval_seconds``; run this when
notices must go out faster or from another machine.  Several workers may run: each
claims its own notices.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from spillguard.cli.common import CliError, one_line_errors, open_context, out
from spillguard.incidents.mailer import mail_sender_from_settings
from spillguard.incidents.outbox import DrainReport, Outbox

app = typer.Typer(help="Customer notices (the outbox).", no_args_is_help=True)


def _summary(report: DrainReport) -> str:
    return (
        f"sent {report.sent}, retry later {report.retried}, bounced {report.bounced}, "
        f"failed {report.failed}, to check {report.unknown + report.unknown_after_crash}, "
        f"manual {report.manual}, queued again after a stopped sender "
        f"{report.requeued_after_crash} ({report.seconds:.1f} s)"
    )


@app.command("worker")
@one_line_errors
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when no notice is due (default: keep polling).")
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", min=0.001, max=10_000, help="Messages per second (default: setting)."
        ),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, max=3600, help="Seconds between polls when idle.")
    ] = 5.0,
) -> None:
    """Send queued customer notices; SIGTERM or Ctrl-C finishes the current message."""
    ctx = open_context()
    if ctx.settings.mail_backend != "smtp" or not ctx.settings.smtp_host:
        raise CliError("no SMTP server is configured: set SPILLGUARD_SMTP_HOST (and _PORT)")
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop.is_set():
            outbox = Outbox(
                ctx.factory,
                ctx.settings,
                ctx.keys,
                mail_sender_from_settings(ctx.settings),
                rate=rate,
            )
            report = outbox.drain(stop=stop)
            if once or report.sent or report.retried or report.bounced or report.unknown:
                out.print(_summary(report), highlight=False)
            if once:
                break
            stop.wait(poll)
    finally:
        ctx.engine.dispose()
