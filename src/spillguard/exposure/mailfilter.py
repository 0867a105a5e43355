"""The SMTP content filter (`spillguard mail-filter`): a mail server hands each message to
it (Postfix ``content_filter``), it inspects the message and hands it on to the next hop
— unchanged, with protected parts replaced by gateway links, or not at all (quarantined)
— per recipient.

How one message goes through (:meth:`MailFilter.process`):

1. parse it (stdlib ``email``, ``policy.default``) into parts: the subject, each text
   body, each attachment (a message that cannot be taken apart safely is one part);
2. inspect every part with the inspection engine and the customer directory (EDM);
3. decide per recipient (:func:`~spillguard.exposure.mail_policy.decide`, which asks
   :mod:`~spillguard.exposure.access` who may receive what) and split the recipients
   into groups that get the same copy;
4. per group, in one database transaction: register the parts, write the ledger rows,
   gateway links or quarantine; hand the copy to the next hop; commit only when the next
   hop accepted it.

The reply to DATA is ``250`` only when every group was handed on or durably held. If the
next hop is down the reply is ``451`` and the transaction of the failing group is rolled
back, so nothing is recorded for it and the sending server retries. A retry records
nothing twice and hands on nothing twice that was committed before: ledger rows, links
and quarantines carry keys derived from the message (Message-ID, else a hash of its
bytes) and recipient, and a recipient whose rows are already there is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import signal
import smtplib
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import errors as email_errors
from email import policy as email_policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Protocol, cast

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from spillguard.audit.honeytokens import check_mail
from spillguard.core.audit import record_event
from spillguard.core.db import utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Principal
from spillguard.core.settings import Settings
from spillguard.exposure.access import user_by_email, user_devices
from spillguard.exposure.gateway import ensure_link, link_url
from spillguard.exposure.ledger import InvalidDestination, NewDelivery, normalise_recipient
from spillguard.exposure.mail_policy import (
    HEADER_PREFIX,
    MAX_RECIPIENTS,
    REPLY_BAD_RECIPIENT,
    REPLY_BAD_SENDER,
    REPLY_NEXT_HOP_DOWN,
    REPLY_OK,
    REPLY_TEMPORARY,
    REPLY_TOO_MANY_RECIPIENTS,
    SOURCE_SYSTEM,
    WHOLE_MESSAGE,
    Group,
    MailAction,
    MailPolicy,
    PartSummary,
    QuarantineAuditAction,
    QuarantineKind,
    Recipient,
    RecipientOutcome,
    decide,
    delivery_source_id,
    field_name,
    group_recipients,
    header_value,
    link_ref,
    link_text,
    message_key,
    message_label,
    parse_hostport,
    quarantine_ref,
    sender_notice,
    split_message,
    strip_own_headers,
    verdict_headers,
    with_headers,
)
from spillguard.exposure.models import Channel, Delivery, HeldDocument, QuarantinedMessage
from spillguard.exposure.services import record_deliveries, register_report
from spillguard.exposure.store import BlobStore, HeldDocuments, blob_store
from spillguard.inspection.classify import (
    IncompleteEntry,
    InspectionReport,
    ItemStatus,
    Label,
    LabelRules,
    classify,
)
from spillguard.inspection.scan import scan
from spillguard.inspection.services import InspectionRuntime, item_name

log = structlog.get_logger("spillguard.mailfilter")

MAX_MULTIPARTS = 64
"""More multipart containers than this and the message is not taken apart (the stdlib
parser's time grows with the square of the nesting, and it recurses)."""
MAX_PARTS = 500
WORKERS = 4
SHUTDOWN_GRACE = 60.0
"""Seconds a stopping filter waits for the messages it is filtering to get their reply."""
SMTP_POLICY = email_policy.default.clone(linesep="\r\n")
_MULTIPART = re.compile(rb"(?im)^content-type:[ \t]*multipart/")
_BROKEN_STRUCTURE = (
    email_errors.NoBoundaryInMultipartDefect,
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.MissingHeaderBodySeparatorDefect,
)
_KEPT_IN_NOTICE = {
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "date",
    "message-id",
    "in-reply-to",
    "references",
}


# --- taking a message apart --------------------------------------------------------------


@dataclass(frozen=True)
class MailPart:
    """One piece of a message that is inspected on its own (and may be held on its own)."""

    index: int
    kind: str  # "subject", "body", "attachment" or "message" (the whole message)
    name: str
    media_type: str
    data: bytes
    path: tuple[int, ...] | None = None  # where it sits in the MIME tree


@dataclass(frozen=True)
class ParsedMail:
    """A message as received (without any ``X-Spillguard-*`` field) and its parts.

    ``problem`` says why the message is one part instead of many (broken structure, too
    deep); it is an ``unscannable`` reason and never quotes the content.
    """

    raw: bytes
    message_id: str | None
    parts: tuple[MailPart, ...]
    problem: str | None = None
    inspect_whole: bool = True  # False: the problem is too bad to even try (too deep)


def _safe(call: Callable[[], Any], default: Any = None) -> Any:
    try:
        return call()
    except Exception:  # a malformed header or parameter: treat as absent
        return default


def _leaf(node: Message, index: int, path: tuple[int, ...], counter: dict[str, int]) -> MailPart:
    content_type = _safe(node.get_content_type, "application/octet-stream")
    filename = _safe(node.get_filename)
    disposition = _safe(node.get_content_disposition)
    if content_type == "message/rfc822":
        counter["attachment"] += 1
        inner = node.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        data = first.as_bytes(policy=SMTP_POLICY) if isinstance(first, Message) else b""
        name = item_name(filename, f"message {counter['attachment']}.eml")
        return MailPart(index, "attachment", name, content_type, data, path)
    if content_type in ("text/plain", "text/html") and not filename and disposition != "attachment":
        counter["body"] += 1
        text = _safe(lambda: cast(EmailMessage, node).get_content())
        if isinstance(text, str):
            data = text.encode("utf-8", "surrogateescape")
        else:
            payload = _safe(lambda: node.get_payload(decode=True), b"")
            data = payload if isinstance(payload, bytes) else b""
        suffix = "html" if content_type == "text/html" else "txt"
        number = "" if counter["body"] == 1 else f" {counter['body']}"
        return MailPart(index, "body", f"message text{number}.{suffix}", content_type, data, path)
    counter["attachment"] += 1
    payload = _safe(lambda: node.get_payload(decode=True), b"")
    data = payload if isinstance(payload, bytes) else b""
    name = item_name(filename, f"attachment {counter['attachment']}")
    return MailPart(index, "attachment", name, content_type, data, path)


def _whole(raw: bytes, message_id: str | None, problem: str, *, inspect: bool) -> ParsedMail:
    part = MailPart(0, "message", "message.eml", "message/rfc822", raw)
    return ParsedMail(raw, message_id, (part,), problem, inspect)


def parse_mail(received: bytes) -> ParsedMail:
    """Take a message apart into the parts the filter inspects and may replace.

    Never raises. A message with a broken MIME structure (missing boundaries, a
    multipart without parts) is one part, inspected as a whole and counted as not fully
    inspected (``problem``); a message nested deeper than :data:`MAX_MULTIPARTS` or with
    more than :data:`MAX_PARTS` parts is not even parsed.
    """
    raw = strip_own_headers(received)
    message_id = header_value(raw, "message-id")
    if len(_MULTIPART.findall(raw)) > MAX_MULTIPARTS:
        problem = f"unscannable: nesting too deep: more than {MAX_MULTIPARTS} MIME containers"
        return _whole(raw, message_id, problem, inspect=False)
    try:
        message = BytesParser(policy=email_policy.default).parsebytes(raw)
    except Exception as exc:  # RecursionError and the parser's own failures
        return _whole(
            raw, message_id, f"unscannable: corrupt eml: {type(exc).__name__}", inspect=False
        )
    parts: list[MailPart] = []
    subject = _safe(lambda: str(message.get("subject") or ""), "") or ""
    if subject.strip():
        parts.append(
            MailPart(
                0, "subject", "subject", "text/plain", subject.encode("utf-8", "surrogateescape")
            )
        )
    counter = {"body": 0, "attachment": 0}
    stack: list[tuple[Message, tuple[int, ...]]] = [(message, ())]
    try:
        while stack:
            node, path = stack.pop()
            defect = next((d for d in node.defects if isinstance(d, _BROKEN_STRUCTURE)), None)
            if defect is not None:
                reason = f"unscannable: corrupt eml: {type(defect).__name__}"
                return _whole(raw, message_id, reason, inspect=True)
            content_type = _safe(node.get_content_type, "")
            if node.is_multipart() and content_type != "message/rfc822":
                children = node.get_payload()
                if not isinstance(children, list) or not children:
                    return _whole(
                        raw, message_id, "unscannable: corrupt eml: empty multipart", inspect=True
                    )
                for position in range(len(children) - 1, -1, -1):
                    child = children[position]
                    if not isinstance(child, Message):
                        return _whole(raw, message_id, "unscannable: corrupt eml", inspect=True)
                    stack.append((child, (*path, position)))
                continue
            if len(parts) >= MAX_PARTS:
                reason = f"unscannable: too many entries: more than {MAX_PARTS} MIME parts"
                return _whole(raw, message_id, reason, inspect=False)
            parts.append(_leaf(node, len(parts), path, counter))
    except Exception as exc:  # a part the library cannot decode or serialise
        return _whole(
            raw, message_id, f"unscannable: corrupt eml: {type(exc).__name__}", inspect=True
        )
    return ParsedMail(raw, message_id, tuple(parts))


# --- inspecting --------------------------------------------------------------------------


@dataclass(frozen=True)
class InspectedPart:
    part: MailPart
    report: InspectionReport

    @property
    def label(self) -> Label:
        return self.report.label

    @property
    def worth_recording(self) -> bool:
        """The subject is recorded only when it holds something; every other part always
        (it is also what tells a retry that the message already went)."""
        if self.part.kind != "subject":
            return True
        return bool(self.report.categories or self.report.customers or self.report.incomplete)


class ReportCache:
    """The last few reports, by content, in one filter process: a message the sending
    server retries (after a 451), or the same file sent again, is not inspected twice.

    A report is reused only with the EDM index it was made with (an import of the
    customer directory loads a new one) and never when the engine gave up on it
    (``uninspected``: a retry may have more time)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], tuple[object, InspectionReport]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, name: str, index: object) -> InspectionReport | None:
        with self._lock:
            found = self._items.get((sha256, name))
            if found is None or found[0] is not index:
                return None
            self._items.move_to_end((sha256, name))
            return found[1]

    def put(self, sha256: str, name: str, index: object, report: InspectionReport) -> None:
        if report.status is ItemStatus.UNINSPECTED:
            return
        with self._lock:
            self._items[(sha256, name)] = (index, report)
            self._items.move_to_end((sha256, name))
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def inspect_parts(
    parsed: ParsedMail,
    *,
    engine: Any,
    edm_index: Any,
    rules: LabelRules,
    limits: Any = None,
    cache: ReportCache | None = None,
) -> list[InspectedPart]:
    """Inspect every part; a message that could not be taken apart counts as not fully
    inspected (at least ``rules.incomplete_label``), whatever was found in it."""
    inspected = []
    for part in parsed.parts:
        digest = hashlib.sha256(part.data).hexdigest()
        if parsed.problem is not None and not parsed.inspect_whole:
            report = classify(
                part.name,
                sha256=digest,
                size=len(part.data),
                format="eml",
                unscannable=[(part.name, parsed.problem)],
                rules=rules,
            )
        else:
            cached = cache.get(digest, part.name, edm_index) if cache is not None else None
            if cached is None:
                report = scan(
                    part.data,
                    name=part.name,
                    engine=engine,
                    edm_index=edm_index,
                    limits=limits,
                    label_rules=rules,
                )
                if cache is not None:
                    cache.put(digest, part.name, edm_index, report)
            else:
                report = cached
            if parsed.problem is not None:
                report = _incomplete(report, parsed.problem, rules)
        inspected.append(InspectedPart(part, report))
    return inspected


def _incomplete(report: InspectionReport, reason: str, rules: LabelRules) -> InspectionReport:
    entry = IncompleteEntry(report.path, ItemStatus.UNSCANNABLE, reason)
    status = report.status if report.status is ItemStatus.UNINSPECTED else ItemStatus.UNSCANNABLE
    return replace(
        report,
        status=status,
        label=max(report.label, rules.incomplete_label),
        incomplete=(*report.incomplete, entry),
    )


# --- the next hop ------------------------------------------------------------------------


class RelayError(Exception):
    """The next hop did not take a message: temporarily (retry) or for good."""

    def __init__(self, temporary: bool, reply: str) -> None:
        super().__init__(reply)
        self.temporary = temporary
        self.reply = reply


class Relay(Protocol):
    """Hands a message to the next SMTP server; returns the recipients it refused."""

    def send(
        self,
        mail_from: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]: ...


def _reply_of(code: int, what: str) -> RelayError:
    if 400 <= code < 500:
        return RelayError(True, REPLY_NEXT_HOP_DOWN)
    return RelayError(False, f"554 5.0.0 The next hop refused the {what} ({code})")


class SmtpRelay:
    """The next hop over SMTP (smtplib), one connection per message."""

    def __init__(self, host: str, port: int, *, timeout: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.local_hostname = socket.gethostname() or "localhost"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpRelay:
        host, port = parse_hostport(settings.mail_filter_next_hop, what="mail_filter_next_hop")
        return cls(host, port, timeout=settings.mail_filter_next_hop_timeout_seconds)

    def send(
        self,
        mail_from: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        try:
            with smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            ) as smtp:
                return smtp.sendmail(mail_from, list(recipients), data, mail_options=list(options))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            temporary = any(400 <= c < 500 for c in codes)
            if temporary:
                raise RelayError(True, REPLY_NEXT_HOP_DOWN) from None
            raise RelayError(False, "550 5.1.1 The next hop refused every recipient") from None
        except smtplib.SMTPSenderRefused as exc:
            raise _reply_of(exc.smtp_code, "sender") from None
        except smtplib.SMTPDataError as exc:
            raise _reply_of(exc.smtp_code, "message") from None
        except smtplib.SMTPNotSupportedError:
            raise RelayError(
                False, "554 5.6.7 The next hop does not support SMTPUTF8 or 8BITMIME"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _reply_of(exc.smtp_code, "message") from None
        except (smtplib.SMTPException, OSError):
            raise RelayError(True, REPLY_NEXT_HOP_DOWN) from None


# --- the filter --------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingMail:
    """What the sending server handed over: envelope and bytes."""

    mail_from: str
    recipients: Sequence[str]
    content: bytes
    options: tuple[str, ...] = ()  # MAIL FROM parameters to pass on (BODY=8BITMIME, SMTPUTF8)


@dataclass
class _Message:
    """One message in flight: what was found, what was decided."""

    mail: IncomingMail
    parsed: ParsedMail
    key: str
    parts: list[InspectedPart]
    summaries: list[PartSummary]
    originals: dict[str, str]  # normalised address -> address as given
    recipients: dict[str, Recipient]
    outcomes: dict[str, RecipientOutcome]
    now: datetime
    label: Label = Label.PUBLIC
    customers: int = 0
    content_ids: dict[int, int] = field(default_factory=dict)
    whole_content_id: int | None = None
    inspect_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return all(p.report.complete for p in self.parts)


class MailFilter:
    """Inspects and decides one message at a time (thread-safe: each call has its own
    database session); :class:`MailFilterServer` puts it behind SMTP."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        session_factory: sessionmaker[DbSession],
        relay: Relay,
        *,
        runtime: InspectionRuntime | None = None,
        policy: MailPolicy | None = None,
        store: BlobStore | None = None,
    ) -> None:
        self.keys = keys
        self.session_factory = session_factory
        self.relay = relay
        self.runtime = runtime or InspectionRuntime.from_settings(settings, keys)
        self.policy = policy or mail_policy_of(settings)
        self.store = store or blob_store(settings.exposure_store_dir)
        self.base_url = settings.base_url
        self.link_days = settings.gateway_link_days
        self.principal = Principal.system("mail-filter")
        self.reports = ReportCache()

    def warm_up(self) -> None:
        """Build the inspection engine and load the directory's EDM index now, rather
        than for the first message (``spillguard mail-filter`` does this at start)."""
        self.runtime.engine()
        session = self.session_factory()
        try:
            self.runtime.edm.current(session)
        finally:
            session.close()

    # The whole message ------------------------------------------------------------------

    def process(self, mail: IncomingMail) -> str:
        """Filter one message; the SMTP reply to give the sending server. Never raises."""
        started = time.perf_counter()
        try:
            reply, message = self._process(mail)
        except RelayError as exc:
            log.warning("mail_deferred" if exc.temporary else "mail_refused", reply=exc.reply[:3])
            return exc.reply
        except Exception as exc:
            log.error("mail_filter_failed", error=type(exc).__name__, exc_info=exc)
            return REPLY_TEMPORARY
        actions: dict[str, int] = {}
        for outcome in message.outcomes.values():
            actions[outcome.action.value] = actions.get(outcome.action.value, 0) + 1
        log.info(
            "mail_filtered",
            message=message.key[:16],
            recipients=len(message.outcomes),
            parts=len(message.parts),
            label=message.label.value,
            customers=message.customers,
            complete=message.complete,
            actions=actions,
            ms=round((time.perf_counter() - started) * 1000, 1),
            inspect_ms=round(message.inspect_seconds * 1000, 1),
        )
        return reply

    def _process(self, mail: IncomingMail) -> tuple[str, _Message]:
        parsed = parse_mail(mail.content)
        session = self.session_factory()
        try:
            index = self.runtime.edm.current(session)
            recipients, originals = self._recipients(session, mail.recipients)
            session.rollback()  # end the read; inspection holds no transaction open
            inspect_started = time.perf_counter()
            parts = inspect_parts(
                parsed,
                engine=self.runtime.engine(),
                edm_index=index,
                rules=self.runtime.label_rules,
                limits=self.runtime.limits,
                cache=self.reports,
            )
            message = _Message(
                mail=mail,
                parsed=parsed,
                key=message_key(parsed.message_id, parsed.raw),
                parts=parts,
                summaries=[],
                originals=originals,
                recipients={r.address: r for r in recipients},
                outcomes={},
                now=utcnow(),
                inspect_seconds=time.perf_counter() - inspect_started,
            )
            self._decide(message, recipients, splittable=parsed.problem is None)
            groups = group_recipients(list(message.outcomes.items()))
            for group in groups:
                self._group_with_retry(session, message, group)
            return REPLY_OK, message
        finally:
            session.close()

    def _recipients(
        self, session: DbSession, addresses: Sequence[str]
    ) -> tuple[list[Recipient], dict[str, str]]:
        found: list[Recipient] = []
        originals: dict[str, str] = {}
        for given in addresses:
            address, domain = normalise_recipient(given)
            if address in originals:
                continue
            originals[address] = given
            user = user_by_email(session, address)
            if user is None:
                found.append(
                    Recipient(
                        address, domain, internal_domain=self.policy.is_internal_domain(domain)
                    )
                )
            else:
                found.append(
                    Recipient(address, domain, user.id, tuple(user_devices(session, user.id)))
                )
        return found, originals

    def _decide(self, message: _Message, recipients: list[Recipient], *, splittable: bool) -> None:
        message.summaries = [
            PartSummary(
                p.part.index,
                p.label,
                replaceable=splittable and p.part.kind in ("body", "attachment"),
            )
            for p in message.parts
        ]
        message.label = message_label(message.summaries)
        message.customers = len({c for p in message.parts for c in p.report.customer_ids})
        message.outcomes = {
            r.address: decide(r, message.summaries, self.policy) for r in recipients
        }
        needs_split = any(
            o.action is MailAction.LINK and WHOLE_MESSAGE not in o.linked
            for o in message.outcomes.values()
        )
        if splittable and needs_split and not _serialises(message.parsed.raw):
            self._decide(message, recipients, splittable=False)

    # One group ----------------------------------------------------------------------------

    def _group_with_retry(self, session: DbSession, message: _Message, group: Group) -> None:
        for attempt in range(3):
            try:
                self._group(session, message, group)
                return
            except IntegrityError:
                # Another message registered the same content (or a retry of this one ran
                # alongside) at the same moment: start the group again on what committed.
                session.rollback()
                message.content_ids.clear()
                message.whole_content_id = None
                if attempt == 2:
                    raise
            except BaseException:
                session.rollback()
                raise

    def _register(self, session: DbSession, message: _Message) -> None:
        if message.content_ids:
            return
        check_mail(
            session,
            self.keys,
            sender=message.mail.mail_from,
            recipients=list(message.recipients),
            reports=[p.report for p in message.parts],
            message_ref=message.key,
            now=message.now,
        )
        for part in message.parts:
            if part.worth_recording:
                message.content_ids[part.part.index] = register_report(
                    session, part.report, now=message.now
                ).id

    def _group(self, session: DbSession, message: _Message, group: Group) -> None:
        self._register(session, message)
        if group.action is MailAction.QUARANTINE:
            self._quarantine(session, message, group)
        elif group.action is MailAction.DELIVER:
            self._deliver(session, message, group)
        else:
            self._link(session, message, group.recipients[0])
        session.commit()

    def _deliveries(
        self, message: _Message, address: str, outcome: RecipientOutcome
    ) -> list[NewDelivery]:
        rows = []
        for part in message.parts:
            cid = message.content_ids.get(part.part.index)
            if cid is None or part.part.index in outcome.linked:
                continue
            for destination in outcome.destinations:
                rows.append(
                    NewDelivery(
                        cid,
                        destination,
                        Channel.MAIL,
                        message.now,
                        SOURCE_SYSTEM,
                        delivery_source_id(message.key, address, part.part.index, destination),
                    )
                )
        return rows

    def _record(
        self, session: DbSession, message: _Message, address: str
    ) -> tuple[bool, list[str]]:
        """Record a recipient's ledger rows; (whether they were all there already, the
        source ids written)."""
        rows = self._deliveries(message, address, message.outcomes[address])
        outcome = record_deliveries(session, rows, now=message.now)
        already = bool(rows) and outcome.recorded == 0
        return already, [r.source_id for r in rows if r.source_id is not None]

    def _headers(self, message: _Message, action: str) -> list[tuple[str, str]]:
        return verdict_headers(
            complete=message.complete,
            label=message.label,
            customers=message.customers,
            action=action,
        )

    def _relay(
        self, session: DbSession, message: _Message, written: dict[str, list[str]], data: bytes
    ) -> None:
        """Hand ``data`` to the recipients in ``written``; a recipient the next hop refuses
        keeps no ledger row of this attempt (the sender's retry is for them)."""
        if not written:
            return
        recipients = [message.originals[a] for a in written]
        refused = self.relay.send(
            message.mail.mail_from, recipients, data, options=message.mail.options
        )
        if not refused:
            return
        by_original = {message.originals[a]: a for a in written}
        temporary = False
        for original, (code, _text) in refused.items():
            address = by_original.get(original)
            if address is None:
                continue
            temporary = temporary or 400 <= code < 500
            self._forget(session, message, written[address])
        session.commit()  # the accepted recipients have it: keep their rows
        if temporary:
            raise RelayError(True, REPLY_NEXT_HOP_DOWN)
        raise RelayError(False, "550 5.1.1 The next hop refused some recipients")

    def _forget(self, session: DbSession, message: _Message, source_ids: list[str]) -> None:
        from spillguard.exposure.ledger import source_ref

        refs = [source_ref(SOURCE_SYSTEM, s) for s in source_ids]
        if refs:
            session.execute(
                delete(Delivery).where(
                    and_(Delivery.source_ref.in_(refs), Delivery.recorded_at == message.now)
                )
            )

    def _deliver(self, session: DbSession, message: _Message, group: Group) -> None:
        written: dict[str, list[str]] = {}
        for address in group.recipients:
            already, source_ids = self._record(session, message, address)
            if not already:
                written[address] = source_ids
        data = with_headers(message.parsed.raw, self._headers(message, MailAction.DELIVER.value))
        self._relay(session, message, written, data)

    def _link(self, session: DbSession, message: _Message, address: str) -> None:
        outcome = message.outcomes[address]
        user_id = message.recipients[address].user_id
        if user_id is None:  # decide() makes links for users only
            raise RuntimeError("a gateway link needs a user")
        documents = HeldDocuments(session, self.keys, self.store)
        texts: dict[int, str] = {}
        existed = False
        for index in outcome.linked:
            part, content_id = self._part_to_hold(session, message, index)
            made = ensure_link(
                session,
                self.keys,
                user_id=user_id,
                days=self.link_days,
                hold=_holder(documents, part, content_id),
                source_ref=link_ref(message.key, address, index),
                now=message.now,
            )
            existed = existed or not made.created
            whole = index == WHOLE_MESSAGE
            report = None if whole else self._report_of(message, index)
            texts[index] = link_text(
                name=part.name,
                label=message.label if report is None else report.label,
                customers=message.customers if report is None else len(report.customer_ids),
                reason=outcome.reason,
                url=link_url(self.base_url, made.token),
                expires_at=made.link.expires_at,
                whole_message=whole,
            )
        already, source_ids = self._record(session, message, address)
        if existed or already:
            return  # committed by an earlier attempt, links and all
        if WHOLE_MESSAGE in texts:
            copy_bytes = notice_message(
                message.parsed.raw,
                texts[WHOLE_MESSAGE],
                keep_subject=self._subject_allowed(message),
            )
        else:
            copy_bytes = replaced_copy(message.parsed, texts)
        data = with_headers(copy_bytes, self._headers(message, MailAction.LINK.value))
        self._relay(session, message, {address: source_ids}, data)

    def _subject_allowed(self, message: _Message) -> bool:
        subject = next((p for p in message.parts if p.part.kind == "subject"), None)
        return subject is None or subject.label < self.policy.protected_label

    def _report_of(self, message: _Message, index: int) -> InspectionReport:
        return next(p.report for p in message.parts if p.part.index == index)

    def _part_to_hold(
        self, session: DbSession, message: _Message, index: int
    ) -> tuple[MailPart, int | None]:
        """The part a link serves and its content id; for the whole message, the message
        as received (registered as a content of its own)."""
        if index != WHOLE_MESSAGE:
            part = next(p.part for p in message.parts if p.part.index == index)
            return part, message.content_ids.get(index)
        whole = MailPart(
            WHOLE_MESSAGE, "message", "message.eml", "message/rfc822", message.parsed.raw
        )
        if message.whole_content_id is None:
            if len(message.parts) == 1 and message.parts[0].part.kind == "message":
                message.whole_content_id = message.content_ids.get(0)
            else:
                report = scan(
                    message.parsed.raw,
                    name="message.eml",
                    engine=self.runtime.engine(),
                    edm_index=self.runtime.edm.current(session),
                    limits=self.runtime.limits,
                    label_rules=self.runtime.label_rules,
                )
                message.whole_content_id = register_report(session, report, now=message.now).id
        return whole, message.whole_content_id

    def _quarantine(self, session: DbSession, message: _Message, group: Group) -> None:
        kind = group.kind or QuarantineKind.EXTERNAL
        ref = quarantine_ref(message.key, kind, group.recipients)
        if session.scalar(
            select(QuarantinedMessage.id).where(QuarantinedMessage.message_ref == ref)
        ):
            return  # held (and the sender told) by an earlier attempt
        reasons = sorted({message.outcomes[a].reason for a in group.recipients})
        reason = " ".join(reasons)[:500]
        document = HeldDocuments(session, self.keys, self.store).hold(
            message.parsed.raw,
            name="message.eml",
            media_type="message/rfc822",
            purpose="quarantine",
            content_id=None,
        )
        held = QuarantinedMessage(
            document_id=document.id,
            received_at=message.now,
            sender=message.mail.mail_from[:320],
            recipients=[message.originals[a] for a in group.recipients],
            reason=reason,
            label=message.label.value,
            customer_count=message.customers,
            message_ref=ref,
        )
        session.add(held)
        session.flush()
        record_event(
            session,
            self.principal,
            QuarantineAuditAction.HELD,
            object_type="quarantine",
            object_id=held.id,
            details={
                "kind": kind.value,
                "recipients": len(group.recipients),
                "label": message.label.value,
                "customer_count": message.customers,
            },
        )
        if self._notify_sender(session, message, kind):
            self._send_notice(message, group, reason, held.id)

    def _notify_sender(self, session: DbSession, message: _Message, kind: QuarantineKind) -> bool:
        """Outbound mail held: the (inside) sender is told. Inbound mail held for a
        colleague's phone: only a sender inside the organisation is told, so nothing about
        a person's phone reaches an outsider. Never a null sender (no loops)."""
        sender = message.mail.mail_from
        if not sender:
            return False
        if kind is QuarantineKind.EXTERNAL:
            return True
        try:
            address, domain = normalise_recipient(sender)
        except InvalidDestination:
            return False
        return user_by_email(session, address) is not None or self.policy.is_internal_domain(domain)

    def _send_notice(self, message: _Message, group: Group, reason: str, held_id: int) -> None:
        sender = message.mail.mail_from
        subject, text = sender_notice(
            quarantine_id=held_id,
            message_id=message.parsed.message_id,
            received_at=message.now,
            recipients=[message.originals[a] for a in group.recipients],
            label=message.label,
            customers=message.customers,
            reason=reason,
        )
        notice = EmailMessage(policy=SMTP_POLICY)
        domain = sender.rpartition("@")[2] or "localhost"
        notice["From"] = f"Spillguard mail filter <postmaster@{domain}>"
        notice["To"] = sender
        notice["Subject"] = subject
        notice["Auto-Submitted"] = "auto-replied"
        if message.parsed.message_id:
            with contextlib.suppress(Exception):
                notice["In-Reply-To"] = message.parsed.message_id
        notice.set_content(text)
        data = with_headers(notice.as_bytes(policy=SMTP_POLICY), self._headers(message, "notice"))
        try:
            refused = self.relay.send("", [sender], data)
        except RelayError as exc:
            if exc.temporary:
                raise
            refused = {sender: (550, b"")}
        if refused:
            # The message is held for good; only the courtesy notice could not go.
            log.warning("quarantine_notice_refused", message=message.key[:16])


