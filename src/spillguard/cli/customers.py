"""`spillguard customers`: import the customer list, show the directory's counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spillguard.cli.common import CliError, cli_principal, one_line_errors, open_context, out
from spillguard.cli.honeytokens import app as honeytokens_app
from spillguard.customers.services import (
    CustomerDirectoryService,
    CustomerImportService,
    configured_edm_settings,
)
from spillguard.customers.snapshot import CachedDirectoryIndex

app = typer.Typer(help="The customer directory (exact data match).", no_args_is_help=True)
app.add_typer(honeytokens_app, name="honeytokens")


@app.command("import")
@one_line_errors
def import_(
    file: Annotated[Path, typer.Argument(help="The customer list as CSV, with a header row.")],
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="The column holding the customer id."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="COLUMN=KIND: what a column holds (a field kind, id or ignore); repeatable.",
        ),
    ] = None,
) -> None:
    """Import or re-import the customer list: keyed hashes and encrypted contact details.

    Customers missing from the file are removed (their hashes and contacts deleted).
    """
    if not file.exists():
        raise CliError(f"no such file: {file}")
    if file.is_dir():
        raise CliError(f"{file} is a directory, not a CSV file")
    ctx = open_context()
    edm = configured_edm_settings(ctx.settings)
    started = time.perf_counter()
    with ctx.session() as session:
        run = CustomerImportService(session, cli_principal(), ctx.keys, edm).import_csv(
            file, id_column=id_column, overrides=map_ or ()
        )
        mapping = dict(run.mapping)
        counts = [
            ("added", run.added),
            ("changed", run.changed),
            ("unchanged", run.unchanged),
            ("removed", run.removed),
            ("invalid rows", run.invalid_rows),
        ]
        invalid = dict(run.invalid)
        rows, sha = run.rows, run.file_sha256
    columns = Table("column", "kind", title="Columns")
    for header, kind in mapping.items():
        columns.add_row(header, kind)
    out.print(columns)
    table = Table("customers", "count", title=f"Imported {file.name}")
    for label, number in counts:
        table.add_row(label, f"{number:,}")
    for kind, number in invalid.items():
        table.add_row(f"invalid {kind} values", f"{number:,}")
    out.print(table)
    elapsed = time.perf_counter() - started
    out.print(
        f"{rows:,} rows in {elapsed:.1f} s; file sha256 {sha}", highlight=False, soft_wrap=True
    )
    # Build the directory's EDM index now, so the next `scan` or server reads it at once.
    started = time.perf_counter()
    with ctx.session() as session:
        index = CachedDirectoryIndex.in_home(ctx.settings.home, edm).load(
            session, cli_principal(), ctx.keys
        )
    out.print(
        f"exact data match index ready: {len(index):,} customers "
        f"in {time.perf_counter() - started:.1f} s",
        highlight=False,
    )


@app.command()
@one_line_errors
def stats() -> None:
    """Customers, hashed values per kind, contacts and the last import (counts only)."""
    ctx = open_context()
    with ctx.session() as session:
        result = CustomerDirectoryService(session, cli_principal()).stats()
        table = Table("what", "count", title="Customer directory")
        table.add_row("customers", f"{result.customers:,}")
        table.add_row("removed customers", f"{result.removed:,}")
        table.add_row("with contact details", f"{result.with_contact:,}")
        for kind, number in result.hashes_by_kind.items():
            table.add_row(f"customers with {kind} hashes", f"{number:,}")
        last = result.last_import
        when = (
            f"{last.finished_at:%Y-%m-%d %H:%M} UTC, {last.file_name} by {last.actor_label}"
            if last is not None and last.finished_at is not None
            else "never"
        )
    out.print(table)
    out.print(f"last import: {when}", highlight=False)
