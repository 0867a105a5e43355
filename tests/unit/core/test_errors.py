"""Domain errors and their RFC 9457 problem documents."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from spillguard.core.errors import (
    PROBLEM_BASE,
    AuthenticationRequired,
    Conflict,
    DomainError,
    InvalidInput,
    MalformedBody,
    NotFound,
    PermissionDenied,
    Throttled,
    problem,
)
from spillguard.core.sessions import InvalidCredentials
from tests.factories.users import UserFactory


def test_problem_has_the_rfc9457_members() -> None:
    body = problem(404, "Not found", "No user with id 7.", "not-found")
    assert body == {
        "type": PROBLEM_BASE + "not-found",
        "title": "Not found",
        "status": 404,
        "detail": "No user with id 7.",
    }


def test_problem_without_a_slug_is_about_blank() -> None:
    """RFC 9457 §4.2.1: 'about:blank' when the problem has no more specific type."""
    assert problem(405, "Method not allowed", "GET only.")["type"] == "about:blank"


def test_a_parser_failure_is_a_malformed_body_naming_what_could_not_be_read() -> None:
    missing = MalformedBody.from_parser("multipart/form-data", "Missing boundary in multipart.")
    assert (missing.status, missing.slug, missing.title) == (
        400,
        "malformed-body",
        "Malformed request body",
    )
    assert missing.detail.startswith(
        "The multipart/form-data body cannot be read: missing boundary in multipart. "
        "Let the HTTP client build the body"
    )
    too_many = MalformedBody.from_parser(
        "multipart/form-data; boundary=x", "Too many files. Maximum number of files is 1."
    )
    assert too_many.detail == (
        "The multipart/form-data body cannot be read: too many files. Maximum number of files is 1."
    )
    generic = MalformedBody.from_parser(
        "application/json; charset=utf-8", "There was an error parsing the body"
    )
    assert generic.detail == "The application/json body cannot be read."
    # A content type the client made up is not echoed back.
    odd = MalformedBody.from_parser("x-<script>/y", "Invalid multipart data.")
    assert odd.detail == "The request body cannot be read: invalid multipart data."


def test_problem_without_detail_omits_the_member() -> None:
    body = problem(500, "Server error")
    assert "detail" not in body
    assert body["status"] == 500


def test_problem_carries_extension_members() -> None:
    body = problem(422, "Invalid input", "Bad.", "invalid-input", field="email", errors=[1])
    assert body["field"] == "email"
    assert body["errors"] == [1]
    assert body["type"].startswith("https://")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput, 422),
        (AuthenticationRequired, 401),
        (PermissionDenied, 403),
        (NotFound, 404),
        (Conflict, 409),
    ],
)
def test_each_error_maps_to_its_status(error: type[DomainError], status: int) -> None:
    exc = error("Something specific.", field="x")
    assert exc.status == status
    assert exc.detail == "Something specific."
    assert exc.extra == {"field": "x"}
    assert exc.keep_changes is False  # refused work is rolled back
    body = problem(exc.status, exc.title, exc.detail, exc.slug, **exc.extra)
    assert body["status"] == status
    assert body["type"] == PROBLEM_BASE + exc.slug


def test_throttled_keeps_changes_and_says_when_to_retry() -> None:
    exc = Throttled("Too many failed logins.", retry_after=42)
    assert exc.status == 429
    assert exc.retry_after == 42
    assert exc.keep_changes is True  # the attempt must still be counted and audited


def test_invalid_credentials_keep_changes() -> None:
    """A wrong password is refused, yet the failure must be committed for throttling."""
    assert InvalidCredentials("wrong").keep_changes is True
    assert InvalidCredentials("wrong").status == 401


def test_api_errors_are_problem_documents(client: TestClient, users: UserFactory) -> None:
    denied = client.get("/api/v1/users", headers=users.auth("helpdesk"))
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    body = denied.json()
    assert body["type"] == PROBLEM_BASE + "permission-denied"
    assert body["title"] == "Permission denied"
    assert body["status"] == 403
    assert "helpdesk" in body["detail"]

    unknown = client.get("/api/v1/me", headers={"Authorization": "Bearer sgt_nonsense"})
    assert unknown.status_code == 401
    assert unknown.json()["status"] == 401
    assert unknown.headers["www-authenticate"] == "Bearer"
