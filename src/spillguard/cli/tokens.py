"""`spillguard tokens`: issue and revoke API tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from spillguard.cli.common import CliError, cli_principal, one_line_errors, open_context, out
from spillguard.core.roles import TokenScope
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService, parse_role

app = typer.Typer(help="API tokens.", no_args_is_help=True)


@app.command()
@one_line_errors
def create(
    user: Annotated[str, typer.Option("--user", help="E-mail of the token's owner")],
    role: Annotated[str | None, typer.Option(help="Default: the owner's role")] = None,
    expires: Annotated[int | None, typer.Option(help="Days until it expires")] = None,
    name: Annotated[str, typer.Option(help="What the token is for")] = "cli",
    scope: Annotated[
        str | None,
        typer.Option(help="Limit the token to one purpose: access-decisions"),
    ] = None,
) -> None:
    """Issue a token and print it once: store it now, it cannot be shown again."""
    parsed = parse_role(role) if role else None
    try:
        purpose = TokenScope(scope) if scope else None
    except ValueError:
        known = ", ".join(s.value for s in TokenScope)
        raise CliError(f"unknown scope {scope!r}: use {known}") from None
    ctx = open_context()
    with ctx.session() as session:
        owner = UserService(session, cli_principal()).by_email(user)
        issued = TokenService(session, cli_principal(), ctx.keys).create(
            owner.id, name=name, role=parsed, expires_days=expires, scope=purpose
        )
        token_id, token_role = issued.token.id, issued.token.role
        if issued.token.scope:
            token_role += f", limited to {issued.token.scope}"
    # The secret goes alone to stdout so scripts can capture it; the rest to stderr.
    print(issued.secret)
    typer.echo(f"token id {token_id}, role {token_role}; shown once, store it now.", err=True)


@app.command()
@one_line_errors
def revoke(token_id: int) -> None:
    """Revoke a token by id."""
    ctx = open_context()
    with ctx.session() as session:
        token = TokenService(session, cli_principal(), ctx.keys).revoke(token_id)
        out.print(f"Token {token.id} ({token.name}) of {token.user.email} is revoked.")


@app.command("list")
@one_line_errors
def list_tokens() -> None:
    """List every token (never the secrets)."""
    ctx = open_context()
    with ctx.session() as session:
        rows, _ = TokenService(session, cli_principal(), ctx.keys).list(limit=100_000)
        table = Table("id", "owner", "name", "role", "prefix", "expires", "state")
        for t in rows:
            table.add_row(
                str(t.id),
                t.user.email,
                t.name,
                f"{t.role} ({t.scope} only)" if t.scope else t.role,
                t.prefix,
                t.expires_at.date().isoformat() if t.expires_at else "never",
                "revoked" if t.revoked_at else "active",
            )
    out.print(table)
