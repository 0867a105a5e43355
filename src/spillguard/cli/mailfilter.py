"""`spillguard mail-filter`: the SMTP content filter a mail server hands messages to."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from spillguard.cli.common import CliError, one_line_errors, open_context, out
from spillguard.cli.serve import check_can_listen
from spillguard.core.heap import settle
from spillguard.core.logging import configure_logging
from spillguard.core.settings import load_settings
from spillguard.exposure.mail_policy import AddressError, parse_hostport
from spillguard.exposure.mailfilter import MailFilter, MailFilterServer, SmtpRelay


@one_line_errors
def mail_filter(
    listen: Annotated[
        str | None,
        typer.Option(help="host:port to accept mail on [default: setting mail_filter_listen]"),
    ] = None,
    next_hop: Annotated[
        str | None,
        typer.Option(
            "--next-hop",
            help="host:port to hand filtered mail to [default: setting mail_filter_next_hop]",
        ),
    ] = None,
) -> None:
    """Inspect mail and deliver, link or quarantine it per recipient (Postfix content_filter).

    Runs until SIGTERM or Ctrl-C; messages in progress are finished first.
    """
    settings = load_settings()
    try:
        host, port = parse_hostport(listen or settings.mail_filter_listen, what="listen address")
        hop_host, hop_port = parse_hostport(
            next_hop or settings.mail_filter_next_hop, what="next hop"
        )
    except AddressError as exc:
        raise CliError(str(exc)) from None
    if (host, port) == (hop_host, hop_port):
        raise CliError("the next hop is the filter's own address: mail would loop")
    check_can_listen(host, port)
    configure_logging(settings.log_level, settings.log_json)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs addresses at INFO
    context = open_context(settings)
    try:
        relay = SmtpRelay(hop_host, hop_port, timeout=settings.mail_filter_next_hop_timeout_seconds)
        mail = MailFilter(settings, context.keys, context.factory, relay)
        server = MailFilterServer(
            mail,
            host,
            port,
            max_message_bytes=settings.mail_filter_max_message_bytes,
        )

        mail.warm_up()  # the engine and the EDM index, before the first message
        settle()

        def ready() -> None:
            out.print(
                f"Spillguard mail filter listening on {host}:{server.port}, "
                f"next hop {hop_host}:{hop_port}",
                highlight=False,
                soft_wrap=True,
            )

        try:
            server.serve(on_ready=ready)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        context.engine.dispose()


__all__ = ["mail_filter"]
