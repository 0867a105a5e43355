"""Classification: one report per scanned item, with masked findings and a sensitivity label.

:func:`classify` is pure: it takes what the extractors, the scan engine and exact data
match found in one item and returns an :class:`InspectionReport` — the item's path and
content SHA-256, a status, counts per data category (entity), the customers matched by
EDM, the findings **masked**, the reasons anything was not inspected, and a sensitivity
label (``public`` < ``internal`` < ``confidential`` < ``restricted``) from
:class:`LabelRules`.

A report never holds a plain value: findings are copied field by field from
:attr:`Finding.masked` and the location, never from :attr:`Finding.value`, so a report
can be printed, logged, stored and returned as it is.

Fail closed: an item with any unscannable part is ``unscannable``, an item whose text
the engine could not inspect (timeout, engine failure) is ``uninspected``; neither is
ever ``clean``, and both are labelled at least :attr:`LabelRules.incomplete_label`.
See docs/inspection.md, "Classification".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from spillguard.inspection.detectors.base import Entity

__all__ = [
    "DEFAULT_ENTITY_LABELS",
    "CustomerHit",
    "FindingLocation",
    "IncompleteEntry",
    "InspectionReport",
    "ItemStatus",
    "Label",
    "LabelRules",
    "MaskedFinding",
    "classify",
    "load_label_rules",
    "parse_label",
]


class Label(StrEnum):
    """Sensitivity labels, lowest first; compare with :meth:`rank` or ``<`` / ``>=``."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.rank >= other.rank


_ORDER = (Label.PUBLIC, Label.INTERNAL, Label.CONFIDENTIAL, Label.RESTRICTED)


def parse_label(value: str | Label) -> Label:
    """A label from its name (any case); ``ValueError`` naming the known labels."""
    if isinstance(value, Label):
        return value
    try:
        return Label(str(value).strip().lower())
    except ValueError:
        known = ", ".join(label.value for label in _ORDER)
        raise ValueError(f"unknown label {value!r}: use one of {known}") from None


class ItemStatus(StrEnum):
    """What became of one item.  Only a fully inspected item can be ``clean``."""

    CLEAN = "clean"
    FINDINGS = "findings"
    UNSCANNABLE = "unscannable"
    UNINSPECTED = "uninspected"


DEFAULT_ENTITY_LABELS: dict[str, Label] = {
    Entity.PAYMENT_CARD.value: Label.CONFIDENTIAL,
    Entity.NINO.value: Label.CONFIDENTIAL,
    Entity.NHS_NUMBER.value: Label.CONFIDENTIAL,
    Entity.IBAN.value: Label.CONFIDENTIAL,
    Entity.UK_BANK_ACCOUNT.value: Label.CONFIDENTIAL,
    Entity.EMAIL.value: Label.INTERNAL,
    Entity.PHONE.value: Label.INTERNAL,
    Entity.POSTCODE.value: Label.INTERNAL,
    Entity.DATE_OF_BIRTH.value: Label.INTERNAL,
    Entity.IP_ADDRESS.value: Label.INTERNAL,
}


