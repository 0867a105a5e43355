"""Customer-notice templates: checked when saved, rendered when sent.

A template is a subject and a body in Jinja2 syntax, rendered in a
``SandboxedEnvironment`` (a template is data an operator typed, not code) with
``StrictUndefined``.  The placeholders a template may use are exactly
:data:`PLACEHOLDERS`; a template naming any other one is refused **when it is saved**
(its syntax tree is parsed and its free names compared with the allowed set), so a typo
never surfaces halfway through sending a thousand notices.

The default templates carry what GDPR Article 34(2) asks a notice to a person to say,
in clear language: what happened, the data involved, the likely consequences, the
measures taken and advice to the person, and a contact point (the DPO).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from enum import StrEnum

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.errors import InvalidInput, NotFound
from spillguard.core.roles import Permission, Principal
from spillguard.incidents.models import NoticeChannel, NoticeTemplate

__all__ = [
    "DEFAULT_TEMPLATES",
    "PLACEHOLDERS",
    "DefaultTemplate",
    "NoticeChannel",
    "NoticeContent",
    "NoticeContext",
    "TemplateRefused",
    "check_template",
    "render_notice",
    "sample_context",
]

MAX_SUBJECT = 200
MAX_BODY = 20_000


PLACEHOLDERS: dict[str, str] = {
    "customer_name": "the customer's name as in the directory ('Customer' when unknown)",
    "organisation": "the organisation's name (the regulator report's controller)",
    "incident_reference": "the incident's reference, e.g. INC-12",
    "what_happened": "what happened, in plain words",
    "when_happened": "when it happened (date)",
    "when_discovered": "when the organisation became aware (date)",
    "data_involved": "the kinds of data involved, e.g. 'name, e-mail address'",
    "likely_consequences": "the likely consequences for the person",
    "measures_taken": "what the organisation has done and will do",
    "advice": "what the person can do to protect themselves",
    "contact_point": "who to contact (the data protection officer)",
}
"""Every placeholder a notice template may use, with what it stands for."""


class TemplateRefused(InvalidInput):
    """A notice template cannot be saved: bad syntax, an unknown placeholder, or too long."""

    slug = "notice-template-refused"
    title = "Notice template refused"


@dataclass(frozen=True)
class NoticeContext:
    """The values a notice is rendered with (one per placeholder)."""

    customer_name: str
    organisation: str
    incident_reference: str
    what_happened: str
    when_happened: str
    when_discovered: str
    data_involved: str
    likely_consequences: str
    measures_taken: str
    advice: str
    contact_point: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class NoticeContent:
    subject: str
    body: str


def _environment() -> SandboxedEnvironment:
    # Plain text (e-mail bodies); the letter's HTML escapes the rendered text itself.
    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,  # text/plain; the letter's HTML template escapes the result
        keep_trailing_newline=True,
    )


_ENV = _environment()


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> Template:
    """Templates are compiled once per process (a run renders thousands of notices)."""
    return _ENV.from_string(source)


def sample_context() -> NoticeContext:
    """Harmless values for the preview and the trial render at save time."""
    return NoticeContext(
        customer_name="Alex Example",
        organisation="Example Ltd",
        incident_reference="INC-0",
        what_happened="A phone holding a customer list was lost.",
        when_happened="1 January 2026",
        when_discovered="2 January 2026",
        data_involved="name, e-mail address",
        likely_consequences="You may receive unwanted e-mails.",
        measures_taken="We locked and erased the phone.",
        advice="Be wary of unexpected messages.",
        contact_point="The Data Protection Officer, dpo@example.invalid",
    )


def check_template(subject: str, body: str) -> None:
    """Refuse (``TemplateRefused``, a 422) a template that could fail when sending.

    Checks length, syntax, that every free name is an allowed placeholder, and that a
    trial render with sample values succeeds in the sandbox.
    """
    if not subject.strip():
        raise TemplateRefused("The subject is empty.", field="subject")
    if not body.strip():
        raise TemplateRefused("The body is empty.", field="body")
    if len(subject) > MAX_SUBJECT or "\n" in subject.strip() or "\r" in subject:
        raise TemplateRefused(
            f"The subject must be one line of at most {MAX_SUBJECT} characters.",
            field="subject",
        )
    if len(body) > MAX_BODY:
        raise TemplateRefused(f"The body is longer than {MAX_BODY} characters.", field="body")
    for name, source in (("subject", subject), ("body", body)):
        try:
            tree = _ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateRefused(
                f"The {name} is not a valid template (line {exc.lineno}: {exc.message}).",
                field=name,
            ) from None
        unknown = sorted(meta.find_undeclared_variables(tree) - PLACEHOLDERS.keys())
        if unknown:
            listed = ", ".join("{{ " + u + " }}" for u in unknown)
            raise TemplateRefused(
                f"The {name} uses unknown placeholder(s) {listed}; allowed: "
                + ", ".join(sorted(PLACEHOLDERS))
                + ".",
                field=name,
                unknown=unknown,
            )
    try:
        render_notice(subject, body, sample_context())
    except Exception as exc:  # the sandbox's refusals and any error of the expression
        raise TemplateRefused(
            f"The template cannot be rendered: {type(exc).__name__}: {exc}"[:400]
        ) from None


def render_notice(subject: str, body: str, context: NoticeContext) -> NoticeContent:
    """Render a checked template.  Raises Jinja2's ``TemplateError`` (``UndefinedError``,
    ``SecurityError``) only for a template that was never checked."""
    values = context.as_dict()
    rendered_subject = " ".join(_compiled(subject).render(values).split())
    rendered_body = _compiled(body).render(values)
    return NoticeContent(rendered_subject, rendered_body)


@dataclass(frozen=True)
class DefaultTemplate:
    name: str
    channel: NoticeChannel
    subject: str
    body: str


_DEFAULT_BODY = """\
Dear {{ customer_name }},

