"""Documents: the incident report, the regulator report and customer letters, as HTML
and as PDF.

Each document is one HTML template (``templates/incidents/report_document.html``,
``report_regulator_document.html``, ``notices_letters_document.html``) rendered by the
console's Jinja2 environment (autoescaped) and turned into PDF by WeasyPrint, which lays
it out with Debian's Pango.  WeasyPrint is given a URL fetcher that refuses every URL: a
document is self-contained (its CSS is inline), so nothing in it can make the server
fetch a file or an address.

:class:`IncidentReportService` gathers the incident report (issue 6 item 7): summary and
breach clock, the timeline, the exposure (latest assessment: documents, data categories,
customers counted, never named), the protections in place at the time of loss and the
compliance policy that applied with whether it was met and enforced, the decisions with
who and when, and the notifications (regulator report versions, customer notices by
status, escalations).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal
from spillguard.core.settings import Settings
from spillguard.devices.models import ComplianceChange, Device, DeviceGroup
from spillguard.incidents import timeline
from spillguard.incidents.clock import clock_of
from spillguard.incidents.errors import IncidentNotFound
from spillguard.incidents.models import (
    EscalationContact,
    ExposureAssessment,
    Incident,
    IncidentEscalation,
    RegulatorReport,
    TimelineKind,
)
from spillguard.incidents.regulator import QUESTIONS, ReportFields, category_words

if TYPE_CHECKING:
    from spillguard.incidents.outbox import NoticeService

__all__ = [
    "IncidentReportService",
    "PolicyFacts",
    "html_to_pdf",
    "render_document",
]

DECISION_KINDS = {
    TimelineKind.OPENED.value,
    TimelineKind.STATUS.value,
    TimelineKind.ACTION.value,
    TimelineKind.REGULATOR.value,
    TimelineKind.LEDGER.value,
}


class ReportAuditAction(StrEnum):
    EXPORTED = "incidents:report:exported"


class _RefuseEveryUrl(URLFetcher):
    """Documents are self-contained: no file, no address is ever fetched."""

    def fetch(self, url: str, headers: Any = None) -> Any:
        raise ValueError("documents fetch nothing")


def html_to_pdf(html: str) -> bytes:
    """Lay out an HTML document as PDF (A4, WeasyPrint)."""
    return bytes(
        HTML(
            string=html, base_url=None, url_fetcher=_RefuseEveryUrl(allowed_protocols=())
        ).write_pdf()
    )


def render_document(name: str, **context: Any) -> str:
    """Render one of the document templates with the console's (autoescaping) Jinja2."""
    from spillguard.console.render import templates

    return templates().env.get_template(name).render(**context)


@dataclass(frozen=True)
class PolicyFacts:
    """The compliance policy that applied to the lost phone, and whether it held."""

    name: str
    source: str  # "device" or "group <name>"
    rules: dict[str, Any]
    met: bool | None  # compliant at the time of loss (None: never evaluated)
    reasons: list[str]
    evaluated_at: datetime | None
    blocked_since: datetime | None
    enforcement: str  # plain words


def _rules_words(rules: dict[str, Any]) -> dict[str, str]:
    words = {}
    for key, value in sorted(rules.items()):
        if isinstance(value, bool):
            text = "required" if value else "not required"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        words[key.replace("_", " ")] = text
    return words


def policy_facts(
    session: Session, device: Device, lost_at: datetime, posture_known: bool
) -> PolicyFacts | None:
    policy = device.policy
    source = "device"
    if policy is None and device.group_id is not None:
        group = session.get(DeviceGroup, device.group_id)
        if group is not None and group.policy is not None:
            policy, source = group.policy, f"group {group.name}"
    if policy is None:
        return None
    change = session.scalar(
        select(ComplianceChange)
        .where(ComplianceChange.device_id == device.id, ComplianceChange.at <= lost_at)
        .order_by(ComplianceChange.at.desc(), ComplianceChange.id.desc())
        .limit(1)
    )
    met = change.compliant if change is not None else device.compliant
    reasons = list(change.reasons if change is not None else device.compliance_reasons or [])
    evaluated = change.at if change is not None else device.compliance_evaluated_at
    blocked = device.blocked_since if device.blocked_for_corporate_data else None
    if not posture_known:
        enforcement = (
            "Not enforced: the phone never reported its state to Spillguard (no management "
            "agent), so the policy could not be checked or enforced."
        )
    elif met is None:
        enforcement = "The phone had not been evaluated against the policy before the loss."
    elif met:
        enforcement = "Met: the phone complied with the policy at the time of loss."
    elif blocked is not None and blocked <= lost_at:
        enforcement = (
            "Not met, and enforced: the phone was blocked from corporate data from "
            f"{blocked:%Y-%m-%d %H:%M} UTC."
        )
    else:
        enforcement = (
            "Not met, and not enforced in time: the phone did not comply and still "
            "received corporate data."
        )
    return PolicyFacts(
        policy.name,
        source,
        dict(policy.rules or {}),
        met,
        reasons,
        evaluated,
        blocked,
        enforcement,
    )


