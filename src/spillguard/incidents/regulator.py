"""The report to the regulator (the UK ICO's personal-data-breach form), versioned.

:class:`ReportFields` carries the form's questions: what happened, how it was
discovered, when it happened and was discovered, the categories of data and of people,
approximate numbers of records and people, likely consequences, measures taken and
proposed, the contact point, and whether the people affected were told.
:func:`prefill` answers them from the incident and its latest exposure assessment (a
pure function); the ``dpo`` edits the draft, submits it (the first submitted version
stops the breach clock), and later versions are follow-ups.  Submitted versions are
never changed; each version is kept and exported as JSON or PDF.

Nothing in a report names a customer: it counts them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import Conflict, InvalidInput, NotFound
from spillguard.core.keys import KeyRing
from spillguard.core.models import User
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.incidents import timeline
from spillguard.incidents.errors import IncidentClosed, IncidentNotFound
from spillguard.incidents.models import (
    ExposureAssessment,
    Incident,
    IncidentStatus,
    RegulatorReport,
    RegulatorReportStatus,
    TimelineKind,
)

__all__ = [
    "PeopleTold",
    "RegulatorAuditAction",
    "RegulatorReportService",
    "ReportFields",
    "latest_assessment",
    "prefill",
    "report_json",
]

ORGANISATION_PLACEHOLDER = "(name of the organisation)"


class RegulatorAuditAction(StrEnum):
    DRAFTED = "incidents:regulator-report:drafted"
    EDITED = "incidents:regulator-report:edited"
    SUBMITTED = "incidents:regulator-report:submitted"
    EXPORTED = "incidents:regulator-report:exported"


class PeopleTold(StrEnum):
    YES = "yes"
    PLANNED = "planned"
    NO = "no"
    NOT_REQUIRED = "not-required"


_TEXT = 4000


class ReportFields(BaseModel):
    """The ICO breach form's questions, as the dpo answers them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    organisation: str = Field(default="", max_length=200)
    what_happened: str = Field(default="", max_length=_TEXT)
    how_discovered: str = Field(default="", max_length=_TEXT)
    occurred_at: str = Field(default="", max_length=200, description="When it happened.")
    discovered_at: str = Field(default="", max_length=200, description="When you found out.")
    data_categories: list[str] = Field(default_factory=list, max_length=50)
    special_category_data: bool = False
    people_categories: list[str] = Field(default_factory=list, max_length=20)
    approx_records: int = Field(default=0, ge=0, le=10**10)
    approx_people: int = Field(default=0, ge=0, le=10**10)
    likely_consequences: str = Field(default="", max_length=_TEXT)
    measures_taken: str = Field(default="", max_length=_TEXT)
    measures_proposed: str = Field(default="", max_length=_TEXT)
    advice_to_individuals: str = Field(default="", max_length=_TEXT)
    contact_point: str = Field(default="", max_length=500)
    people_told: PeopleTold = PeopleTold.NO
    people_told_detail: str = Field(default="", max_length=_TEXT)
    late_reason: str = Field(default="", max_length=_TEXT)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ReportFields:
        """Validate edited fields; a bad one is a 422 naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "fields"
            raise InvalidInput(f"{name}: {first['msg']}", field=name) from None


QUESTIONS: list[tuple[str, str]] = [
    ("organisation", "Organisation (controller)"),
    ("what_happened", "What happened"),
    ("how_discovered", "How was the breach discovered"),
    ("occurred_at", "When did it happen"),
    ("discovered_at", "When was it discovered"),
    ("data_categories", "Categories of personal data"),
    ("special_category_data", "Special category or criminal offence data"),
    ("people_categories", "Categories of people affected"),
    ("approx_records", "Approximate number of personal data records"),
    ("approx_people", "Approximate number of people affected"),
    ("likely_consequences", "Likely consequences for the people affected"),
    ("measures_taken", "Measures taken to address the breach"),
    ("measures_proposed", "Measures proposed"),
    ("advice_to_individuals", "Advice given to the people affected"),
    ("contact_point", "Contact point (data protection officer)"),
    ("people_told", "Have the people affected been told"),
    ("people_told_detail", "How and when they were told, or why not"),
    ("late_reason", "Reasons for a report after 72 hours (or 24 under PECR)"),
]
"""The form's questions in the order the ICO asks them, with their labels."""


