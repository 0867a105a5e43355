"""First end-to-end checks of the API contract (more live in tests/functional)."""

from fastapi.testclient import TestClient

from tests.factories.users import UserFactory


def test_me_requires_token_and_reports_role(client: TestClient, users: UserFactory) -> None:
    anonymous = client.get("/api/v1/me")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    response = client.get("/api/v1/me", headers=users.auth("auditor"))
    assert response.status_code == 200
    assert response.json()["role"] == "auditor"
