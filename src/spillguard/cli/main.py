"""Entry point of the `spillguard` command."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from spillguard import __version__
from spillguard.cli import agent, db, demo, mailfilter, scan, serve, simulate, tokens, users
from spillguard.cli.audit import app as audit_app
from spillguard.cli.common import err
from spillguard.cli.customers import app as customers_app
from spillguard.cli.notices import app as notices_app

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
app.add_typer(audit_app, name="audit")
app.add_typer(notices_app, name="notices")
app.command("simulate")(simulate.simulate)
app.command("scan")(scan.scan)
app.command("mail-filter")(mailfilter.mail_filter)
app.command("demo")(demo.demo)


@app.command()
def version() -> None:
    """Print the version."""
    print(f"spillguard {__version__}")


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """The one-line message and exit code of a command-line usage error, else None.

    Typer vendors Click privately, so its exception classes are recognised by what they
    offer (``format_message`` and an integer ``exit_code``) rather than imported.
    """
    message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
    if not callable(message) or not isinstance(code, int):
        return None
    text = " ".join(str(message()).split())
    if not text:
        return "", code
    context = getattr(exc, "ctx", None)
    path = getattr(context, "command_path", None)
    if isinstance(path, str) and path:
        text += f" (see `{path} --help`)"
    return text, code


def main() -> None:
    """Run the CLI; usage mistakes print one `error:` line (exit 2), never a box."""
    command = typer.main.get_command(app)
    try:
        result = command.main(prog_name="spillguard", standalone_mode=False)
    except Exception as exc:
        usage = _usage_error(exc)
        if usage is None:
            if type(exc).__name__ == "Abort":
                err.print("[bold red]error:[/] aborted", highlight=False)
                sys.exit(1)
            raise
        if usage[0]:  # empty when the help was shown for a command given without arguments
            err.print(f"[bold red]error:[/] {escape(usage[0])}", highlight=False, soft_wrap=True)
        sys.exit(usage[1])
    sys.exit(result if isinstance(result, int) else 0)
