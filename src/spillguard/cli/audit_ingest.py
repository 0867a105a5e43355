"""`spillguard audit ingest` (file tailer) and `spillguard audit syslog` (RFC 5424 server):
access events from the systems that hold customer records."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from spillguard.audit.syslog import SyslogServer, parse_listen, serve_until
from spillguard.audit.tailer import FileTailer, TailError, TailOptions
from spillguard.cli.common import CliError, cli_principal, one_line_errors, open_context, out


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, fieldname = pair.partition("=")
        if not sep or not column.strip() or not fieldname.strip():
            raise CliError(f"--map {pair!r}: write COLUMN=FIELD, e.g. --map 'User Name=actor'")
        mapping[column.strip()] = fieldname.strip()
    return mapping


@one_line_errors
def ingest(
    file: Annotated[Path, typer.Argument(help="A JSON-lines or CSV file of access events.")],
    source: Annotated[
        str, typer.Option("--source", help="Name of the system the events come from (crm...).")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (one JSON object a line) or csv (header row).")
    ] = "jsonl",
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="CSV: COLUMN=FIELD, overriding the recognised headers."),
    ] = None,
    list_separator: Annotated[
        str, typer.Option("--list-separator", help="CSV: separator of several customer ids.")
    ] = ";",
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep reading what is appended (like tail -F).")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", help="Events committed together (1-5000).")
    ] = 1000,
) -> None:
    """Ingest access events from a file, resuming where the last run stopped.

    Prints one line: accepted, duplicates, rejected (with the first reasons).
    """
    options = TailOptions(
        source=source,
        fmt=fmt,
        mapping=_mapping(map_ or []),
        list_separator=list_separator,
        batch=batch,
        follow=follow,
    )
    ctx = open_context()
    try:
        tailer = FileTailer(ctx.factory, ctx.settings, ctx.keys, cli_principal(), file, options)
        try:
            summary = tailer.run()
        except KeyboardInterrupt:
            # What was committed stays; the batch being read is read again next time.
            summary = tailer.summary
    except TailError as exc:
        raise CliError(str(exc)) from None
    finally:
        ctx.engine.dispose()
    out.print(summary.line(), highlight=False, soft_wrap=True)


@one_line_errors
def syslog(
    tcp: Annotated[
        str | None, typer.Option("--tcp", help="HOST:PORT to accept RFC 6587 framed TCP on.")
    ] = None,
    udp: Annotated[
        str | None, typer.Option("--udp", help="HOST:PORT to accept one message per datagram.")
    ] = None,
    source_from: Annotated[
        str,
        typer.Option("--source-from", help="Name the source by app-name or hostname."),
    ] = "app-name",
) -> None:
    """Receive access events over syslog (RFC 5424) until interrupted.

    Each message carries one event: its MSG as JSON, or an [access@32473 ...] element.
    Events are committed every 500 events or every second. Ctrl-C (or SIGTERM) commits
    what was received and prints a summary.
    """
    if tcp is None and udp is None:
        raise CliError("give --tcp HOST:PORT, --udp HOST:PORT or both")
    if source_from not in {"app-name", "hostname"}:
        raise CliError("--source-from is app-name or hostname")
    try:
        tcp_addr = parse_listen(tcp, "--tcp") if tcp else None
        udp_addr = parse_listen(udp, "--udp") if udp else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    ctx = open_context()
    server = SyslogServer(
        ctx.factory, ctx.settings, ctx.keys, cli_principal(), source_from=source_from
    )

    def ready(bound: list[tuple[str, str, int]]) -> None:
        where = ", ".join(f"{proto} {host}:{port}" for proto, host, port in bound)
        out.print(f"listening on {where}", highlight=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve_until(server, tcp_addr, udp_addr, stop, ready)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise CliError(f"cannot listen: {exc.strerror or exc}") from None
    finally:
        ctx.engine.dispose()
    out.print(server.stats.line(), highlight=False)
    for error in server.stats.errors[:3]:
        out.print(f"lost: {error}", highlight=False, soft_wrap=True)
