"""The API tokens API end to end: issuing (secret shown once), role delegation, revocation,
expiry, disabled owners and malformed credentials."""

from __future__ import annotations

from datetime import timedelta

from faker import Faker
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from spillguard.core.db import utcnow
from spillguard.core.models import ApiToken, User
from tests.factories.users import UserFactory

fake = Faker("en_GB")
TOKENS = "/api/v1/tokens"
ME = "/api/v1/me"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body


def assert_rejected(client: TestClient, secret: str) -> dict:
    """The token no longer opens anything: 401 problem with a Bearer challenge."""
    response = client.get(ME, headers=bearer(secret))
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    return body


def token_name() -> str:
    return f"{fake.city()} laptop"


# Issuing -------------------------------------------------------------------------------
def test_create_own_token_shows_the_secret_once(client: TestClient, users: UserFactory) -> None:
    owner = users.create("security")
    headers = bearer(users.token(owner))
    name = token_name()
    response = client.post(TOKENS, json={"name": name, "expires_days": 30}, headers=headers)
    assert response.status_code == 201, response.text
    issued = response.json()
    secret = issued["token"]
    assert secret.startswith("sgt_")
    assert len(secret) >= len("sgt_") + 22, "at least 128 bits of randomness"
    assert secret.startswith(issued["prefix"]) and issued["prefix"] != secret
    assert (issued["user_id"], issued["name"], issued["role"]) == (owner.id, name, "security")
    assert issued["expires_at"] and issued["revoked_at"] is None

    # Usable at once, as its owner.
    me = client.get(ME, headers=bearer(secret))
    assert me.status_code == 200
    assert me.json()["email"] == owner.email
    assert me.json()["via"] == "token"

    # Never shown again: not in the listing, not by any token.
    for who in (headers, bearer(secret), users.auth("admin")):
        listing = client.get(TOKENS, headers=who)
        assert listing.status_code == 200
        assert secret not in listing.text
        assert secret[len(issued["prefix"]) :] not in listing.text
        assert all("token" not in item for item in listing.json()["items"])
        assert issued["id"] in {t["id"] for t in listing.json()["items"]}


