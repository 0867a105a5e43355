"""Request and response bodies of the devices API and of the device protocol."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from spillguard.core.deps import MAX_ID
from spillguard.devices.models import CommandStatus, CommandType, DeviceState
from spillguard.devices.policy import CompliancePolicy
from spillguard.devices.posture import (
    Label,
    Platform,
    Posture,
    VersionText,
    no_control_characters,
)

Name = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(no_control_characters),
]
Message = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_control_characters),
]
Phone = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=32),
    AfterValidator(no_control_characters),
]
Reason = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(no_control_characters),
]

Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- device protocol -------------------------------------------------------------------


class EnrollDevice(Strict):
    name: Name
    platform: Platform
    model: Label | None = None
    serial: Label | None = None
    os_version: VersionText | None = None

    @model_validator(mode="before")
    @classmethod
    def _platform_is_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "platform" in data and not isinstance(data["platform"], str):
            raise ValueError("platform must be one of ios, android, linux, other")
        return data


class EnrollRequest(Strict):
    token: str = Field(strict=True, min_length=1, max_length=200)
    device: EnrollDevice


class EnrollResponse(BaseModel):
    device_id: int
    credential: str = Field(description="The device credential. Returned only here; store it.")
    checkin_interval_seconds: int
    server_time: datetime


class LocationIn(Strict):
    latitude: float = Field(strict=True, ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(strict=True, ge=-180, le=180, allow_inf_nan=False)
    accuracy_m: float | None = Field(default=None, strict=True, ge=0, le=100_000)
    captured_at: AwareDatetime

    @model_validator(mode="before")
    @classmethod
    def _captured_at_is_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("captured_at", ""), str):
            raise ValueError("captured_at must be an ISO 8601 date-time with a UTC offset")
        return data


class CommandResultIn(Strict):
    status: Literal["acknowledged", "error", "not_now"]
    reason: Reason | None = None
    location: LocationIn | None = None

    @model_validator(mode="after")
    def _error_has_reason(self) -> CommandResultIn:
        if self.status == "error" and not self.reason:
            raise ValueError("an error result needs a reason")
        return self


class CheckinResult(CommandResultIn):
    command_id: Id


class CheckinRequest(Strict):
    posture: Posture
    results: list[CheckinResult] = Field(default_factory=list, max_length=100)


class ComplianceOut(BaseModel):
    compliant: bool
    reasons: list[str]


class CommandOut(BaseModel):
    id: int
    type: CommandType
    params: dict[str, Any]
    expires_at: datetime


class CheckinResponse(BaseModel):
    device_id: int
    state: DeviceState
    server_time: datetime
    next_checkin_seconds: int
    compliance: ComplianceOut
    commands: list[CommandOut]


class CommandResultOut(BaseModel):
    id: int
    type: CommandType
    status: CommandStatus


# --- admin API ---------------------------------------------------------------------------


class GroupCreate(Strict):
    name: Name
    description: str | None = Field(default=None, strict=True, max_length=500)
    policy_id: Id | None = None


class GroupUpdate(Strict):
    name: Name | None = None
    description: str | None = Field(default=None, strict=True, max_length=500)
    policy_id: Id | None = Field(default=None, description="null removes the assignment")


class GroupPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    policy_id: int | None
    created_at: datetime


class EnrollmentCreate(Strict):
    user_id: Id = Field(description="The person whose device(s) will enrol")
    group_id: Id | None = None
    uses_allowed: int = Field(default=1, strict=True, ge=1, le=10_000)
    expires_in_hours: int = Field(default=72, strict=True, ge=1, le=24 * 90)


class EnrollmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    user_id: int
    group_id: int | None
    uses_allowed: int
    uses_count: int
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    status: Literal["usable", "used", "expired", "revoked"]


class EnrollmentIssued(EnrollmentPublic):
    token: str = Field(description="The enrollment token. Shown only in this response.")
    enrollment_url: str = Field(description="The URL (token in its fragment) for the QR code")


class EnrollmentQr(Strict):
    token: str = Field(strict=True, min_length=1, max_length=200)


class PolicyPublic(BaseModel):
    id: int
    name: str
    rules: CompliancePolicy
    created_at: datetime
    updated_at: datetime
    group_ids: list[int]
    device_ids: list[int]


class DeviceUpdate(Strict):
    name: Name | None = None
    group_id: Id | None = Field(default=None, description="null takes it out of its group")
    policy_id: Id | None = Field(default=None, description="null removes its own policy")


class DevicePublic(BaseModel):
    id: int
    name: str
    platform: str
    model: str | None
    serial: str | None
    os_version: str | None
    owner_id: int
    owner_email: str
    group_id: int | None
    policy_id: int | None
    effective_policy_id: int | None
    state: DeviceState
    enrolled_at: datetime
    last_checkin_at: datetime | None
    compliant: bool | None
    compliance_reasons: list[str]
    compliance_note: str | None
    compliance_evaluated_at: datetime | None
    blocked_for_corporate_data: bool = Field(
        default=False,
        description="Blocked from corporate data by a non-compliance consequence",
    )
    lost_message: str | None
    lost_phone: str | None
    lost_reported_at: datetime | None
    posture: dict[str, Any] | None


class CommandCreate(Strict):
    type: CommandType
    params: dict[str, Any] = Field(default_factory=dict)
    confirm_name: str | None = Field(
        default=None, strict=True, max_length=100, description="Required for wipe"
    )
    expires_in_seconds: int | None = Field(default=None, strict=True, ge=60, le=90 * 86400)


class CommandPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: int
    type: CommandType
    params: dict[str, Any]
    status: CommandStatus
    created_at: datetime
    created_by_label: str | None
    expires_at: datetime
    sent_at: datetime | None
    deliveries: int
    finished_at: datetime | None
    error_reason: str | None


class CommandQueued(CommandPublic):
    collapsed: bool = Field(description="True if an identical pending command was reused")


class QueueCleared(BaseModel):
    cancelled: int


class ReportLost(Strict):
    message: Message
    phone: Phone | None = None


class ReportedLost(BaseModel):
    device: DevicePublic
    commands: list[CommandPublic]


class ComplianceChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    compliant: bool
    reasons: list[str]
    policy_id: int | None
    cause: str


class LocationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: int
    latitude: float
    longitude: float
    accuracy_m: float | None
    captured_at: datetime
    received_at: datetime
