"""Real `spillguard` processes for functional tests: the CLI and live servers.

Everything here runs the installed package as a subprocess (``python -m spillguard``),
exactly as an operator would, with an environment built from scratch so that no
``SPILLGUARD_*`` variable of the test runner leaks in.

- :func:`spillguard_env` builds that environment.
- :func:`run_spillguard` runs one command to completion and returns its result;
  :func:`one_line_error` checks a failure is one ``error: …`` line without a traceback.
- :class:`LiveServer` starts ``spillguard serve`` on a free loopback port, waits until
  ``/readyz`` answers 200, captures stdout and stderr, and always stops the process::

      with LiveServer(spillguard_env(home, database_url)) as server:
          httpx2.get(f"{server.url}/healthz")
          assert "Log in at" in server.stdout_text()

- :func:`free_port` and :func:`throwaway_postgres_database` are the small pieces the
  above and the tests share.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

LOOPBACK = "127.0.0.1"
COMMAND = (sys.executable, "-m", "spillguard")


def spillguard_env(
    home: Path | str,
    database_url: str | None = None,
    *,
    master_key: str | None = None,
    **settings: object,
) -> dict[str, str]:
    """The environment of a `spillguard` process: the runner's, minus every SPILLGUARD_*.

    ``home`` becomes SPILLGUARD_HOME; ``database_url`` and ``master_key`` are set only when
    given (else the defaults apply: SQLite and a key file in the home directory).  Extra
    keyword arguments become ``SPILLGUARD_<NAME>`` (``port=8001`` → ``SPILLGUARD_PORT``).
    Output is made deterministic: a wide terminal for Rich and no colour.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLGUARD_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env["SPILLGUARD_HOME"] = str(home)
    if database_url is not None:
        env["SPILLGUARD_DATABASE_URL"] = database_url
    if master_key is not None:
        env["SPILLGUARD_MASTER_KEY"] = master_key
    for name, value in settings.items():
        env[f"SPILLGUARD_{name.upper()}"] = str(value)
    return env


def run_spillguard(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    input: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``spillguard ARGS`` to completion; stdin is empty unless ``input`` is given."""
    return subprocess.run(
        [*COMMAND, *args],
        env=dict(env),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert the command failed the way the CLI promises; return the error message.

    That is: exit code ``code``, exactly one non-blank line on stderr starting with
    ``error:``, and no Python traceback anywhere in the output.
    """
    output = (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr + result.stdout, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert result.returncode == code, output
    return lines[0].removeprefix("error: ")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ServerFailedToStart(RuntimeError):
    """`spillguard serve` exited or never became ready; the message holds its output."""


class LiveServer:
    """``spillguard serve`` as a subprocess on a free loopback port.

    Use as a context manager (or call :meth:`start` and :meth:`stop`).  ``env`` is the
    process environment (see :func:`spillguard_env`); ``SPILLGUARD_HOST`` and
    ``SPILLGUARD_PORT`` are set here.  Pass ``port_from_env=False`` when the port comes from
    a config file instead; ``port`` must then name the port the file sets.

    Attributes once started: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``process``.
    Output is captured to files, so a chatty server never blocks on a full pipe;
    :meth:`stdout_text` and :meth:`stderr_text` read it at any time, also after stopping.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        port_from_env: bool = True,
        ready_timeout: float = 30.0,
    ) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.args = list(args)
        self.port_from_env = port_from_env
        self.ready_timeout = ready_timeout
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="spillguard-live-"))
        self._stdout = self._dir / "stdout.txt"
        self._stderr = self._dir / "stderr.txt"

    # Life cycle ----------------------------------------------------------------------
    def launch(self) -> LiveServer:
        """Start the process without waiting (see :meth:`wait_ready`)."""
        if self.process is not None:
            raise RuntimeError("this server was already started")
        env = dict(self.env)
        env["SPILLGUARD_HOST"] = LOOPBACK
        if self.port_from_env:
            env["SPILLGUARD_PORT"] = str(self.port)
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [*COMMAND, "serve", *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: workers die with it
            )
        return self

    def wait_ready(self) -> LiveServer:
        """Wait until ``/readyz`` answers 200; stop the server and raise if it never does."""
        assert self.process is not None, "call launch() first"
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerFailedToStart(self._describe("exited before it was ready"))
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerFailedToStart(self._describe(f"not ready after {self.ready_timeout} s"))

    def start(self) -> LiveServer:
        """Start the server and wait until it is ready."""
        return self.launch().wait_ready()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); returns the exit code.

        Safe to call more than once, and on a server that already exited.
        """
        proc = self.process
        if proc is None or self.returncode is not None:
            return self.returncode
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout)
        else:
            self._signal(signal.SIGKILL)  # any worker its exit left behind in the group
        self.returncode = proc.returncode
        return self.returncode

    def _signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)  # the group this class created, nothing else

    def close(self) -> None:
        """Stop the server and delete the captured output."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a server or its files behind
        with contextlib.suppress(Exception):  # interpreter shutdown: nowhere to report
            self.stop(timeout=2)
            shutil.rmtree(self._dir, ignore_errors=True)

    # Output --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def stdout_text(self) -> str:
        """What the server printed on stdout so far (the banner, setup link)."""
        return self._stdout.read_text(errors="replace") if self._stdout.exists() else ""

    def stderr_text(self) -> str:
        """What the server printed on stderr so far (JSON log lines, errors)."""
        return self._stderr.read_text(errors="replace") if self._stderr.exists() else ""

    def setup_link(self) -> str | None:
        """The one-time setup URL printed at start, if any."""
        match = re.search(r"(http://\S+/setup\?key=\S+)", self.stdout_text())
        return match.group(1) if match else None

    def _describe(self, what: str) -> str:
        code = self.process.returncode if self.process else None
        return (
            f"spillguard serve on {self.url} {what} (exit code {code}).\n"
            f"--- stdout ---\n{self.stdout_text()}\n--- stderr ---\n{self.stderr_text()}"
        )


@contextlib.contextmanager
def throwaway_postgres_database(base_url: str, prefix: str = "spillguard_fn") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base_url``; dropped afterwards."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{prefix}_{worker}_{uuid.uuid4().hex[:8]}"
    url = make_url(base_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
