"""Entry point of the `spillguard` command."""

from __future__ import annotations

import typer

from spillguard import __version__
from spillguard.cli import agent, db, scan, serve, simulate, tokens, users
from spillguard.cli.customers import app as customers_app

app = typer.Typer(
    help="Spillguard: keep customer data from leaking through phones.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(tokens.app, name="tokens")
app.add_typer(customers_app, name="customers")
app.add_typer(agent.app, name="agent")
app.command("simulate")(simulate.simulate)
app.command("scan")(scan.scan)


@app.command()
def version() -> None:
    """Print the version."""
    print(f"spillguard {__version__}")


def main() -> None:
    app()
