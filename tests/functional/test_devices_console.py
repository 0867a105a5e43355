"""The devices console through the real HTTP app, speaking HTML like a browser: device
list and filters, the device page with its commands and "Report lost", enrollments with
their QR code, groups, and the policy editor, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta
from typing import Any

import pytest
from faker import Faker
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.devices.models import Command, Device
from tests.factories.devices import (
    SECURE,
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.users import UserFactory
from tests.functional.test_console import HTML, audit_events, csrf_from, logged_in

fake = Faker("en_GB")


@pytest.fixture
def console(client: TestClient) -> TestClient:
    client.headers.update(HTML)
    return client


@pytest.fixture
def admin_api(users: UserFactory) -> dict[str, str]:
    return users.auth("admin")


@pytest.fixture
def strict_group(client: TestClient, admin_api: dict[str, str]) -> int:
    """A group under a policy that a swipe-only, unencrypted phone fails."""
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin_api)
    group = client.post(
        "/api/v1/device-groups",
        json={"name": f"Sales {fake.city()}", "policy_id": policy.json()["id"]},
        headers=admin_api,
    )
    assert group.status_code == 201, group.text
    return int(group.json()["id"])


def enrolled(
    client: TestClient,
    admin_api: dict[str, str],
    owner_id: int,
    *,
    name: str | None = None,
    platform: str = "android",
    group_id: int | None = None,
    body: dict[str, Any] | None = None,
) -> EnrolledDevice:
    fields = {"group_id": group_id} if group_id else {}
    token = create_enrollment(client, admin_api, owner_id, **fields)["token"]
    device = enroll(client, token, name=name, platform=platform)
    response = device.checkin(client, {**(body or SECURE), "platform": platform})
    assert response.status_code == 200, response.text
    return device


@pytest.fixture
def phone(
    client: TestClient, users: UserFactory, admin_api: dict[str, str], strict_group: int
) -> EnrolledDevice:
    owner = users.create("helpdesk")
    return enrolled(
        client,
        admin_api,
        owner.id,
        name=f"{fake.first_name()}'s Pixel",
        group_id=strict_group,
        body=SWIPE_UNENCRYPTED,
    )


def post_on(console: TestClient, page: str, action: str, data: dict[str, str]) -> Any:
    """Submit a form of ``page`` with that page's CSRF token, as a browser does."""
    token = csrf_from(console.get(page).text)
    return console.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def commands_of(client: TestClient, admin_api: dict[str, str], device_id: int) -> list[dict]:
    url = f"/api/v1/devices/{device_id}/commands"
    return client.get(url, headers=admin_api).json()["items"]  # type: ignore[no-any-return]


def row_names(page: str) -> set[str]:
    found = re.findall(r'<td><a href="/devices/\d+">([^<]+)</a></td>', page)
    return {html.unescape(name) for name in found}


# Pages and who may use them ------------------------------------------------------------
@pytest.mark.parametrize("role", ["admin", "helpdesk"])
def test_every_devices_page_renders_for_admin_and_helpdesk(
    console: TestClient, users: UserFactory, phone: EnrolledDevice, role: str, db: Session
) -> None:
    logged_in(console, users, role)
    policy_id = db.scalar(select(Device.compliance_policy_id).where(Device.id == phone.id))
    pages = {
        "/devices": "Devices",
        f"/devices/{phone.id}": phone.name,
        "/enrollments": "New enrollment",
        "/device-groups": "New group",
        "/policies": "Compliance policies",
        "/policies/new": "Save policy",
        f"/policies/{policy_id}": STRICT_POLICY["name"],
    }
    for path, text in pages.items():
        response = console.get(path)
        assert response.status_code == 200, path
        assert text in html.unescape(response.text), path
    device = console.get(f"/devices/{phone.id}").text
    for button in ["Report lost", "Lock", "Play sound", "Selective wipe", "Retire", "Clear queue"]:
        assert f">{button}</button>" in device, button
    assert "Wipe the device" in device