@dataclass(frozen=True)
class LabelRules:
    """How an item's label follows from what was found.  The highest applicable wins.

    * each entity found raises the label to ``entity_labels[entity]`` (entities not
      listed, such as custom identifiers, to ``other_entity_label``);
    * ``restricted_customers`` or more distinct EDM-matched customers → ``restricted``;
    * ``confidential_customers`` or more → ``confidential``;
    * any customer found by a primary value alone → ``primary_only_label``;
    * ``restricted_findings`` or more findings of entities labelled confidential (bulk
      card or NINO lists) → ``restricted`` (0 switches this rule off);
    * an item not fully inspected (unscannable or uninspected) → at least
      ``incomplete_label`` (its content is unknown: fail closed);
    * nothing → ``public``.

    Loaded from the ``[inspection.labels]`` table of the config file by
    :func:`load_label_rules`; :meth:`from_mapping` validates a plain mapping.
    """

    restricted_customers: int = 10
    confidential_customers: int = 1
    primary_only_label: Label = Label.INTERNAL
    restricted_findings: int = 0
    incomplete_label: Label = Label.CONFIDENTIAL
    other_entity_label: Label = Label.INTERNAL
    entity_labels: Mapping[str, Label] = field(default_factory=lambda: dict(DEFAULT_ENTITY_LABELS))

    def __post_init__(self) -> None:
        if self.restricted_customers < 1 or self.confidential_customers < 1:
            raise ValueError("customer thresholds must be at least 1")
        if self.restricted_findings < 0:
            raise ValueError("restricted_findings must not be negative")
        if self.confidential_customers > self.restricted_customers:
            raise ValueError("confidential_customers must not be above restricted_customers")
        if self.incomplete_label is Label.PUBLIC:
            raise ValueError(
                "incomplete_label cannot be public: what was not fully inspected is never "
                "public (fail closed)"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LabelRules:
        """Rules from a plain mapping (a TOML table); ``ValueError`` with one line.

        ``entity_labels`` entries are merged over :data:`DEFAULT_ENTITY_LABELS`.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise ValueError(f"unknown [inspection.labels] key {unknown[0]!r}: use one of {names}")
        values: dict[str, Any] = {}
        for name in ("restricted_customers", "confidential_customers", "restricted_findings"):
            if name in data:
                raw = data[name]
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise ValueError(f"[inspection.labels] {name} must be an integer")
                values[name] = raw
        for name in ("primary_only_label", "incomplete_label", "other_entity_label"):
            if name in data:
                values[name] = parse_label(data[name])
        if "entity_labels" in data:
            table = data["entity_labels"]
            if not isinstance(table, Mapping):
                raise ValueError("[inspection.labels] entity_labels must be a table")
            merged = dict(DEFAULT_ENTITY_LABELS)
            merged.update({str(k): parse_label(v) for k, v in table.items()})
            values["entity_labels"] = merged
        return cls(**values)

    def label(
        self,
        counts: Mapping[str, int],
        *,
        customers: int,
        primary_only: int,
        complete: bool,
    ) -> Label:
        """The label of an item with these entity counts and EDM results."""
        best = Label.PUBLIC
        sensitive = 0
        for entity, count in counts.items():
            if count <= 0:
                continue
            entity_label = self.entity_labels.get(entity, self.other_entity_label)
            best = max(best, entity_label)
            if entity_label >= Label.CONFIDENTIAL:
                sensitive += count
        if self.restricted_findings and sensitive >= self.restricted_findings:
            best = Label.RESTRICTED
        if customers >= self.restricted_customers:
            best = Label.RESTRICTED
        elif customers >= self.confidential_customers:
            best = max(best, Label.CONFIDENTIAL)
        if primary_only:
            best = max(best, self.primary_only_label)
        if not complete:
            best = max(best, self.incomplete_label)
        return best


def load_label_rules(
    config: Path | str | None = None, *, home: Path | str | None = None
) -> LabelRules:
    """Label rules from the ``[inspection.labels]`` table of the TOML config file.

    The file is ``config``, else ``$SPILLGUARD_CONFIG``, else ``config.toml`` in the data
    directory (``home``, else ``$SPILLGUARD_HOME``, else ``.spillguard``) — the same file
    the settings read.  The table may also sit under ``[spillguard.inspection.labels]``.
    No file or no table gives the defaults.  ``ValueError`` for a bad table.
    """
    from spillguard.inspection.config import config_path, inspection_table

    inspection = inspection_table(config_path(config, home=home))
    labels = inspection.get("labels", {})
    if not isinstance(labels, dict):
        raise ValueError("[inspection.labels] must be a table")
    return LabelRules.from_mapping(labels)


@dataclass(frozen=True)
class FindingLocation:
    """Where a finding is: the part (``report.zip/customers.xlsx/Sheet1``) and, in it,
    ``line``/``column`` (1-based) for text, or ``row``/``cell`` (1-based) for a table,
    plus character offsets ``start``/``end`` in the line's text or the cell."""

    part: str
    start: int
    end: int
    line: int | None = None
    column: int | None = None
    row: int | None = None
    cell: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"part": self.part}
        for name in ("line", "column", "row", "cell"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["start"] = self.start
        out["end"] = self.end
        return out


@dataclass(frozen=True)
class MaskedFinding:
    """One finding as it may be shown: entity, masked value, location, confidence."""

    entity: str
    detector: str
    masked: str
    confidence: float
    location: FindingLocation

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "detector": self.detector,
            "masked": self.masked,
            "confidence": self.confidence,
            "location": self.location.to_dict(),
        }


@dataclass(frozen=True)
class CustomerHit:
    """A customer found by EDM: their id and the field kinds that matched (no values)."""

    customer_id: str
    primary: tuple[str, ...]
    supporting: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "primary": list(self.primary),
            "supporting": list(self.supporting),
        }


@dataclass(frozen=True)
class IncompleteEntry:
    """A part not inspected: its path, ``unscannable`` or ``uninspected``, and why."""

    part: str
    status: ItemStatus
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "status": self.status.value, "reason": self.reason}


