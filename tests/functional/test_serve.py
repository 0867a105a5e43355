"""`spillguard serve` as a real process: first start, setup link, restart, bad configuration."""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from faker import Faker
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BACKENDS, PG_ENV, TEST_MASTER_KEY
from tests.functional.live import (
    LiveServer,
    free_port,
    one_line_error,
    run_spillguard,
    spillguard_env,
    throwaway_postgres_database,
)

fake = Faker("en_GB")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'spillguard.db'}"
    else:
        with throwaway_postgres_database(os.environ[PG_ENV], "spillguard_serve") as url:
            yield url


def csrf_of(page: httpx2.Response) -> str:
    match = CSRF_FIELD.search(page.text)
    assert match, page.text
    return match.group(1)


def log_in(client: httpx2.Client, email: str, password: str) -> httpx2.Response:
    token = csrf_of(client.get("/login"))
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token, "next": "/"}
    )


# First start -------------------------------------------------------------------------------
def test_first_start_makes_a_key_and_a_setup_link_for_the_first_admin(
    tmp_path: Path, fresh_database_url: str
) -> None:
    home = tmp_path / "home"
    env = spillguard_env(home, fresh_database_url)  # no key given: serve must make one
    email, password = fake.email(domain="example.co.uk"), fake.password(length=16)

    with LiveServer(env) as server:
        key_file = home / "master.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text()
        assert len(base64.b64decode(key.strip(), validate=True)) == 32
        assert f"Spillguard is starting on {server.url}" in server.stdout_text()
        link = server.setup_link()
        assert link is not None, server.stdout_text()
        assert link.startswith(f"{server.url}/setup?key=")
        assert key.strip() not in server.stdout_text() + server.stderr_text()

        with httpx2.Client(base_url=server.url, timeout=10) as browser:
            form = browser.get(link.removeprefix(server.url))
            assert form.status_code == 200
            assert "Create the first administrator" in form.text
            assert browser.get("/setup?key=not-the-key").status_code == 404
            fields = {
                "key": link.split("key=", 1)[1],
                "email": email,
                "password": password,
                "confirm": password,
            }
            # Without the token bound to the CSRF cookie the form is refused.
            assert browser.post("/setup", data=fields).status_code == 403

            done = browser.post("/setup", data={**fields, "csrf_token": csrf_of(form)})

            assert done.status_code == 303
            assert done.headers["location"] == "/login?done=setup-done"
            again = browser.post(
                "/setup",
                data={**fields, "email": fake.email(), "csrf_token": csrf_of(form)},
            )
            assert again.status_code == 404
            assert "unknown, used or expired" in again.text
            assert browser.get(link.removeprefix(server.url)).status_code == 404

            logged_in = log_in(browser, email, password)
            assert logged_in.status_code == 303, logged_in.text
            home_page = browser.get("/")
            assert home_page.status_code == 200
            assert email.lower() in home_page.text
            session_cookie = browser.cookies["sg_session"]

    # A restart with a user in the database: no setup link, the same key, sessions survive.
    with LiveServer(env) as restarted:
        out = restarted.stdout_text()
        assert f"Log in at {restarted.url}/login" in out
        assert "/setup?key=" not in out
        assert (home / "master.key").read_text() == key
        with httpx2.Client(
            base_url=restarted.url, cookies={"sg_session": session_cookie}, timeout=10
        ) as browser:
            assert browser.get("/").status_code == 200


def test_a_port_from_the_config_file_is_honoured(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "etc" / "spillguard.toml"
    config.parent.mkdir()
    config.write_text(f"[spillguard]\nport = {port}\nsetup_link_minutes = 7\n")
    env = spillguard_env(tmp_path / "home", master_key=TEST_MASTER_KEY, config=config)

    with LiveServer(env, port=port, port_from_env=False) as server:
        assert httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert f"starting on http://127.0.0.1:{port}" in server.stdout_text()
        assert "within 7 minutes" in server.stdout_text()


# Configuration the server refuses -------------------------------------------------------
def test_unreachable_database_is_one_line_for_serve_and_users_list(tmp_path: Path) -> None:
    url = "postgresql+psycopg://spillguard:s3cret-pass@127.0.0.1:1/nope"
    env = spillguard_env(tmp_path / "home", url, master_key=TEST_MASTER_KEY, port=free_port())

    for args in (["serve"], ["users", "list"]):
        result = run_spillguard(args, env)

        message = one_line_error(result)
        assert "127.0.0.1:1/nope is unavailable" in message
        assert "s3cret-pass" not in result.stdout + result.stderr


def test_a_data_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file where a directory should be\n")
    env = spillguard_env(afile / "sub", port=free_port())

    for args in (["serve"], ["users", "list"]):
        result = run_spillguard(args, env)

        assert f"data directory {afile / 'sub'} cannot be created" in one_line_error(result)


def test_serve_refuses_a_world_readable_master_key_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key_file = home / "master.key"
    key_file.write_text(TEST_MASTER_KEY + "\n")
    key_file.chmod(0o644)
    env = spillguard_env(home, port=free_port())

    result = run_spillguard(["serve"], env)

    message = one_line_error(result)
    assert f"chmod 600 {key_file}" in message
    assert "0644" in message
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644  # refused, not silently "fixed"
    assert key_file.read_text() == TEST_MASTER_KEY + "\n"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({"port": "abc"}, "invalid setting port", id="port-not-a-number"),
        pytest.param({"port": "70000"}, "invalid setting port", id="port-out-of-range"),
        pytest.param({"config": "/nonexistent/spillguard.toml"}, "does not exist", id="no-config"),
        pytest.param({"master_key": "bm90LWEta2V5"}, "must be 32 bytes", id="master-key-too-short"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, settings: dict[str, str], expected: str) -> None:
    env = spillguard_env(tmp_path / "home", **{"port": str(free_port()), **settings})

    result = run_spillguard(["serve"], env)

    assert expected in one_line_error(result)


# Several workers ---------------------------------------------------------------------------


def healthz_count(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spillguard_http_requests_total" and (
                sample.labels.get("route") == "/healthz"
            ):
                total += sample.value
    return total


def test_metrics_add_up_every_worker(tmp_path: Path, fresh_database_url: str) -> None:
    """With --workers 2 a scrape reaches one worker but reports the requests of both."""
    home = tmp_path / "home"
    env = spillguard_env(home, fresh_database_url, master_key=TEST_MASTER_KEY)
    email = fake.email(domain="example.co.uk")
    made = run_spillguard(
        ["users", "create", email, "--role", "auditor", "--password-stdin"],
        env,
        input=fake.password(length=16) + "\n",
    )
    assert made.returncode == 0, made.stderr
    token = run_spillguard(["tokens", "create", "--user", email], env).stdout.strip()
    assert token.startswith("sgt_")

    with LiveServer(env, args=["--workers", "2"]) as server:
        for _ in range(40):  # a new connection each time, so both workers get some
            with httpx2.Client(base_url=server.url, timeout=10) as fresh:
                assert fresh.get("/healthz").status_code == 200
        samples = sorted((home / "run" / "metrics").glob("counter_*.db"))
        assert len(samples) == 2, samples  # one file per worker process: both served
        for _ in range(6):  # every scrape, whichever worker answers, sees all 40
            with httpx2.Client(base_url=server.url, timeout=10) as scraper:
                scrape = scraper.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert scrape.status_code == 200, scrape.text
            assert healthz_count(scrape.text) == 40
            assert scrape.text.count('spillguard_build_info{version="') == 1
