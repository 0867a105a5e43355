"""Device protocol v1 over HTTP, for the agent (sync) and the simulator (async).

Every request has a timeout.  A network failure, a 5xx or a 429 is retried with
exponential backoff (doubling, capped) and full jitter, honouring ``Retry-After`` when the
server sends one; any other 4xx is final and becomes a precise exception built from the
problem document (the agent branches on ``status`` and the slug, never on the text).

Enrollment is not idempotent (a single-use token is spent by the first request the server
sees), so it is retried only when the request cannot have reached the server (connection
refused, connect timeout) or the server answered 5xx / 429 (its transaction was rolled
back).  A check-in and a command result are safe to repeat (the protocol makes re-sending a
result harmless), so they are retried on any network error.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Final
from urllib.parse import unquote, urlsplit

import httpx2

PROTOCOL_PATH: Final = "/api/device/v1"
_FILENAME_EXT = re.compile(r"filename\*\s*=\s*UTF-8''([^;\s]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
ENROLL_PATH: Final = PROTOCOL_PATH + "/enroll"
DEFAULT_TIMEOUT: Final = 15.0
PROBLEM_PREFIX: Final = "https://spillguard.dev/problems/"


# --- exceptions ------------------------------------------------------------------------


class AgentError(Exception):
    """Anything the agent reports to its operator as one line."""


class InvalidEnrollmentUrl(AgentError):
    """The enrollment URL is not ``http(s)://host/…/api/device/v1/enroll#token=sge_…``."""


class ServerUnreachable(AgentError):
    """No answer from the server after every retry (network error or timeout)."""


class ProtocolError(AgentError):
    """The server answered with an error status; ``slug`` names the problem type."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.problem = problem or {}
        self.retry_after = retry_after
        super().__init__(self.describe())

    def describe(self) -> str:
        return f"server refused the request ({self.status} {self.slug}): {self.detail}"


class ServerFault(ProtocolError):
    """5xx (or 429) still failing after every retry: a server fault, not the device's."""

    def describe(self) -> str:
        return f"server error {self.status} after retries: {self.detail}"


class EnrollmentRefused(ProtocolError):
    """The enrollment token is unknown, spent, expired or revoked."""

    REASONS: ClassVar[dict[str, str]] = {
        "enrollment-token-invalid": "the enrollment token is unknown or malformed",
        "enrollment-token-used": "the enrollment token was already used (every use is spent)",
        "enrollment-token-expired": "the enrollment token has expired",
        "enrollment-token-revoked": "an administrator revoked the enrollment",
    }

    def describe(self) -> str:
        reason = self.REASONS.get(self.slug, self.detail)
        return f"enrollment refused: {reason}; ask for a new enrollment link"


class CredentialRejected(ProtocolError):
    """The device credential is unknown or belongs to another device (401)."""

    def describe(self) -> str:
        if self.slug == "device-credential-mismatch":
            return "the server refused the credential: it belongs to another device"
        return f"the server refused the device credential ({self.detail}); enroll again"


class CredentialRevoked(CredentialRejected):
    """The device was wiped or retired: its credential no longer works, for good."""

    @property
    def state(self) -> str:
        return str(self.problem.get("state") or "wiped or retired")

    def describe(self) -> str:
        return (
            f"the server revoked this device's credential: the device was {self.state}. "
            "It is no longer managed; enroll it again to manage it."
        )


class RequestRefused(ProtocolError):
    """Any other 4xx: the request itself was wrong (422, 409, 404, 413 …)."""


_ENROLLMENT_SLUGS: Final = frozenset(EnrollmentRefused.REASONS)


def problem_error(response: httpx2.Response) -> ProtocolError:
    """The precise exception for an error response (a problem document or not)."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    type_ = str(body.get("type") or "about:blank")
    slug = type_.removeprefix(PROBLEM_PREFIX) if type_.startswith(PROBLEM_PREFIX) else type_
    detail = str(body.get("detail") or body.get("title") or response.reason_phrase or "")
    status = response.status_code
    cls: type[ProtocolError]
    if status >= 500 or status == 429:
        cls = ServerFault
    elif slug in _ENROLLMENT_SLUGS:
        cls = EnrollmentRefused
    elif slug == "device-credential-revoked":
        cls = CredentialRevoked
    elif status == 401:
        cls = CredentialRejected
    else:
        cls = RequestRefused
    return cls(status, slug, detail, body, retry_after_seconds(response))


# --- URLs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentUrl:
    """An enrollment URL split at ``#token=``: where to enroll, the API root, the token."""

    endpoint: str
    api_root: str
    token: str


