"""`spillguard scan PATH…`: find customer data in files, label each, exit 1 above a threshold."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from spillguard import __version__
from spillguard.cli.common import (
    CliError,
    Context,
    cli_principal,
    err,
    fail,
    one_line_errors,
    open_context,
    out,
)
from spillguard.core.audit import record_event
from spillguard.core.heap import settle
from spillguard.core.keys import KeyRing, load_or_create_key_ring
from spillguard.core.logging import configure_logging
from spillguard.core.settings import load_settings
from spillguard.customers import EdmIndex, EdmIndexBuilder, EdmSettings, map_columns
from spillguard.customers.snapshot import CachedDirectoryIndex
from spillguard.inspection.audit import InspectionAuditAction
from spillguard.inspection.classify import (
    InspectionReport,
    ItemStatus,
    Label,
)
from spillguard.inspection.config import InspectionConfig, load_inspection_config
from spillguard.inspection.scan import default_engine, files_of, scan_paths, scan_paths_dask

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {
    Label.PUBLIC: "note",
    Label.INTERNAL: "warning",
    Label.CONFIDENTIAL: "error",
    Label.RESTRICTED: "error",
}


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


class LabelChoice(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


@one_line_errors
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (walked recursively).")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output: table, json or sarif.")
    ] = OutputFormat.TABLE,
    min_label: Annotated[
        LabelChoice | None,
        typer.Option(
            "--min-label",
            help="Exit 1 when any item is labelled this or higher "
            "(public < internal < confidential < restricted).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=256, help="Local worker processes.")
    ] = 1,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS",
            help="Scan on an existing Dask cluster (tcp://host:8786); the workers must see "
            "the files at the same paths.",
        ),
    ] = None,
    no_edm: Annotated[
        bool,
        typer.Option(
            "--no-edm",
            help="Do not match against the customer directory (patterns only).",
        ),
    ] = False,
    edm_csv: Annotated[
        Path | None,
        typer.Option(
            "--edm-csv",
            help="Match against this customer list (CSV) instead of the imported directory; "
            "hashed in memory with the data directory's master key, nothing stored.",
        ),
    ] = None,
    edm_id_column: Annotated[
        str | None,
        typer.Option("--edm-id-column", help="Customer id column of --edm-csv."),
    ] = None,
    column_map: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="COLUMN=KIND", help="Field kind of a --edm-csv column."),
    ] = None,
) -> None:
    """Find customer data in files: label each item, print masked findings.

    Matches against the customer directory imported with `spillguard customers import`
    (the configured database) unless --no-edm or --edm-csv is given.  Exit codes: 0
    nothing at or above --min-label, 1 something is (or a path could not be read), 2
    usage error.  Values are always masked.
    """
    # Stdout is the report (JSON and SARIF are parsed): log lines go to stderr, and only
    # warnings (an engine failure), not the routine ones (an EDM snapshot rebuilt).
    configure_logging("WARNING", json=False)
    if dask and workers > 1:
        raise typer.BadParameter("--workers and --dask cannot be used together")
    if (edm_csv is None) != (edm_id_column is None):
        raise typer.BadParameter("--edm-csv and --edm-id-column go together")
    if column_map and edm_csv is None:
        raise typer.BadParameter("--map needs --edm-csv")
    if no_edm and edm_csv is not None:
        raise typer.BadParameter("--no-edm and --edm-csv cannot be used together")
    try:
        config = load_inspection_config()
        edm_settings = config.edm_settings()
    except ValueError as exc:  # a usage error (2), not content found (1)
        raise CliError(str(exc), 2) from None
    index: EdmIndex | None = None
    keys: KeyRing | None = None
    directory: DirectoryIndex | None = None
    if edm_csv is not None and edm_id_column is not None:
        keys = load_or_create_key_ring(load_settings())
        index = load_edm_csv(edm_csv, edm_id_column, column_map or [], keys, edm_settings)
        _note(f"exact data match: {len(index):,} customers from {edm_csv}")
    elif not no_edm:
        directory = load_directory_index(edm_settings)
        if directory is not None:
            index, keys = directory.index, directory.context.keys
            _note(f"exact data match: {len(index):,} customers from the directory")
        else:
            _note("exact data match: off (the customer directory is empty)")
    names = [str(p) for p in paths]
    files = files_of(names)
    if workers <= 1 and not dask:
        default_engine(config.detectors)  # built now, so that settle() exempts it too
        settle()
    reports = _run(files, workers=workers, dask=dask, index=index, keys=keys, config=config)
    collected: list[InspectionReport] = []
    unreadable = 0
    hit = False
    matched: set[str] = set()
    writer = _JsonWriter(sys.stdout) if output_format is OutputFormat.JSON else None
    for report in _with_progress(reports, len(files)):
        if _unreadable(report):
            unreadable += 1
            err.print(
                f"[bold red]error:[/] {escape(report.path)}: "
                f"{escape(report.reasons[0].removeprefix('unscannable: '))}",
                highlight=False,
                soft_wrap=True,
            )
        if writer is not None:
            writer.write(report.to_dict())
        else:
            collected.append(report)
        if min_label is not None and report.at_least(min_label.value):
            hit = True
        matched.update(report.customer_ids)
    if directory is not None:
        directory.record_scan(items=len(files), matched=matched, above=hit)
    if writer is not None:
        writer.close()
    elif output_format is OutputFormat.SARIF:
        json.dump(to_sarif(collected), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        out.print(render_table(collected))
    if hit or unreadable:
        raise typer.Exit(1)


def _run(
    files: list[str],
    *,
    workers: int,
    dask: str | None,
    index: EdmIndex | None,
    keys: KeyRing | None,
    config: InspectionConfig,
) -> Iterator[InspectionReport]:
    if dask:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise fail("--dask needs the `distributed` package installed", 2) from None
        try:
            yield from scan_paths_dask(
                files,
                dask,
                edm_index=index,
                edm_keyring=keys,
                detector_settings=config.detectors,
                limits=config.limits,
                label_rules=config.labels,
            )
        except OSError as exc:
            raise CliError(f"cannot use the Dask cluster at {dask}: {exc}") from None
        return
    yield from scan_paths(
        files,
        workers=workers,
        detector_settings=config.detectors,
        edm_index=index,
        limits=config.limits,
        label_rules=config.labels,
    )


def _with_progress(reports: Iterator[InspectionReport], total: int) -> Iterator[InspectionReport]:
    if not err.is_terminal:
        yield from reports
        return
    progress = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task("scan", total=total)
        for report in reports:
            progress.advance(task)
            yield report


def _unreadable(report: InspectionReport) -> bool:
    return any(
        entry.reason.startswith("unscannable: unreadable") and report.parts == 0
        for entry in report.incomplete
    )


class _JsonWriter:
    """Writes a JSON list one report at a time (memory bounded by one report)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._first = True
        stream.write("[")

    def write(self, item: dict[str, Any]) -> None:
        self._stream.write("\n" if self._first else ",\n")
        self._first = False
        self._stream.write(json.dumps(item, ensure_ascii=False, indent=2))

    def close(self) -> None:
        self._stream.write("\n]\n" if not self._first else "]\n")


