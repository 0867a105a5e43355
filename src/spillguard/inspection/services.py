"""Inspection as a server operation: who may inspect, the directory's EDM index per
process, the audit trail, and the ``dpo``'s audited view of full values.

* :class:`InspectionService` inspects one uploaded item (``inspections:run``) and
  records ``inspection:content:inspected`` with counts only; :meth:`~InspectionService.
  reveal` gives the ``dpo`` role alone the full values, for a stated purpose, and records
  ``inspection:values:revealed``.
* :class:`EdmIndexCache` keeps the customer directory's EDM index in memory and reloads
  it when the directory's generation (last finished import, active customers) differs
  from the one it was loaded for: two cheap queries per inspection, so every server
  process sees a finished import on its next request.
* :class:`InspectionRuntime` is the per-process state the routes share (label rules,
  limits, upload cap, the cache).

Reports hold masked values only (:mod:`spillguard.inspection.classify`).  A reveal scans
with an engine whose findings carry a per-request token in place of the masked form; the
token is swapped back for the masked form, and the value put beside it, only in the
:class:`RevealedReport` returned to the ``dpo``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, cast

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spillguard.audit.honeytokens import check_matched_customers
from spillguard.core.audit import record_event
from spillguard.core.errors import ContentTooLarge, DomainError, InvalidInput, PermissionDenied
from spillguard.core.keys import KeyRing
from spillguard.core.roles import Permission, Principal, Role
from spillguard.core.settings import Settings
from spillguard.customers.edm import EdmIndex
from spillguard.customers.models import Customer
from spillguard.customers.snapshot import CachedDirectoryIndex, directory_generation
from spillguard.inspection.audit import InspectionAuditAction
from spillguard.inspection.classify import InspectionReport, LabelRules
from spillguard.inspection.config import inspection_config_for
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.engine import Finding, InspectionEngine, ScanResult
from spillguard.inspection.extract import ExtractLimits
from spillguard.inspection.scan import default_engine, scan

__all__ = [
    "EdmIndexCache",
    "InspectionItem",
    "InspectionMisconfigured",
    "InspectionRuntime",
    "InspectionService",
    "RevealedReport",
    "item_name",
]

log = structlog.get_logger(__name__)

MAX_NAME = 255
MAX_PURPOSE = 500


class InspectionMisconfigured(DomainError):
    """The server's inspection configuration cannot be used (e.g. bad label rules)."""

    status = 500
    slug = "inspection-misconfigured"
    title = "Inspection is misconfigured"


def item_name(raw: str | None, default: str) -> str:
    """A display name for an uploaded item: the last path component of what the client
    sent, without control characters, at most 255 characters; ``default`` when empty."""
    text = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    return text[:MAX_NAME] or default


@dataclass(frozen=True)
class InspectionItem:
    """One thing to inspect: its bytes (or a seekable binary stream), name and size."""

    source: bytes | BinaryIO
    name: str
    size: int


@dataclass(frozen=True)
class RevealedReport:
    """A report for the ``dpo``: the masked report and, per finding, its full value."""

    report: InspectionReport
    values: tuple[str, ...]
    purpose: str

    def to_dict(self) -> dict[str, Any]:
        data = self.report.to_dict()
        for finding, value in zip(data["findings"], self.values, strict=True):
            finding["value"] = value
        data["purpose"] = self.purpose
        return data


# --- the directory's index ----------------------------------------------------------------


class EdmIndexCache:
    """The customer directory's EDM index for this process, reloaded after an import.

    The index is keyed by the directory's generation (the last finished import run and
    the number of active customers, :func:`~spillguard.customers.snapshot.
    directory_generation`).  Each call asks the database for it; when it differs from the
    loaded one the index is loaded again (one load at a time; other requests wait),
    through the data directory's authenticated snapshot, so only the first process after
    an import builds it from the hash rows.  No import, or a directory without active
    customers, gives ``None``: exact data match is off.
    """

    def __init__(self, keys: KeyRing, loader: CachedDirectoryIndex) -> None:
        self._keys = keys
        self._loader = loader
        self._lock = threading.Lock()
        self._state: tuple[Any, EdmIndex | None] = (object(), None)

    def current(self, session: Session) -> EdmIndex | None:
        """The index of the directory's current generation (``None`` when it is empty)."""
        key = directory_generation(session)
        loaded_key, index = self._state
        if loaded_key == key:
            return index
        with self._lock:
            loaded_key, index = self._state
            if loaded_key == key:
                return index
            index = None
            if key is not None:
                # The index is a server resource shared by every inspector; whether a
                # caller may see its matches was decided (inspections:run) before this.
                index = self._loader.load(session, Principal.system("inspection"), self._keys)
                log.info(
                    "edm_index_loaded",
                    customers=len(index),
                    generation=key,
                    source=self._loader.last_source,
                )
                if len(index) == 0:
                    index = None
            self._state = (key, index)
            return index


