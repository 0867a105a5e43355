"""Audit event names of the inspection module (`domain:subject:action`)."""

from __future__ import annotations

from enum import StrEnum


class InspectionAuditAction(StrEnum):
    """What the inspection module records in the audit trail (counts, never values)."""

    CLI_SCAN = "inspection:scan:completed"
    CONTENT_INSPECTED = "inspection:content:inspected"
    VALUES_REVEALED = "inspection:values:revealed"