class IncidentReportService:
    """Builds the incident report for the meetings and the auditors (read-only; every
    export is audited)."""

    def __init__(
        self, session: Session, principal: Principal, settings: Settings, keys: KeyRing
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.keys = keys

    def context(self, incident_id: int) -> dict[str, Any]:
        """Everything the report shows (counts and ids of things, never a customer)."""
        from spillguard.incidents.outbox import NoticeService

        self.principal.require(Permission.INCIDENTS_VIEW)
        incident = self.session.get(Incident, incident_id)
        if incident is None:
            raise IncidentNotFound(f"No incident with id {incident_id}.")
        now = utcnow()
        owner = self.session.get(User, incident.owner_id) if incident.owner_id else None
        assessments = list(
            self.session.scalars(
                select(ExposureAssessment)
                .where(ExposureAssessment.incident_id == incident_id)
                .order_by(ExposureAssessment.version)
            )
        )
        latest = assessments[-1] if assessments else None
        facts: dict[str, Any] = dict(latest.facts or {}) if latest else {}
        protections = (
            facts.get("protections") if isinstance(facts.get("protections"), dict) else None
        )
        device = self.session.get(Device, incident.device_id) if incident.device_id else None
        policy = None
        if device is not None:
            lost_at = device.lost_reported_at or incident.aware_at
            policy = policy_facts(
                self.session,
                device,
                lost_at,
                bool(protections and protections.get("posture_known")),
            )
        entries = timeline.entries(self.session, incident_id)
        decisions = [e for e in entries if e.kind in DECISION_KINDS]
        reports = list(
            self.session.scalars(
                select(RegulatorReport)
                .where(RegulatorReport.incident_id == incident_id)
                .order_by(RegulatorReport.version)
            )
        )
        escalations = list(
            self.session.execute(
                select(IncidentEscalation, EscalationContact)
                .join(EscalationContact, EscalationContact.id == IncidentEscalation.contact_id)
                .where(IncidentEscalation.incident_id == incident_id)
                .order_by(IncidentEscalation.id)
            ).all()
        )
        notices = NoticeService(self.session, self.principal, self.settings, self.keys).counts(
            incident_id
        )
        documents = facts.get("documents") if isinstance(facts.get("documents"), list) else []
        return {
            "incident": incident,
            "owner": owner.email if owner else None,
            "clock": clock_of(incident, self.settings, now),
            "latest": latest,
            "assessments": assessments,
            "documents": documents,
            "categories": category_words(facts.get("categories")),
            "category_counts": facts.get("categories") or {},
            "protections": protections,
            "device": device,
            "policy": policy,
            "policy_rules": _rules_words(policy.rules) if policy else {},
            "timeline": entries,
            "decisions": decisions,
            "reports": reports,
            "escalations": escalations,
            "notices": notices,
            "generated_at": now,
            "generated_by": self.principal.label,
        }

    def html(self, incident_id: int) -> str:
        context = self.context(incident_id)
        self._audit(incident_id, "html")
        return render_document("incidents/report_document.html", **context)

    def pdf(self, incident_id: int) -> bytes:
        context = self.context(incident_id)
        self._audit(incident_id, "pdf")
        return html_to_pdf(render_document("incidents/report_document.html", **context))

    def _audit(self, incident_id: int, fmt: str) -> None:
        record_event(
            self.session,
            self.principal,
            ReportAuditAction.EXPORTED,
            object_type="incident",
            object_id=incident_id,
            details={"format": fmt},
        )


def regulator_report_html(incident: Incident, report: RegulatorReport) -> str:
    fields = ReportFields.model_validate(report.fields)
    answers = []
    for name, label in QUESTIONS:
        value = getattr(fields, name)
        if isinstance(value, list):
            value = ", ".join(value) or "—"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, StrEnum):
            value = value.value
        answers.append((label, str(value) if value not in ("", None) else "—"))
    return render_document(
        "incidents/report_regulator_document.html",
        incident=incident,
        report=report,
        answers=answers,
        generated_at=utcnow(),
    )


def letters_html(letters: list[dict[str, Any]], organisation: str) -> str:
    """One page per letter: the customer's name and postal address, then the notice."""
    return render_document(
        "incidents/notices_letters_document.html",
        letters=letters,
        organisation=organisation,
        today=utcnow(),
    )


def letters_pdf_of(service: NoticeService, incident_id: int) -> bytes:
    """The PDF of the incident's letters not yet posted (the service checks the dpo role
    and audits the decryption).  An empty list gives a one-line document."""
    items = service.letters(incident_id)
    organisation = ""
    letters = []
    for notice, contact, content in items:
        letters.append(
            {
                "notice_id": notice.id,
                "name": contact.name or "The Customer",
                "address": contact.postal_address or "",
                "subject": content.subject,
                "body": content.body,
            }
        )
    if items:
        from spillguard.incidents.outbox import report_fields_of

        organisation = report_fields_of(service.session, incident_id).organisation
    return html_to_pdf(letters_html(letters, organisation))
