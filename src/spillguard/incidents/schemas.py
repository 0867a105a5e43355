"""Request and response bodies of the incidents API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from spillguard.core.deps import MAX_ID
from spillguard.devices.posture import no_control_characters
from spillguard.incidents.clock import BreachClock
from spillguard.incidents.models import (
    MAX_CUSTOMER_ID,
    Incident,
    IncidentStatus,
    IncidentType,
    Severity,
)

Title = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_control_characters),
]
Text = Annotated[str, Field(strict=True), StringConstraints(max_length=20_000)]
Reason = Annotated[
    str, Field(strict=True), StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
]
OptionalReason = Annotated[
    str, Field(strict=True), StringConstraints(strip_whitespace=True, max_length=2000)
]
UserId = Annotated[int, Field(ge=1, le=MAX_ID)]
CustomerId = Annotated[
    str,
    Field(strict=True),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CUSTOMER_ID),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentCreate(Strict):
    type: IncidentType
    title: Title
    severity: Severity = Severity.MEDIUM
    description: Text | None = None
    owner_id: UserId | None = None
    device_id: UserId | None = None
    aware_at: AwareDatetime | None = Field(
        default=None, description="When the organisation became aware; default: now."
    )


class IncidentUpdate(Strict):
    title: Title | None = None
    description: Text | None = None
    severity: Severity | None = None
    owner_id: UserId | None = Field(default=None, description="The new owner (a user id).")
    clear_owner: bool = False


class StatusChange(Strict):
    status: IncidentStatus
    reason: OptionalReason = ""


class Reopen(Strict):
    reason: Reason


class AwarenessChange(Strict):
    aware_at: AwareDatetime
    reason: Reason


class ScopeChange(Strict):
    customer_ids: list[CustomerId] = Field(default_factory=list, max_length=1_000_000)
    delivery_ids: list[UserId] = Field(default_factory=list, max_length=100_000)


class RegulatorNotification(Strict):
    notified_at: AwareDatetime | None = None
    late_reason: OptionalReason = ""


class TaskCreate(Strict):
    title: Title
    assignee_id: UserId | None = None
    due_at: AwareDatetime | None = None


class NoteCreate(Strict):
    body: Annotated[
        str,
        Field(strict=True),
        StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
    ]


class NamesReveal(Strict):
    purpose: Reason
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class BreachClockPublic(BaseModel):
    aware_at: datetime
    deadline: datetime
    hours: int
    basis: str
    remaining_seconds: int
    overdue: bool
    regulator_notified_at: datetime | None
    notified_late: bool
    text: str

    @classmethod
    def of(cls, clock: BreachClock) -> BreachClockPublic:
        return cls(
            aware_at=clock.aware_at,
            deadline=clock.deadline,
            hours=clock.hours,
            basis=clock.basis,
            remaining_seconds=int(clock.remaining.total_seconds()),
            overdue=clock.overdue,
            regulator_notified_at=clock.notified_at,
            notified_late=clock.notified_late,
            text=clock.remaining_text(),
        )


class IncidentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    title: str
    description: str | None
    severity: str
    status: str
    owner_id: int | None
    device_id: int | None
    opened_at: datetime
    opened_by_label: str | None
    aware_at: datetime
    status_changed_at: datetime
    contained_at: datetime | None
    assessed_at: datetime | None
    notifying_at: datetime | None
    closed_at: datetime | None
    regulator_notified_at: datetime | None
    late_reason: str | None
    scope_customers: int = Field(
        default=0, description="Customers in the scope (honeytokens are not customers)."
    )
    scope_honeytokens: int | None = Field(
        default=None,
        description="Honeytoken customers in the scope; only for honeytokens:manage.",
    )
    scope_deliveries: int = 0
    clock: BreachClockPublic | None = None

    @classmethod
    def of(
        cls,
        incident: Incident,
        clock: BreachClock,
        customers: int | None = None,
        honeytokens: int | None = None,
    ) -> IncidentPublic:
        """``customers`` and ``honeytokens``: the scope's counts as the reader may see
        them (``IncidentService.scope_counts``); without them every id counts."""
        scope = incident.scope or {}
        out = cls.model_validate(incident)
        out.scope_customers = len(scope.get("customer_ids", [])) if customers is None else customers
        out.scope_honeytokens = honeytokens
        out.scope_deliveries = len(scope.get("delivery_ids", []))
        out.clock = BreachClockPublic.of(clock)
        return out


class TimelineEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    actor_label: str | None
    summary: str
    data: dict[str, Any]


class TaskPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    assignee_id: int | None
    due_at: datetime | None
    done_at: datetime | None
    done_by_label: str | None
    created_at: datetime
    created_by_label: str | None


class NotePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_label: str | None
    created_at: datetime
    body: str


class AttachmentPublic(BaseModel):
    id: int
    name: str
    media_type: str
    size: int
    uploaded_by_label: str | None
    created_at: datetime


class AssessmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    version: int
    computed_at: datetime
    computed_by_label: str | None
    risk: str
    notify_regulator: bool
    notify_individuals: bool
    reasons: list[str]
    facts: dict[str, Any]
    customer_count: int


class CustomerIdsPage(BaseModel):
    items: list[str]
    total: int
    limit: int
    offset: int


class CustomerName(BaseModel):
    customer_id: str
    name: str | None
