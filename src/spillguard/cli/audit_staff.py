"""`spillguard audit staff`: load HR data about the actors of the access logs (team, job
role, duties, working hours, leaving date), which the insider-risk detectors read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spillguard.audit.staff import StaffService
from spillguard.cli.common import CliError, cli_principal, one_line_errors, open_context, out

app = typer.Typer(help="HR data for the insider-risk detectors.", no_args_is_help=True)


@app.command("import")
@one_line_errors
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: actor, name, team, role, duties (';'-separated), "
            "leaving_on, work_start, work_end, work_days, timezone."
        ),
    ],
) -> None:
    """Add or update staff members from a CSV file; one bad row loads nothing.

    Only the columns the file has are changed; staff not in the file are kept.
    """
    if not file.exists():
        raise CliError(f"no such file: {file}")
    if file.is_dir():
        raise CliError(f"{file} is a directory, not a CSV file")
    ctx = open_context()
    with ctx.session() as session:
        result = StaffService(session, cli_principal()).import_csv(file)
    table = Table("staff members", "count", title=f"Imported {file.name}")
    table.add_row("added", f"{result.added:,}")
    table.add_row("updated", f"{result.updated:,}")
    table.add_row("unchanged", f"{result.unchanged:,}")
    out.print(table)
    columns = ", ".join(f"{header} → {name}" for header, name in result.columns.items())
    out.print(f"columns: {columns}", highlight=False, soft_wrap=True)


@app.command("list")
@one_line_errors
def list_(
    team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
) -> None:
    """Staff members by actor."""
    ctx = open_context()
    with ctx.session() as session:
        rows, total = StaffService(session, cli_principal()).list(team=team, limit=limit)
        table = Table("actor", "team", "role", "duties", "hours", "leaving", title="Staff")
        for row in rows:
            table.add_row(
                row.actor,
                row.team or "",
                row.job_role or "",
                "; ".join(row.duties or []),
                f"{row.work_start}-{row.work_end} {row.work_days} {row.timezone}",
                row.leaving_on.isoformat() if row.leaving_on else "",
            )
    out.print(table)
    out.print(f"{len(rows)} of {total} staff members", highlight=False)