@dataclass(frozen=True)
class InspectionReport:
    """The classification of one item.  Holds no plain value of any finding."""

    path: str
    sha256: str | None
    size: int | None
    format: str
    status: ItemStatus
    label: Label
    categories: Mapping[str, int]
    customers: tuple[CustomerHit, ...]
    primary_only: tuple[str, ...]
    findings: tuple[MaskedFinding, ...]
    incomplete: tuple[IncompleteEntry, ...] = ()
    findings_truncated: bool = False
    parts: int = 0

    @property
    def customer_ids(self) -> list[str]:
        """Ids of the customers with a record match (primary + supporting), sorted."""
        return [c.customer_id for c in self.customers]

    @property
    def reasons(self) -> list[str]:
        """Why parts were not inspected, as shown to users."""
        return [entry.reason for entry in self.incomplete]

    @property
    def complete(self) -> bool:
        return not self.incomplete

    def at_least(self, label: Label | str) -> bool:
        """True when this item's label is ``label`` or higher."""
        return self.label >= parse_label(label)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (the report's JSON form)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "status": self.status.value,
            "label": self.label.value,
            "categories": dict(sorted(self.categories.items())),
            "customer_count": len(self.customers),
            "customer_ids": self.customer_ids,
            "customers": [c.to_dict() for c in self.customers],
            "primary_only_count": len(self.primary_only),
            "primary_only_ids": list(self.primary_only),
            "findings": [f.to_dict() for f in self.findings],
            "findings_truncated": self.findings_truncated,
            "reasons": self.reasons,
            "incomplete": [entry.to_dict() for entry in self.incomplete],
            "parts": self.parts,
        }


def classify(
    path: str,
    *,
    sha256: str | None,
    size: int | None = None,
    format: str = "",
    findings: Iterable[tuple[Any, FindingLocation]] = (),
    records: Iterable[Any] = (),
    primary_only: Iterable[Any] = (),
    unscannable: Iterable[tuple[str, str]] = (),
    uninspected: Iterable[tuple[str, str]] = (),
    parts: int = 0,
    rules: LabelRules | None = None,
    max_findings: int = 1000,
) -> InspectionReport:
    """The report of one item from what was found in it.

    ``findings`` pairs engine findings (anything with ``entity``, ``detector``,
    ``masked``, ``confidence``) with their location; only those attributes are read —
    never ``value``.  ``records`` and ``primary_only`` are EDM matches (anything with
    ``customer_id``, ``primary``, ``supporting``), merged per customer; a customer with
    a record match anywhere is not counted as primary-only.  ``unscannable`` and
    ``uninspected`` are ``(part path, reason)`` pairs.  Category counts are exact;
    at most ``max_findings`` masked findings are kept (``findings_truncated`` says so).
    """
    rules = rules or LabelRules()
    counts: Counter[str] = Counter()
    kept: list[MaskedFinding] = []
    truncated = False
    for finding, location in findings:
        entity = str(finding.entity)
        counts[entity] += 1
        if len(kept) >= max_findings:
            truncated = True
            continue
        kept.append(
            MaskedFinding(
                entity=entity,
                detector=str(finding.detector),
                masked=str(finding.masked),
                confidence=float(finding.confidence),
                location=location,
            )
        )
    merged: dict[str, tuple[set[str], set[str]]] = {}
    for match in records:
        prim, supp = merged.setdefault(str(match.customer_id), (set(), set()))
        prim.update(str(k) for k in match.primary)
        supp.update(str(k) for k in match.supporting)
    customers = tuple(
        CustomerHit(cid, tuple(sorted(prim)), tuple(sorted(supp)))
        for cid, (prim, supp) in sorted(merged.items())
    )
    alone = tuple(sorted({str(m.customer_id) for m in primary_only} - set(merged)))
    incomplete = [
        IncompleteEntry(part, ItemStatus.UNINSPECTED, reason) for part, reason in uninspected
    ] + [IncompleteEntry(part, ItemStatus.UNSCANNABLE, reason) for part, reason in unscannable]
    if any(e.status is ItemStatus.UNINSPECTED for e in incomplete):
        status = ItemStatus.UNINSPECTED
    elif incomplete:
        status = ItemStatus.UNSCANNABLE
    elif counts or customers or alone:
        status = ItemStatus.FINDINGS
    else:
        status = ItemStatus.CLEAN
    label = rules.label(
        counts, customers=len(customers), primary_only=len(alone), complete=not incomplete
    )
    return InspectionReport(
        path=path,
        sha256=sha256,
        size=size,
        format=format,
        status=status,
        label=label,
        categories=dict(sorted(counts.items())),
        customers=customers,
        primary_only=alone,
        findings=tuple(kept),
        incomplete=tuple(incomplete),
        findings_truncated=truncated,
        parts=parts,
    )