# --- pre-filling (pure) --------------------------------------------------------------

_CATEGORY_WORDS = {
    "email": "e-mail addresses",
    "phone": "phone numbers",
    "name": "names",
    "first_name": "names",
    "last_name": "names",
    "postal_address": "postal addresses",
    "address": "postal addresses",
    "postcode": "postcodes",
    "date_of_birth": "dates of birth",
    "dob": "dates of birth",
    "payment_card": "payment card numbers",
    "card": "payment card numbers",
    "iban": "bank account numbers",
    "bank_account": "bank account numbers",
    "sort_code": "bank sort codes",
    "nino": "National Insurance numbers",
    "nhs_number": "NHS numbers",
    "loyalty": "loyalty numbers",
    "loyalty_number": "loyalty numbers",
    "renewal_date": "contract renewal dates",
    "ip_address": "IP addresses",
}
_SPECIAL = {"nhs_number", "health"}


def category_words(categories: Any) -> list[str]:
    """Data categories from an assessment's facts (a list or a {category: count} map) in
    the words a regulator or a customer reads."""
    if isinstance(categories, dict):
        names = [str(k) for k, v in categories.items() if v]
    elif isinstance(categories, list | tuple | set):
        names = [str(c) for c in categories]
    else:
        names = []
    words = [_CATEGORY_WORDS.get(n.lower(), n.replace("_", " ")) for n in sorted(names)]
    return list(dict.fromkeys(words))


def _when(value: datetime | None) -> str:
    return f"{value:%d %B %Y, %H:%M} UTC" if value is not None else ""


def _protections_text(facts: dict[str, Any]) -> str:
    protections = facts.get("protections")
    if not isinstance(protections, dict):
        return ""
    parts = []
    for key, value in protections.items():
        if value in (None, "", []):
            continue
        label = str(key).replace("_", " ")
        if isinstance(value, bool):
            parts.append(f"{label}: {'yes' if value else 'no'}")
        else:
            parts.append(f"{label}: {value}")
    return "; ".join(parts)


_CONSEQUENCES = {
    "high": (
        "The data could be read by whoever has the device or the copy. The people affected "
        "could receive phishing messages or scam calls that use their details, and could be "
        "at risk of fraud or identity theft."
    ),
    "medium": (
        "The data may be readable by an unauthorised person. The people affected could "
        "receive unwanted or misleading messages that use their details."
    ),
    "low": (
        "The data is unlikely to be intelligible to anyone (for example, it was encrypted "
        "and protected by a passcode, and the device was wiped), so harm to the people "
        "affected is unlikely."
    ),
}
_ADVICE = (
    "Be wary of unexpected e-mails, texts or calls that mention your account, even if they "
    "use your name. We will never ask for your password or full card number. Consider "
    "changing passwords you reuse elsewhere, and tell your bank if you see payments you do "
    "not recognise."
)