@pytest.mark.parametrize("role", ["security", "dpo", "auditor"])
def test_roles_without_device_management_see_but_cannot_act(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    role: str,
    client: TestClient,
    admin_api: dict[str, str],
) -> None:
    logged_in(console, users, role)
    page = console.get(f"/devices/{phone.id}")
    assert page.status_code == 200
    assert "Wipe the device" not in page.text and ">Play sound</button>" not in page.text
    device_page = f"/devices/{phone.id}"
    lock = post_on(console, device_page, f"/devices/{phone.id}/commands", {"type": "lock"})
    assert lock.status_code == 403
    wipe = post_on(
        console,
        device_page,
        f"/devices/{phone.id}/commands",
        {"type": "wipe", "confirm_name": phone.name},
    )
    assert wipe.status_code == 403
    assert post_on(console, device_page, f"/devices/{phone.id}/commands/clear", {}).status_code
    assert console.get("/policies/new").status_code == 403
    owner_email = users.create("dpo").email
    enrol = post_on(console, "/enrollments", "/enrollments", {"email": owner_email})
    assert enrol.status_code == 403
    group = post_on(console, "/device-groups", "/device-groups", {"name": "Nope"})
    assert group.status_code == 403
    assert commands_of(client, admin_api, phone.id) == []


def test_security_may_report_lost_but_dpo_may_not(
    console: TestClient, users: UserFactory, phone: EnrolledDevice
) -> None:
    logged_in(console, users, "dpo")
    page = f"/devices/{phone.id}"
    assert "Report lost" not in console.get(page).text
    refused = post_on(console, page, f"{page}/report-lost", {"message": "Call IT"})
    assert refused.status_code == 403
    console.cookies.clear()
    logged_in(console, users, "security")
    assert ">Report lost</button>" in console.get(page).text
    done = post_on(console, page, f"{page}/report-lost", {"message": "Call IT"})
    assert done.status_code == 303


def test_devices_pages_need_a_session(console: TestClient, phone: EnrolledDevice) -> None:
    for path in ["/devices", f"/devices/{phone.id}", "/enrollments", "/policies"]:
        response = console.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


# Device list, filters, overview ----------------------------------------------------------
def test_filters_and_counts(
    console: TestClient,
    client: TestClient,
    users: UserFactory,
    admin_api: dict[str, str],
    strict_group: int,
    db: Session,
) -> None:
    alice, bob = users.create("helpdesk"), users.create("dpo")
    bad = enrolled(
        client, admin_api, alice.id, name="Bad phone", group_id=strict_group, body=SWIPE_UNENCRYPTED
    )
    good = enrolled(client, admin_api, alice.id, name="Good phone", group_id=strict_group)
    iphone = enrolled(client, admin_api, bob.id, name="Bob iPhone", platform="ios")
    silent = enrolled(client, admin_api, bob.id, name="Silent laptop", platform="linux")
    db.execute(
        update(Device)
        .where(Device.id == silent.id)
        .values(last_checkin_at=utcnow() - timedelta(days=2))
    )
    db.commit()
    lost = client.post(
        f"/api/v1/devices/{iphone.id}/report-lost", json={"message": "Lost"}, headers=admin_api
    )
    assert lost.status_code == 200

    logged_in(console, users, "helpdesk")
    everything = console.get("/devices").text
    assert row_names(everything) == {bad.name, good.name, iphone.name, silent.name}
    assert 'data-testid="count-total">4<' in everything
    assert 'data-testid="count-non-compliant">1<' in everything
    assert 'data-testid="count-compliant">3<' in everything
    assert 'data-testid="count-stale">1<' in everything
    assert 'data-testid="count-lost">1<' in everything

    cases = {
        "compliance=non-compliant": {bad.name},
        "compliance=compliant": {good.name, iphone.name, silent.name},
        "state=lost": {iphone.name},
        "stale=1": {silent.name},
        f"group_id={strict_group}": {bad.name, good.name},
        f"owner={bob.email.split('@')[0].upper()}": {iphone.name, silent.name},
        "platform=ios": {iphone.name},
        f"platform=android&group_id={strict_group}&compliance=compliant": {good.name},
    }
    for query, expected in cases.items():
        page = console.get(f"/devices?{query}")
        assert page.status_code == 200, query
        assert row_names(page.text) == expected, query
        n = len(expected)
        assert f"{n} device{'' if n == 1 else 's'} match" in page.text, query
    assert "No device matches" in console.get("/devices?platform=other").text
    assert console.get("/devices?platform=windows").status_code == 422


