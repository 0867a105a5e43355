"""Stage story 1 in an empty database: the careless company just before the phone is lost.

Plain functions over a session, each going through the real services (users, policies,
enrollment, the device protocol, the customer import, inspection and the exposure
ledger), so what the demo shows is what a real installation would hold.  The data is
synthetic (Faker en_GB, seeded).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faker import Faker
from sqlalchemy.orm import Session

from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal, Role
from spillguard.core.settings import Settings
from spillguard.core.users import UserService
from spillguard.customers.services import CustomerImportService
from spillguard.devices.agent.backends.simulated import SimulatedBackend
from spillguard.devices.agent.state import AgentConfig, AgentState
from spillguard.devices.enrollment import EnrollmentService, enroll_device
from spillguard.devices.models import Device
from spillguard.devices.policies import PolicyService
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.protocol import ProtocolService
from spillguard.devices.schemas import CheckinRequest, EnrollDevice
from spillguard.devices.services import GroupService
from spillguard.devices.simulator import server_api_root
from spillguard.exposure.ledger import Destination, NewDelivery
from spillguard.exposure.models import Channel
from spillguard.exposure.services import record_deliveries, register_report
from spillguard.inspection.services import InspectionItem, InspectionRuntime, InspectionService

ORGANISATION = "Harbour & Vale Insurance Ltd"
DOMAIN = "harbourvale.example"
CUSTOMERS = 5_000
TOP_CUSTOMERS = 1_000
SEED = 2026
SPREADSHEET = "top-1000-customers.csv"
HEADER = ["Customer ID", "First Name", "Surname", "Email", "Mobile", "Postcode", "Address", "DOB"]

# Who works there: (local part, role, what they do).  The marketing manager has no
# console duties; helpdesk is the role with the least access to customer data.
STAFF: tuple[tuple[str, Role, str], ...] = (
    ("admin", Role.ADMIN, "IT administrator"),
    ("dpo", Role.DPO, "data-protection officer"),
    ("security", Role.SECURITY, "security analyst"),
    ("helpdesk", Role.HELPDESK, "helpdesk"),
    ("marketing.manager", Role.HELPDESK, "marketing manager (owns the careless phone)"),
)
MARKETING = "marketing.manager"

# The simulated phones: (owner's local part, phone name, simulated profile, posture changes).
PHONES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("admin", "Admin's Pixel", "compliant", {}),
    ("dpo", "DPO's Pixel", "compliant", {}),
    ("security", "Security's Pixel", "compliant", {}),
    (
        MARKETING,
        "Marketing manager's phone",
        "swipe",
        {"storage_encrypted": False},
    ),
)


@dataclass
class StagedPhone:
    """One enrolled simulated phone: its device id and the agent state directory."""

    device_id: int
    name: str
    owner_email: str
    state_dir: Path
    compliant: bool
    reasons: list[str]


@dataclass
class StagedStory:
    """What was staged, for the console banner and the tests (no customer values)."""

    organisation: str
    password: str
    logins: dict[str, str] = field(default_factory=dict)  # role label → e-mail
    phones: list[StagedPhone] = field(default_factory=list)
    customers: int = 0
    spreadsheet_sha256: str = ""
    spreadsheet_customers: int = 0
    deliveries: int = 0

    @property
    def marketing_phone(self) -> StagedPhone:
        return next(p for p in self.phones if p.owner_email.startswith(MARKETING + "@"))


def principal() -> Principal:
    """The staging runs as the system, audited as ``demo``."""
    return Principal.system("demo")


def customer_rows(count: int = CUSTOMERS, seed: int = SEED) -> list[list[str]]:
    """``count`` synthetic UK customers (ids C0000000…), the same for the same seed."""
    fake = Faker("en_GB")
    fake.seed_instance(seed)
    rows = []
    for n in range(count):
        first, last = fake.first_name(), fake.last_name()
        rows.append(
            [
                f"C{n:07d}",
                first,
                last,
                # example.com/.org/.net (RFC 2606): no notice can reach a real mailbox.
                f"{first}.{last}.{n}@{fake.safe_domain_name()}".lower(),
                # 07400 000000 to 07409 999999: valid UK mobiles, distinct per n.
                f"0740{n % 10} {n // 10 % 1_000_000:06d}",
                fake.postcode(),
                fake.street_address().replace("\n", ", "),
                fake.date_of_birth(minimum_age=18, maximum_age=90).strftime("%d/%m/%Y"),
            ]
        )
    return rows


def to_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def create_staff(session: Session, password: str) -> dict[str, int]:
    """The five people of the story, all with ``password``; their user ids by local part."""
    users = UserService(session, principal())
    return {local: users.create(f"{local}@{DOMAIN}", role, password).id for local, role, _ in STAFF}


def create_policy_group(session: Session) -> int:
    """The company's compliance policy (PIN of 6, encryption) on the "Staff phones" group."""
    policy = CompliancePolicy(
        name="Staff phones",
        min_passcode_type="pin",  # type: ignore[arg-type]
        min_passcode_length=6,
        encryption_required=True,
    )
    record = PolicyService(session, principal()).create(policy)
    group = GroupService(session, principal()).create(
        "Staff phones", "Every phone that receives company mail.", record.id
    )
    return group.id


def import_customers(session: Session, keys: KeyRing, rows: list[list[str]]) -> int:
    """Import the customer list through the real import (keyed hashes, encrypted contacts)."""
    run = CustomerImportService(session, principal(), keys).import_csv(
        io.BytesIO(to_csv(rows)), id_column="Customer ID", file_name="customers.csv"
    )
    return int(run.added)


