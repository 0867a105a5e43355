"""What every command shares: loading settings, opening the database, one-line errors."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar, overload

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from spillguard.core import db as dbmod
from spillguard.core.audit import AuditAction, record_event
from spillguard.core.errors import DomainError
from spillguard.core.keys import KeyRing, load_or_create_key_ring
from spillguard.core.roles import Principal
from spillguard.core.settings import ConfigError, Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")

out = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A failure to report on one line, with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> typer.Exit:
    # Escaped: a message may quote a config key ("[inspection.labels]"), which Rich would
    # otherwise take for markup and drop.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into `error: …` on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, dbmod.DatabaseUnavailable) as exc:
            raise fail(str(exc)) from None
        except DomainError as exc:
            raise fail(exc.detail) from None
        except CliError as exc:
            raise fail(str(exc), exc.code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


@dataclass
class Context:
    settings: Settings
    keys: KeyRing
    engine: Engine
    factory: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        with dbmod.transaction(self.factory) as session:
            yield session


def cli_principal() -> Principal:
    """Commands run as the operator at the server's console: audited as `cli:<os user>`."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal.system(f"cli:{who}")


def upgrade_and_audit(engine: Engine) -> tuple[str | None, str | None]:
    """Apply pending migrations; a change of revision is recorded as an audit event."""
    before = dbmod.current_revision(engine)
    dbmod.upgrade(engine)
    after = dbmod.current_revision(engine)
    if before != after:
        with dbmod.transaction(dbmod.make_session_factory(engine)) as session:
            record_event(
                session,
                cli_principal(),
                AuditAction.DATABASE_UPGRADED,
                object_type="database",
                details={"from": before, "to": after},
            )
    return before, after


@overload
def open_context(
    settings: Settings | None = None,
    *,
    upgrade_empty: bool = True,
    missing_ok: Literal[False] = ...,
) -> Context: ...


@overload
def open_context(
    settings: Settings | None = None, *, upgrade_empty: bool = True, missing_ok: Literal[True]
) -> Context | None: ...


def open_context(
    settings: Settings | None = None, *, upgrade_empty: bool = True, missing_ok: bool = False
) -> Context | None:
    """Settings, keys and a database at the current schema (an empty one is migrated).

    With `missing_ok`, a database that was never migrated gives None instead of being
    migrated (for commands that only read, such as `scan`).
    """
    settings = settings or load_settings()
    dbmod.check_sqlite_location(settings.resolved_database_url)
    keys = load_or_create_key_ring(settings)
    engine = dbmod.make_engine(settings.resolved_database_url)
    current = dbmod.current_revision(engine)
    head = dbmod.migration_head()
    if current is None and missing_ok:
        engine.dispose()
        return None
    if current is None and upgrade_empty:
        upgrade_and_audit(engine)
    elif current != head:
        raise CliError(
            f"database schema is at {current}, this version needs {head}: "
            "run `spillguard db upgrade`"
        )
    return Context(settings, keys, engine, dbmod.make_session_factory(engine))


def read_password(from_stdin: bool, prompt: str = "Password") -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to prompt for the password; use --password-stdin")
    first = getpass.getpass(f"{prompt}: ")
    second = getpass.getpass(f"{prompt} (again): ")
    if first != second:
        raise CliError("the two passwords differ")
    return first
