"""Domain errors and their one mapping to RFC 9457 problem responses.

Services raise these; they never raise HTTP exceptions.  Each domain subclasses them
(``DeviceNotFound(NotFound)``) and the handler here turns any of them into
``application/problem+json`` with the right status.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://spillguard.dev/problems/"


class DomainError(Exception):
    """Base of every error a service raises on purpose.  ``detail`` is safe to show."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    # Some refusals must still be remembered (a failed login counts towards throttling,
    # and is audited): the unit of work commits these instead of rolling back.
    keep_changes: ClassVar[bool] = False

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        # Extra response headers (ASCII), e.g. a decision's reason for a reverse proxy.
        self.response_headers: dict[str, str] = {}


class InvalidInput(DomainError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class AuthenticationRequired(DomainError):
    status = 401
    slug = "authentication-required"
    title = "Authentication required"
    # The WWW-Authenticate scheme the client should use (the device protocol uses "Device").
    challenge: ClassVar[str] = "Bearer"


class PermissionDenied(DomainError):
    status = 403
    slug = "permission-denied"
    title = "Permission denied"


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class ContentTooLarge(DomainError):
    """An upload is larger than the endpoint accepts (a setting names the cap)."""

    status = 413
    slug = "content-too-large"
    title = "Content too large"


class MalformedBody(DomainError):
    """The request body cannot be parsed at all: a multipart upload without its boundary
    or cut short, more files or fields than the endpoint takes, bytes that are not text.

    Starlette's and FastAPI's body parsers report these as a bare HTTP 400; the handler
    turns that into this error so that it carries the project's problem type.
    """

    status = 400
    slug = "malformed-body"
    title = "Malformed request body"

    _FORMS: ClassVar[frozenset[str]] = frozenset(
        {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"}
    )
    _GENERIC: ClassVar[str] = "There was an error parsing the body"  # FastAPI's wording

    @classmethod
    def from_parser(cls, content_type: str, message: str) -> MalformedBody:
        """The error for a parser's ``message`` about a body sent as ``content_type``.

        The parsers' messages are fixed sentences that never quote the body.
        """
        media = content_type.split(";", 1)[0].strip().lower()
        what = f"The {media} body" if media in cls._FORMS else "The request body"
        said = message.strip().rstrip(".")
        detail = f"{what} cannot be read"
        if said and said != cls._GENERIC:
            detail += f": {said[:1].lower()}{said[1:]}"
        detail += "."
        if media == "multipart/form-data" and "boundary" in said.lower():
            detail += (
                " Let the HTTP client build the body and its Content-Type header, which "
                "names the boundary (curl -F file=@PATH); do not set Content-Type by hand."
            )
        return cls(detail)


class Throttled(DomainError):
    status = 429
    slug = "too-many-attempts"
    title = "Too many attempts"
    keep_changes = True

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


def problem(
    status: int, title: str, detail: str | None = None, slug: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


# How every error response appears in the OpenAPI document ("default": any status not listed).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {
        "description": "An error, as an RFC 9457 problem document",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    }
}
