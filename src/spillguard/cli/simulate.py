"""`spillguard simulate`: a fleet of simulated devices checking in against a server."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spillguard.cli.common import CliError, one_line_errors, out
from spillguard.devices.agent.client import AgentError
from spillguard.devices.simulator import (
    DEFAULT_MIX,
    SimulationConfig,
    SimulationStats,
    parse_mix,
    run_simulation,
)

DEFAULT_MIX_TEXT = ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items())


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.1f} ms"


def _report(stats: SimulationStats) -> None:
    table = Table("measure", "value", title="Fleet simulation")
    table.add_row("devices enrolled", f"{stats.enrolled} of {stats.devices}")
    table.add_row("profiles", ", ".join(f"{k} {v}" for k, v in sorted(stats.profiles.items())))
    table.add_row("check-ins", str(stats.checkins))
    table.add_row("check-ins per second", f"{stats.checkins_per_second:.1f}")
    table.add_row(
        "latency p50 / p95 / p99",
        " / ".join(_fmt(stats.latency_ms(q)) for q in (0.50, 0.95, 0.99)),
    )
    table.add_row("commands acknowledged", str(stats.commands_acknowledged))
    table.add_row("non-compliant devices", str(stats.non_compliant))
    table.add_row("errors", str(stats.errors + stats.enroll_errors))
    for kind, count in stats.error_kinds.most_common(10):
        table.add_row(f"  {kind}", str(count))
    out.print(table)


def simulate(
    devices: Annotated[int, typer.Option(min=1, max=1_000_000, help="Devices to simulate")],
    server: Annotated[str, typer.Option(help="Server base URL, e.g. https://spillguard.example")],
    enrollment_token: Annotated[
        str,
        typer.Option(
            envvar="SPILLGUARD_ENROLLMENT_TOKEN",
            help="Enrollment token allowing at least --devices uses",
        ),
    ],
    interval: Annotated[float, typer.Option(min=0.01, help="Seconds between check-ins")] = 30.0,
    duration: Annotated[float, typer.Option(min=0, help="Seconds of check-ins to run")] = 60.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at most")] = 50,
    mix: Annotated[str, typer.Option(help="Posture mix, NAME=WEIGHT,…")] = DEFAULT_MIX_TEXT,
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable mix")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stats as JSON")] = False,
) -> None:
    """Enroll N simulated devices and check them in on an interval; print throughput,
    latency percentiles and errors."""
    run(devices, server, enrollment_token, interval, duration, concurrency, mix, seed, as_json)


@one_line_errors
def run(
    devices: int,
    server: str,
    enrollment_token: str,
    interval: float,
    duration: float,
    concurrency: int,
    mix: str,
    seed: int | None,
    as_json: bool,
) -> None:
    try:
        config = SimulationConfig(
            server=server,
            enrollment_token=enrollment_token,
            devices=devices,
            interval=interval,
            duration=duration,
            concurrency=concurrency,
            mix=parse_mix(mix),
            seed=seed,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    live = out.is_terminal and not as_json
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=out,
        disable=not live,
        transient=True,
    ) as progress:
        enrolling = progress.add_task("enrolling", total=devices, detail="")
        checking = progress.add_task("checking in", total=duration or 1, detail="", start=False)
        clock = {"started": 0.0}

        def update(phase: str, stats: SimulationStats) -> None:
            if phase == "enrolling":
                progress.update(enrolling, completed=stats.enrolled + stats.enroll_errors)
            elif phase == "enrolled":
                progress.update(enrolling, completed=devices)
                progress.start_task(checking)
                clock["started"] = time.perf_counter()
            else:
                elapsed = time.perf_counter() - clock["started"]
                progress.update(
                    checking,
                    completed=min(elapsed, duration) if phase != "done" else duration,
                    detail=f"{stats.checkins} check-ins, {stats.errors} errors",
                )

        try:
            stats = run_simulation(config, update)
        except (ValueError, AgentError) as exc:
            raise CliError(str(exc)) from None
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2))
    else:
        _report(stats)
    if stats.enrolled == 0:
        raise CliError("no device could enroll: check --server and --enrollment-token")
