"""Customer-notice throughput (issue 6): e-mails per second from the outbox to a local
SMTP server, at a configured rate limit and with the limit out of the way.

    .venv/bin/python benchmarks/notify.py [--customers 2000] [--rates 200,10000]
        [--database-url URL]

What it builds, from the real code: a data directory with a SQLite database (or
``--database-url``, e.g. the PostgreSQL test server), ``--customers`` Faker en_GB
customers with encrypted contact details (name, e-mail, postal address), and for each
rate an incident whose exposure assessment names all of them; the dpo queues the notices
(``NoticeService.enqueue``, timed).  An aiosmtpd server in this process receives them.

Then, per rate R in ``--rates``, the real sender runs as its own process —
``spillguard notices worker --once --rate R`` — and drains the outbox: two commits per
message (the hand-over before the final "." and the delivery after the 250), one SMTP
connection reused.  Reported: messages received by the server, the sender's own drain
time, messages per second, and the server's count checked against the database (every
notice ``sent``, none received twice).  With R = 200 the rate should be the bound; with
a very large R the figure is the program's own ceiling on this machine.

First, the exposure assessment (``--assessment-runs``, 0 to leave it out): a lost phone
whose ledger holds 200 documents naming 1,000 customers each, each overlapping the next by
half (100,000 distinct customers), written with COPY into a database of its own (a SQLite
file, or the ``--database-url`` database); the incident is opened as "report lost" opens
it, then ``assessment.compute_and_store`` — gather the facts from the ledger and the last
posture, rate the risk, store the version — is timed, the best and the worst of N runs
reported (goal: under 2 s).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from tests.factories.customers import people  # noqa: E402

from spillguard.core import db as dbmod  # noqa: E402
from spillguard.core.db import insert_rows, utcnow  # noqa: E402
from spillguard.core.keys import KeyRing  # noqa: E402
from spillguard.core.models import User  # noqa: E402
from spillguard.core.roles import Principal, Role  # noqa: E402
from spillguard.core.settings import Settings  # noqa: E402
from spillguard.core.users import UserService  # noqa: E402
from spillguard.customers.models import Customer, CustomerContact, CustomerDataKey  # noqa: E402
from spillguard.customers.services import ContactCipher  # noqa: E402
from spillguard.devices.models import Device  # noqa: E402
from spillguard.exposure.models import ContentCustomer, Delivery, InspectedContent  # noqa: E402
from spillguard.incidents.assessment import compute_and_store  # noqa: E402
from spillguard.incidents.models import (  # noqa: E402
    ExposureAssessment,
    Incident,
    IncidentNotice,
)
from spillguard.incidents.outbox import NoticeService  # noqa: E402
from spillguard.incidents.services import open_for_lost_device  # noqa: E402

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


class Sink:
    """Counts what the server accepted, per recipient."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.per_recipient: Counter[str] = Counter()
        self.total = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.total += 1
            self.per_recipient.update(envelope.rcpt_tos)
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(factory: Any, keys: KeyRing, count: int) -> list[str]:
    persons = people(count, seed=6)
    cipher = ContactCipher(keys)
    key, wrapped = cipher.new_wrapped_key()
    aes = AESGCM(key)
    with dbmod.transaction(factory) as session:
        data_key = CustomerDataKey(wrapped_key=wrapped)
        session.add(data_key)
        session.flush()
        for person in persons:
            customer = Customer(external_id=person.customer_id)
            session.add(customer)
            session.flush()
            values = {"name": person.name, "email": person.email, "postal_address": person.address}
            session.add(
                CustomerContact(
                    customer_id=customer.id,
                    data_key_id=data_key.id,
                    **{k: ContactCipher.seal(aes, customer.id, k, v) for k, v in values.items()},
                )
            )
    return [p.customer_id for p in persons]


def new_incident(factory: Any, ids: list[str]) -> int:
    now = dbmod.utcnow()
    with dbmod.transaction(factory) as session:
        incident = Incident(
            type="lost-device",
            title="Benchmark: a lost phone",
            severity="high",
            status="assessed",
            aware_at=now - timedelta(hours=1),
            opened_at=now - timedelta(hours=1),
            opened_by_label="benchmark",
        )
        session.add(incident)
        session.flush()
        session.add(
            ExposureAssessment(
                incident_id=incident.id,
                version=1,
                risk="high",
                notify_regulator=True,
                notify_individuals=True,
                reasons=["benchmark"],
                facts={"categories": {"email": len(ids)}},
                customer_count=len(ids),
                customer_ids=ids,
            )
        )
        return int(incident.id)


