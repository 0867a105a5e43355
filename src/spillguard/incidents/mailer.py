"""Outgoing mail: the :class:`MailSender` interface and its implementations.

Customer notices, escalations and breach-clock reminders all leave through a
``MailSender`` chosen by settings (``mail_backend``):

* :class:`SmtpMailSender` talks SMTP (smtplib) to ``smtp_host``, keeping one connection
  open between messages, with optional STARTTLS and login;
* :class:`MemoryMailSender` keeps the messages in a list (tests, the demo);
* :class:`UnconfiguredMailSender` (``smtp`` backend without ``smtp_host``) refuses every
  message as a *temporary* failure, so nothing is ever marked sent that was not.

Failures say what the caller may do next:

* :class:`TemporaryMailError` — a 4xx reply, a timeout, a refused or lost connection
  *before* the server could have accepted the message: try again later;
* :class:`PermanentMailError` — a 5xx reply: the server will not take it (a bounce);
* :class:`MailOutcomeUnknown` — the end of the message (the final ``.``) was sent but no
  reply came: the server may have accepted it.  Sending again could deliver it twice,
  so the outbox never retries these by itself (docs/incidents-notices.md).

``send(message, before_commit=...)`` calls ``before_commit`` just before the final
``.`` goes out: the outbox records there that the message may now be accepted, which is
what lets it tell, after a crash, "certainly not sent" from "perhaps sent".
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from email.message import Message
from email.utils import getaddresses
from typing import Protocol, runtime_checkable

from spillguard.core.settings import Settings

__all__ = [
    "MailError",
    "MailOutcomeUnknown",
    "MailSender",
    "MemoryMailSender",
    "PermanentMailError",
    "SmtpMailSender",
    "TemporaryMailError",
    "UnconfiguredMailSender",
    "mail_sender_from_settings",
]

BeforeCommit = Callable[[], None]
_ADDRESS_LIKE = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


class MailError(Exception):
    """A message was not (or not certainly) sent.  ``reply`` is the server's answer or a
    short description; it never carries the message or its recipient."""

    temporary: bool = False
    maybe_delivered: bool = False

    def __init__(self, reply: str) -> None:
        # Servers often quote the recipient ("550 5.1.1 <a@b.example>: unknown user"); a
        # customer's address must not reach a log line or a status column, so any
        # address-like word is replaced.
        clean = _ADDRESS_LIKE.sub("<address>", reply)[:500]
        super().__init__(clean)
        self.reply = clean


class TemporaryMailError(MailError):
    """Not accepted this time (4xx, timeout, no connection); the same message may be
    sent again later."""

    temporary = True


class PermanentMailError(MailError):
    """Refused for good (5xx): sending it again would be refused again."""


class MailOutcomeUnknown(MailError):
    """The whole message went out but no answer came back: perhaps delivered."""

    temporary = True
    maybe_delivered = True


@runtime_checkable
class MailSender(Protocol):
    """Sends one e-mail message.  Raises a :class:`MailError` when it was not sent."""

    def send(self, message: Message, *, before_commit: BeforeCommit | None = None) -> None:
        """Send ``message`` to the addresses in its To/Cc/Bcc headers.

        ``before_commit`` (optional) runs once, just before the point after which the
        server may have accepted the message; if it raises, nothing is sent.
        """
        ...

    def close(self) -> None:
        """Release any connection held between messages."""
        ...


def recipients_of(message: Message) -> list[str]:
    """Every address in To, Cc and Bcc (the envelope recipients)."""
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return [address for _, address in getaddresses(fields) if address]


class MemoryMailSender:
    """Keeps every message it is given (tests, the demo's mail sink)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._lock = threading.Lock()

    def send(self, message: Message, *, before_commit: BeforeCommit | None = None) -> None:
        if not recipients_of(message):
            raise PermanentMailError("550 5.1.3 the message has no recipient")
        if before_commit is not None:
            before_commit()
        with self._lock:
            self.sent.append(message)

    def close(self) -> None:
        return None


class UnconfiguredMailSender:
    """No SMTP server is configured: every message stays unsent (a temporary failure),
    visible as such, until one is."""

    def send(self, message: Message, *, before_commit: BeforeCommit | None = None) -> None:
        raise TemporaryMailError("no SMTP server is configured (set SPILLGUARD_SMTP_HOST)")

    def close(self) -> None:
        return None


def _classify(code: int, what: str, message: bytes | str) -> MailError:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    reply = f"{code} {text}".strip()[:300]
    if 400 <= code < 500:
        return TemporaryMailError(f"{what}: {reply}")
    if 500 <= code < 600:
        return PermanentMailError(f"{what}: {reply}")
    return TemporaryMailError(f"{what}: unexpected reply {reply}")


class SmtpMailSender:
    """SMTP through smtplib, one connection reused for consecutive messages.

    Not thread-safe: each sending thread has its own instance.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        timeout: float = 30.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.local_hostname = socket.gethostname() or "localhost"
        self._smtp: smtplib.SMTP | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailSender:
        if not settings.smtp_host:
            raise ValueError("smtp_host is not set")
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout_seconds,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        )

    # --- connection --------------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        try:
            smtp = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            )
        except smtplib.SMTPConnectError as exc:
            raise _classify(exc.smtp_code, "connect", exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryMailError(f"cannot connect to the SMTP server: {_why(exc)}") from None
        try:
            # The final "." goes out as its own small write after the body (see
            # _transaction); without TCP_NODELAY, Nagle's algorithm and the server's
            # delayed ACK would hold it back ~40 ms per message.
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if self.starttls:
                if not smtp.has_extn("starttls"):
                    raise PermanentMailError("the SMTP server does not offer STARTTLS")
                smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except MailError:
            _quietly_close(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(smtp)
            raise _classify(exc.smtp_code, "login", exc.smtp_error) from None
        except smtplib.SMTPResponseException as exc:
            _quietly_close(smtp)
            raise _classify(exc.smtp_code, "greeting", exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(smtp)
            raise TemporaryMailError(f"SMTP session failed: {_why(exc)}") from None
        self._smtp = smtp
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                _quietly_close(smtp)

    def _drop(self) -> None:
        if self._smtp is not None:
            _quietly_close(self._smtp)
            self._smtp = None

    # --- sending -----------------------------------------------------------------------
    def send(self, message: Message, *, before_commit: BeforeCommit | None = None) -> None:
        recipients = recipients_of(message)
        if not recipients:
            raise PermanentMailError("550 5.1.3 the message has no recipient")
        del message["Bcc"]
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        smtp = self._connect()
        try:
            self._transaction(smtp, recipients, data, before_commit)
        except MailError as exc:
            if exc.maybe_delivered or not isinstance(exc, PermanentMailError):
                self._drop()  # the session is in an unknown state
            else:
                self._reset()
            raise
        except BaseException:
            # before_commit refused (or we are interrupted) in the middle of DATA: closing
            # the connection without the final "." makes the server discard the message.
            self._drop()
            raise

    def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        recipients: list[str],
        data: bytes,
        before_commit: BeforeCommit | None,
    ) -> None:
        options = ["SMTPUTF8"] if _needs_smtputf8(recipients) else []
        try:
            code, reply = smtp.mail(self.sender, options)
            if code != 250:
                raise _classify(code, "MAIL FROM", reply)
            for address in recipients:
                code, reply = smtp.rcpt(address)
                if code not in (250, 251):
                    raise _classify(code, "RCPT TO", reply)
            code, reply = smtp.docmd("DATA")
            if code != 354:
                raise _classify(code, "DATA", reply)
            body = _DOT_AT_LINE_START.sub(b"..", data)  # RFC 5321 4.5.2 transparency
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            smtp.send(body)
        except MailError:
            raise
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryMailError(f"SMTP session failed: {_why(exc)}") from None
        # Up to here the server cannot have accepted anything: a connection lost now
        # discards the message.  From the final "." on, it may have.
        if before_commit is not None:
            before_commit()
        try:
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            raise MailOutcomeUnknown(
                f"no reply after the end of the message: {_why(exc)}"
            ) from None
        if code != 250:
            raise _classify(code, "end of data", reply)


_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def _needs_smtputf8(recipients: list[str]) -> bool:
    return any(not a.isascii() for a in recipients)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as "Connection unexpectedly closed: timed out".
        return "timed out" if "timed out" in str(exc) else "server disconnected"
    return type(exc).__name__


def _quietly_close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


MEMORY_SENDER = MemoryMailSender()
"""The ``memory`` backend: one list per process (tests and the demo read it)."""


def mail_sender_from_settings(settings: Settings) -> MailSender:
    """The sender ``settings.mail_backend`` names; a new SMTP sender (its own
    connection) for each caller, so each sending thread asks for its own."""
    if settings.mail_backend == "memory":
        return MEMORY_SENDER
    if not settings.smtp_host:
        return UnconfiguredMailSender()
    return SmtpMailSender.from_settings(settings)
