"""A live HTTP server for tests that need real sockets: the test's ``app``
(tests/conftest.py, so SQLite or PostgreSQL) served by uvicorn in a background thread on
a free loopback port.

Import the fixture into a test module: ``from tests.functional.agent_server import
live_app_url``; the browser tests use :func:`serve_in_thread` directly.  The socket is
bound before the server starts (no race for the port); lifespan is off because the
``app`` fixture owns the engine (it empties the tables and disposes the engine after the
test) and the scheduler is disabled, so the lifespan would do nothing else.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on ``http://127.0.0.1:PORT`` (yielded) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            pytest.fail("the live server did not start within 10 seconds")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_app_url(app: FastAPI) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving ``app`` until the test ends."""
    with serve_in_thread(app) as url:
        yield url