def _holder(
    documents: HeldDocuments, part: MailPart, content_id: int | None
) -> Callable[[], HeldDocument]:
    def hold() -> HeldDocument:
        return documents.hold(
            part.data,
            name=part.name,
            media_type=part.media_type,
            purpose="gateway",
            content_id=content_id,
        )

    return hold


def mail_policy_of(settings: Settings) -> MailPolicy:
    return MailPolicy.from_values(
        protected_label=settings.mail_filter_protected_label,
        external_label=settings.mail_filter_external_label,
        internal_action=settings.mail_filter_internal_action,
        internal_domains=settings.mail_filter_internal_domains,
    )


# --- copies ------------------------------------------------------------------------------


def _serialises(raw: bytes) -> bool:
    """Whether the message survives a parse and serialisation round trip (needed to cut a
    part out of it)."""
    try:
        BytesParser(policy=email_policy.default).parsebytes(raw).as_bytes(policy=SMTP_POLICY)
    except Exception:
        return False
    return True


def replaced_copy(parsed: ParsedMail, texts: dict[int, str]) -> bytes:
    """The message with each part in ``texts`` replaced by a text/plain part."""
    message = BytesParser(policy=email_policy.default).parsebytes(parsed.raw)
    paths = {p.index: p.path for p in parsed.parts}
    for index, text in texts.items():
        path = paths.get(index)
        if path is None:
            raise ValueError("only MIME parts can be replaced")
        if not path:
            root = cast(EmailMessage, message)
            root.clear_content()
            root.set_content(text)
            continue
        parent: Message = message
        for position in path[:-1]:
            parent = cast(list[Message], parent.get_payload())[position]
        replacement = EmailMessage(policy=email_policy.default)
        replacement.set_content(text, disposition="inline")
        del replacement["MIME-Version"]
        cast(list[Message], parent.get_payload())[path[-1]] = replacement
    return message.as_bytes(policy=SMTP_POLICY)