def prefill(
    incident: Incident,
    assessment: ExposureAssessment | None,
    *,
    organisation: str | None,
    dpo_contact: str | None,
) -> ReportFields:
    """Answers to the form from what Spillguard knows (the dpo edits them)."""
    facts: dict[str, Any] = dict(assessment.facts or {}) if assessment else {}
    categories = category_words(facts.get("categories") or facts.get("data_categories"))
    people = assessment.customer_count if assessment else 0
    records = int(facts.get("records") or facts.get("customer_records") or people or 0)
    kind = incident.type.replace("-", " ")
    what = [f"{incident.title}."]
    if incident.description:
        what.append(incident.description.strip())
    documents = facts.get("documents") or facts.get("document_count")
    if isinstance(documents, list):
        documents = len(documents)
    if incident.type == "lost-device" and incident.device_id is not None:
        held = f", holding {documents} document(s)" if documents else ""
        what.append(
            f"A company phone (device #{incident.device_id}) was reported lost{held} "
            f"with personal data of about {people} customer(s)."
        )
    elif people:
        what.append(f"The {kind} involves personal data of about {people} customer(s).")
    protections = _protections_text(facts)
    measures = []
    if incident.contained_at is not None:
        measures.append(f"The incident was contained on {_when(incident.contained_at)}.")
    if protections:
        measures.append(f"Protections in place at the time: {protections}.")
    if assessment is not None:
        measures.append(
            f"The exposure was assessed (version {assessment.version}) on "
            f"{_when(assessment.computed_at)}; risk {assessment.risk}."
        )
    risk = assessment.risk if assessment else ""
    told = (
        PeopleTold.PLANNED
        if assessment is not None and assessment.notify_individuals
        else PeopleTold.NOT_REQUIRED
        if assessment is not None
        else PeopleTold.NO
    )
    told_detail = ""
    if told is PeopleTold.NOT_REQUIRED and assessment is not None:
        told_detail = "Not required: " + " ".join(assessment.reasons or [])[:1000]
    elif told is PeopleTold.PLANNED:
        told_detail = (
            "Each affected customer is to be told by e-mail, or by letter where we hold no "
            "e-mail address."
        )
    return ReportFields(
        organisation=organisation or ORGANISATION_PLACEHOLDER,
        what_happened=" ".join(what)[:_TEXT],
        how_discovered=(
            f"Reported in Spillguard by {incident.opened_by_label or 'the system'} on "
            f"{_when(incident.opened_at)} ({kind} incident #{incident.id})."
        ),
        occurred_at=_when(incident.aware_at),
        discovered_at=_when(incident.aware_at),
        data_categories=categories,
        special_category_data=any(
            str(c).lower() in _SPECIAL
            for c in (facts.get("categories") or {})
            if isinstance(facts.get("categories"), dict | list)
        ),
        people_categories=["customers"] if people else [],
        approx_records=records,
        approx_people=people,
        likely_consequences=_CONSEQUENCES.get(risk, ""),
        measures_taken=" ".join(measures)[:_TEXT],
        measures_proposed="",
        advice_to_individuals=_ADVICE if told is PeopleTold.PLANNED else "",
        contact_point=dpo_contact or "",
        people_told=told,
        people_told_detail=told_detail,
        late_reason=incident.late_reason or "",
    )


def report_json(incident: Incident, report: RegulatorReport) -> dict[str, Any]:
    """The export: the incident's number, the version, its status and the answers."""
    return {
        "incident_id": incident.id,
        "incident_type": incident.type,
        "version": report.version,
        "status": report.status,
        "created_at": report.created_at.isoformat(),
        "created_by": report.created_by_label,
        "submitted_at": report.submitted_at.isoformat() if report.submitted_at else None,
        "fields": ReportFields.model_validate(report.fields).model_dump(mode="json"),
        "questions": dict(QUESTIONS),
    }


def latest_assessment(session: Session, incident_id: int) -> ExposureAssessment | None:
    return session.scalar(
        select(ExposureAssessment)
        .where(ExposureAssessment.incident_id == incident_id)
        .order_by(ExposureAssessment.version.desc())
        .limit(1)
    )


# --- the service ---------------------------------------------------------------------


class ReportNotFound(NotFound):
    slug = "regulator-report-not-found"
    title = "Regulator report not found"


class ReportSubmitted(Conflict):
    """A submitted version is a record of what the regulator was told: never edited."""

    slug = "regulator-report-submitted"
    title = "Report already submitted"


