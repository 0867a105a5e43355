"""Audit event names of the incidents module (``domain:subject:action``)."""

from __future__ import annotations

from enum import StrEnum


class IncidentAuditAction(StrEnum):
    OPENED = "incidents:incident:opened"
    UPDATED = "incidents:incident:updated"
    STATUS_CHANGED = "incidents:incident:status-changed"
    REOPENED = "incidents:incident:reopened"
    AWARENESS_CHANGED = "incidents:incident:awareness-changed"
    SCOPE_CHANGED = "incidents:incident:scope-changed"
    REGULATOR_NOTIFIED = "incidents:incident:regulator-notified"
    EDIT_REFUSED = "incidents:incident:edit-refused"
    TASK_ADDED = "incidents:task:added"
    TASK_DONE = "incidents:task:done"
    NOTE_ADDED = "incidents:note:added"
    NOTES_READ = "incidents:note:read"
    ATTACHMENT_ADDED = "incidents:attachment:added"
    ATTACHMENT_READ = "incidents:attachment:read"
    ASSESSMENT_COMPUTED = "incidents:assessment:computed"
    CUSTOMERS_LISTED = "incidents:assessment:customers-listed"
    CUSTOMER_NAMES_REVEALED = "incidents:assessment:names-revealed"
