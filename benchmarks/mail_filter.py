"""The mail filter's throughput and added latency (issue 5): messages per second through
`spillguard mail-filter` with a ~200 KB spreadsheet attachment, the filter process pinned
to one CPU, against the same path through a plain aiosmtpd relay that inspects nothing.

    .venv/bin/python benchmarks/mail_filter.py [--messages 40] [--concurrency 1,4]
        [--customers 10000] [--sheet customers|products] [--sheet-kb 200]
        [--database-url URL] [--server-cpu 1] [--client-cpu 0]

What it builds, all from the real code:

* a data directory with a SQLite database (or ``--database-url``), a customer directory
  of ``--customers`` Faker en_GB people imported through the API, a recipient whose one
  phone is enrolled and compliant under a strict policy (so every message is delivered
  unchanged and recorded per phone: the ordinary path);
* one spreadsheet of about ``--sheet-kb`` KB — ``customers`` (default): the directory's
  first customers, name, e-mail, mobile, postcode, address and date of birth per row;
  ``products``: a catalogue with no personal data — and a variant of it per message (a
  different description in ``docProps/core.xml``), so no two messages carry the same
  bytes (the filter's report cache never helps here);
* a sink (aiosmtpd, in this process) as the next hop.

Then, for the plain relay and for the filter in turn, each in its own process pinned to
CPU ``--server-cpu`` (this process, the client and the sink, on ``--client-cpu``): a few
warm-up messages (the first loads the EDM index and compiles the detectors), then
``--messages`` messages over ``C`` persistent SMTP connections for each C in
``--concurrency``. Reported: messages per second, and the time from MAIL FROM to the
reply to DATA per message (p50, p95, mean), the server process's CPU time per message
(from /proc), and, from the filter's own log lines, how much of each message went to
inspection and how much to everything else. Added latency = filter - relay; ratio =
filter / relay.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from edm_build import cpu_model  # noqa: E402
from tests.functional.live import COMMAND, LOOPBACK, free_port, spillguard_env  # noqa: E402

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # benchmark only
RECIPIENT = "marketing.manager@corp.example"
SENDER = "sales.lead@corp.example"
WARMUP = 5


# --- the plain relay (run as a child with --relay) ----------------------------------------


def run_relay(listen: int, next_hop: int) -> None:
    """aiosmtpd in, smtplib out, nothing in between: the floor the filter is compared to."""
    from aiosmtpd.smtp import SMTP

    executor = ThreadPoolExecutor(4)

    def forward(mail_from: str, rcpts: list[str], data: bytes) -> None:
        with smtplib.SMTP(LOOPBACK, next_hop, local_hostname="localhost") as smtp:
            smtp.sendmail(mail_from, rcpts, data)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                executor,
                forward,
                envelope.mail_from,
                list(envelope.rcpt_tos),
                bytes(envelope.original_content),
            )
            return "250 OK"

    loop = asyncio.new_event_loop()
    handler = Handler()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="relay", data_size_limit=None, loop=loop),
            LOOPBACK,
            listen,
        )
    )
    print("ready", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


# --- data ----------------------------------------------------------------------------------


def directory(count: int) -> list[list[str]]:
    from faker import Faker

    fake = Faker("en_GB")
    fake.seed_instance(5)
    rows = []
    for n in range(count):
        first, last = fake.first_name(), fake.last_name()
        rows.append(
            [
                f"C{n:07d}",
                first,
                last,
                f"{first}.{last}.{n}@example.org".lower(),
                f"0740{n % 10} {n // 10 % 1_000_000:06d}",
                fake.postcode(),
                fake.street_address().replace("\n", ", "),
                fake.date_of_birth(minimum_age=18, maximum_age=90).strftime("%d/%m/%Y"),
            ]
        )
    return rows


HEADER = ["Customer ID", "First Name", "Surname", "Email", "Mobile", "Postcode", "Address", "DOB"]


def spreadsheet(rows: list[list[str]], target_kb: int) -> tuple[bytes, int]:
    """An xlsx of the first customers, as many as make about ``target_kb`` KB."""
    import openpyxl

    def build(n: int) -> bytes:
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "Top customers"
        sheet.append(["Name", "E-mail", "Mobile", "Postcode", "Address", "Date of birth"])
        for row in rows[:n]:
            sheet.append([f"{row[1]} {row[2]}", row[3], row[4], row[5], row[6], row[7]])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    n = 1000
    data = build(n)
    n = max(1, min(len(rows), int(n * target_kb * 1024 / len(data))))
    data = build(n)
    return data, n


def products(target_kb: int) -> tuple[bytes, int]:
    """An xlsx of about ``target_kb`` KB with no personal data: a product catalogue."""
    import openpyxl

    def build(n: int) -> bytes:
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "Catalogue"
        sheet.append(["SKU", "Description", "Colour", "Price", "Stock", "Warehouse"])
        colours = ["red", "blue", "green", "black", "white", "grey"]
        for i in range(n):
            sheet.append(
                [
                    f"SKU-{i:07d}",
                    f"Widget model {i % 977} mk {i % 13}",
                    colours[i % 6],
                    round(3.5 + (i % 500) * 0.37, 2),
                    i % 1000,
                    f"Bay {i % 40}",
                ]
            )
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

    n = 2000
    data = build(n)
    n = max(1, int(n * target_kb * 1024 / len(data)))
    return build(n), n


def filter_split(log: Path, skip: int, count: int) -> tuple[float, float]:
    """Median wall ms per message spent inspecting, and on everything else the filter does
    (parsing, database, handing on), from the filter's own ``mail_filtered`` log lines: the
    ``count`` messages after ``skip`` warm-up ones (the first batch, one at a time)."""
    inspect, rest = [], []
    for line in log.read_text(errors="replace").splitlines():
        if '"mail_filtered"' not in line:
            continue
        entry = json.loads(line)
        inspect.append(entry["inspect_ms"])
        rest.append(entry["ms"] - entry["inspect_ms"])
    return (
        statistics.median(inspect[skip : skip + count]),
        statistics.median(rest[skip : skip + count]),
    )


def variant(base: bytes, number: int) -> bytes:
    """The same workbook with another description: other bytes, the same content."""
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "docProps/core.xml":
                data = data.replace(
                    b"</cp:coreProperties>",
                    f"<dc:description>copy {number}</dc:description></cp:coreProperties>".encode(),
                )
            target.writestr(info, data)
    return out.getvalue()


def message(sheet: bytes, number: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = SENDER
    mail["To"] = RECIPIENT
    mail["Subject"] = f"Top customers, week {number}"
    mail["Message-ID"] = f"<bench-{number}-{os.getpid()}@corp.example>"
    mail.set_content("Hello,\n\nthe top customers for this week are attached.\n\nJo\n")
    mail.add_attachment(
        sheet, maintype="application", subtype=XLSX.split("/")[1], filename="top-customers.xlsx"
    )
    return mail.as_bytes(policy=policy.SMTP)


def prepare(home: Path, database_url: str | None, customers: int) -> None:
    """The directory, the recipient and their compliant phone, through the real API."""
    from fastapi.testclient import TestClient
    from tests.factories.devices import SECURE, STRICT_POLICY, create_enrollment, enroll

    from spillguard.core import db as dbmod
    from spillguard.core.app import create_app
    from spillguard.core.keys import KeyRing
    from spillguard.core.roles import Principal, Role
    from spillguard.core.settings import Settings
    from spillguard.core.tokens import TokenService
    from spillguard.core.users import UserService

    settings = Settings(
        home=home,
        database_url=database_url,
        master_key=MASTER_KEY,  # type: ignore[arg-type]
        scheduler_enabled=False,
        log_level="WARNING",
    )
    keys = KeyRing(base64.b64decode(MASTER_KEY))
    app = create_app(settings, keys)
    dbmod.upgrade(app.state.engine)
    system = Principal.system("benchmark")
    with dbmod.transaction(app.state.session_factory) as session:
        admin = UserService(session, system).create("admin@corp.example", Role.ADMIN, "x" * 16)
        dpo = UserService(session, system).create("dpo@corp.example", Role.DPO, "x" * 16)
        owner = UserService(session, system).create(RECIPIENT, Role.HELPDESK, "x" * 16)
        admin_token = TokenService(session, system, keys).create(admin.id, name="bench").secret
        dpo_token = TokenService(session, system, keys).create(dpo.id, name="bench").secret
        owner_id = owner.id
    headers = {"Authorization": f"Bearer {admin_token}"}
    rows = directory(customers)
    csv_text = io.StringIO()
    csv.writer(csv_text).writerows([HEADER, *rows])
    with TestClient(app) as client:
        imported = client.post(
            "/api/v1/customers/imports",
            files={"file": ("customers.csv", csv_text.getvalue().encode(), "text/csv")},
            data={"id_column": "Customer ID"},
            headers={"Authorization": f"Bearer {dpo_token}"},
        )
        assert imported.status_code == 201, imported.text
        policy_id = client.post(
            "/api/v1/compliance-policies", json=STRICT_POLICY, headers=headers
        ).json()["id"]
        phone = enroll(client, create_enrollment(client, headers, owner_id)["token"])
        client.patch(f"/api/v1/devices/{phone.id}", json={"policy_id": policy_id}, headers=headers)
        assert phone.checkin(client, SECURE).json()["compliance"]["compliant"] is True
    app.state.engine.dispose()


# --- measuring -------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink.lock:
                    sink.count += 1
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname=LOOPBACK, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int) -> Any:
    return lambda: os.sched_setaffinity(0, {cpu})


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with smtplib.SMTP(LOOPBACK, port, timeout=5) as smtp:
                smtp.noop()
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server never became ready")


def send_all(port: int, messages: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every message over ``concurrency`` persistent connections; (wall s, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [messages[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[bytes]) -> None:
        with smtplib.SMTP(LOOPBACK, port, timeout=300, local_hostname="client") as smtp:
            for data in chunk:
                started = time.perf_counter()
                refused = smtp.sendmail(SENDER, [RECIPIENT], data)
                took = time.perf_counter() - started
                assert not refused, refused
                with lock:
                    latencies.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker, c) for c in chunks]:
            future.result()
    return time.perf_counter() - started, latencies


def summary(name: str, concurrency: int, wall: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000
    mean = statistics.fmean(ordered) * 1000
    rate = len(latencies) / wall
    print(
        f"  {name:<7} C={concurrency}: {rate:7.1f} msg/s   latency p50 {p50:7.1f} ms   "
        f"p95 {p95:7.1f} ms   mean {mean:7.1f} ms   ({len(latencies)} messages, {wall:.1f} s)",
        flush=True,
    )
    return {"rate": rate, "p50": p50, "p95": p95, "mean": mean}


def measure(
    name: str,
    command: list[str],
    env: dict[str, str] | None,
    port: int,
    cpu: int,
    batches: dict[int, list[bytes]],
    warmup: list[bytes],
    log: Path,
) -> dict[int, dict[str, float]]:
    with log.open("wb") as err:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=pinned(cpu),
        )
    try:
        wait_ready(port, process)
        send_all(port, warmup, 1)
        results = {}
        for concurrency, batch in batches.items():
            cpu_before = cpu_seconds(process.pid)
            wall, latencies = send_all(port, batch, concurrency)
            used = cpu_seconds(process.pid) - cpu_before
            results[concurrency] = summary(name, concurrency, wall, latencies)
            results[concurrency]["cpu_ms"] = used / len(batch) * 1000
            print(
                f"           server CPU {used / len(batch) * 1000:.1f} ms per message "
                f"(a core's worth: {len(batch) / used if used else float('inf'):.1f} msg/s)",
                flush=True,
            )
        return results
    finally:
        process.terminate()
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relay", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--sheet-kb", type=int, default=200)
    parser.add_argument(
        "--sheet",
        choices=["customers", "products"],
        default="customers",
        help="customers: the directory's first customers; products: no personal data",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    args = parser.parse_args()
    if args.relay:
        run_relay(*args.relay)
        return
    os.sched_setaffinity(0, {args.client_cpu})
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {sys.version.split()[0]}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sg-mail-bench-") as folder:
        home = Path(folder) / "home"
        home.mkdir()
        started = time.perf_counter()
        prepare(home, args.database_url, args.customers)
        rows = directory(args.customers)
        if args.sheet == "customers":
            base, in_sheet = spreadsheet(rows, args.sheet_kb)
        else:
            base, in_sheet = products(args.sheet_kb)
        total = WARMUP + args.messages * len(levels)
        sheets = [variant(base, n) for n in range(total)]
        messages = [message(sheet, n) for n, sheet in enumerate(sheets)]
        print(
            f"prepared in {time.perf_counter() - started:.1f} s: {args.customers:,} customers; "
            f"{args.sheet} spreadsheet {len(base) / 1024:.0f} KB, {in_sheet:,} rows, "
            f"message {len(messages[0]) / 1024:.0f} KB; database "
            f"{'SQLite' if not args.database_url else args.database_url.split(':')[0]}",
            flush=True,
        )
        warmup = messages[:WARMUP]
        batches = {
            c: messages[WARMUP + i * args.messages : WARMUP + (i + 1) * args.messages]
            for i, c in enumerate(levels)
        }
        sink = Sink()
        try:
            relay_port = free_port()
            relay = measure(
                "relay",
                [sys.executable, __file__, "--relay", str(relay_port), str(sink.port)],
                None,
                relay_port,
                args.server_cpu,
                batches,
                warmup,
                Path(folder) / "relay.log",
            )
            filter_port = free_port()
            env = spillguard_env(
                home,
                args.database_url,
                master_key=MASTER_KEY,
                mail_filter_next_hop=f"{LOOPBACK}:{sink.port}",
            )
            filtered = measure(
                "filter",
                [*COMMAND, "mail-filter", "--listen", f"{LOOPBACK}:{filter_port}"],
                env,
                filter_port,
                args.server_cpu,
                batches,
                warmup,
                Path(folder) / "filter.log",
            )
        finally:
            sink.stop()
        errors = [
            line
            for line in (Path(folder) / "filter.log").read_text(errors="replace").splitlines()
            if '"level": "error"' in line or "Traceback" in line
        ]
        print(
            f"messages at the sink: {sink.count:,} (expected {2 * total:,}); filter errors: "
            f"{len(errors)}"
        )
        inspect_ms, rest_ms = filter_split(Path(folder) / "filter.log", WARMUP, args.messages)
        print(
            f"inside the filter, median per message at C={levels[0]}: "
            f"inspection {inspect_ms:.1f} ms, "
            f"everything else (parse, database, next hop) {rest_ms:.1f} ms",
            flush=True,
        )
        for c in levels:
            f, r = filtered[c], relay[c]
            print(
                f"C={c}: filter {f['rate']:.1f} msg/s vs relay {r['rate']:.1f} msg/s; added "
                f"latency p50 {f['p50'] - r['p50']:.1f} ms (x{f['p50'] / r['p50']:.1f}), "
                f"mean {f['mean'] - r['mean']:.1f} ms (x{f['mean'] / r['mean']:.1f})"
            )
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
