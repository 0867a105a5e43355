"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's
Chromium through Playwright's sync API (no pytest-playwright plugin, no downloaded browser).

One Chromium per test session; each test gets a fresh live server (on the parametrised
database, SQLite or PostgreSQL) and a fresh browser context, so no cookies leak between
tests.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from tests.factories.users import DEFAULT_PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class LiveServer:
    url: str
    app: FastAPI


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Debian Chromium for the whole session."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    """The test's app (see tests/conftest.py) served over real HTTP in a background thread.

    The socket is bound before the server starts, so there is no race for a free port.
    Lifespan is off because the ``app`` fixture owns the engine (it empties the tables and
    disposes the engine after the test); with the scheduler disabled the lifespan would do
    nothing else.
    """
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
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def context(browser, live_server: LiveServer) -> Iterator[object]:
    """A fresh browser profile (cookies, storage) for one test."""
    ctx = browser.new_context(base_url=live_server.url)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context) -> object:
    return context.new_page()


def log_in(page, email: str, password: str = DEFAULT_PASSWORD) -> None:
    """Fill and submit the login form as a person would."""
    page.goto("/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def expect_path(page, path: str) -> None:
    """Wait until the page is at ``path`` (with its query string) on the live server."""
    from playwright.sync_api import expect

    expect(page).to_have_url(re.compile(r"^https?://[^/]+" + re.escape(path) + "$"))
