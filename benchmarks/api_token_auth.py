"""Cost of API-token authentication: end to end, and digest lookup against argon2.

Times N authenticated ``GET /api/v1/me`` requests through Starlette's TestClient against
an app on a fresh SQLite file (no network, no server process), with ``GET /healthz`` as
the floor of a request that does no authentication and no database work.  In the same run
it times the two ways a server could check a bearer token on each request:

* what Spillguard does: one HMAC-SHA256 digest under the HKDF-derived token key, then an
  indexed lookup of that digest in ``api_tokens``;
* the alternative it rejects: one argon2id verification (the parameters used for
  passwords) of the token against a stored hash.

    .venv/bin/python benchmarks/api_token_auth.py [--requests 2000] [--argon2-rounds 30]

Prints the figures as Markdown table rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from spillguard.core import db as dbmod
from spillguard.core.app import create_app
from spillguard.core.keys import KeyPurpose, KeyRing
from spillguard.core.models import ApiToken
from spillguard.core.passwords import hash_password, verify_password
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.core.tokens import TokenService
from spillguard.core.users import UserService


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    """Seconds taken by each of ``rounds`` calls of ``fn``."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def summary(samples: list[float]) -> tuple[float, float, float]:
    """Mean, median and 95th percentile, in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.fmean(ordered) * 1000, statistics.median(ordered) * 1000, p95 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per route")
    parser.add_argument("--argon2-rounds", type=int, default=30, help="timed argon2 verifications")
    args = parser.parse_args()

    master = os.urandom(32)
    keys = KeyRing(master)
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        settings = Settings(
            home=Path(tmp),
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            master_key=SecretStr(base64.b64encode(master).decode()),
            scheduler_enabled=False,
            log_level="WARNING",  # the per-request access log line is INFO
        )
        engine = dbmod.make_engine(settings.resolved_database_url)
        dbmod.upgrade(engine)
        engine.dispose()
        app = create_app(settings, keys)

        system = Principal.system("benchmark")
        with dbmod.transaction(app.state.session_factory) as session:
            user = UserService(session, system).create(
                "bench@example.com", Role.AUDITOR, secrets.token_urlsafe(16)
            )
            secret = TokenService(session, system, keys).create(user.id, name="bench").secret

        headers = {"Authorization": f"Bearer {secret}"}
        with TestClient(app) as client:

            def me() -> None:
                response = client.get("/api/v1/me", headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"unexpected status {response.status_code}")

            def health() -> None:
                client.get("/healthz")

            for _ in range(50):  # warm up both paths
                me()
                health()
            # Interleaved, so that a change in machine load affects both routes alike.
            me_samples: list[float] = []
            floor_samples: list[float] = []
            for _ in range(args.requests):
                me_samples += timed(me, 1)
                floor_samples += timed(health, 1)

            def digest_lookup() -> None:
                with dbmod.transaction(app.state.session_factory) as session:
                    digest = keys.digest(KeyPurpose.API_TOKEN_DIGEST, secret)
                    found = session.scalar(select(ApiToken.id).where(ApiToken.digest == digest))
                    if found is None:
                        raise SystemExit("token not found by digest")

            stored_hash = hash_password(secret)  # the same argon2id hasher as passwords

            def argon2_verify() -> None:
                if not verify_password(stored_hash, secret):
                    raise SystemExit("argon2 verification failed")

            digest_only = timed(lambda: keys.digest(KeyPurpose.API_TOKEN_DIGEST, secret), 2000)
            lookup_samples = timed(digest_lookup, args.requests)
            argon2_samples = timed(argon2_verify, args.argon2_rounds)
        app.state.engine.dispose()

    me_mean, me_p50, me_p95 = summary(me_samples)
    floor_mean, floor_p50, floor_p95 = summary(floor_samples)
    dig_mean, _, _ = summary(digest_only)
    look_mean, look_p50, look_p95 = summary(lookup_samples)
    a2_mean, a2_p50, a2_p95 = summary(argon2_samples)
    params = PasswordHasher()  # the library defaults that core.passwords uses
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")
    print(f"requests per route: {args.requests}; argon2 verifications: {args.argon2_rounds}")
    print(
        f"argon2id parameters: time_cost={params.time_cost}, "
        f"memory_cost={params.memory_cost} KiB, parallelism={params.parallelism}"
    )
    print()
    print("| measurement | mean ms | median ms | p95 ms | per second (1/mean) |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("GET /api/v1/me with a bearer token", me_mean, me_p50, me_p95),
        ("GET /healthz (no auth, no database)", floor_mean, floor_p50, floor_p95),
        ("HMAC digest + indexed lookup (own transaction)", look_mean, look_p50, look_p95),
        ("argon2id verify of the token", a2_mean, a2_p50, a2_p95),
    ]
    for label, mean, p50, p95 in rows:
        print(f"| {label} | {mean:.3f} | {p50:.3f} | {p95:.3f} | {1000 / mean:,.0f} |")
    print()
    print(f"HKDF + HMAC digest alone: {dig_mean * 1000:.1f} µs per token")
    print(
        f"argon2 verify / (digest + lookup): {a2_mean / look_mean:.0f}x by mean, "
        f"{a2_p50 / look_p50:.0f}x by median"
    )
    print(
        f"argon2 verify / whole /api/v1/me request: {a2_mean / me_mean:.1f}x by mean, "
        f"{a2_p50 / me_p50:.1f}x by median"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
