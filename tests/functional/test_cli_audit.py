"""`spillguard audit …` as real processes on SQLite and PostgreSQL: sequence, verify (and
its one-line error naming the first tampered position), prove (checked by the offline
script from docs/audit.md), checkpoints export and witnessing."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

from faker import Faker
from sqlalchemy import Engine, select, update

from spillguard.audit.models import LogLeaf
from spillguard.core.audit import AuditAction, record_event
from spillguard.core.db import make_session_factory, transaction
from spillguard.core.models import AuditEvent
from spillguard.core.roles import Principal
from tests.functional.live import one_line_error, run_spillguard
from tests.unit.audit.test_merkle import doc_script

fake = Faker("en_GB")


def add_events(engine: Engine, n: int) -> list[int]:
    with transaction(make_session_factory(engine)) as session:
        return [
            record_event(
                session,
                Principal.system("tests"),
                AuditAction.USER_CREATED,
                object_type="user",
                object_id=fake.pyint(),
                details={"email": fake.email()},
            ).id
            for _ in range(n)
        ]


def ok(args: list[str], env: dict[str, str]) -> str:
    result = run_spillguard(args, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_sequence_verify_and_a_tampered_row(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    witness = tmp_path / "witness"
    ids = add_events(engine, 20)
    out = ok(["audit", "sequence", "--witness-dir", str(witness)], env)
    size = int(re.search(r"log size (\d+); checkpoint at size (\d+)", out).group(1))  # type: ignore[union-attr]
    assert size == 20
    assert (witness / "audit-checkpoints.txt").read_text().count("\u2014 spillguard ") == 1
    assert ok(["audit", "verify"], env).strip() == f"ok: {size} entries, 1 checkpoints"

    with engine.begin() as conn:
        conn.execute(
            update(AuditEvent.__table__)
            .where(AuditEvent.__table__.c.id == ids[9])
            .values(actor_label="someone-else")
        )
        position = conn.scalar(select(LogLeaf.position).where(LogLeaf.event_id == ids[9]))
    message = one_line_error(run_spillguard(["audit", "verify"], env))
    assert message == (
        f"position {position} (event {ids[9]}): leaf does not match the event row (edited?)"
    )
    assert ok(["audit", "verify", "--to", str(position)], env).startswith(f"ok: {position} entries")

    # Each run is an audit event the checkpoint page reads: the whole-log runs (ok, then
    # the tamper found) and the range run, with counts or the problem, never content.
    with engine.connect() as conn:
        runs = conn.execute(
            select(AuditEvent.__table__.c.outcome, AuditEvent.__table__.c.details)
            .where(AuditEvent.__table__.c.action == "audit:log:verified")
            .order_by(AuditEvent.__table__.c.id)
        ).all()
    assert [r.outcome for r in runs] == ["success", "failure", "success"]
    assert runs[0].details["whole_log"] is True and runs[0].details["entries"] == size
    assert runs[1].details["problem"] == message and "someone-else" not in str(runs[1].details)
    assert runs[2].details["to"] == position and runs[2].details["whole_log"] is False


def test_prove_output_is_checked_by_the_documented_offline_script(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    ids = add_events(engine, 13)
    ok(["audit", "sequence"], env)
    script = tmp_path / "verify_inclusion.py"
    script.write_text(doc_script())
    document = json.loads(ok(["audit", "prove", str(ids[5])], env))
    entry = tmp_path / "entry.json"
    entry.write_bytes(base64.b64decode(document["entry"]))
    assert json.loads(entry.read_bytes())["id"] == ids[5]
    checkpoint_root = document["checkpoint"].splitlines()[2]
    assert checkpoint_root == document["root_hash"]
    args = [
        str(document["leaf_index"]),
        str(document["tree_size"]),
        checkpoint_root,
        *document["inclusion_proof"],
    ]
    good = subprocess.run(
        [sys.executable, "-I", str(script), str(entry), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0 and good.stdout.startswith("OK"), good.stdout + good.stderr
    entry.write_bytes(entry.read_bytes().replace(b"core:user:created", b"core:user:deleted"))
    bad = subprocess.run(
        [sys.executable, "-I", str(script), str(entry), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "FAIL" in bad.stderr


def test_export_and_against_detect_truncation(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, 6)
    ok(["audit", "sequence"], env)
    exported = tmp_path / "checkpoints.txt"
    assert "exported 1 checkpoints" in ok(["audit", "checkpoints", "--export", str(exported)], env)
    listing = ok(["audit", "checkpoints"], env)
    assert "Checkpoints of spillguard" in listing and "log key" in listing
    assert ok(["audit", "verify", "--against", str(exported)], env).strip().endswith("1 witnessed")
    # Someone empties the log tables (and the checkpoints with them).
    with engine.begin() as conn:
        for table in (
            "audit_checkpoints",
            "audit_log_nodes",
            "audit_log_leaves",
            "audit_log_state",
        ):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    message = one_line_error(run_spillguard(["audit", "verify", "--against", str(exported)], env))
    assert re.fullmatch(
        r"witnessed checkpoint at size \d+ is beyond the log's 0 entries \(truncated\?\)", message
    ), message


def test_cli_mistakes_are_one_line_errors(
    env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, 2)
    assert "no audit event 999999" in one_line_error(
        run_spillguard(["audit", "prove", "999999"], env)
    ).lower().replace("there is ", "")
    message = one_line_error(run_spillguard(["audit", "prove", "1"], env))
    assert "has not been added to the log yet" in message
    assert one_line_error(run_spillguard(["audit", "verify", "--from", "99999"], env)) == (
        "--from 99999 is beyond the log's 0 entries"
    )
    junk = tmp_path / "junk.txt"
    junk.write_text("not a checkpoint\n\nat all\n")
    assert "junk.txt: checkpoint 1 in the file" in one_line_error(
        run_spillguard(["audit", "verify", "--against", str(junk)], env)
    )
    missing = tmp_path / "missing.txt"
    assert "cannot read" in one_line_error(
        run_spillguard(["audit", "verify", "--against", str(missing)], env)
    )
    assert "--to 1 is before --from 3" in one_line_error(
        run_spillguard(["audit", "verify", "--from", "3", "--to", "1"], env)
    )
    assert "fewer than --to 500" in one_line_error(
        run_spillguard(["audit", "verify", "--to", "500"], env)
    )
    # A witness directory that is a file: the checkpoint is made, and the command says
    # it did not reach the witness file (exit 1), where before it only logged it.
    not_a_dir = tmp_path / "witness-file"
    not_a_dir.write_text("")
    failed = run_spillguard(["audit", "sequence", "--witness-dir", str(not_a_dir)], env)
    made = re.search(r"checkpoint at size (\d+)", failed.stdout)
    assert made is not None, failed.stdout
    assert one_line_error(failed).startswith(
        f"the checkpoint at size {made.group(1)} was made but not written to the witness file ("
    )
