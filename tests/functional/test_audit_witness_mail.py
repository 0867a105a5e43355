"""E-mail witnesses of the audit log (docs/audit.md "Witnessing and export"), on SQLite and
PostgreSQL, through a real SMTP server (aiosmtpd on loopback): every checkpoint reaches
the witnesses once it is signed, as an attachment `spillguard audit verify --against`
reads; a send that fails loses nothing and the next run catches up; the CLI command and
its one-line errors."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from faker import Faker
from sqlalchemy import Engine, select

from spillguard.audit.checkpoints import LogKey, Signer, parse_checkpoints
from spillguard.audit.log import run_sequencer
from spillguard.audit.models import Checkpoint
from spillguard.audit.witness import JOB_NAME, MAX_PER_MESSAGE, witness_mail_job
from spillguard.core.db import make_session_factory, transaction, utcnow
from spillguard.core.keys import KeyRing
from spillguard.core.settings import Settings
from spillguard.incidents.mailer import SmtpMailSender
from tests.functional.live import one_line_error, run_spillguard
from tests.functional.test_cli_audit import add_events
from tests.functional.test_mail_filter import Sink, sink  # noqa: F401 (fixture)

fake = Faker("en_GB")
WITNESSES = ["witness@auditor.example", "second@regulator.example"]


@pytest.fixture
def witnessed(settings: Settings, sink: Sink) -> Settings:  # noqa: F811
    return settings.model_copy(
        update={
            "audit_witness_emails": WITNESSES,
            "audit_checkpoint_interval_seconds": 0,
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_from": "spillguard@ops.example",
        }
    )


def checkpoint_file(received: bytes) -> tuple[EmailMessage, str]:
    """The message and its one attachment's text."""
    message = email.message_from_bytes(received, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    files = list(message.iter_attachments())
    assert len(files) == 1
    return message, files[0].get_content()


def run_job(engine: Engine, settings: Settings, keys: KeyRing) -> object:
    job = witness_mail_job(settings, keys, lambda: SmtpMailSender.from_settings(settings))
    with transaction(make_session_factory(engine)) as session:
        return job.run(session)


def sizes(engine: Engine, *, mailed: bool) -> list[int]:
    column = Checkpoint.mailed_at
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(Checkpoint.tree_size)
                .where(column.is_not(None) if mailed else column.is_(None))
                .order_by(Checkpoint.tree_size)
            )
        )


