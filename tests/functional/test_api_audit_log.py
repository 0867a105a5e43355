"""The audit log over the API: checkpoints, proofs that verify against the published key,
RFC 9457 problems for bad input, and only audit:view holders get in."""

from __future__ import annotations

import base64

from faker import Faker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from spillguard.audit import merkle
from spillguard.audit.checkpoints import LogKey, parse_checkpoint
from spillguard.audit.log import run_sequencer
from spillguard.core.audit import AuditAction, record_event
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from tests.factories.users import UserFactory

fake = Faker("en_GB")
BASE = "/api/v1/audit"


def add_events(db: Session, n: int) -> list[int]:
    principal = Principal.system("tests")
    ids = [
        record_event(
            db, principal, AuditAction.USER_CREATED, object_type="user", object_id=fake.pyint()
        ).id
        for _ in range(n)
    ]
    db.commit()
    return ids


def auditor(users: UserFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {users.token(users.create('auditor'))}"}


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()  # type: ignore[no-any-return]


def test_checkpoints_and_proofs_verify_against_the_published_key(
    app: FastAPI,
    client: TestClient,
    db: Session,
    users: UserFactory,
    keys: KeyRing,
    settings: Settings,
) -> None:
    headers = auditor(users)
    assert problem(client.get(f"{BASE}/checkpoints/latest", headers=headers), 404)["title"] == (
        "No checkpoint yet"
    )
    ids = add_events(db, 11)
    run_sequencer(app.state.session_factory, keys, settings)

    key_doc = client.get(f"{BASE}/log-key", headers=headers).json()
    key = LogKey(b64(key_doc["public_key"]))
    assert key_doc["key_id"] == key.key_id and key_doc["algorithm"] == "Ed25519"
    assert key_doc["note_verifier_key"].startswith("spillguard+")
    assert "BEGIN PUBLIC KEY" in key_doc["public_key_pem"]

    latest = client.get(f"{BASE}/checkpoints/latest", headers=headers).json()
    note = parse_checkpoint(latest["checkpoint"])
    note.verify(key)
    size, root = note.size, note.root
    assert size == latest["tree_size"] >= 11 and b64(latest["root_hash"]) == root

    page = client.get(f"{BASE}/checkpoints", params={"limit": 5}, headers=headers).json()
    assert page["total"] == 1 and page["items"][0] == latest

    for event_id in (ids[0], ids[6], ids[-1]):
        proof = client.get(
            f"{BASE}/proofs/inclusion", params={"event_id": event_id}, headers=headers
        ).json()
        assert proof["checkpoint"] == latest["checkpoint"] and proof["tree_size"] == size
        merkle.verify_inclusion(
            proof["leaf_index"],
            size,
            merkle.leaf_hash(b64(proof["entry"])),
            [b64(p) for p in proof["inclusion_proof"]],
            root,
        )
    # More events, a later tree: consistent with the checkpoint.
    add_events(db, 6)
    run_sequencer(app.state.session_factory, keys, settings)
    response = client.get(
        f"{BASE}/proofs/consistency", params={"first": size, "second": size + 6}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert b64(body["first_root"]) == root
    merkle.verify_consistency(
        size,
        size + 6,
        root,
        b64(body["second_root"]),
        [b64(p) for p in body["consistency_proof"]],
    )
    at_size = client.get(
        f"{BASE}/proofs/inclusion",
        params={"event_id": ids[3], "tree_size": size + 6},
        headers=headers,
    ).json()
    assert at_size["tree_size"] == size + 6 and at_size["root_hash"] == body["second_root"]


def test_bad_input_gets_problems_not_errors(
    app: FastAPI,
    client: TestClient,
    db: Session,
    users: UserFactory,
    keys: KeyRing,
    settings: Settings,
) -> None:
    headers = auditor(users)
    ids = add_events(db, 4)
    run_sequencer(app.state.session_factory, keys, settings)
    late = add_events(db, 1)[0]

    def inclusion(**params: object) -> object:
        return client.get(f"{BASE}/proofs/inclusion", params=params, headers=headers)

    assert problem(inclusion(event_id=10**9), 404)["title"] == "Unknown audit event"
    assert problem(inclusion(event_id=late), 409)["title"] == "Not yet in the log"
    size = client.get(f"{BASE}/checkpoints/latest", headers=headers).json()["tree_size"]
    assert size >= 4
    assert problem(inclusion(event_id=ids[0], tree_size=10**6), 422)["title"] == (
        "Tree size out of range"
    )
    problem(inclusion(event_id=0), 422)
    problem(inclusion(event_id="x"), 422)
    problem(inclusion(), 422)

    def consistency(**params: object) -> object:
        return client.get(f"{BASE}/proofs/consistency", params=params, headers=headers)

    assert problem(consistency(first=3, second=2), 422)["title"] == "Tree size out of range"
    problem(consistency(first=1, second=10**6), 422)
    problem(consistency(first=0, second=1), 422)
    problem(consistency(first=1), 422)
    assert consistency(first=1, second=size).status_code == 200


def test_only_audit_viewers_read_the_log(client: TestClient, users: UserFactory) -> None:
    paths = [
        f"{BASE}/checkpoints/latest",
        f"{BASE}/checkpoints",
        f"{BASE}/proofs/inclusion?event_id=1",
        f"{BASE}/proofs/consistency?first=1&second=1",
        f"{BASE}/log-key",
    ]
    security = {"Authorization": f"Bearer {users.token(users.create('security'))}"}
    for path in paths:
        problem(client.get(path), 401)
        assert problem(client.get(path, headers=security), 403)["title"] == "Permission denied"
    admin = {"Authorization": f"Bearer {users.token(users.create('admin'))}"}
    assert client.get(f"{BASE}/log-key", headers=admin).status_code == 200
