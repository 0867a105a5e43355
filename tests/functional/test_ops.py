"""Operations endpoints: liveness, readiness, Prometheus metrics, and the request id every
response carries."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from spillguard.core import db as dbmod
from tests.factories.users import UserFactory

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def requests_total(text: str) -> dict[tuple[str, str, str], float]:
    """spillguard_http_requests_total by (method, route, status), parsed as Prometheus does."""
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spillguard_http_requests_total":
                labels = sample.labels
                counts[(labels["method"], labels["route"], labels["status"])] = sample.value
    return counts


def test_healthz_answers_without_credentials(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_migration_head(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["migration_head"] == dbmod.migration_head()
    assert body["migration_current"] == body["migration_head"]
    assert body["migration_head"], "a migration head exists"


def test_metrics_needs_a_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "spillguard_http_requests_total" not in response.text


def test_metrics_refused_to_roles_without_metrics_view(
    client: TestClient, users: UserFactory
) -> None:
    for role in ("helpdesk", "dpo"):
        response = client.get("/metrics", headers=users.auth(role))
        assert response.status_code == 403, role
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "spillguard_http_requests_total" not in response.text


def test_metrics_in_prometheus_format_for_an_auditor(
    client: TestClient, users: UserFactory
) -> None:
    headers = users.auth("auditor")
    before = requests_total(client.get("/metrics", headers=headers).text)
    client.get("/healthz")
    client.get("/healthz")
    client.get("/api/v1/users/4242", headers=headers)
    client.get("/api/v1/no-such-route")

    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=" in response.headers["content-type"]
    assert "# TYPE spillguard_http_requests_total counter" in response.text
    assert "spillguard_build_info" in response.text
    after = requests_total(response.text)

    def grew(key: tuple[str, str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("GET", "/healthz", "200")) == 2
    # Labelled by route template, never by the concrete path (no ids in label values).
    assert grew(("GET", "/api/v1/users/{user_id}", "404")) == 1
    assert grew(("GET", "<unmatched>", "404")) == 1
    assert not any("4242" in route or "no-such-route" in route for _, route, _ in after)
    for role in ("admin", "security"):
        assert client.get("/metrics", headers=users.auth(role)).status_code == 200


def test_metrics_never_show_secrets(client: TestClient, users: UserFactory) -> None:
    secret = users.token(users.create("auditor"))
    response = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert secret not in response.text


def test_every_response_carries_a_request_id(client: TestClient, users: UserFactory) -> None:
    admin = users.auth("admin")
    responses = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/metrics"),
        client.get("/api/v1/users", headers=admin),
        client.post("/api/v1/users", json={"email": "x"}, headers=admin),
        client.get("/api/v1/nothing"),
        client.get("/users", headers={"accept": "text/html"}, follow_redirects=False),
        client.get("/login"),
        client.get("/static/app.css"),
        client.get("/api/openapi.json"),
        client.delete("/api/v1/users"),
    ]
    seen = set()
    for response in responses:
        rid = response.headers.get("x-request-id")
        assert rid and REQUEST_ID.match(rid), (response.request.url, response.status_code)
        seen.add(rid)
    assert len(seen) == len(responses), "request ids are unique"


def test_sane_incoming_request_id_is_echoed(client: TestClient, users: UserFactory) -> None:
    for rid in ("abc-123", "lb.7f3a_99", "A" * 64):
        assert client.get("/healthz", headers={"x-request-id": rid}).headers["x-request-id"] == rid
    # ...and it is what the audit trail records for the change.
    admin = users.auth("admin")
    response = client.post(
        "/api/v1/tokens", json={"name": "traced"}, headers={**admin, "x-request-id": "trace-42"}
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "trace-42"
    events = client.get(
        "/api/v1/audit-events", params={"action": "core:token:created"}, headers=admin
    ).json()["items"]
    assert "trace-42" in {e["request_id"] for e in events}


def test_insane_incoming_request_id_is_replaced(client: TestClient) -> None:
    for rid in ("", "has space", "A" * 65, "<script>", "a;b", "x\u00e9", "../../etc"):
        response = client.get("/healthz", headers={"x-request-id": rid.encode("utf-8")})
        echoed = response.headers["x-request-id"]
        assert echoed != rid
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed
