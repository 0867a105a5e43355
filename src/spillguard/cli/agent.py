"""`spillguard agent`: the reference device agent (enroll, run, fetch, status)."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import typer

from spillguard.cli.common import CliError, err, one_line_errors, out
from spillguard.devices.agent.backends import BACKENDS, make_backend
from spillguard.devices.agent.client import (
    AgentError,
    CredentialRejected,
    DeviceClient,
    ProtocolError,
    parse_enrollment_url,
)
from spillguard.devices.agent.loop import Agent, run_forever
from spillguard.devices.agent.state import (
    ENV_STATE_DIR,
    AgentConfig,
    AgentState,
    default_state_dir,
)

P = ParamSpec("P")
R = TypeVar("R")

# Exit codes a supervisor can act on: 1 any failure, 3 the credential no longer works.
EXIT_CREDENTIAL = 3

app = typer.Typer(help="The reference device agent (device protocol v1).", no_args_is_help=True)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=ENV_STATE_DIR,
        help="Agent state directory [default: ~/.local/state/spillguard-agent]",
        show_default=False,
    ),
]


def agent_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Agent failures become one `error: …` line; a dead credential exits with 3."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CredentialRejected as exc:
            raise CliError(str(exc), EXIT_CREDENTIAL) from None
        except AgentError as exc:
            raise CliError(str(exc)) from None

    return wrapper


def _state(state_dir: Path | None) -> AgentState:
    return AgentState(state_dir or default_state_dir())


def _warn_plain_http(api_root: str) -> None:
    parts = urlsplit(api_root)
    if parts.scheme != "http":
        return
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err.print(
            f"warning: {parts.netloc} is reached over plain HTTP; the device credential "
            "crosses the network unencrypted. Use https:// in production.",
            highlight=False,
        )


def _default_name(backend: str, posture: dict[str, Any]) -> str:
    if backend == "linux":
        return socket.gethostname()[:100] or "Linux computer"
    return f"Simulated {posture.get('model') or 'device'}"


def _client(config: AgentConfig, state: AgentState) -> DeviceClient:
    credential = state.load_credential()  # refuses a group/world-readable file
    if credential.device_id != config.device_id:
        raise CliError(
            f"the credential in {state.credential_path} is for device {credential.device_id},"
            f" the configuration for device {config.device_id}; enroll again"
        )
    return DeviceClient(
        config.api_root, device_id=credential.device_id, credential=credential.secret
    )


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)


@app.command()
@one_line_errors
@agent_errors
def enroll(
    url: Annotated[str, typer.Argument(help="The enrollment URL, with its #token=… part")],
    backend: Annotated[
        str, typer.Option(help=f"Platform backend: {' or '.join(BACKENDS)}")
    ] = "simulated",
    state_dir: StateDir = None,
    name: Annotated[
        str | None, typer.Option(help="Device name [default: from the backend]")
    ] = None,
    force: Annotated[bool, typer.Option(help="Enroll again over an existing enrollment")] = False,
) -> None:
    """Exchange an enrollment URL's token for a device credential, then check in once."""
    if backend not in BACKENDS:
        raise CliError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")
    target = parse_enrollment_url(url)
    state = _state(state_dir)
    if state.is_enrolled() and not force:
        config = state.load_config()
        raise CliError(
            f"{state.root} already holds device {config.device_id} ({config.name});"
            " use --force to enroll again"
        )
    _warn_plain_http(target.api_root)
    state.create()
    chosen = make_backend(backend, state.root)
    posture = chosen.collect_posture()
    device: dict[str, Any] = {
        "name": name or _default_name(backend, posture),
        "platform": posture["platform"],
        "model": posture["model"],
        "os_version": posture["os_version"],
    }
    if posture.get("serial"):
        device["serial"] = posture["serial"]
    with DeviceClient(target.api_root) as client:
        enrolled = client.enroll(target.token, device)
        state.save_credential(enrolled.device_id, enrolled.credential)
        state.save_pending_results([])
        state.save_config(
            AgentConfig(
                api_root=target.api_root,
                device_id=enrolled.device_id,
                name=device["name"],
                backend=backend,
                enrolled_at=datetime.now(UTC).isoformat(),
                checkin_interval_seconds=enrolled.checkin_interval_seconds,
            )
        )
        out.print(
            f"Enrolled as device {enrolled.device_id} ({device['name']}) with"
            f" {target.api_root}; credential stored in {state.credential_path} (mode 0600).",
            highlight=False,
            soft_wrap=True,
        )
        try:
            report = Agent(state, chosen, client).run_once()
        except AgentError as exc:
            err.print(
                f"warning: first check-in failed ({exc}); `spillguard agent run` will retry",
                highlight=False,
            )
        else:
            _print_lines(report.lines())


