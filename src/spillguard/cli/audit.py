"""`spillguard audit`: sequence the tamper-evident log, verify it, prove entries, export
checkpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spillguard.audit.checkpoints import CheckpointError, Signer, parse_checkpoints
from spillguard.audit.log import ConcurrentAppend, LogCorrupt, SequencerBusy, run_sequencer
from spillguard.audit.services import AuditLogService
from spillguard.audit.verify import Tampered, default_workers, record_verification, verify_log
from spillguard.audit.witness import mail_checkpoints
from spillguard.cli import audit_ingest, audit_simulate, audit_staff
from spillguard.cli.common import CliError, cli_principal, one_line_errors, open_context, out
from spillguard.incidents.mailer import mail_sender_from_settings

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command()
@one_line_errors
def sequence(
    sweep: Annotated[
        bool,
        typer.Option("--sweep", help="Look for unlogged events of any age, not only recent ones."),
    ] = False,
    witness_dir: Annotated[
        Path | None,
        typer.Option("--witness-dir", help="Also append a new checkpoint to a file here."),
    ] = None,
) -> None:
    """Append committed audit events to the log now (the server does this on a schedule)."""
    ctx = open_context()
    try:
        result = run_sequencer(
            ctx.factory, ctx.keys, ctx.settings, sweep=sweep, witness_dir=witness_dir
        )
    except (SequencerBusy, ConcurrentAppend) as exc:
        raise CliError(str(exc)) from None
    made = (
        f"; checkpoint at size {result.checkpoint.tree_size}"
        if result.checkpoint is not None
        else ""
    )
    out.print(f"appended {result.appended} entries; log size {result.size}{made}", highlight=False)
    if result.witness_errors and result.checkpoint is not None:
        raise CliError(
            f"the checkpoint at size {result.checkpoint.tree_size} was made but not written to "
            f"the witness file ({result.witness_errors[0]}); copy it there from "
            "`spillguard audit checkpoints --export FILE`"
        )


@app.command()
@one_line_errors
def verify(
    from_: Annotated[
        int | None, typer.Option("--from", min=0, help="First position to check.")
    ] = None,
    to: Annotated[
        int | None, typer.Option("--to", min=0, help="Check positions below this one.")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against", help="A file of exported or witnessed checkpoints the log must match."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes verifying ranges at once (default: one per CPU; large logs only).",
        ),
    ] = None,
) -> None:
    """Recompute the log from the event rows and check it against every checkpoint.

    Prints `ok: N entries, K checkpoints`, or one error naming the first bad position.
    """
    witnessed = None
    if against is not None:
        try:
            witnessed = parse_checkpoints(against.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(
                f"cannot read {against}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        except CheckpointError as exc:
            raise CliError(f"{against}: {exc}") from None
    start = from_ or 0
    if to is not None and to < start:
        raise CliError(f"--to {to} is before --from {start}")
    ctx = open_context()
    key = Signer(ctx.keys).key
    with ctx.session() as session:
        try:
            result = verify_log(
                session,
                key,
                start=start,
                end=to,
                against=witnessed,
                workers=workers or default_workers(),
            )
        except Tampered as exc:
            problem = str(exc)
            session.rollback()
            record_verification(
                session, cli_principal(), start=start, end=to, result=None, problem=problem
            )
            session.commit()
            raise CliError(problem) from None
        session.rollback()
        record_verification(
            session, cli_principal(), start=start, end=to, result=result, problem=None
        )
        session.commit()
    extra = f", {result.witnessed} witnessed" if against is not None else ""
    out.print(
        f"ok: {result.entries} entries, {result.checkpoints} checkpoints{extra}", highlight=False
    )


@app.command()
@one_line_errors
def prove(
    event_id: Annotated[int, typer.Argument(min=1, help="The audit event's id.")],
) -> None:
    """Print the inclusion proof of an event at the latest checkpoint, as JSON.

    Exactly what the offline verification script in docs/audit.md takes.
    """
    ctx = open_context()
    with ctx.session() as session:
        svc = AuditLogService(session, cli_principal(), ctx.keys, ctx.settings)
        try:
            proof = svc.inclusion(event_id)
        except LogCorrupt as exc:
            raise CliError(f"the log's stored nodes are damaged: {exc}") from None
    b64 = base64.b64encode
    document = {
        "event_id": proof.event_id,
        "entry": b64(proof.entry).decode() if proof.entry is not None else None,
        "leaf_hash": b64(proof.leaf_hash).decode(),
        "leaf_index": proof.leaf_index,
        "tree_size": proof.tree_size,
        "root_hash": b64(proof.root_hash).decode(),
        "inclusion_proof": [b64(p).decode() for p in proof.proof],
        "checkpoint": proof.checkpoint,
    }
    print(json.dumps(document, indent=2))


@app.command("witness-mail")
@one_line_errors
def witness_mail() -> None:
    """Mail the checkpoints not yet mailed to the e-mail witnesses now (the server does
    this on a schedule when SPILLGUARD_AUDIT_WITNESS_EMAILS is set)."""
    ctx = open_context()
    if not ctx.settings.audit_witness_emails:
        raise CliError(
            "no e-mail witnesses are configured: set SPILLGUARD_AUDIT_WITNESS_EMAILS "
            "(a JSON list, e.g. '[\"witness@auditor.example\"]')"
        )
    sender = mail_sender_from_settings(ctx.settings)
    try:
        with ctx.session() as session:
            result = mail_checkpoints(session, ctx.keys, ctx.settings, sender)
            session.commit()
    finally:
        sender.close()
    witnesses = len(ctx.settings.audit_witness_emails)
    sent = (
        f"mailed {result.mailed} checkpoints in {result.messages} messages "
        f"to {witnesses} witness{'es' if witnesses != 1 else ''}"
    )
    if result.error is not None:
        raise CliError(f"{sent}; {result.pending} still to send: {result.error}")
    out.print(sent, highlight=False)


@app.command()
@one_line_errors
def checkpoints(
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write every checkpoint, as text, to this file."),
    ] = None,
) -> None:
    """List the signed checkpoints, or export them all for safekeeping elsewhere."""
    ctx = open_context()
    with ctx.session() as session:
        svc = AuditLogService(session, cli_principal(), ctx.keys, ctx.settings)
        views = svc.all_checkpoints()
        key, origin = svc.log_key()
    if export is not None:
        try:
            export.write_text("".join(v.text + "\n" for v in views), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {export}: {exc.strerror or exc}") from None
        out.print(f"exported {len(views)} checkpoints to {export}", highlight=False)
        return
    table = Table(
        "size", "root hash", "signed at (UTC)", "key id", title=f"Checkpoints of {origin}"
    )
    for view in views:
        cp = view.checkpoint
        table.add_row(
            f"{cp.tree_size:,}",
            base64.b64encode(cp.root_hash).decode(),
            f"{cp.created_at:%Y-%m-%d %H:%M:%S}",
            cp.key_id,
        )
    out.print(table)
    out.print(f"log key {key.key_id}: {key.note_verifier_key(origin)}", highlight=False)


app.command("simulate")(audit_simulate.simulate)
app.command("ingest")(audit_ingest.ingest)
app.command("syslog")(audit_ingest.syslog)
app.add_typer(audit_staff.app, name="staff")