def notice_message(raw: bytes, text: str, *, keep_subject: bool) -> bytes:
    """A message in place of the original: its addressing headers (and subject, unless the
    subject itself is protected) and ``text`` as the only body."""
    keep = _KEPT_IN_NOTICE | ({"subject"} if keep_subject else set())
    fields = [f for f in split_message(raw)[0] if field_name(f) in keep]
    lines = [f.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for f in fields]
    if not keep_subject:
        lines.append(b"Subject: Message held by Spillguard\r\n")
    body = EmailMessage(policy=SMTP_POLICY)
    body.set_content(text)
    return b"".join(lines) + body.as_bytes(policy=SMTP_POLICY)


# --- SMTP --------------------------------------------------------------------------------


class FilterHandler:
    """aiosmtpd hooks: check the envelope, then filter the message in a worker thread."""

    def __init__(self, mail_filter: MailFilter, executor: ThreadPoolExecutor) -> None:
        self.filter = mail_filter
        self.executor = executor
        self.in_flight = 0  # messages being filtered (touched on the event loop only)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in ("", "<>"):
            address = "<>"  # the null sender (bounces, notices); aiosmtpd needs it non-empty
        else:
            try:
                normalise_recipient(address)
            except InvalidDestination:
                return REPLY_BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            normalise_recipient(address)
        except InvalidDestination:
            return REPLY_BAD_RECIPIENT
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return REPLY_TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        options = tuple(
            o for o in envelope.mail_options if o.upper() in ("BODY=8BITMIME", "SMTPUTF8")
        )
        sender = envelope.mail_from or ""
        mail = IncomingMail(
            "" if sender == "<>" else sender,
            list(envelope.rcpt_tos),
            bytes(envelope.original_content or b""),
            options,
        )
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            # If the client goes away meanwhile, the thread still finishes the message: its
            # retry then finds it done (see the module docstring).
            return await loop.run_in_executor(self.executor, self.filter.process, mail)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("mail_filter_failed", error=type(exc).__name__)
            return REPLY_TEMPORARY
        finally:
            self.in_flight -= 1