def test_every_checkpoint_reaches_the_witnesses_once_and_a_failed_send_catches_up(
    engine: Engine,
    witnessed: Settings,
    keys: KeyRing,
    sink: Sink,  # noqa: F811
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    factory = make_session_factory(engine)
    for n in (3, 4):  # two sequencing runs, two checkpoints
        add_events(engine, n)
        run_sequencer(factory, keys, witnessed)
    assert sizes(engine, mailed=False) == [3, 7]

    result = run_job(engine, witnessed, keys)
    assert result.mailed == 2 and result.messages == 1 and result.error is None  # type: ignore[attr-defined]
    assert len(sink.received) == 1
    got = sink.received[0]
    assert sorted(got.recipients) == sorted(WITNESSES)
    assert got.mail_from == "spillguard@ops.example"
    message, text = checkpoint_file(got.data)
    assert message["Subject"] == "spillguard: signed audit checkpoints, tree sizes 3 to 7"
    assert (
        "spillguard audit verify --against audit-checkpoints-3-7.txt"
        in message.get_body(("plain",)).get_content()
    )
    key = LogKey(Signer(keys).key.public_key)
    notes = parse_checkpoints(text)
    assert [n.size for n in notes] == [3, 7]
    for note in notes:
        note.verify(key)
    assert sizes(engine, mailed=True) == [3, 7] and sizes(engine, mailed=False) == []

    assert run_job(engine, witnessed, keys).mailed == 0  # type: ignore[attr-defined]
    assert len(sink.received) == 1  # nothing new, nothing sent

    # The witnesses' server is down when the next checkpoint is made: it waits.
    add_events(engine, 2)
    run_sequencer(factory, keys, witnessed)
    sink.stop()
    failed = run_job(engine, witnessed, keys)
    assert failed.mailed == 0 and failed.pending == 1 and failed.error  # type: ignore[attr-defined]
    assert sizes(engine, mailed=False) == [9]
    sink.start()
    caught_up = run_job(engine, witnessed, keys)
    assert caught_up.mailed == 1 and caught_up.pending == 0  # type: ignore[attr-defined]
    assert len(sink.received) == 2
    later, text2 = checkpoint_file(sink.received[1].data)
    assert [n.size for n in parse_checkpoints(text2)] == [9]
    assert "tree sizes 9 to 9" in later["Subject"]

    # The mailed files are what `verify --against` takes: the log matches them.
    saved = tmp_path / "witnessed.txt"
    saved.write_text(text + text2, encoding="utf-8")
    checked = run_spillguard(["audit", "verify", "--against", str(saved)], env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith("3 witnessed")


def test_a_long_history_goes_out_in_messages_of_at_most_the_batch(
    engine: Engine,
    witnessed: Settings,
    keys: KeyRing,
    sink: Sink,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spillguard.audit import witness

    monkeypatch.setattr(witness, "MAX_PER_MESSAGE", 2)
    assert MAX_PER_MESSAGE == 500
    factory = make_session_factory(engine)
    for _ in range(5):
        add_events(engine, 1)
        run_sequencer(factory, keys, witnessed)
    result = run_job(engine, witnessed, keys)
    assert (result.mailed, result.messages) == (5, 3)  # type: ignore[attr-defined]
    files = [checkpoint_file(r.data)[1] for r in sink.received]
    assert [[n.size for n in parse_checkpoints(f)] for f in files] == [[1, 2], [3, 4], [5]]


def test_no_witnesses_no_mail_and_the_job_is_registered(
    engine: Engine,
    settings: Settings,
    keys: KeyRing,
    sink: Sink,  # noqa: F811
) -> None:
    plain = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
    add_events(engine, 2)
    run_sequencer(make_session_factory(engine), keys, plain)
    assert run_job(engine, plain, keys).mailed == 0  # type: ignore[attr-defined]
    assert sink.received == [] and sizes(engine, mailed=False) == [2]
    job = witness_mail_job(settings, keys)
    assert job.name == JOB_NAME
    assert timedelta(seconds=job.interval_seconds) == timedelta(hours=1)
    assert utcnow()  # the marks are UTC times (checked above through mailed_at)


def test_bad_witness_addresses_are_refused_by_the_settings(settings: Settings) -> None:
    for bad in ("not-an-address", "a@b", "two@x.example,three@y.example", "<x@y.example>"):
        with pytest.raises(ValueError, match="is not an e-mail address"):
            Settings(home=settings.home, audit_witness_emails=[bad])
    good = Settings(home=settings.home, audit_witness_emails=[" w@auditor.example "])
    assert good.audit_witness_emails == ["w@auditor.example"]


def test_the_cli_mails_now_and_says_so_in_one_line(
    env: dict[str, str],
    engine: Engine,
    sink: Sink,  # noqa: F811
) -> None:
    message = one_line_error(run_spillguard(["audit", "witness-mail"], env))
    assert message.startswith("no e-mail witnesses are configured")
    add_events(engine, 4)
    assert run_spillguard(["audit", "sequence"], env).returncode == 0
    witnesses = {
        **env,
        "SPILLGUARD_AUDIT_WITNESS_EMAILS": '["witness@auditor.example"]',
        "SPILLGUARD_SMTP_HOST": "127.0.0.1",
        "SPILLGUARD_SMTP_PORT": str(sink.port),
    }
    sink.stop()
    down = one_line_error(run_spillguard(["audit", "witness-mail"], witnesses))
    assert re.match(r"mailed 0 checkpoints in 0 messages to 1 witness; 1 still to send: ", down)
    sink.start()
    sent = run_spillguard(["audit", "witness-mail"], witnesses)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == "mailed 1 checkpoints in 1 messages to 1 witness"
    assert len(sink.received) == 1 and sink.received[0].recipients == ["witness@auditor.example"]
    bad = {**witnesses, "SPILLGUARD_AUDIT_WITNESS_EMAILS": '["nobody"]'}
    assert "is not an e-mail address" in one_line_error(
        run_spillguard(["audit", "witness-mail"], bad)
    )