def test_home_shows_the_compliance_overview(
    console: TestClient, users: UserFactory, phone: EnrolledDevice
) -> None:
    logged_in(console, users, "auditor")
    home = console.get("/").text
    assert "Device compliance" in home
    assert 'data-testid="count-non-compliant">1<' in home
    assert 'data-testid="count-total">1<' in home


# Device page -----------------------------------------------------------------------------
def test_device_page_shows_posture_and_reasons_in_plain_words(
    console: TestClient, users: UserFactory, phone: EnrolledDevice
) -> None:
    logged_in(console, users, "helpdesk")
    page = console.get(f"/devices/{phone.id}").text
    assert "Non-compliant" in page
    assert "Passcode is a swipe; policy requires a PIN of at least 6 digits" in page
    assert "Storage is not encrypted; policy requires encryption" in page
    posture = page.split('data-testid="posture"', 1)[1].split("</table>", 1)[0]
    assert "swipe" in posture and "5.0 min" in posture and "android 14" in posture
    assert "1.0.0" in posture


def test_every_command_button_queues_its_command(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
) -> None:
    user = logged_in(console, users, "helpdesk")
    page = f"/devices/{phone.id}"
    action = f"{page}/commands"
    lock = {"type": "lock", "message": "Return to reception", "phone": "+44 20 7946 0000"}
    assert post_on(console, page, action, lock).status_code == 303
    queued = commands_of(client, admin_api, phone.id)
    assert queued[0]["type"] == "lock"
    assert queued[0]["params"] == {"message": lock["message"], "phone": lock["phone"]}
    assert queued[0]["created_by_label"] == user.email
    for kind in ["play_sound", "selective_wipe"]:
        assert post_on(console, page, action, {"type": kind}).status_code == 303
    on = {"type": "lost_mode_on", "message": "Lost phone"}
    assert post_on(console, page, action, on).status_code == 303
    assert ">Lost mode off</button>" in console.get(page).text, "lost mode offers off and locate"
    assert post_on(console, page, action, {"type": "locate"}).status_code == 303
    wipe = {"type": "wipe", "confirm_name": phone.name}
    assert post_on(console, page, action, wipe).status_code == 303
    pending = {c["type"]: c for c in commands_of(client, admin_api, phone.id)}
    expected = {"lock", "play_sound", "selective_wipe", "lost_mode_on", "locate", "wipe"}
    assert set(pending) == expected
    assert all(c["status"] == "queued" for c in pending.values())

    shown = console.get(page).text
    for label in ["Lock", "Play sound", "Selective wipe", "Lost mode on", "Locate", "Full wipe"]:
        assert f'<td class="cmd-name">{label}' in shown, label

    off = post_on(console, page, action, {"type": "lost_mode_off"})
    assert off.status_code == 303
    after = commands_of(client, admin_api, phone.id)
    by_type = {c["type"]: c["status"] for c in after}
    assert by_type["lost_mode_off"] == "queued"
    assert by_type["lost_mode_on"] == "cancelled" and by_type["locate"] == "cancelled"

    cleared = post_on(console, page, f"{page}/commands/clear", {})
    assert cleared.headers["location"] == f"{page}?done=queue-cleared"
    assert {c["status"] for c in commands_of(client, admin_api, phone.id)} == {"cancelled"}
    assert "Queue cleared" in console.get(cleared.headers["location"]).text

    assert post_on(console, page, action, {"type": "retire"}).status_code == 303
    assert commands_of(client, admin_api, phone.id)[0]["type"] == "retire"


