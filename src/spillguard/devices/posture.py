"""The posture a device reports at check-in, validated strictly.

Posture is what compliance is judged on, so a check-in is parsed with no guessing:
unknown fields are refused (``extra="forbid"``), booleans, integers and strings are
strict (``"true"`` is not a boolean, ``6.0`` is not a length), every number has the
range a real device can produce, and every list and string is bounded so a single
check-in cannot grow without limit.  Anything else raises pydantic's
``ValidationError``, which names the field and the reason; the protocol layer turns it
into a 4xx problem response.

``reported_at`` is the device's own clock.  It must carry a UTC offset, and
:func:`check_reported_at` refuses one that lies further in the future than the allowed
clock skew; the server's receipt time, not this one, decides whether a device is stale.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from spillguard.core.errors import InvalidInput

MAX_MANAGED_DOCUMENTS: Final = 10_000
MAX_FILE_NAME_LENGTH: Final = 255
MAX_PASSCODE_LENGTH: Final = 256
# One week: longer than any real screen timeout, small enough for any database integer.
MAX_AUTO_LOCK_SECONDS: Final = 7 * 24 * 3600
# Largest value a signed 64-bit column holds; no file is bigger.
MAX_DOCUMENT_SIZE: Final = 2**63 - 1
DEFAULT_CLOCK_SKEW: Final = timedelta(minutes=5)


class Platform(StrEnum):
    """The operating-system family a device reports."""

    IOS = "ios"
    ANDROID = "android"
    LINUX = "linux"
    OTHER = "other"

    @property
    def label(self) -> str:
        """The name people use for the platform, as it appears in reasons."""
        return _PLATFORM_LABELS[self]


_PLATFORM_LABELS = {
    Platform.IOS: "iOS",
    Platform.ANDROID: "Android",
    Platform.LINUX: "Linux",
    Platform.OTHER: "Operating system",
}


class PasscodeType(StrEnum):
    """How the screen is unlocked, weakest first.

    The declaration order is the strength order used by policies:
    none < swipe < pattern < pin < alphanumeric.
    """

    NONE = "none"
    SWIPE = "swipe"
    PATTERN = "pattern"
    PIN = "pin"
    ALPHANUMERIC = "alphanumeric"

    @property
    def strength(self) -> int:
        """Rank in the strength order (0 for none); compare two types with it."""
        return _PASSCODE_ORDER.index(self)


_PASSCODE_ORDER: Final = tuple(PasscodeType)


def no_control_characters(value: str) -> str:
    """Refuse control characters in a single-line label (validator for pydantic fields)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain control characters")
    return value


# A short single-line label from the device (model, serial, versions).
Label = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(no_control_characters),
]

VersionText = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(no_control_characters),
]


def _plain_file_name(value: str) -> str:
    no_control_characters(value)
    if "/" in value:
        raise ValueError("must be a file name, not a path (no '/')")
    if value in {".", ".."}:
        raise ValueError("must be a file name, not '.' or '..'")
    return value


FileName = Annotated[
    str,
    Field(strict=True),
    StringConstraints(min_length=1, max_length=MAX_FILE_NAME_LENGTH),
    AfterValidator(_plain_file_name),
]

Sha256Hex = Annotated[
    str,
    Field(strict=True),
    StringConstraints(pattern=r"^[0-9A-Fa-f]{64}$"),
    AfterValidator(str.lower),
]


class Passcode(BaseModel):
    """The screen lock: its type and, where the device knows it, its length.

    ``length`` counts digits for a PIN, characters for a password and dots for a
    pattern; ``None`` means the device cannot tell.  ``none`` and ``swipe`` have no
    secret, so they cannot have a length above zero.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: PasscodeType
    length: int | None = Field(strict=True, ge=0, le=MAX_PASSCODE_LENGTH)

    @field_validator("type", mode="before")
    @classmethod
    def _type_is_text(cls, value: Any) -> Any:
        # Lax enum parsing would accept anything equal to a member; insist on the name.
        if not isinstance(value, str):
            raise ValueError("must be one of none, swipe, pattern, pin, alphanumeric")
        return value

    @model_validator(mode="after")
    def _secretless_types_have_no_length(self) -> Passcode:
        if self.type in (PasscodeType.NONE, PasscodeType.SWIPE) and self.length:
            raise ValueError(f"a {self.type.value} passcode has no length; got {self.length}")
        return self


class ManagedDocument(BaseModel):
    """One document the agent manages on the device: content hash, name and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Sha256Hex
    file_name: FileName
    size: int = Field(strict=True, ge=0, le=MAX_DOCUMENT_SIZE)


class Posture(BaseModel):
    """Everything a device reports about itself at check-in.

    ``auto_lock_seconds`` is ``None`` when the screen never locks by itself;
    ``agent_version`` is ``None`` when the posture did not come from a Spillguard agent
    (for example an inventory import), which the "agent required" rule treats as no
    agent.  ``serial`` is ``None`` where the platform hides it (Android 10 and later to
    non-owner apps).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Platform
    os_version: VersionText
    model: Label
    serial: Label | None = None
    passcode: Passcode
    storage_encrypted: bool = Field(strict=True)
    auto_lock_seconds: int | None = Field(strict=True, ge=0, le=MAX_AUTO_LOCK_SECONDS)
    rooted: bool = Field(strict=True)
    agent_version: VersionText | None
    managed_documents: list[ManagedDocument] = Field(
        default_factory=list, max_length=MAX_MANAGED_DOCUMENTS
    )
    reported_at: AwareDatetime

    @field_validator("platform", mode="before")
    @classmethod
    def _platform_is_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be one of ios, android, linux, other")
        return value

    @field_validator("reported_at", mode="before")
    @classmethod
    def _reported_at_is_iso8601(cls, value: Any) -> Any:
        # Pydantic would also take a number as Unix time; the protocol says ISO 8601.
        if not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 date-time with a UTC offset")
        return value


class ReportedAtInFuture(InvalidInput):
    """The device's clock is ahead of the server's by more than the allowed skew."""

    slug = "posture-reported-in-future"
    title = "Posture timestamp is in the future"


def check_reported_at(
    posture: Posture, now: datetime, max_skew: timedelta = DEFAULT_CLOCK_SKEW
) -> None:
    """Refuse a posture whose ``reported_at`` is more than ``max_skew`` ahead of ``now``.

    ``now`` must be timezone-aware (the server's clock).  A timestamp in the past is
    accepted: devices queue check-ins while offline.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    ahead = posture.reported_at - now
    if ahead > max_skew:
        raise ReportedAtInFuture(
            f"reported_at {posture.reported_at.isoformat()} is {int(ahead.total_seconds())}"
            f" seconds ahead of the server clock; at most {int(max_skew.total_seconds())}"
            " seconds of clock skew are allowed",
            reported_at=posture.reported_at.isoformat(),
            max_skew_seconds=int(max_skew.total_seconds()),
        )
