"""`spillguard users`: create, list, change password, disable."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from spillguard.cli.common import cli_principal, one_line_errors, open_context, out, read_password
from spillguard.core.users import UserService, parse_role

app = typer.Typer(help="Console and API users.", no_args_is_help=True)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@app.command()
@one_line_errors
def create(
    email: str,
    role: Annotated[str, typer.Option(help="admin, helpdesk, security, dpo or auditor")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user (password prompted, or read from standard input)."""
    parsed = parse_role(role)
    password = read_password(password_stdin)
    ctx = open_context()
    with ctx.session() as session:
        user = UserService(session, cli_principal()).create(email, parsed, password)
        out.print(f"Created {user.email} with role {user.role} (id {user.id}).")
    out.print(f"Log in at {ctx.settings.base_url}/login")


@app.command("list")
@one_line_errors
def list_users() -> None:
    """List every user."""
    ctx = open_context()
    with ctx.session() as session:
        rows, _ = UserService(session, cli_principal()).list(limit=100_000)
        table = Table("id", "email", "role", "state", "last login")
        for u in rows:
            table.add_row(
                str(u.id),
                u.email,
                u.role,
                "disabled" if u.disabled else "active",
                u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "never",
            )
    out.print(table)


@app.command("set-password")
@one_line_errors
def set_password(email: str, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password; their console sessions end."""
    password = read_password(password_stdin, "New password")
    ctx = open_context()
    with ctx.session() as session:
        svc = UserService(session, cli_principal())
        user = svc.set_password(svc.by_email(email).id, password)
        out.print(f"Password of {user.email} changed.")


@app.command()
@one_line_errors
def disable(email: str) -> None:
    """Disable a user: sessions end and API tokens are revoked."""
    ctx = open_context()
    with ctx.session() as session:
        svc = UserService(session, cli_principal())
        user = svc.set_disabled(svc.by_email(email).id, True)
        out.print(f"{user.email} is disabled; sessions ended and tokens revoked.")


@app.command()
@one_line_errors
def enable(email: str) -> None:
    """Enable a disabled user again (their old tokens stay revoked)."""
    ctx = open_context()
    with ctx.session() as session:
        svc = UserService(session, cli_principal())
        user = svc.set_disabled(svc.by_email(email).id, False)
        out.print(f"{user.email} is enabled.")