def test_cancel_one_command(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
) -> None:
    logged_in(console, users, "admin")
    page = f"/devices/{phone.id}"
    post_on(console, page, f"{page}/commands", {"type": "play_sound"})
    (command,) = commands_of(client, admin_api, phone.id)
    cancel = f"{page}/commands/{command['id']}/cancel"
    assert post_on(console, page, cancel, {}).status_code == 303
    assert commands_of(client, admin_api, phone.id)[0]["status"] == "cancelled"
    again = post_on(console, page, cancel, {})
    assert again.status_code == 409 and "already cancelled" in again.text


def test_locate_outside_lost_mode_is_refused_with_a_message(
    console: TestClient, users: UserFactory, phone: EnrolledDevice
) -> None:
    logged_in(console, users, "admin")
    page = f"/devices/{phone.id}"
    response = post_on(console, page, f"{page}/commands", {"type": "locate"})
    assert response.status_code == 409
    assert "only in lost mode" in response.text


def test_full_wipe_needs_the_typed_device_name(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
    db: Session,
) -> None:
    logged_in(console, users, "helpdesk")
    page = f"/devices/{phone.id}"
    for typed in ["", "yes", phone.name.upper(), phone.name + "x"]:
        response = post_on(
            console, page, f"{page}/commands", {"type": "wipe", "confirm_name": typed}
        )
        assert response.status_code == 422, typed
        assert "type its name exactly" in response.text
        assert 'data-testid="error"' in response.text
    assert commands_of(client, admin_api, phone.id) == []
    refused = audit_events(db, "devices:command:refused")
    assert len(refused) == 4
    assert refused[0].details["reason"] == "device name not confirmed"


def test_report_lost_is_one_audited_action(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
    db: Session,
) -> None:
    user = logged_in(console, users, "helpdesk")
    page = f"/devices/{phone.id}"
    message, number = "Found it? Call the office", "+44 161 496 0000"
    response = post_on(console, page, f"{page}/report-lost", {"message": message, "phone": number})
    assert response.status_code == 303
    queued = commands_of(client, admin_api, phone.id)
    assert sorted(c["type"] for c in queued) == ["locate", "lock", "lost_mode_on"]
    lock = next(c for c in queued if c["type"] == "lock")
    assert lock["params"] == {"message": message, "phone": number}
    (event,) = audit_events(db, "devices:device:reported-lost")
    assert event.actor_label == user.email and event.object_id == str(phone.id)
    shown = console.get(response.headers["location"]).text
    assert "Reported lost" in shown and 'data-testid="lost-panel"' in shown
    assert message in shown
    blank = post_on(console, page, f"{page}/report-lost", {"message": "  "})
    assert blank.status_code == 422 and "lock-screen message" in blank.text


def test_live_fragment_shows_acknowledged_commands_and_location(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
) -> None:
    client.post(f"/api/v1/devices/{phone.id}/report-lost", json={"message": "x"}, headers=admin_api)
    commands = phone.checkin(client, SWIPE_UNENCRYPTED).json()["commands"]
    location = {"latitude": 53.4808, "longitude": -2.2426, "accuracy_m": 15.0}
    results = []
    for command in commands:
        result: dict[str, Any] = {"command_id": command["id"], "status": "acknowledged"}
        if command["type"] == "locate":
            result["location"] = {**location, "captured_at": utcnow().isoformat()}
        results.append(result)
    assert phone.checkin(client, SWIPE_UNENCRYPTED, results=results).status_code == 200

    logged_in(console, users, "admin")
    live = console.get(f"/devices/{phone.id}/live", headers={"HX-Request": "true"})
    assert live.status_code == 200
    assert live.text.lstrip().startswith('<section id="live"'), "a fragment, not a page"
    assert 'hx-trigger="every 5s"' in live.text
    assert live.text.count('data-status="acknowledged"') == 3
    assert "53.48080, -2.24260" in live.text


