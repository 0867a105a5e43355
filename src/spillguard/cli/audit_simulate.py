"""`spillguard audit simulate`: write a synthetic operator's staff, access logs and labelled
insider scenarios to a directory (issue 7 §5; see "Evaluation" in docs/audit.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spillguard.audit.synthetic import HONEYTOKEN, SCENARIOS, SimulationConfig, generate
from spillguard.cli.common import CliError, one_line_errors, out


def _scenarios(text: str, honeytokens: list[str]) -> tuple[str, ...]:
    if text == "all":
        chosen: list[str] = list(SCENARIOS)
    elif text == "none":
        chosen = []
    else:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [s for s in chosen if s not in SCENARIOS]
        if unknown or not chosen:
            raise CliError(
                f"--scenarios takes all, none or a comma-separated list of "
                f"{', '.join(SCENARIOS)}; got {text!r}"
            )
    if honeytokens:
        chosen.append(HONEYTOKEN)
    return tuple(chosen)


@one_line_errors
def simulate(
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Directory to write staff.csv, events-*.jsonl, labels.json."),
    ],
    users: Annotated[int, typer.Option("--users", min=20, max=100_000)] = 500,
    days: Annotated[int, typer.Option("--days", min=14, max=730)] = 30,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 1,
    scenarios: Annotated[
        str,
        typer.Option(
            "--scenarios",
            help=f"all, none, or a comma-separated list of {', '.join(SCENARIOS)}.",
        ),
    ] = "all",
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="First day, YYYY-MM-DD (default: DAYS days before today, so every event "
            "is in the past). The same seed and start give the same files.",
        ),
    ] = None,
    honeytoken: Annotated[
        list[str] | None,
        typer.Option(
            "--honeytoken",
            help="A honeytoken customer id; adds a labelled access to one of them. Repeatable.",
        ),
    ] = None,
    customers: Annotated[
        int | None,
        typer.Option("--customers", min=10_000, help="Customer base size (default 400 a user)."),
    ] = None,
) -> None:
    """Generate a synthetic operator: staff, weeks of ordinary access, injected insider
    scenarios (slow theft, a burst before departure, an after-hours export) with labels."""
    if start is None:
        first = datetime.now(UTC).date() - timedelta(days=days)
    else:
        try:
            first = date.fromisoformat(start)
        except ValueError:
            raise CliError(f"--start must be a date YYYY-MM-DD, got {start!r}") from None
    tokens = [t.strip() for t in honeytoken or [] if t.strip()]
    try:
        config = SimulationConfig(
            users=users,
            days=days,
            seed=seed,
            start=first,
            scenarios=_scenarios(scenarios, tokens),
            honeytoken_ids=tuple(tokens),
            customers=customers,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        org = generate(config)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        written = org.write(out_dir)
    except OSError as exc:
        raise CliError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    table = Table("scenario", "actor", "start (UTC)", "records", title="Injected scenarios")
    for label in org.labels:
        table.add_row(
            label.scenario, label.actor, f"{label.start:%Y-%m-%d %H:%M}", f"{label.records:,}"
        )
    out.print(
        f"{len(org.staff):,} staff, {org.notes['events']:,} events "
        f"({org.notes['records']:,} records) from {config.start} for {config.days} days",
        highlight=False,
    )
    if org.labels:
        out.print(table)
    for path in written:
        out.print(f"wrote {path}", highlight=False)