class RegulatorReportService:
    """Drafts, edits, submits and exports regulator reports: the dpo's work (reading is
    open to whoever may view incidents)."""

    def __init__(
        self, session: Session, principal: Principal, settings: Settings, keys: KeyRing
    ) -> None:
        self.session = session
        self.principal = principal
        self.settings = settings
        self.keys = keys

    def _incident(self, incident_id: int) -> Incident:
        incident = self.session.get(Incident, incident_id)
        if incident is None:
            raise IncidentNotFound(f"There is no incident {incident_id}.")
        return incident

    def _open_incident(self, incident_id: int) -> Incident:
        incident = self._incident(incident_id)
        if incident.status == IncidentStatus.CLOSED.value:
            raise IncidentClosed(
                f"Incident {incident_id} is closed; reopen it to change its regulator report."
            )
        return incident

    def _dpo_contact(self) -> str | None:
        email = self.session.scalar(
            select(User.email)
            .where(User.role == Role.DPO.value, User.disabled.is_(False))
            .order_by(User.id)
            .limit(1)
        )
        return f"The Data Protection Officer, {email}" if email else None

    def versions(self, incident_id: int) -> list[RegulatorReport]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._incident(incident_id)
        return list(
            self.session.scalars(
                select(RegulatorReport)
                .where(RegulatorReport.incident_id == incident_id)
                .order_by(RegulatorReport.version)
            )
        )

    def get(self, incident_id: int, version: int | None = None) -> RegulatorReport:
        """A version (default: the latest)."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        self._incident(incident_id)
        query = select(RegulatorReport).where(RegulatorReport.incident_id == incident_id)
        if version is not None:
            query = query.where(RegulatorReport.version == version)
        report = self.session.scalar(query.order_by(RegulatorReport.version.desc()).limit(1))
        if report is None:
            raise ReportNotFound(
                f"Incident {incident_id} has no regulator report"
                + (f" version {version}." if version is not None else " yet.")
            )
        return report

    def latest(self, incident_id: int) -> RegulatorReport | None:
        self.principal.require(Permission.INCIDENTS_VIEW)
        return self.session.scalar(
            select(RegulatorReport)
            .where(RegulatorReport.incident_id == incident_id)
            .order_by(RegulatorReport.version.desc())
            .limit(1)
        )

    def draft(self, incident_id: int) -> RegulatorReport:
        """The current draft: the open one, else a new version — pre-filled for the first,
        carrying the last submitted answers for a follow-up."""
        self.principal.require(Permission.INCIDENTS_NOTIFY)
        incident = self._open_incident(incident_id)
        last = self.latest(incident_id)
        if last is not None and last.status == RegulatorReportStatus.DRAFT.value:
            return last
        if last is None:
            fields = prefill(
                incident,
                latest_assessment(self.session, incident_id),
                organisation=self.settings.organisation_name,
                dpo_contact=self._dpo_contact(),
            ).model_dump(mode="json")
        else:
            fields = dict(last.fields)
        version = (
            self.session.scalar(
                select(func.max(RegulatorReport.version)).where(
                    RegulatorReport.incident_id == incident_id
                )
            )
            or 0
        ) + 1
        report = RegulatorReport(
            incident_id=incident_id,
            version=version,
            status=RegulatorReportStatus.DRAFT.value,
            fields=fields,
            created_by_id=self.principal.user_id,
            created_by_label=self.principal.label,
            created_at=utcnow(),
        )
        self.session.add(report)
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            RegulatorAuditAction.DRAFTED,
            object_type="incident",
            object_id=incident_id,
            details={"version": version, "follow_up": last is not None},
        )
        return report

    def refill(self, incident_id: int) -> RegulatorReport:
        """Answer the draft afresh from the incident and its latest assessment."""
        report = self.draft(incident_id)
        incident = self._incident(incident_id)
        report.fields = prefill(
            incident,
            latest_assessment(self.session, incident_id),
            organisation=self.settings.organisation_name,
            dpo_contact=self._dpo_contact(),
        ).model_dump(mode="json")
        self.session.flush()
        return report

    def edit(self, incident_id: int, changes: dict[str, Any]) -> RegulatorReport:
        """Change answers of the draft (only the fields given)."""
        self.principal.require(Permission.INCIDENTS_NOTIFY)
        report = self.draft(incident_id)
        unknown = sorted(set(changes) - set(ReportFields.model_fields))
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
        fields = ReportFields.parse({**report.fields, **changes})
        report.fields = fields.model_dump(mode="json")
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            RegulatorAuditAction.EDITED,
            object_type="incident",
            object_id=incident_id,
            details={"version": report.version, "fields": sorted(changes)},
        )
        return report

    def submit(self, incident_id: int) -> RegulatorReport:
        """Record the draft as sent to the regulator: the first is ``submitted`` (the
        breach clock stops), later ones ``follow-up``.  A first report after the deadline
        needs ``late_reason`` (Art 33(1))."""
        from spillguard.incidents.services import IncidentService

        self.principal.require(Permission.INCIDENTS_NOTIFY)
        incident = self._open_incident(incident_id)
        report = self.latest(incident_id)
        if report is None or report.status != RegulatorReportStatus.DRAFT.value:
            raise ReportSubmitted("There is no draft to submit; start a follow-up first.")
        fields = ReportFields.model_validate(report.fields)
        missing = [
            name
            for name in ("organisation", "what_happened", "contact_point")
            if not getattr(fields, name) or getattr(fields, name) == ORGANISATION_PLACEHOLDER
        ]
        if missing:
            raise InvalidInput(f"Answer {', '.join(missing)} before submitting.", field=missing[0])
        now = utcnow()
        if incident.regulator_notified_at is None:
            # The first report stops the breach clock; after the deadline it must give
            # the reasons for the delay (the incident service checks and records that).
            IncidentService(
                self.session, self.principal, self.settings, self.keys
            ).record_regulator_notification(incident_id, now, fields.late_reason)
        earlier = self.session.scalar(
            select(func.count())
            .select_from(RegulatorReport)
            .where(
                RegulatorReport.incident_id == incident_id,
                RegulatorReport.status != RegulatorReportStatus.DRAFT.value,
            )
        )
        report.status = (
            RegulatorReportStatus.FOLLOW_UP.value
            if earlier
            else RegulatorReportStatus.SUBMITTED.value
        )
        report.submitted_at = now
        self.session.flush()
        timeline.add(
            self.session,
            incident_id,
            TimelineKind.REGULATOR,
            f"Regulator report version {report.version} recorded as {report.status} by "
            f"{self.principal.label}.",
            actor_label=self.principal.label,
            data={"version": report.version, "status": report.status},
            at=now,
        )
        record_event(
            self.session,
            self.principal,
            RegulatorAuditAction.SUBMITTED,
            object_type="incident",
            object_id=incident_id,
            details={"version": report.version, "status": report.status},
        )
        return report

    def export_pdf(self, incident_id: int, version: int | None) -> tuple[bytes, int]:
        """The PDF of a version (and its number); audited."""
        from spillguard.incidents.pdf import html_to_pdf, regulator_report_html

        data = self.export(incident_id, version, "pdf")
        report = self.get(incident_id, data["version"])
        incident = self._incident(incident_id)
        return html_to_pdf(regulator_report_html(incident, report)), report.version

    def export(self, incident_id: int, version: int | None, fmt: str) -> dict[str, Any]:
        """The JSON export of a version (the PDF is rendered from it); audited."""
        report = self.get(incident_id, version)
        incident = self._incident(incident_id)
        record_event(
            self.session,
            self.principal,
            RegulatorAuditAction.EXPORTED,
            object_type="incident",
            object_id=incident_id,
            details={"version": report.version, "format": fmt},
        )
        return report_json(incident, report)