def test_assign_group_and_policy_from_the_device_page(
    console: TestClient,
    client: TestClient,
    users: UserFactory,
    admin_api: dict[str, str],
    strict_group: int,
) -> None:
    device = enrolled(client, admin_api, users.create("dpo").id, body=SWIPE_UNENCRYPTED)
    logged_in(console, users, "helpdesk")
    page = f"/devices/{device.id}"
    assert "Non-compliant" not in console.get(page).text
    moved = post_on(console, page, f"{page}/assignment", {"group_id": str(strict_group)})
    assert moved.status_code == 303
    after = console.get(page).text
    assert "Non-compliant" in after and "Storage is not encrypted" in after


# Enrollments -----------------------------------------------------------------------------
def test_enrollment_shows_url_and_qr_once_and_can_be_revoked(
    console: TestClient, client: TestClient, users: UserFactory, strict_group: int
) -> None:
    owner = users.create("dpo")
    logged_in(console, users, "helpdesk")
    made = post_on(
        console,
        "/enrollments",
        "/enrollments",
        {
            "email": owner.email.upper(),
            "group_id": str(strict_group),
            "uses_allowed": "2",
            "expires_in_hours": "24",
        },
    )
    assert made.status_code == 201
    url = re.search(r'data-testid="enrollment-url">([^<]+)<', made.text)
    assert url, made.text
    token = url.group(1).split("#token=", 1)[1]
    qr = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', made.text)
    assert qr and b"<svg" in base64.b64decode(qr.group(1))
    assert f"Enrollment for {owner.email} created" in made.text

    listing = console.get("/enrollments").text
    assert token not in listing, "the token is shown only once"
    assert "0 / 2" in listing and "usable" in listing

    device = enroll(client, token, name="Via console")
    assert device.id > 0
    enrollment_id = re.search(r'action="/enrollments/(\d+)/revoke"', listing)
    assert enrollment_id
    revoked = post_on(console, "/enrollments", f"/enrollments/{enrollment_id.group(1)}/revoke", {})
    assert revoked.status_code == 303
    assert "revoked" in console.get("/enrollments").text
    refused = client.post(
        "/api/device/v1/enroll", json={"token": token, "device": {"name": "x", "platform": "ios"}}
    )
    assert refused.status_code == 403


def test_enrollment_for_an_unknown_address_is_refused_with_a_message(
    console: TestClient, users: UserFactory
) -> None:
    logged_in(console, users, "admin")
    response = post_on(console, "/enrollments", "/enrollments", {"email": "nobody@example.com"})
    assert response.status_code == 422
    assert "No user has the e-mail address" in response.text
    assert 'data-testid="enrollment-url"' not in response.text


