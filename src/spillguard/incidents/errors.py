"""The incidents module's errors (each becomes an RFC 9457 problem in core.app)."""

from __future__ import annotations

from spillguard.core.errors import Conflict, InvalidInput, NotFound


class IncidentNotFound(NotFound):
    slug = "incident-not-found"
    title = "Incident not found"


class TaskNotFound(NotFound):
    slug = "incident-task-not-found"
    title = "Task not found"


class AttachmentNotFound(NotFound):
    slug = "incident-attachment-not-found"
    title = "Attachment not found"


class AssessmentNotFound(NotFound):
    slug = "incident-assessment-not-found"
    title = "Assessment not found"


class IncidentClosed(Conflict):
    """A closed incident is not edited; reopening it is an explicit, audited action."""

    slug = "incident-closed"
    title = "Incident is closed"


class InvalidTransition(Conflict):
    slug = "invalid-status-transition"
    title = "Status change not allowed"


class LateReasonRequired(InvalidInput):
    """A regulator notification after the deadline needs the reason it is late
    (GDPR Art 33(1))."""

    slug = "late-reason-required"
    title = "Reason for the delay required"