def parse_enrollment_url(url: str) -> EnrollmentUrl:
    """Split ``https://host/api/device/v1/enroll#token=sge_…`` (docs/device-protocol.md)."""
    base, sep, token = url.strip().partition("#token=")
    if not sep or not token:
        raise InvalidEnrollmentUrl(
            "the enrollment URL has no '#token=' part; copy the whole URL from the console"
        )
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidEnrollmentUrl(f"the enrollment URL must start with https:// (got {base!r})")
    path = parts.path.rstrip("/")
    if not path.endswith(ENROLL_PATH):
        raise InvalidEnrollmentUrl(f"the enrollment URL must end in {ENROLL_PATH}#token=…")
    if parts.query:
        raise InvalidEnrollmentUrl("the enrollment URL must not have a query string")
    api_root = f"{parts.scheme}://{parts.netloc}{path.removesuffix('/enroll')}"
    return EnrollmentUrl(endpoint=api_root + "/enroll", api_root=api_root, token=token)


# --- retries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` in all, full-jitter backoff from
    ``base`` seconds doubling up to ``cap``; a ``Retry-After`` up to ``max_retry_after``
    is honoured instead (a longer one makes the call fail, and the caller's loop waits)."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


NO_RETRY: Final = RetryPolicy(attempts=1)


def retry_after_seconds(response: httpx2.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


def _not_sent(exc: httpx2.TransportError) -> bool:
    """True when the request cannot have reached the server."""
    return isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)


def _outcome(
    response: httpx2.Response | None,
    exc: httpx2.TransportError | None,
    attempt: int,
    retry: RetryPolicy,
    idempotent: bool,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before retrying, or None to stop (success or final failure)."""
    if attempt >= retry.attempts:
        return None
    if exc is not None:
        if idempotent or _not_sent(exc):
            return retry.delay(attempt, None, rng)
        return None
    assert response is not None
    if not _retryable_status(response.status_code):
        return None
    after = retry_after_seconds(response)
    if after is not None and after > retry.max_retry_after:
        return None
    return retry.delay(attempt, after, rng)


def _finish(
    response: httpx2.Response | None, exc: httpx2.TransportError | None, url: str
) -> dict[str, Any]:
    if exc is not None:
        raise ServerUnreachable(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    assert response is not None
    if response.is_success:
        data = response.json()
        if not isinstance(data, dict):
            raise RequestRefused(response.status_code, "unexpected-body", "not a JSON object")
        return data
    raise problem_error(response)


# --- clients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A document fetched through a gateway link."""

    name: str
    media_type: str
    data: bytes


def download_name(disposition: str) -> str:
    """The file name a ``Content-Disposition`` header gives (RFC 6266: ``filename*`` first),
    reduced to a safe last path component; ``document`` when there is none."""
    extended = _FILENAME_EXT.search(disposition)
    plain = _FILENAME.search(disposition)
    if extended:
        raw = unquote(extended.group(1), errors="replace")
    elif plain:
        raw = plain.group(1) if plain.group(1) is not None else plain.group(2)
    else:
        raw = ""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return "".join(ch for ch in name if ch.isprintable()) or "document"


@dataclass(frozen=True)
class Enrolled:
    """What enrollment returns: the device's id and credential (store it now)."""

    device_id: int
    credential: str
    checkin_interval_seconds: int
    server_time: str


def _enrolled(data: dict[str, Any]) -> Enrolled:
    return Enrolled(
        device_id=int(data["device_id"]),
        credential=str(data["credential"]),
        checkin_interval_seconds=int(data["checkin_interval_seconds"]),
        server_time=str(data["server_time"]),
    )


def auth_header(device_id: int, credential: str) -> dict[str, str]:
    return {"Authorization": f"Device {device_id}.{credential}"}


class DeviceClient:
    """The protocol for one device, synchronously (the agent).

    ``api_root`` is ``https://host/api/device/v1``.  ``sleep`` and ``rng`` are injectable
    so tests can run the retry logic without waiting.
    """

    def __init__(
        self,
        api_root: str,
        *,
        device_id: int | None = None,
        credential: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        user_agent: str = "spillguard-agent",
    ) -> None:
        self.api_root = api_root.rstrip("/")
        self.device_id = device_id
        self.credential = credential
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.http = httpx2.Client(
            timeout=timeout, transport=transport, headers={"User-Agent": user_agent}
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth(self) -> dict[str, str]:
        if self.device_id is None or self.credential is None:
            raise AgentError("this client has no device credential (enroll first)")
        return auth_header(self.device_id, self.credential)

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.api_root + path
        attempt = 0
        while True:
            attempt += 1
            response: httpx2.Response | None = None
            exc: httpx2.TransportError | None = None
            try:
                response = self.http.post(url, json=body, headers=headers)
            except httpx2.TransportError as error:
                exc = error
            wait = _outcome(response, exc, attempt, self.retry, idempotent, self.rng)
            if wait is None:
                return _finish(response, exc, url)
            self.sleep(wait)

    def enroll(self, token: str, device: dict[str, Any]) -> Enrolled:
        """Exchange an enrollment token for a device id and credential."""
        data = self._post("/enroll", {"token": token, "device": device}, idempotent=False)
        enrolled = _enrolled(data)
        self.device_id, self.credential = enrolled.device_id, enrolled.credential
        return enrolled

    def checkin(
        self, posture: dict[str, Any], results: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Report posture (and earlier results); the server's answer with the commands."""
        body: dict[str, Any] = {"posture": posture}
        if results:
            body["results"] = results
        return self._post("/checkin", body, idempotent=True, headers=self._auth())

    def report_result(self, command_id: int, result: dict[str, Any]) -> dict[str, Any]:
        """Report one command's result (acknowledged, error with reason, not_now)."""
        return self._post(
            f"/commands/{command_id}/result", result, idempotent=True, headers=self._auth()
        )

    def report_location(self, location: dict[str, Any]) -> dict[str, Any]:
        """Report a location; the server accepts it only in lost mode."""
        return self._post("/location", location, idempotent=True, headers=self._auth())

    def fetch(self, url: str) -> Download:
        """A gateway link's document, proving this device with its credential. A GET is
        safe to repeat, so it is retried like a check-in; a refusal (403 with the reason
        in plain words, 410 for an expired link) is final."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AgentError("the link must be an http(s) address")
        # The credential goes only to the server this device enrolled with, and only for
        # its gateway: a look-alike link in a phishing mail must not collect it.
        server = urlsplit(self.api_root.removesuffix(PROTOCOL_PATH))
        if _origin(parts) != _origin(server) or not parts.path.startswith(
            server.path.rstrip("/") + GATEWAY_PATH
        ):
            raise AgentError(
                f"refused: {parts.scheme}://{parts.netloc}{parts.path[:60]} is not a gateway "
                f"link of the server this device is enrolled with "
                f"({server.scheme}://{server.netloc}); the device credential is not sent"
            )
        attempt = 0
        while True:
            attempt += 1
            response: httpx2.Response | None = None
            exc: httpx2.TransportError | None = None
            try:
                response = self.http.get(url, headers=self._auth())
            except httpx2.TransportError as error:
                exc = error
            wait = _outcome(response, exc, attempt, self.retry, True, self.rng)
            if wait is None:
                break
            self.sleep(wait)
        if exc is not None:
            raise ServerUnreachable(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
        assert response is not None
        if not response.is_success:
            raise problem_error(response)
        return Download(
            name=download_name(response.headers.get("content-disposition", "")),
            media_type=response.headers.get("content-type", "application/octet-stream"),
            data=response.content,
        )


GATEWAY_PATH: Final = "/gateway/"
"""Gateway links are ``<server>/gateway/<token>`` (exposure.gateway)."""


def _origin(parts: Any) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL, the port made explicit (``https://h`` is ``h:443``)."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port or default


class AsyncDeviceClient:
    """The same protocol over a shared ``httpx2.AsyncClient`` (the fleet simulator)."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        api_root: str,
        *,
        retry: RetryPolicy = NO_RETRY,
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self.api_root = api_root.rstrip("/")
        self.retry = retry
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.api_root + path
        attempt = 0
        while True:
            attempt += 1
            response: httpx2.Response | None = None
            exc: httpx2.TransportError | None = None
            try:
                response = await self.http.post(url, json=body, headers=headers)
            except httpx2.TransportError as error:
                exc = error
            wait = _outcome(response, exc, attempt, self.retry, idempotent, self.rng)
            if wait is None:
                return _finish(response, exc, url)
            await asyncio.sleep(wait)

    async def enroll(self, token: str, device: dict[str, Any]) -> Enrolled:
        data = await self._post("/enroll", {"token": token, "device": device}, idempotent=False)
        return _enrolled(data)

    async def checkin(
        self,
        device_id: int,
        credential: str,
        posture: dict[str, Any],
        results: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"posture": posture}
        if results:
            body["results"] = results
        return await self._post(
            "/checkin", body, idempotent=True, headers=auth_header(device_id, credential)
        )

    async def report_result(
        self, device_id: int, credential: str, command_id: int, result: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._post(
            f"/commands/{command_id}/result",
            result,
            idempotent=True,
            headers=auth_header(device_id, credential),
        )
