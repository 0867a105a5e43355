"""`spillguard db`: apply and inspect schema migrations."""

from __future__ import annotations

import typer

from spillguard.cli.common import one_line_errors, out, upgrade_and_audit
from spillguard.core import db as dbmod
from spillguard.core.settings import load_settings

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
@one_line_errors
def upgrade() -> None:
    """Apply every pending migration."""
    settings = load_settings()
    dbmod.check_sqlite_location(settings.resolved_database_url)
    engine = dbmod.make_engine(settings.resolved_database_url)
    before, after = upgrade_and_audit(engine)
    if before == after:
        out.print(f"Database already at head ({after}).")
    else:
        out.print(f"Database upgraded from {before or 'empty'} to {after}.")


@app.command()
@one_line_errors
def current() -> None:
    """Show the database's migration revision and the head this version expects."""
    settings = load_settings()
    # A data directory that does not exist yet means "empty", not "unavailable".
    dbmod.check_sqlite_location(settings.resolved_database_url)
    engine = dbmod.make_engine(settings.resolved_database_url)
    rev = dbmod.current_revision(engine)
    head = dbmod.migration_head()
    state = "at head" if rev == head else "behind: run `spillguard db upgrade`"
    out.print(f"current: {rev or 'empty'}\nhead:    {head}\nstate:   {state}")
    if rev != head:
        raise typer.Exit(3)