def test_two_tokens_have_different_secrets(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("dpo")
    first = client.post(TOKENS, json={"name": "one"}, headers=headers).json()["token"]
    second = client.post(TOKENS, json={"name": "two"}, headers=headers).json()["token"]
    assert first != second


def test_listing_shows_own_tokens_only_except_to_admins(
    client: TestClient, users: UserFactory
) -> None:
    helpdesk = users.create("helpdesk")
    auditor = users.create("auditor")
    helpdesk_secret = users.token(helpdesk, name="helpdesk phone")
    users.token(helpdesk, name="helpdesk laptop")
    auditor_secret = users.token(auditor, name="auditor laptop")
    admin_headers = users.auth("admin")

    own = client.get(TOKENS, headers=bearer(helpdesk_secret)).json()
    assert own["total"] == 2
    assert {t["user_id"] for t in own["items"]} == {helpdesk.id}

    theirs = client.get(TOKENS, headers=bearer(auditor_secret)).json()
    assert theirs["total"] == 1
    assert theirs["items"][0]["name"] == "auditor laptop"

    everything = client.get(TOKENS, params={"limit": 2}, headers=admin_headers).json()
    assert everything["total"] == 4
    assert len(everything["items"]) == 2
    rest = client.get(TOKENS, params={"limit": 2, "offset": 2}, headers=admin_headers).json()
    ids = [t["id"] for t in everything["items"] + rest["items"]]
    assert len(set(ids)) == 4, "pages overlap"
    assert ids == sorted(ids, reverse=True), "newest first"


def test_bad_token_requests_are_422_naming_the_field(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    for payload, field in (
        ({}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"name": "   "}, "name"),
        ({"name": "tab\tin name"}, "name"),
        ({"name": "x" * 101}, "body.name"),
        ({"name": "ok", "expires_days": 0}, "body.expires_days"),
        ({"name": "ok", "expires_days": 3651}, "body.expires_days"),
        ({"name": "ok", "expires_days": "soon"}, "body.expires_days"),
        ({"name": "ok", "role": "root"}, "body.role"),
        ({"name": "ok", "user_id": 0}, "body.user_id"),
        ({"name": "ok", "secret": "mine"}, "body.secret"),
    ):
        body = assert_problem(client.post(TOKENS, json=payload, headers=headers), 422)
        fields = {e["field"] for e in body.get("errors", [])} | {body.get("field")}
        assert field in fields, (payload, body)
    assert client.get(TOKENS, headers=headers).json()["total"] == 1, "nothing was issued"


# Role delegation -----------------------------------------------------------------------
def test_admin_may_take_a_narrower_token(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    response = client.post(TOKENS, json={"name": "read only", "role": "auditor"}, headers=headers)
    assert response.status_code == 201
    narrow = bearer(response.json()["token"])
    assert client.get(ME, headers=narrow).json()["role"] == "auditor"
    assert client.get("/api/v1/audit-events", headers=narrow).status_code == 200
    assert_problem(
        client.post(
            "/api/v1/users",
            json={"email": "x@example.com", "role": "admin", "password": "a long password!"},
            headers=narrow,
        ),
        403,
    )
    # ...and that narrower token cannot mint a wider one.
    body = assert_problem(
        client.post(TOKENS, json={"name": "escalate", "role": "admin"}, headers=narrow), 403
    )
    assert "admin" in body["detail"]


def test_admin_issues_tokens_for_others_within_their_role(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("admin")
    auditor = users.create("auditor")
    response = client.post(
        TOKENS, json={"name": "for the auditor", "user_id": auditor.id}, headers=headers
    )
    assert response.status_code == 201
    assert response.json()["user_id"] == auditor.id
    assert response.json()["role"] == "auditor"
    assert client.get(ME, headers=bearer(response.json()["token"])).json()["email"] == auditor.email

    body = assert_problem(
        client.post(
            TOKENS,
            json={"name": "too much", "user_id": auditor.id, "role": "admin"},
            headers=headers,
        ),
        403,
    )
    assert "auditor" in body["detail"]
    assert_problem(
        client.post(TOKENS, json={"name": "nobody", "user_id": 987654}, headers=headers), 404
    )


def test_helpdesk_cannot_get_an_admin_token_or_tokens_for_others(
    client: TestClient, users: UserFactory
) -> None:
    helpdesk = users.create("helpdesk")
    admin = users.create("admin")
    headers = bearer(users.token(helpdesk))
    body = assert_problem(
        client.post(TOKENS, json={"name": "promote me", "role": "admin"}, headers=headers), 403
    )
    assert "helpdesk" in body["detail"]
    assert_problem(
        client.post(TOKENS, json={"name": "as admin", "user_id": admin.id}, headers=headers), 403
    )
    # A role with other permissions (not a subset of helpdesk's) is refused as well.
    assert_problem(
        client.post(TOKENS, json={"name": "sideways", "role": "auditor"}, headers=headers), 403
    )
    assert client.get(TOKENS, headers=headers).json()["total"] == 1


def test_disabled_user_gets_no_new_token(client: TestClient, users: UserFactory) -> None:
    headers = users.auth("admin")
    person = users.create("dpo")
    client.patch(f"/api/v1/users/{person.id}", json={"disabled": True}, headers=headers)
    body = assert_problem(
        client.post(TOKENS, json={"name": "x", "user_id": person.id}, headers=headers), 422
    )
    assert "disabled" in body["detail"]


def test_demoted_owner_loses_the_powers_of_older_tokens(
    client: TestClient, users: UserFactory
) -> None:
    first = users.create("admin")
    second = users.create("admin")
    old_admin_token = users.token(second)
    assert client.get("/api/v1/users", headers=bearer(old_admin_token)).status_code == 200
    response = client.patch(
        f"/api/v1/users/{second.id}", json={"role": "helpdesk"}, headers=users.auth("admin")
    )
    assert response.status_code == 200
    assert first.id != second.id
    body = assert_rejected(client, old_admin_token)
    assert "role" in body["detail"]
    assert_problem(client.get("/api/v1/users", headers=bearer(old_admin_token)), 401)


# Revocation, expiry, disabled owners ---------------------------------------------------
def test_revoked_token_is_refused_afterwards(client: TestClient, users: UserFactory) -> None:
    owner = users.create("auditor")
    keep = users.token(owner, name="keep")
    doomed_headers = bearer(users.token(owner, name="doomed"))
    assert client.get(ME, headers=doomed_headers).status_code == 200
    listing = client.get(TOKENS, headers=bearer(keep)).json()["items"]
    doomed_id = next(t["id"] for t in listing if t["name"] == "doomed")
    response = client.delete(f"{TOKENS}/{doomed_id}", headers=bearer(keep))
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    body = assert_problem(client.get(ME, headers=doomed_headers), 401)
    assert "revoked" in body["detail"]
    # Revoking twice is harmless; the other token still works.
    assert client.delete(f"{TOKENS}/{doomed_id}", headers=bearer(keep)).status_code == 200
    assert client.get(ME, headers=bearer(keep)).status_code == 200


def test_a_token_may_revoke_itself(client: TestClient, users: UserFactory) -> None:
    owner = users.create("dpo")
    secret = users.token(owner)
    token_id = client.get(TOKENS, headers=bearer(secret)).json()["items"][0]["id"]
    assert client.delete(f"{TOKENS}/{token_id}", headers=bearer(secret)).status_code == 200
    assert_rejected(client, secret)


def test_only_admins_revoke_other_peoples_tokens(client: TestClient, users: UserFactory) -> None:
    victim = users.create("security")
    victim_secret = users.token(victim)
    victim_token_id = client.get(TOKENS, headers=bearer(victim_secret)).json()["items"][0]["id"]
    helpdesk_headers = users.auth("helpdesk")
    assert_problem(client.delete(f"{TOKENS}/{victim_token_id}", headers=helpdesk_headers), 403)
    assert client.get(ME, headers=bearer(victim_secret)).status_code == 200

    assert (
        client.delete(f"{TOKENS}/{victim_token_id}", headers=users.auth("admin")).status_code == 200
    )
    assert_rejected(client, victim_secret)


def test_revoking_an_unknown_token_is_404(client: TestClient, users: UserFactory) -> None:
    assert_problem(client.delete(f"{TOKENS}/55555", headers=users.auth("admin")), 404)


def test_expired_token_is_refused(client: TestClient, users: UserFactory, db: Session) -> None:
    owner = users.create("auditor")
    secret = users.token(owner, expires_days=1)
    assert client.get(ME, headers=bearer(secret)).status_code == 200
    token = db.query(ApiToken).filter(ApiToken.user_id == owner.id).one()
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    body = assert_rejected(client, secret)
    assert "expired" in body["detail"]


def test_token_of_a_disabled_user_is_refused(
    client: TestClient, users: UserFactory, db: Session
) -> None:
    owner = users.create("security")
    secret = users.token(owner)
    assert client.get(ME, headers=bearer(secret)).status_code == 200
    # Disabled behind the service's back (as an operator with SQL would): still refused.
    db.get(User, owner.id).disabled = True
    db.commit()
    body = assert_rejected(client, secret)
    assert "disabled" in body["detail"]


def test_disabling_through_the_api_revokes_for_good(client: TestClient, users: UserFactory) -> None:
    admin_headers = users.auth("admin")
    owner = users.create("helpdesk")
    secret = users.token(owner)
    path = f"/api/v1/users/{owner.id}"
    assert client.patch(path, json={"disabled": True}, headers=admin_headers).status_code == 200
    assert_rejected(client, secret)
    assert client.patch(path, json={"disabled": False}, headers=admin_headers).status_code == 200
    # Enabling the person again does not bring back tokens issued before.
    assert_rejected(client, secret)


# Malformed credentials -----------------------------------------------------------------
def test_malformed_authorization_headers_are_401_with_bearer_challenge(
    client: TestClient, users: UserFactory
) -> None:
    good = users.token(users.create("admin"))
    for value in (
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer",
        "Bearer    ",
        good,  # no scheme
        f"Token {good}",
        "Bearer " + good[len("sgt_") :],  # no prefix
        "Bearer sgt_" + "A" * 300,  # oversized
        "Bearer sgt_doesnotexist",
        "Bearer " + good[:-1] + ("A" if good[-1] != "A" else "B"),  # one character off
    ):
        response = client.get(ME, headers={"Authorization": value})
        body = assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer", value
        assert good not in response.text
        assert "Traceback" not in response.text
        assert body["type"].endswith("/authentication-required")
    # Scheme names are case-insensitive (RFC 9110).
    assert client.get(ME, headers={"Authorization": f"bearer {good}"}).status_code == 200
