"""`spillguard customers honeytokens`: create honeytoken customers, list them, export them
for loading into the CRM, retire them and reactivate retired ones (docs/audit.md
"Honeytokens")."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spillguard.cli.common import CliError, cli_principal, err, one_line_errors, open_context, out
from spillguard.customers.honeytokens import CSV_HEADERS, HoneytokenRecord, HoneytokenService

app = typer.Typer(
    help="Honeytoken customers: synthetic customers whose every sighting is an alert.",
    no_args_is_help=True,
)

DRAMA_WARNING = (
    "warning: these phone numbers are in Ofcom's drama range (07700 900xxx): safe (they "
    "reach nobody) but recognisable to a careful insider. Use --phone-range with numbers "
    "the organisation owns for honeytokens that cannot be told apart."
)


def write_csv(path: Path, records: Sequence[HoneytokenRecord]) -> None:
    """Write the export (values!) readable by the owner only; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists: choose a new file for the export") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADERS)
        for record in records:
            writer.writerow(record.row())


def _check_target(path: Path | None) -> None:
    if path is not None and path.exists():
        raise CliError(f"{path} exists: choose a new file for the export")


@app.command()
@one_line_errors
def create(
    count: Annotated[int, typer.Argument(help="How many honeytoken customers to add.")],
    batch: Annotated[
        str | None, typer.Option("--batch", help="A name for this batch (e.g. crm-2026-12).")
    ] = None,
    email_domain: Annotated[
        str | None,
        typer.Option(
            "--email-domain",
            help="Mail domain the organisation controls whose mail reaches the mail filter "
            "(default: setting honeytoken_email_domain).",
        ),
    ] = None,
    phone_range: Annotated[
        str | None,
        typer.Option(
            "--phone-range",
            help="START-END of numbers the organisation controls (default: setting "
            "honeytoken_phone_range, Ofcom's drama range 07700900000-07700900999).",
        ),
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option("--id-prefix", help="Customer id prefix (default: the directory's own)."),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Also write the new honeytokens to this CSV file."),
    ] = None,
) -> None:
    """Add COUNT synthetic customers to the directory, marked as honeytokens."""
    _check_target(export)
    ctx = open_context()
    with ctx.session() as session:
        result = HoneytokenService(session, cli_principal(), ctx.keys, ctx.settings).create(
            count,
            batch=batch,
            email_domain=email_domain,
            phone_range=phone_range,
            id_prefix=id_prefix,
        )
        if export is not None:
            write_csv(export, result.records)
    out.print(
        f"created {len(result.records):,} honeytoken customers"
        + (f" in batch {result.batch}" if result.batch else "")
        + f"; phone range {result.phone_range}",
        highlight=False,
    )
    if export is not None:
        out.print(f"exported to {export} (load it into the CRM, then delete it)", highlight=False)
    else:
        out.print("export them for the CRM with `spillguard customers honeytokens export FILE`")
    if result.drama_range:
        err.print(DRAMA_WARNING, highlight=False, soft_wrap=True)


@app.command("list")
@one_line_errors
def list_(
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 500,
) -> None:
    """Honeytoken customers: id, batch, created, status (never their values)."""
    ctx = open_context()
    with ctx.session() as session:
        rows, total = HoneytokenService(session, cli_principal(), ctx.keys, ctx.settings).listing(
            limit=limit, batch=batch
        )
    table = Table("customer id", "batch", "created (UTC)", "by", "status", title="Honeytokens")
    for row in rows:
        table.add_row(
            row.customer_id,
            row.batch or "",
            f"{row.created_at:%Y-%m-%d %H:%M}",
            row.created_by or "",
            row.status,
        )
    out.print(table)
    out.print(f"{len(rows):,} of {total:,} honeytokens", highlight=False)


@app.command("export")
@one_line_errors
def export_(
    file: Annotated[Path, typer.Argument(help="New CSV file to write (it holds the values).")],
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch.")] = None,
    phone_range: Annotated[
        str | None,
        typer.Option("--phone-range", help="The START-END given at creation, if not the setting."),
    ] = None,
) -> None:
    """Write the active honeytokens with their values, CRM-ready, to FILE (audited)."""
    _check_target(file)
    ctx = open_context()
    with ctx.session() as session:
        records = HoneytokenService(session, cli_principal(), ctx.keys, ctx.settings).export(
            batch=batch, phone_range=phone_range
        )
        write_csv(file, records)
    unknown = sum(not r.phone_known for r in records)
    out.print(f"exported {len(records):,} honeytoken customers to {file}", highlight=False)
    if unknown:
        err.print(
            f"warning: {unknown:,} phone numbers could not be recomputed: give the "
            "--phone-range used when they were created",
            highlight=False,
        )


@app.command("retire")
@one_line_errors
def retire(
    customer_ids: Annotated[
        list[str], typer.Argument(help="Honeytoken customer ids to retire.", show_default=False)
    ],
) -> None:
    """Retire honeytokens: no new alerts from them, out of exact data match; their past
    alerts stay. Retiring one again changes nothing; an id that is not a honeytoken
    refuses the whole command (audited)."""
    ctx = open_context()
    with ctx.session() as session:
        result = HoneytokenService(session, cli_principal(), ctx.keys, ctx.settings).retire(
            customer_ids
        )
    out.print(
        f"retired {len(result.retired):,} honeytoken customers"
        + (f"; {len(result.already_retired):,} already retired" if result.already_retired else ""),
        highlight=False,
    )


@app.command("reactivate")
@one_line_errors
def reactivate(
    customer_ids: Annotated[
        list[str],
        typer.Argument(help="Retired honeytoken customer ids to reactivate.", show_default=False),
    ],
    phone_range: Annotated[
        str | None,
        typer.Option(
            "--phone-range",
            help="START-END the honeytokens' phone numbers came from, if neither their "
            "creation's audit event nor the setting has it.",
        ),
    ] = None,
) -> None:
    """Make retired honeytokens active again: they alert again and exact data match finds
    them again (their keyed hashes are rebuilt). Reactivating an active one changes
    nothing; an id that is not a honeytoken refuses the whole command (audited)."""
    ctx = open_context()
    with ctx.session() as session:
        result = HoneytokenService(session, cli_principal(), ctx.keys, ctx.settings).reactivate(
            customer_ids, phone_range=phone_range
        )
    out.print(
        f"reactivated {len(result.reactivated):,} honeytoken customers"
        + (f"; {len(result.already_active):,} already active" if result.already_active else ""),
        highlight=False,
    )