# --- EDM from the customer directory ----------------------------------------------------


def _note(message: str) -> None:
    err.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True)


@dataclass
class DirectoryIndex:
    """The EDM index loaded from the configured database, and where it came from."""

    context: Context
    index: EdmIndex

    def record_scan(self, *, items: int, matched: set[str], above: bool) -> None:
        """Audit that a command-line scan used the directory (counts only, no values)."""
        with self.context.session() as session:
            record_event(
                session,
                cli_principal(),
                InspectionAuditAction.CLI_SCAN,
                object_type="scan",
                details={
                    "items": items,
                    "customers_matched": len(matched),
                    "directory_customers": len(self.index),
                    "at_or_above_min_label": above,
                },
            )


def load_directory_index(edm_settings: EdmSettings | None = None) -> DirectoryIndex | None:
    """The directory's EDM index, or None when there is no database or no customer yet.

    A scan must not create a database as a side effect: a SQLite file that does not
    exist, or a database never migrated, means "no directory".  A database behind the
    code's schema is an error (`spillguard db upgrade`), as for every other command.
    """
    settings = load_settings()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or not Path(database).exists():
            return None
    ctx = open_context(settings, upgrade_empty=False, missing_ok=True)
    if ctx is None:
        return None
    with ctx.session() as session:
        index = CachedDirectoryIndex.in_home(settings.home, edm_settings).load(
            session, cli_principal(), ctx.keys
        )
    if len(index) == 0:
        ctx.engine.dispose()
        return None
    return DirectoryIndex(ctx, index)