We are writing to tell you about a personal data breach at {{ organisation }} that \
involves your personal information. We are sorry that this has happened.

What happened
{{ what_happened }}
It happened on or around {{ when_happened }}. We found out on {{ when_discovered }}.

The information involved
{{ data_involved }}

What this could mean for you
{{ likely_consequences }}

What we have done
{{ measures_taken }}

What you can do
{{ advice }}

Who to contact
If you have any questions, please contact {{ contact_point }} and quote the reference \
{{ incident_reference }}.

You also have the right to complain to the Information Commissioner's Office \
(ico.org.uk, telephone 0303 123 1113).

Yours sincerely,
{{ organisation }}
"""

DEFAULT_TEMPLATES: dict[NoticeChannel, DefaultTemplate] = {
    NoticeChannel.EMAIL: DefaultTemplate(
        "Default e-mail notice",
        NoticeChannel.EMAIL,
        "Important: a data breach involving your information ({{ incident_reference }})",
        _DEFAULT_BODY,
    ),
    NoticeChannel.LETTER: DefaultTemplate(
        "Default letter",
        NoticeChannel.LETTER,
        "A data breach involving your information ({{ incident_reference }})",
        _DEFAULT_BODY,
    ),
}
"""The templates used when the dpo has saved none for a channel."""


# --- stored templates ----------------------------------------------------------------------


class NoticeTemplateNotFound(NotFound):
    slug = "notice-template-not-found"
    title = "Notice template not found"


class NoticeTemplateAuditAction(StrEnum):
    SAVED = "incidents:notice-template:saved"


class NoticeTemplateService:
    """The dpo's notice templates: every save is checked (:func:`check_template`) and
    audited; the newest template of a channel is the one new notices use."""

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def listing(self) -> list[NoticeTemplate]:
        self.principal.require(Permission.INCIDENTS_VIEW)
        return list(
            self.session.scalars(
                select(NoticeTemplate).order_by(NoticeTemplate.channel, NoticeTemplate.name)
            )
        )

    def get(self, template_id: int) -> NoticeTemplate:
        self.principal.require(Permission.INCIDENTS_VIEW)
        template = self.session.get(NoticeTemplate, template_id)
        if template is None:
            raise NoticeTemplateNotFound(f"There is no notice template {template_id}.")
        return template

    def save(
        self,
        *,
        name: str,
        channel: str,
        subject: str,
        body: str,
        template_id: int | None = None,
    ) -> NoticeTemplate:
        """Create (no id) or change a template; refused (422) if it could fail to render."""
        self.principal.require(Permission.INCIDENTS_NOTIFY)
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise TemplateRefused("Give a name of at most 100 characters.", field="name")
        if channel not in (NoticeChannel.EMAIL.value, NoticeChannel.LETTER.value):
            raise TemplateRefused("channel must be 'email' or 'letter'.", field="channel")
        check_template(subject, body)
        clash = self.session.scalar(select(NoticeTemplate.id).where(NoticeTemplate.name == name))
        if clash is not None and clash != template_id:
            raise TemplateRefused(f"A template named {name!r} exists already.", field="name")
        now = utcnow()
        if template_id is None:
            template = NoticeTemplate(name=name, channel=channel, created_at=now)
            self.session.add(template)
        else:
            template = self.get(template_id)
            template.channel = channel
            template.name = name
        template.subject = subject.strip()
        template.body = body
        template.updated_at = now
        template.updated_by_label = self.principal.label
        self.session.flush()
        record_event(
            self.session,
            self.principal,
            NoticeTemplateAuditAction.SAVED,
            object_type="notice-template",
            object_id=template.id,
            details={"name": name, "channel": channel, "created": template_id is None},
        )
        return template

    def preview(self, subject: str, body: str) -> NoticeContent:
        """The template rendered with sample values (checked first)."""
        self.principal.require(Permission.INCIDENTS_VIEW)
        check_template(subject, body)
        return render_notice(subject, body, sample_context())