class MailFilterServer:
    """The filter listening for SMTP on ``host:port``.

    :meth:`start` runs it on an event loop in a background thread (tests, benchmark);
    :meth:`serve` runs it in the calling thread until SIGTERM or SIGINT (the CLI). When it
    stops, messages being filtered are finished and answered first (up to
    :data:`SHUTDOWN_GRACE` seconds; a message cut off later is retried by its sender).
    """

    def __init__(
        self,
        mail_filter: MailFilter,
        host: str,
        port: int,
        *,
        max_message_bytes: int,
        workers: int = WORKERS,
    ) -> None:
        self.filter = mail_filter
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="mail-filter")
        self.loop = asyncio.new_event_loop()
        self.handler = FilterHandler(mail_filter, self.executor)
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._hostname = socket.gethostname() or "localhost"

    def _protocol(self) -> SMTP:
        return SMTP(
            self.handler,
            hostname=self._hostname,
            ident="Spillguard mail filter",
            data_size_limit=self.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=self.loop,
        )

    async def _bind(self) -> None:
        self._server = await self.loop.create_server(self._protocol, self.host, self.port)
        sockets = self._server.sockets or ()
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])

    async def _shutdown(self, grace: float) -> None:
        """Stop accepting, let messages being filtered get their reply (up to ``grace``
        seconds), then close every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        deadline = self.loop.time() + grace
        while self.handler.in_flight and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def start(self) -> MailFilterServer:
        """Listen and serve on an event loop in a background thread (OSError when the
        address is taken or cannot be used)."""
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="mail-filter-loop", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._bind(), self.loop).result(30)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        if self._thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(grace), self.loop).result(
                    grace + 30
                )
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self._thread = None
        self._finish()

    def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Listen and serve in this thread until SIGTERM or SIGINT (OSError when the
        address is taken or cannot be used)."""
        try:
            self.loop.run_until_complete(self._bind())
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready()
            self.loop.run_until_complete(stop.wait())
            self.loop.run_until_complete(self._shutdown(SHUTDOWN_GRACE))
        finally:
            self._finish()

    def _finish(self) -> None:
        self.executor.shutdown(wait=True)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()

    def __enter__(self) -> MailFilterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "HEADER_PREFIX",
    "IncomingMail",
    "MailFilter",
    "MailFilterServer",
    "ParsedMail",
    "Relay",
    "RelayError",
    "SmtpRelay",
    "inspect_parts",
    "mail_policy_of",
    "notice_message",
    "parse_mail",
    "replaced_copy",
]