# --- EDM from a CSV -------------------------------------------------------------------


def load_edm_csv(
    path: Path,
    id_column: str,
    overrides: Sequence[str],
    keys: KeyRing,
    settings: EdmSettings | None = None,
) -> EdmIndex:
    """An in-memory EDM index from a customer CSV (the interim path before the import)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    del raw
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise CliError(f"{path}: no header row")
    mapping = map_columns(header, id_column=id_column, overrides=list(overrides))
    builder = EdmIndexBuilder(keys, settings)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        customer_id, values = mapping.read(row)
        builder.add(customer_id, values)
    return builder.build()


# --- output ---------------------------------------------------------------------------


def render_table(reports: Sequence[InspectionReport]) -> Table:
    table = Table("path", "label", "categories", "customers", "status")
    for report in reports:
        categories = ", ".join(f"{name} {count}" for name, count in report.categories.items())
        customers = str(len(report.customers))
        if report.primary_only:
            customers += f" (+{len(report.primary_only)} primary only)"
        status = report.status.value
        if report.reasons:
            status = "; ".join(report.reasons[:3])
            if len(report.reasons) > 3:
                status += f"; +{len(report.reasons) - 3} more"
        table.add_row(
            escape(report.path),
            report.label.value,
            escape(categories or "-"),
            customers,
            escape(status),
        )
    return table


def to_sarif(reports: Sequence[InspectionReport]) -> dict[str, Any]:
    """SARIF 2.1.0: one result per masked finding, and one per part not inspected."""
    rule_ids: dict[str, int] = {}
    results: list[dict[str, Any]] = []

    def rule_index(rule: str) -> int:
        return rule_ids.setdefault(rule, len(rule_ids))

    for report in reports:
        uri = _uri(report.path)
        level = _LEVELS[report.label]
        for finding in report.findings:
            loc = finding.location
            physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
            if loc.line is not None and loc.column is not None:
                physical["region"] = {
                    "startLine": loc.line,
                    "startColumn": loc.column,
                    "endColumn": loc.column + max(loc.end - loc.start, 1),
                }
            location: dict[str, Any] = {
                "physicalLocation": physical,
                "logicalLocations": [{"fullyQualifiedName": loc.part, "kind": "member"}],
            }
            where = f" at row {loc.row}, cell {loc.cell}" if loc.row is not None else ""
            results.append(
                {
                    "ruleId": finding.entity,
                    "ruleIndex": rule_index(finding.entity),
                    "level": level,
                    "message": {
                        "text": f"{finding.entity} {finding.masked} in {loc.part}{where} "
                        f"(item labelled {report.label.value})"
                    },
                    "locations": [location],
                    "properties": {
                        "label": report.label.value,
                        "confidence": finding.confidence,
                        "masked": finding.masked,
                        **({"row": loc.row, "cell": loc.cell} if loc.row is not None else {}),
                    },
                }
            )
        for entry in report.incomplete:
            rule = f"spillguard/{entry.status.value}"
            results.append(
                {
                    "ruleId": rule,
                    "ruleIndex": rule_index(rule),
                    "level": "error" if entry.status is ItemStatus.UNINSPECTED else "warning",
                    "message": {"text": f"{entry.part}: {entry.reason}"},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                    "properties": {"label": report.label.value},
                }
            )
    rules = [
        {
            "id": rule,
            "name": rule.replace("spillguard/", ""),
            "shortDescription": {"text": _rule_text(rule)},
        }
        for rule in rule_ids
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "spillguard",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
                "properties": {
                    "items": [
                        {
                            "path": r.path,
                            "label": r.label.value,
                            "status": r.status.value,
                            "customer_count": len(r.customers),
                        }
                        for r in reports
                    ]
                },
            }
        ],
    }


def _rule_text(rule: str) -> str:
    if rule.startswith("spillguard/"):
        return f"content that could not be inspected ({rule.removeprefix('spillguard/')})"
    return f"{rule.replace('_', ' ')} found"


def _uri(path: str) -> str:
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate.as_uri()
    return candidate.as_posix()
