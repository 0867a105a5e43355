"""E-mail witnesses: every signed checkpoint goes out to addresses the operator cannot
reach (an external auditor's mailbox, a second organisation), so a log that is later
truncated or rewritten disagrees with checkpoints held elsewhere.

``audit_witness_emails`` names the witnesses. A run mails every checkpoint not yet mailed
(``audit_checkpoints.mailed_at`` null), oldest first, at most :data:`MAX_PER_MESSAGE` to a
message, as an attachment in the format of ``spillguard audit checkpoints --export``,
which ``spillguard audit verify --against FILE`` reads. A checkpoint holds a tree size, a
root hash, a time and a signature: no customer data.

Nothing is lost: a send that fails leaves its checkpoints unmarked, and the next run (the
scheduled job every ``audit_witness_email_interval_seconds``, or ``spillguard audit
witness-mail``) mails them again. The price is that a witness may receive a checkpoint
twice (a reply lost after the message was sent, a commit that failed after the send);
a second copy of a signed checkpoint is harmless, a missing one is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.checkpoints import LogKey, Signer
from spillguard.audit.log import text_of
from spillguard.audit.models import Checkpoint
from spillguard.core.db import utcnow
from spillguard.core.jobs import Job
from spillguard.core.keys import KeyRing
from spillguard.core.settings import Settings
from spillguard.incidents.mailer import MailError, MailSender, mail_sender_from_settings

log = structlog.get_logger(__name__)

JOB_NAME = "audit.witness-mail"
MAX_PER_MESSAGE = 500
"""Checkpoints per message: about 120 KB of attachment."""


@dataclass(frozen=True)
class WitnessMailResult:
    """What one run did: checkpoints and messages sent, checkpoints still waiting (a send
    failed), and the failure's reply (never a checkpoint or an address)."""

    mailed: int
    messages: int
    pending: int
    error: str | None = None


def witness_message(
    settings: Settings, key: LogKey, checkpoints: Sequence[Checkpoint]
) -> EmailMessage:
    """One message to every witness carrying ``checkpoints`` (oldest first) as a file."""
    first, last = checkpoints[0].tree_size, checkpoints[-1].tree_size
    origin = checkpoints[-1].origin
    name = f"audit-checkpoints-{first}-{last}.txt"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(settings.audit_witness_emails)
    message["Subject"] = f"{origin}: signed audit checkpoints, tree sizes {first} to {last}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rsplit("@", 1)[-1])
    message["Auto-Submitted"] = "auto-generated"
    count = len(checkpoints)
    message.set_content(
        f"You are a witness of the tamper-evident audit log {origin}.\n\n"
        f"Attached: {count} signed checkpoint{'s' if count != 1 else ''} (tree sizes "
        f"{first} to {last}), signed with the log key {key.key_id}\n"
        f"({key.note_verifier_key(origin)}).\n\n"
        "Keep this message where the operator of that Spillguard cannot change it. To\n"
        "check the log against it, save the attachment and run\n\n"
        f"    spillguard audit verify --against {name}\n\n"
        "A log that was truncated or rewritten after these checkpoints were signed fails\n"
        "that check. A checkpoint holds a tree size, a root hash, a time and a signature;\n"
        "no customer data.\n"
    )
    body = "".join(text_of(c, key) + "\n" for c in checkpoints)
    message.add_attachment(body, subtype="plain", filename=name)
    return message


def pending_count(session: Session) -> int:
    """Checkpoints not yet mailed."""
    query = select(func.count()).select_from(Checkpoint).where(Checkpoint.mailed_at.is_(None))
    return session.scalar(query) or 0


def mail_checkpoints(
    session: Session,
    keys: KeyRing,
    settings: Settings,
    sender: MailSender,
    *,
    now: datetime | None = None,
) -> WitnessMailResult:
    """Mail every checkpoint not yet mailed to the witnesses, inside the caller's
    transaction (the marks commit with it). Nothing to do without witnesses."""
    if not settings.audit_witness_emails:
        return WitnessMailResult(0, 0, 0)
    key = Signer(keys).key
    mailed = messages = 0
    while True:
        batch = session.scalars(
            select(Checkpoint)
            .where(Checkpoint.mailed_at.is_(None))
            .order_by(Checkpoint.tree_size)
            .limit(MAX_PER_MESSAGE)
        ).all()
        if not batch:
            return WitnessMailResult(mailed, messages, 0)
        try:
            sender.send(witness_message(settings, key, batch))
        except MailError as exc:
            return WitnessMailResult(mailed, messages, pending_count(session), str(exc))
        stamp = now or utcnow()
        for checkpoint in batch:
            checkpoint.mailed_at = stamp
        session.flush()
        mailed += len(batch)
        messages += 1
        log.info("audit_witness_mailed", checkpoints=len(batch), up_to=batch[-1].tree_size)


def witness_mail_job(
    settings: Settings, keys: KeyRing, sender: Callable[[], MailSender] | None = None
) -> Job:
    """The scheduled job (core.jobs) that mails new checkpoints to the witnesses."""

    def run(session: Session) -> WitnessMailResult:
        if not settings.audit_witness_emails:
            return WitnessMailResult(0, 0, 0)
        mail = sender() if sender is not None else mail_sender_from_settings(settings)
        try:
            result = mail_checkpoints(session, keys, settings, mail)
        finally:
            mail.close()
        if result.error is not None:  # the CLI says it in its error line instead
            log.warning("audit_witness_mail_failed", reply=result.error, pending=result.pending)
        return result

    return Job(JOB_NAME, settings.audit_witness_email_interval_seconds, run)
