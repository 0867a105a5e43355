"""Schemathesis against the real app's OpenAPI document, as an administrator.

Every documented operation gets generated requests, valid and invalid; no answer may be a
server error, and every answer must match the document: its status, media type and body
schema (errors are RFC 9457 problems, documented as the "default" response).

schemathesis' own pytest integration (``from_fixture``/``parametrize``) cannot run under
pytest 9, so each operation's strategy is driven by hypothesis directly.
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from spillguard.core.models import User
from tests.factories.users import UserFactory

# Not negative_data_rejection: every query value is a string on the wire, and it counts e.g.
# object_id=false as a boolean "accepted by mistake". Wrong JSON types in bodies are covered
# by test_api_errors.py.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Modest, so each backend's run stays well under a minute (14 operations).
EXAMPLES_PER_OPERATION = 25


def keep_an_admin(users: UserFactory, db: Session) -> Callable[[], dict[str, str]]:
    """Headers of an administrator, restored before each call.

    Generated requests may demote or disable the administrator or revoke its token (that
    is part of the API); restoring keeps the later requests authorised so they reach the
    code behind the authorisation check.
    """
    admin = users.create("admin")

    def headers() -> dict[str, str]:
        user = db.get(User, admin.id)
        assert user is not None
        user.role, user.disabled = "admin", False
        db.commit()
        return {"Authorization": f"Bearer {users.token(user)}"}

    return headers


def test_api_conforms_to_its_openapi_document(
    app: FastAPI, users: UserFactory, db: Session
) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    admin_headers = keep_an_admin(users, db)
    failures: list[str] = []
    labels: list[str] = []
    seen_statuses: set[int] = set()

    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=cases)
        def exercise(case: Case) -> None:
            response = case.call_and_validate(headers=admin_headers(), checks=CHECKS)
            seen_statuses.add(response.status_code)

        try:
            exercise()
        except Exception as exc:  # collect every operation's failures, then report them all
            failures.append(f"{operation.label}:\n{exc}")

    assert "POST /api/v1/users" in labels and "GET /api/v1/audit-events" in labels
    assert len(labels) >= 14, labels
    assert failures == [], "\n\n".join(failures)
    # The run reached the code behind the checks, not only the input validation.
    assert {200, 201, 422} <= seen_statuses, seen_statuses
