"""Access decisions on SQLite and PostgreSQL: the JSON endpoint, the nginx auth_request
endpoint, tokens limited to that purpose, and a real nginx (Debian's package) on loopback
that serves a confidential document only to a compliant phone, with the reason for a
refusal in a header."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.models import AuditEvent
from tests.factories.devices import (
    SECURE,
    STRICT_POLICY,
    SWIPE_UNENCRYPTED,
    EnrolledDevice,
    create_enrollment,
    enroll,
)
from tests.factories.users import UserFactory
from tests.functional.agent_server import live_app_url
from tests.functional.test_api_errors import assert_clean_problem

__all__ = ["live_app_url"]  # the fixture, imported for pytest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def scoped_token(client: TestClient, users: UserFactory, role: str = "security") -> Any:
    person = users.create(role)
    return client.post(
        "/api/v1/tokens",
        json={"name": "proxy", "user_id": person.id, "scope": "access-decisions"},
        headers=users.auth("admin"),
    )


@pytest.fixture
def world(client: TestClient, users: UserFactory) -> dict[str, Any]:
    admin = users.auth("admin")
    policy = client.post("/api/v1/compliance-policies", json=STRICT_POLICY, headers=admin).json()
    owner = users.create("helpdesk")
    phone = enroll(client, create_enrollment(client, admin, owner.id)["token"])
    other_owner = users.create("helpdesk")
    other = enroll(client, create_enrollment(client, admin, other_owner.id)["token"])
    for device in (phone, other):
        assigned = client.patch(
            f"/api/v1/devices/{device.id}", json={"policy_id": policy["id"]}, headers=admin
        )
        assert assigned.is_success, assigned.text
    assert phone.checkin(client, SWIPE_UNENCRYPTED).status_code == 200
    assert other.checkin(client, SECURE).status_code == 200
    issued = scoped_token(client, users)
    assert issued.status_code == 201, issued.text
    assert issued.json()["scope"] == "access-decisions"
    return {
        "owner": owner,
        "other_owner": other_owner,
        "phone": phone,
        "other": other,
        "proxy": {"Authorization": f"Bearer {issued.json()['token']}"},
    }


def ask(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    response = client.post("/api/v1/access-decisions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_decisions_follow_the_phone(client: TestClient, world: dict[str, Any], db: Session) -> None:
    proxy, owner, phone = world["proxy"], world["owner"], world["phone"]
    denied = ask(client, proxy, user=owner.email, device_id=phone.id, label="confidential")
    assert denied["allow"] is False and denied["decision"] == "deny"
    assert any("swipe" in r.lower() for r in denied["reasons"])
    # Below the protected label anything goes; the mailbox view counts every phone.
    assert ask(client, proxy, user=owner.email, label="internal")["allow"] is True
    assert ask(client, proxy, user=owner.id, label="restricted")["allow"] is False
    good = world["other_owner"]
    allowed = ask(client, proxy, user=good.email.upper(), label="restricted")
    assert allowed == {
        "allow": True,
        "decision": "allow",
        "reasons": [],
        "label": "restricted",
        "user_id": good.id,
        "device_id": None,
    }
    # Fail closed: a hash nobody inspected counts as protected.
    unknown = ask(client, proxy, user=owner.email, sha256="ab" * 32)
    assert unknown["allow"] is False and unknown["label"] == "confidential"
    assert "not been inspected" in unknown["reasons"][0]
    assert ask(client, proxy, user=good.id, sha256="ab" * 32)["allow"] is True
    # A user id may come as its digits in a string, as nginx's X-Spillguard-User carries it.
    by_text = ask(client, proxy, user=str(good.id), label="restricted")
    assert (by_text["allow"], by_text["user_id"]) == (True, good.id)
    # Someone else's phone, an unknown person.
    theirs = ask(client, proxy, user=owner.email, device_id=world["other"].id, label="restricted")
    assert theirs["reasons"] == ["This phone is not enrolled to this person."]
    nobody = ask(client, proxy, user="nobody@example.org", label="restricted")
    assert nobody["allow"] is False
    # Denials are audited; allows are not.
    denials = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "exposure:access:denied")
    ).all()
    assert len(denials) == 5


def test_a_limited_token_does_only_that(
    client: TestClient, world: dict[str, Any], users: UserFactory
) -> None:
    proxy = world["proxy"]
    refused = client.get("/api/v1/exposure/deliveries", headers=proxy)
    assert_clean_problem(refused, 403)
    assert "limited to access-decisions" in refused.json()["detail"]
    assert_clean_problem(client.get("/api/v1/devices", headers=proxy), 403)
    # /me tells what this token may do: its purpose, not everything its role could.
    me = client.get("/api/v1/me", headers=proxy).json()
    assert me["scope"] == "access-decisions"
    assert me["permissions"] == ["exposure:decide"]
    whole = client.get("/api/v1/me", headers=users.auth("security")).json()
    assert whole["scope"] is None and len(whole["permissions"]) > 10
    # A role that cannot decide cannot hold such a token.
    assert_clean_problem(scoped_token(client, users, role="helpdesk"), 422)
    # Without the purpose, a helpdesk token cannot ask either.
    assert_clean_problem(
        client.post(
            "/api/v1/access-decisions",
            json={"user": 1, "label": "public"},
            headers=users.auth("helpdesk"),
        ),
        403,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"user": "x@example.org"},
        {"user": "x@example.org", "label": "top-secret"},
        {"user": "x@example.org", "label": "public", "sha256": "zz"},
        {"user": 0, "label": "public"},
        {"user": "x@example.org", "label": "public", "extra": True},
        {"label": "public"},
    ],
)
def test_bad_decision_requests(client: TestClient, world: dict[str, Any], body: Any) -> None:
    response = client.post("/api/v1/access-decisions", json=body, headers=world["proxy"])
    assert_clean_problem(response, 422)


def test_the_nginx_endpoint(client: TestClient, world: dict[str, Any]) -> None:
    proxy, phone, other = world["proxy"], world["phone"], world["other"]
    url = "/api/v1/access-decisions/nginx"

    def device(d: EnrolledDevice) -> dict[str, str]:
        return {"X-Spillguard-Device": f"{d.id}.{d.credential}", "X-Spillguard-Label": "restricted"}

    ok = client.get(url, headers={**proxy, **device(other)})
    assert ok.status_code == 204
    assert ok.headers["x-spillguard-decision"] == "allow"
    denied = client.get(url, headers={**proxy, **device(phone)})
    assert_clean_problem(denied, 403)
    assert denied.headers["x-spillguard-decision"] == "deny"
    assert "swipe" in denied.headers["x-spillguard-reason"].lower()
    # The phone's own person only: naming someone else is a denial.
    named = client.get(
        url, headers={**proxy, **device(other), "X-Spillguard-User": world["owner"].email}
    )
    assert named.status_code == 403
    # X-Spillguard-User takes what `user` of POST /api/v1/access-decisions takes: the
    # owner's e-mail address (any case) or user id.
    owner_of_other = world["other_owner"]
    for person in (owner_of_other.email, owner_of_other.email.upper(), str(owner_of_other.id)):
        as_owner = client.get(url, headers={**proxy, **device(other), "X-Spillguard-User": person})
        assert as_owner.status_code == 204, (person, as_owner.headers.get("x-spillguard-reason"))
    by_id = client.get(
        url, headers={**proxy, **device(other), "X-Spillguard-User": str(world["owner"].id)}
    )
    assert by_id.status_code == 403
    assert by_id.headers["x-spillguard-reason"] == "This phone is not enrolled to this person."
    no_phone = client.get(url, headers={**proxy, "X-Spillguard-Label": "restricted"})
    assert_clean_problem(no_phone, 401)
    assert no_phone.headers["www-authenticate"] == "Device"
    forged = client.get(url, headers={**proxy, "X-Spillguard-Device": f"{phone.id}.sgd_forged"})
    assert_clean_problem(forged, 401)
    no_token = client.get(url, headers=device(other))
    assert_clean_problem(no_token, 401)
    # Headers it cannot read are a denial (403, the reason in its header), never a 422:
    # nginx's auth_request knows only 2xx, 401 and 403 and makes anything else a 500.
    for bad, why in (
        ({"X-Spillguard-Label": "secret"}, "X-Spillguard-Label is not one of"),
        ({"X-Spillguard-Content-Sha256": "nothex"}, "not a SHA-256 digest"),
        ({"X-Spillguard-User": "u" * 321 + "@example.com"}, "X-Spillguard-User is not"),
    ):
        refused = client.get(url, headers={**proxy, **device(other), **bad})
        assert_clean_problem(refused, 403)
        assert refused.headers["x-spillguard-decision"] == "deny"
        assert why in refused.headers["x-spillguard-reason"]
    assert client.post(url, headers={**proxy, **device(other)}).status_code == 204


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx_in_front(tmp_path: Path, live_app_url: str, world: dict[str, Any]) -> Iterator[str]:
    """Debian's nginx on a loopback port, guarding /documents/ with auth_request."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: .ci/run installs Debian's nginx-light")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "renewals.csv").write_text("Customer ID,Renewal\nC0000001,2027-01-31\n")
    port = free_port()
    token = world["proxy"]["Authorization"]
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /documents/ {{
            auth_request /_spillguard;
            auth_request_set $sg_reason $upstream_http_x_spillguard_reason;
            add_header X-Spillguard-Reason $sg_reason always;
            alias {docs}/;
        }}
        location = /_spillguard {{
            internal;
            proxy_pass {live_app_url}/api/v1/access-decisions/nginx;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization "{token}";
            proxy_set_header X-Spillguard-Label confidential;
        }}
    }}
}}
"""
    )
    log = tmp_path / "error.log"
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(10)
                out = log.read_text(errors="replace") if log.exists() else "(no error log)"
                pytest.fail(f"nginx did not start: {out}")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_a_real_nginx_guards_a_document(nginx_in_front: str, world: dict[str, Any]) -> None:
    phone, other = world["phone"], world["other"]
    url = f"{nginx_in_front}/documents/renewals.csv"
    with httpx2.Client(timeout=10) as http:
        good = http.get(url, headers={"X-Spillguard-Device": f"{other.id}.{other.credential}"})
        assert good.status_code == 200, good.text
        assert "C0000001" in good.text
        bad = http.get(url, headers={"X-Spillguard-Device": f"{phone.id}.{phone.credential}"})
        assert bad.status_code == 403
        assert "C0000001" not in bad.text
        assert "swipe" in bad.headers["x-spillguard-reason"].lower()
        anonymous = http.get(url)
        assert anonymous.status_code == 401