def assessment_benchmark(url: str, runs: int) -> None:
    """The exposure assessment of a lost phone: 200 documents, 100,000 customers."""
    documents, customers, per_document = 200, 100_000, 1_000
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    now = utcnow()
    system = Principal.system("benchmark")
    with dbmod.transaction(factory) as session:
        owner = User(email="owner@shop.example", role="helpdesk")
        session.add(owner)
        session.flush()
        device = Device(
            name="Marketing manager's phone",
            platform="android",
            owner_id=owner.id,
            credential_digest=os.urandom(32).hex(),
            posture={
                "passcode": {"type": "swipe", "length": None},
                "storage_encrypted": False,
                "rooted": False,
            },
        )
        session.add(device)
        session.flush()
        conn = session.connection()
        first_customer = (session.scalar(select(func.max(Customer.id))) or 0) + 1
        insert_rows(
            conn,
            Customer.__table__,
            [
                {"external_id": f"BENCH{i:07d}", "created_at": now, "updated_at": now}
                for i in range(customers)
            ],
        )
        first_content = (session.scalar(select(func.max(InspectedContent.id))) or 0) + 1
        categories: Any = {"email": per_document, "phone_number": per_document}
        if engine.dialect.name == "postgresql":
            import json

            categories = json.dumps(categories)  # COPY takes the JSON text
        insert_rows(
            conn,
            InspectedContent.__table__,
            [
                {
                    "sha256": os.urandom(32).hex(),
                    "size": 190_000,
                    "format": "xlsx",
                    "status": "inspected",
                    "label": "restricted",
                    "categories": categories,
                    "customer_count": per_document,
                    "first_seen_at": now,
                    "inspected_at": now,
                }
                for _ in range(documents)
            ],
        )
        insert_rows(
            conn,
            ContentCustomer.__table__,
            [
                {
                    "content_id": first_content + d,
                    "customer_id": first_customer + (d * 500 + k) % customers,
                }
                for d in range(documents)
                for k in range(per_document)
            ],
        )
        insert_rows(
            conn,
            Delivery.__table__,
            [
                {
                    "occurred_at": now - timedelta(hours=1),
                    "recorded_at": now,
                    "channel": "mail",
                    "destination_type": "device",
                    "device_id": device.id,
                    "user_id": None,
                    "recipient": None,
                    "domain": None,
                    "third_party": None,
                    "content_id": first_content + d,
                    "label": "restricted",
                    "customer_count": per_document,
                    "source_system": "benchmark",
                    "source_ref": None,
                }
                for d in range(documents)
            ],
        )
        incident, _ = open_for_lost_device(session, system, device, reported_at=now)
        incident_id = incident.id
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    times = []
    for _ in range(runs):
        with dbmod.transaction(factory) as session:
            incident = session.get(Incident, incident_id)
            assert incident is not None
            started = time.perf_counter()
            stored = compute_and_store(session, system, incident)
            session.flush()
            times.append(time.perf_counter() - started)
            assert stored.customer_count == customers, stored.customer_count
    print(
        f"exposure assessment, {engine.dialect.name}: {documents} documents, "
        f"{customers:,} customers, risk {stored.risk}: best {min(times):.2f} s, "
        f"worst {max(times):.2f} s over {runs} runs (load average {os.getloadavg()[0]:.2f})"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rates", default="200,10000")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--assessment-runs", type=int, default=5)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    if args.assessment_runs > 0:
        scratch = Path(tempfile.mkdtemp(prefix="spillguard-assess-"))
        try:
            assessment_benchmark(
                args.database_url or f"sqlite:///{scratch / 'assess.db'}", args.assessment_runs
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    home = Path(tempfile.mkdtemp(prefix="spillguard-notify-"))
    url = args.database_url or f"sqlite:///{home / 'spillguard.db'}"
    settings = Settings(
        home=home,
        database_url=url,
        master_key=MASTER_KEY,  # type: ignore[arg-type]
        organisation_name="Example Shop Ltd",
        smtp_from="privacy@shop.example",
    )
    keys = KeyRing(base64.b64decode(MASTER_KEY))
    engine = dbmod.make_engine(url)
    dbmod.upgrade(engine)
    factory = dbmod.make_session_factory(engine)
    with dbmod.transaction(factory) as session:
        user = UserService(session, Principal.system("benchmark")).create(
            "dpo@shop.example", Role.DPO, "benchmark passphrase 1"
        )
        dpo = Principal("user", user.id, user.email, Role.DPO)
    started = time.perf_counter()
    ids = seed(factory, keys, args.customers)
    print(f"seeded {len(ids):,} customers in {time.perf_counter() - started:.1f} s")

    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLGUARD_")}
    env.update(
        {
            "SPILLGUARD_HOME": str(home),
            "SPILLGUARD_DATABASE_URL": url,
            "SPILLGUARD_MASTER_KEY": MASTER_KEY,
            "SPILLGUARD_SMTP_HOST": "127.0.0.1",
            "SPILLGUARD_SMTP_PORT": str(port),
            "SPILLGUARD_SMTP_FROM": "privacy@shop.example",
            "SPILLGUARD_LOG_LEVEL": "WARNING",
            "SPILLGUARD_NOTICE_LEASE_SECONDS": "600",
        }
    )
    print(f"database: {engine.dialect.name}; load average {os.getloadavg()}")
    print(f"{'rate limit':>12} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'enqueue s':>9}")
    try:
        for rate in rates:
            incident_id = new_incident(factory, ids)
            t0 = time.perf_counter()
            with dbmod.transaction(factory) as session:
                NoticeService(session, dpo, settings, keys).enqueue(incident_id)
            enqueue_s = time.perf_counter() - t0
            before = sink.total
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "spillguard",
                    "notices",
                    "worker",
                    "--once",
                    "--rate",
                    str(rate),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
                check=True,
            )
            drained = re.search(r"sent (\d+).*\(([\d.]+) s\)", result.stdout, re.S)
            assert drained, result.stdout + result.stderr
            sent, seconds = int(drained.group(1)), float(drained.group(2))
            received = sink.total - before
            with dbmod.transaction(factory) as session:
                done = session.scalar(
                    select(func.count())
                    .select_from(IncidentNotice)
                    .where(
                        IncidentNotice.incident_id == incident_id,
                        IncidentNotice.status == "sent",
                    )
                )
            assert sent == received == done == len(ids), (sent, received, done)
            print(
                f"{rate:>12,.0f} {received:>9,} {seconds:>8.2f} {received / seconds:>8.1f} "
                f"{enqueue_s:>9.2f}"
            )
        runs = len(rates)
        assert all(n == runs for n in sink.per_recipient.values()), "a customer got two"
        print(f"every customer received exactly one notice per incident ({runs} incidents)")
    finally:
        controller.stop()
        engine.dispose()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
