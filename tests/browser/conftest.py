"""Browser tests: the real app served by uvicorn on a loopback port, driven by Debian's
Chromium through Playwright's sync API (no pytest-playwright plugin, no downloaded browser).

One Chromium per test session; each test gets a fresh live server (on the parametrised
database, SQLite or PostgreSQL) and a fresh browser context, so no cookies leak between
tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.factories.users import DEFAULT_PASSWORD
from tests.functional.agent_server import serve_in_thread

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
    """The test's app (see tests/conftest.py) served over real HTTP in a background thread
    (tests/functional/agent_server.py)."""
    with serve_in_thread(app) as url:
        yield LiveServer(url, app)


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


def wait_for_htmx(page) -> None:
    """Wait until the page's deferred scripts ran and htmx has wired up the page.

    A locator can match while the document is still loading; a change or click made in that
    moment reaches a plain form instead of htmx (CI saw exactly that once, on a loaded
    machine). htmx initialises itself when the document is complete.
    """
    page.wait_for_function("() => document.readyState === 'complete' && window.htmx !== undefined")


def expect_path(page, path: str) -> None:
    """Wait until the page is at ``path`` (with its query string) on the live server."""
    from playwright.sync_api import expect

    expect(page).to_have_url(re.compile(r"^https?://[^/]+" + re.escape(path) + "$"))