@app.command()
@one_line_errors
@agent_errors
def run(
    once: Annotated[bool, typer.Option("--once", help="Check in once and exit")] = False,
    interval: Annotated[
        float | None,
        typer.Option(min=1, help="Seconds between check-ins [default: what the server says]"),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Check in, carry out the commands received and report their results."""
    state = _state(state_dir)
    config = state.load_config()
    backend = make_backend(config.backend, state.root)
    with _client(config, state) as client:
        agent = Agent(state, backend, client)
        if once:
            _print_lines(agent.run_once().lines())
            return
        out.print(
            f"agent for device {config.device_id} ({config.name}) checking in with"
            f" {config.api_root}; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        run_forever(
            agent,
            interval=interval,
            log=lambda line: out.print(line, highlight=False, soft_wrap=True),
        )


GATEWAY_REFUSALS = {"download-refused", "link-gone", "link-not-found"}


@app.command()
@one_line_errors
@agent_errors
def fetch(
    url: Annotated[str, typer.Argument(help="The gateway link (https://…/gateway/…)")],
    output: Annotated[
        Path | None,
        typer.Option(help="Also write the document to this file (mode 0600)"),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Fetch a document through a gateway link, proving this device with its credential.

    The document joins the managed documents (reported at the next check-in). A refusal
    says what to change on the device, and exits with 1."""
    state = _state(state_dir)
    config = state.load_config()
    backend = make_backend(config.backend, state.root)
    with _client(config, state) as client:
        try:
            got = client.fetch(url)
        except ProtocolError as exc:
            if exc.slug in GATEWAY_REFUSALS:
                raise CliError(f"download refused: {exc.detail}") from None
            raise
    where = backend.receive_document(got.name, got.data)
    if output is not None:
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(got.data)
        where += f" and {output}"
    out.print(f"fetched {got.name} ({len(got.data):,} bytes) into {where}", highlight=False)


@app.command()
@one_line_errors
@agent_errors
def status(state_dir: StateDir = None) -> None:
    """Show the enrollment, the credential file's safety and the last check-in."""
    state = _state(state_dir)
    config = state.load_config()
    lines = [
        f"device:      {config.device_id} ({config.name})",
        f"server:      {config.api_root}",
        f"backend:     {config.backend}",
        f"enrolled at: {config.enrolled_at}",
        f"state dir:   {state.root}",
    ]
    path = state.credential_path
    if path.exists():
        mode = stat.S_IMODE(os.stat(path).st_mode)
        safe = "ok" if not mode & 0o077 else "UNSAFE: readable by others, the agent refuses it"
        lines.append(f"credential:  {path} (mode {mode:04o}, {safe})")
    else:
        lines.append("credential:  none (retired, or deleted): not managed")
    last = state.last_checkin()
    if last is None:
        lines.append("last check-in: never")
    else:
        compliance = last.get("compliance") or {}
        verdict = "compliant" if compliance.get("compliant") else "not compliant"
        lines.append(f"last check-in: {last.get('at')} (state {last.get('state')}, {verdict})")
        lines += [f"  - {r}" for r in compliance.get("reasons", []) if verdict != "compliant"]
    pending = state.pending_results()
    if pending:
        lines.append(f"results waiting to be sent: {len(pending)}")
    _print_lines(lines)