# Groups and policies ---------------------------------------------------------------------
def test_policy_editor_creates_edits_and_exports(
    console: TestClient,
    client: TestClient,
    users: UserFactory,
    admin_api: dict[str, str],
    db: Session,
) -> None:
    device = enrolled(client, admin_api, users.create("dpo").id, body=SWIPE_UNENCRYPTED)
    logged_in(console, users, "admin")
    name = f"Phones of {fake.company()}"[:90]
    form = {
        "name": name,
        "min_passcode_type": "pin",
        "min_passcode_length": "6",
        "max_auto_lock_seconds": "120",
        "encryption_required": "1",
        "max_failed_attempts": "10",
        "min_os_version_ios": "17.0",
        "block_rooted": "1",
        "agent_required": "1",
        "max_checkin_age_seconds": "86400",
        "consequence_encryption": "block_corporate_data",
        "grace_encryption": "3600",
    }
    created = post_on(console, "/policies/new", "/policies", form)
    assert created.status_code == 303, created.text
    listing = console.get("/policies").text
    policy_id = re.search(r'href="/policies/(\d+)">' + re.escape(str(escape(name))), listing)
    assert policy_id
    pid = policy_id.group(1)
    stored = client.get(f"/api/v1/compliance-policies/{pid}", headers=admin_api).json()["rules"]
    assert stored["min_passcode_type"] == "pin" and stored["min_passcode_length"] == 6
    assert stored["allow_simple_passcode"] is False
    assert stored["min_os_version"] == {"ios": "17.0"}
    assert stored["consequences"] == {
        "encryption": {"consequence": "block_corporate_data", "grace_seconds": 3600}
    }
    editor = console.get(f"/policies/{pid}").text
    assert 'value="block_corporate_data" selected' in editor and 'value="17.0"' in editor

    apple = console.get(f"/policies/{pid}/export.mobileconfig")
    assert apple.status_code == 200 and b"com.apple.mobiledevice.passwordpolicy" in apple.content
    android = console.get(f"/policies/{pid}/export.android.json")
    assert android.status_code == 200 and android.json()["encryptionPolicy"]

    bad = post_on(
        console,
        f"/policies/{pid}",
        f"/policies/{pid}",
        {**form, "min_passcode_type": "swipe", "max_failed_attempts": "many"},
    )
    assert bad.status_code == 422
    assert "must be a whole number" in bad.text

    relaxed = {"name": name, "encryption_required": "1"}
    assert post_on(console, f"/policies/{pid}", f"/policies/{pid}", relaxed).status_code == 303
    page = f"/devices/{device.id}"
    post_on(console, page, f"{page}/assignment", {"policy_id": pid})
    shown = console.get(page).text
    assert "Storage is not encrypted; policy requires encryption" in shown
    assert "Passcode is a swipe" not in shown


def test_groups_are_created_and_given_a_policy(
    console: TestClient, client: TestClient, admin_api: dict[str, str], users: UserFactory
) -> None:
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin_api)
    logged_in(console, users, "helpdesk")
    made = post_on(
        console, "/device-groups", "/device-groups", {"name": "Field engineers", "description": ""}
    )
    assert made.status_code == 303
    page = console.get("/device-groups").text
    assert "Field engineers" in page
    group_id = re.search(r'action="/device-groups/(\d+)/policy"', page)
    assert group_id
    url = f"/device-groups/{group_id.group(1)}/policy"
    assert post_on(console, "/device-groups", url, {"policy_id": str(policy.json()["id"])})
    group = client.get(f"/api/v1/device-groups/{group_id.group(1)}", headers=admin_api).json()
    assert group["policy_id"] == policy.json()["id"]
    duplicate = post_on(console, "/device-groups", "/device-groups", {"name": "Field engineers"})
    assert duplicate.status_code == 409


def test_commands_table_lists_history_with_who_and_result(
    console: TestClient,
    users: UserFactory,
    phone: EnrolledDevice,
    client: TestClient,
    admin_api: dict[str, str],
    db: Session,
) -> None:
    user = logged_in(console, users, "admin")
    page = f"/devices/{phone.id}"
    post_on(console, page, f"{page}/commands", {"type": "play_sound"})
    (command,) = phone.checkin(client, SWIPE_UNENCRYPTED).json()["commands"]
    result = {"status": "error", "reason": "Speaker muted by the user"}
    url = f"/api/device/v1/commands/{command['id']}/result"
    assert client.post(url, json=result, headers=phone.headers).status_code == 200
    row = console.get(page).text.split('data-testid="command-row"', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="error"' in row
    assert user.email in row and "Speaker muted by the user" in row
    assert db.scalar(select(Command.status).where(Command.id == command["id"])) == "error"