def enroll_phone(
    session: Session,
    keys: KeyRing,
    settings: Settings,
    *,
    user_id: int,
    group_id: int,
    name: str,
    profile: str,
    changes: dict[str, Any],
    state_dir: Path,
    documents: list[dict[str, Any]] | None = None,
) -> Device:
    """Enroll one simulated phone with a one-use token, write its agent state (so the
    background agent can check in later) and check it in once: compliance is computed."""
    issued = EnrollmentService(session, principal(), keys).create(
        user_id=user_id,
        group_id=group_id,
        uses_allowed=1,
        expires_in_hours=1,
        base_url=settings.base_url,
    )
    state = AgentState(state_dir)
    state.create()
    backend = SimulatedBackend.create(state.root, profile)
    simulated = backend.load()
    simulated["posture"].update(changes)
    if documents is not None:
        simulated["managed_documents"] = documents
    backend.save(simulated)
    posture = backend.collect_posture()
    facts = EnrollDevice.model_validate_json(
        json.dumps({"name": name, "platform": posture["platform"], "model": posture["model"]})
    )
    enrolled = enroll_device(session, keys, principal(), issued.token, facts)
    state.save_credential(enrolled.device.id, enrolled.credential)
    state.save_pending_results([])
    state.save_config(
        AgentConfig(
            api_root=server_api_root(settings.base_url),
            device_id=enrolled.device.id,
            name=name,
            backend="simulated",
            enrolled_at=datetime.now(UTC).isoformat(),
            checkin_interval_seconds=settings.device_checkin_interval_seconds,
        )
    )
    body = CheckinRequest.model_validate_json(json.dumps({"posture": posture}))
    ProtocolService(session, enrolled.device, principal(), settings).checkin(body)
    session.flush()
    return enrolled.device


def inspect_and_deliver(
    session: Session,
    settings: Settings,
    keys: KeyRing,
    content: bytes,
    file_name: str,
    destinations: list[Destination],
    source_id: str,
) -> tuple[str, int]:
    """Inspect content (exact data match against the directory), register the report in
    the ledger and record its delivery by mail to each destination; (sha256, customers)."""
    runtime = InspectionRuntime.from_settings(settings, keys)
    report = InspectionService(session, principal(), runtime).inspect(
        InspectionItem(content, file_name, len(content))
    )
    registered = register_report(session, report)
    now = datetime.now(UTC)
    record_deliveries(
        session,
        [
            NewDelivery(
                content_id=registered.id,
                destination=destination,
                channel=Channel.MAIL,
                occurred_at=now,
                source_system="mail-filter",
                source_id=f"{source_id}-{n}",
            )
            for n, destination in enumerate(destinations)
        ],
    )
    return report.sha256 or "", int(registered.customer_count)


def document_entry(file_name: str, content: bytes) -> dict[str, Any]:
    """A managed-document entry of a simulated phone's inventory."""
    return {
        "sha256": hashlib.sha256(content).hexdigest(),
        "file_name": file_name,
        "size": len(content),
    }


def stage_story(
    session: Session,
    keys: KeyRing,
    settings: Settings,
    phones_dir: Path,
    *,
    customers: int = CUSTOMERS,
    password: str | None = None,
) -> StagedStory:
    """Stage story 1 in ``session``: staff, policy, customers, phones, the ledger."""
    password = password or secrets.token_urlsafe(12)
    story = StagedStory(organisation=settings.organisation_name or ORGANISATION, password=password)
    user_ids = create_staff(session, password)
    story.logins = {purpose: f"{local}@{DOMAIN}" for local, _, purpose in STAFF}
    group_id = create_policy_group(session)
    rows = customer_rows(customers)
    story.customers = import_customers(session, keys, rows)
    session.flush()

    top = to_csv(rows[: min(TOP_CUSTOMERS, customers)])
    renewals = to_csv(rows[-25:])
    devices: dict[str, Device] = {}
    for n, (owner, name, profile, changes) in enumerate(PHONES):
        documents = [document_entry(SPREADSHEET, top)] if owner == MARKETING else None
        device = enroll_phone(
            session,
            keys,
            settings,
            user_id=user_ids[owner],
            group_id=group_id,
            name=name,
            profile=profile,
            changes=changes,
            state_dir=phones_dir / f"phone-{n + 1}",
            documents=documents,
        )
        devices[owner] = device
        story.phones.append(
            StagedPhone(
                device_id=device.id,
                name=name,
                owner_email=f"{owner}@{DOMAIN}",
                state_dir=phones_dir / f"phone-{n + 1}",
                compliant=bool(device.compliant),
                reasons=list(device.compliance_reasons),
            )
        )
    marketing = devices[MARKETING]
    story.spreadsheet_sha256, story.spreadsheet_customers = inspect_and_deliver(
        session,
        settings,
        keys,
        top,
        SPREADSHEET,
        [Destination.device(marketing.id, user_ids[MARKETING])],
        "demo-top-customers",
    )
    # A few other deliveries: a short renewals list to compliant phones and a partner.
    inspect_and_deliver(
        session,
        settings,
        keys,
        renewals,
        "renewals-this-week.csv",
        [
            Destination.device(devices["security"].id, user_ids["security"]),
            Destination.device(devices["dpo"].id, user_ids["dpo"]),
            Destination.external("claims@loss-adjusters.example"),
        ],
        "demo-renewals",
    )
    story.deliveries = 4
    session.flush()
    return story