# --- per-process state --------------------------------------------------------------------


@dataclass
class InspectionRuntime:
    """What inspections in one server process share."""

    label_rules: LabelRules
    edm: EdmIndexCache
    max_upload_bytes: int
    detector_settings: DetectorSettings | None = None
    limits: ExtractLimits | None = None

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyRing) -> InspectionRuntime:
        """The runtime of the ``[inspection]`` table of the config file (detectors and
        custom identifiers, label rules, extraction limits, exact-data-match settings)."""
        try:
            config = inspection_config_for(settings)
        except ValueError as exc:
            raise InspectionMisconfigured(
                f"The inspection settings cannot be used: {exc}"
            ) from None
        return cls(
            label_rules=config.labels,
            edm=EdmIndexCache(
                keys, CachedDirectoryIndex.in_home(settings.home, config.edm_settings())
            ),
            max_upload_bytes=settings.inspection_max_upload_bytes,
            detector_settings=config.detectors,
            limits=config.limits,
        )

    def engine(self) -> InspectionEngine:
        return default_engine(self.detector_settings)


# --- revealing scan -----------------------------------------------------------------------


class _TokenFinding(Finding):
    """A finding whose ``masked`` is a per-request token naming the original finding."""

    token: str = ""

    @classmethod
    def of(cls, finding: Finding, token: str) -> _TokenFinding:
        """``finding``'s fields, shown as ``token``."""
        tokened = cls._make(finding)
        tokened.token = token
        return tokened

    @property  # type: ignore[override]
    def masked(self) -> str:
        return self.token

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and self.token == other.token  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self[:7], self.token))


class _RevealingEngine:
    """Wraps the engine for one reveal: findings carry tokens, originals are kept here."""

    def __init__(self, inner: InspectionEngine) -> None:
        self._inner = inner
        self.originals: dict[str, Finding] = {}
        self._prefix = f"\x00reveal-{os.urandom(8).hex()}-"

    def scan_text(self, text: str, **kwargs: Any) -> ScanResult:
        return self._tokened(self._inner.scan_text(text, **kwargs))

    def __getattr__(self, name: str) -> Any:
        # Anything else the scan asks of the engine; results that carry findings are
        # tokened as well, so no value can reach a report by another path.
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return self._tokened(result) if isinstance(result, ScanResult) else result

        return call

    def _tokened(self, result: ScanResult) -> ScanResult:
        tokened = []
        for finding in result.findings:
            token = f"{self._prefix}{len(self.originals)}"
            self.originals[token] = finding
            tokened.append(_TokenFinding.of(finding, token))
        return dataclasses.replace(result, findings=tuple(tokened))

    def reveal(self, report: InspectionReport, purpose: str) -> RevealedReport:
        findings = []
        values = []
        for shown in report.findings:
            original = self.originals.get(shown.masked)
            if original is None:
                raise InspectionMisconfigured(
                    "A finding reached the report without passing the reveal; nothing was revealed."
                )
            findings.append(dataclasses.replace(shown, masked=original.masked))
            values.append(original.value)
        masked = dataclasses.replace(report, findings=tuple(findings))
        return RevealedReport(masked, tuple(values), purpose)


# --- the service ----------------------------------------------------------------------------


def _summary(item: InspectionItem, report: InspectionReport) -> dict[str, Any]:
    """What the audit trail keeps of an inspection: hash, type and counts.

    Not the file name: people name files after customers ("Smith renewal.xlsx"), and the
    audit trail must hold no customer value. The content's SHA-256 identifies the item.
    """
    return {
        "extension": PurePosixPath(item.name).suffix.lower()[:16],
        "sha256": report.sha256,
        "size": report.size,
        "format": report.format,
        "status": report.status.value,
        "label": report.label.value,
        "categories": dict(report.categories),
        "findings": sum(report.categories.values()),
        "customer_count": len(report.customers),
        "primary_only_count": len(report.primary_only),
    }


class InspectionService:
    """Inspects uploaded content for a person: masked reports, audited; full values for
    the ``dpo`` only."""

    def __init__(self, session: Session, principal: Principal, runtime: InspectionRuntime) -> None:
        self.session = session
        self.principal = principal
        self.runtime = runtime

    def check_access(self) -> None:
        """Raise unless the principal may run inspections (the console page asks this)."""
        self.principal.require(Permission.INSPECTIONS_RUN)

    def directory_customers(self) -> int:
        """Active customers in the directory (what exact data match compares against)."""
        self.principal.require(Permission.INSPECTIONS_RUN)
        count = self.session.scalar(
            select(func.count()).select_from(Customer).where(Customer.removed_at.is_(None))
        )
        return int(count or 0)

    def may_reveal(self) -> bool:
        return self.principal.role is Role.DPO and self.principal.can(Permission.INSPECTIONS_REVEAL)

    def require_reveal(self) -> None:
        """Raise unless the principal may see full values: the ``dpo`` role itself."""
        self.principal.require(Permission.INSPECTIONS_REVEAL)
        if self.principal.role is not Role.DPO:
            # admin holds every permission, but full values are for the data-protection
            # officer alone (as contact details are).
            raise PermissionDenied("Only the dpo role may see full values.")

    def inspect(self, item: InspectionItem) -> InspectionReport:
        """Inspect one item against the detectors and the customer directory."""
        self.principal.require(Permission.INSPECTIONS_RUN)
        self._check(item)
        report = self._scan(item, self.runtime.engine())
        check_matched_customers(
            self.session,
            report.customer_ids,
            "inspection",
            {"content_sha256": report.sha256, "actor": self.principal.label},
            primary_only=report.primary_only,
        )
        record_event(
            self.session,
            self.principal,
            InspectionAuditAction.CONTENT_INSPECTED,
            object_type="inspection",
            object_id=report.sha256,
            details=_summary(item, report),
        )
        return report

    def reveal(self, item: InspectionItem, purpose: str) -> RevealedReport:
        """Inspect one item and return the full values of its findings: the ``dpo`` role
        only, for a stated purpose, recorded in the audit trail."""
        self.require_reveal()
        purpose = " ".join((purpose or "").split())
        if not purpose:
            raise InvalidInput("State why you need the full values (purpose).", field="purpose")
        if len(purpose) > MAX_PURPOSE:
            raise InvalidInput(
                f"The purpose is longer than {MAX_PURPOSE} characters.", field="purpose"
            )
        self._check(item)
        engine = _RevealingEngine(self.runtime.engine())
        report = self._scan(item, cast(InspectionEngine, engine))
        revealed = engine.reveal(report, purpose)
        record_event(
            self.session,
            self.principal,
            InspectionAuditAction.VALUES_REVEALED,
            object_type="inspection",
            object_id=report.sha256,
            details={
                **_summary(item, report),
                "purpose": purpose,
                "values_revealed": len(revealed.values),
            },
        )
        return revealed

    def _check(self, item: InspectionItem) -> None:
        cap = self.runtime.max_upload_bytes
        if item.size > cap:
            raise ContentTooLarge(
                f"{item.name} is {item.size:,} bytes; this server inspects at most {cap:,} "
                "bytes per item (setting inspection_max_upload_bytes). Use `spillguard scan` "
                "for larger files."
            )
        if item.size == 0:
            raise InvalidInput(f"{item.name} is empty: there is nothing to inspect.")

    def _scan(self, item: InspectionItem, engine: InspectionEngine) -> InspectionReport:
        index = self.runtime.edm.current(self.session)
        return scan(
            item.source,
            name=item.name,
            engine=engine,
            edm_index=index,
            limits=self.runtime.limits,
            label_rules=self.runtime.label_rules,
        )
