"""The ``[inspection]`` table of the config file: how content is inspected here.

One table configures every process that inspects — the server (API, console, jobs),
``spillguard scan``, ``spillguard mail-filter`` and the customer import, which must
normalise customers' values as the scans that look for them do::

    [inspection]
    phone_region = "GB"                  # numbers written without +/00
    phone_requires_trunk_prefix = true
    phone_accept_drama_numbers = true
    disabled = ["ip_address"]            # built-in detectors left out

    [[inspection.custom_identifiers]]    # one table per identifier
    name = "loyalty_number"
    pattern = '\\bLC[ \\-]?\\d{4}[ \\-]?\\d{4}[ \\-]?\\d{4}\\b'
    check_digit = "luhn"
    context_words = ["loyalty", "rewards", "member"]

    [inspection.labels]                  # spillguard.inspection.classify.LabelRules
    restricted_customers = 10

    [inspection.limits]                  # spillguard.inspection.extract.ExtractLimits
    max_depth = 5

    [inspection.edm]                     # spillguard.customers.edm.EdmSettings
    window = 300
    loyalty_entity = "loyalty_number"
    loyalty = { pattern = '[A-Za-z]{0,4}[ \\-]?\\d(?:[ \\-]?\\d){5,19}', check_digit = "luhn" }

The table may also sit under ``[spillguard.inspection]``.  The file is the one the
settings read (``SPILLGUARD_CONFIG``, else ``config.toml`` in the data directory).  No
file or no table gives the defaults.  Anything that cannot be used is a
:class:`ValueError` whose message is one line naming the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from spillguard.inspection.classify import LabelRules
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.extract.model import ExtractLimits

if TYPE_CHECKING:  # customers imports the detectors: imported lazily at run time
    from spillguard.customers.edm import EdmSettings

__all__ = ["InspectionConfig", "config_path", "inspection_table", "load_inspection_config"]

_DETECTOR_KEYS = (
    "phone_region",
    "phone_requires_trunk_prefix",
    "phone_accept_drama_numbers",
    "disabled",
    "custom_identifiers",
)
_KEYS = (*_DETECTOR_KEYS, "labels", "limits", "edm")


@dataclass(frozen=True)
class InspectionConfig:
    """The inspection settings of one installation (defaults where the file is silent)."""

    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    labels: LabelRules = field(default_factory=LabelRules)
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    edm_table: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None
    """The file read, if any."""

    def edm_settings(self) -> EdmSettings:
        """Exact-data-match settings: the ``[inspection.edm]`` table, with the phone
        region of the detectors (customers' numbers are read as the scans read them)."""
        from spillguard.customers.edm import EdmSettings

        return EdmSettings.model_validate(
            {**self.edm_table, "phone_region": self.detectors.phone_region}
        )


def config_path(config: Path | str | None = None, *, home: Path | str | None = None) -> Path:
    """The config file: ``config``, else ``$SPILLGUARD_CONFIG``, else ``config.toml`` in
    the data directory (``home``, else ``$SPILLGUARD_HOME``, else ``.spillguard``)."""
    explicit = config or os.environ.get("SPILLGUARD_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(home or os.environ.get("SPILLGUARD_HOME", ".spillguard")) / "config.toml"


def inspection_table(path: Path) -> dict[str, Any]:
    """The ``[inspection]`` (or ``[spillguard.inspection]``) table of the file at
    ``path``; ``{}`` when there is no file or no table."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {path} cannot be read: {exc}") from exc
    section = data.get("spillguard", data)
    table = section.get("inspection", {}) if isinstance(section, dict) else {}
    if not isinstance(table, dict):
        raise ValueError("[inspection] must be a table")
    return table


def load_inspection_config(
    config: Path | str | None = None, *, home: Path | str | None = None
) -> InspectionConfig:
    """Read and check the ``[inspection]`` table (see the module's documentation)."""
    path = config_path(config, home=home)
    table = inspection_table(path)
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown [inspection] key {unknown[0]!r}: use one of {', '.join(_KEYS)}")
    detectors = _detectors({k: table[k] for k in _DETECTOR_KEYS if k in table})
    labels = table.get("labels", {})
    if not isinstance(labels, dict):
        raise ValueError("[inspection.labels] must be a table")
    limits = _limits(table.get("limits", {}))
    edm = table.get("edm", {})
    if not isinstance(edm, dict):
        raise ValueError("[inspection.edm] must be a table")
    if "phone_region" in edm:
        raise ValueError("[inspection.edm] phone_region: set phone_region in [inspection]")
    loaded = InspectionConfig(
        detectors=detectors,
        labels=LabelRules.from_mapping(labels),
        limits=limits,
        edm_table=dict(edm),
        source=path if path.is_file() else None,
    )
    try:
        edm_settings = loaded.edm_settings()
    except ValidationError as exc:
        raise ValueError(_one_line("[inspection.edm]", exc)) from None
    entity = edm_settings.loyalty_entity
    declared = {c.name for c in detectors.custom_identifiers}
    if "loyalty_entity" in edm and entity not in declared:
        raise ValueError(
            f"[inspection.edm] loyalty_entity {entity!r} names no "
            "[[inspection.custom_identifiers]] entry"
        )
    return loaded


def _detectors(values: dict[str, Any]) -> DetectorSettings:
    try:
        return DetectorSettings.model_validate(values)
    except ValidationError as exc:
        raise ValueError(_one_line("[inspection]", exc)) from None


def _limits(values: object) -> ExtractLimits:
    if not isinstance(values, dict):
        raise ValueError("[inspection.limits] must be a table")
    known = {f.name: f for f in fields(ExtractLimits)}
    for name, value in values.items():
        if name not in known:
            raise ValueError(
                f"unknown [inspection.limits] key {name!r}: use one of {', '.join(known)}"
            )
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (known[name].type == "int" and not isinstance(value, int)):
            kind = "an integer" if known[name].type == "int" else "a number"
            raise ValueError(f"[inspection.limits] {name} must be {kind}")
    try:
        return ExtractLimits(**values)
    except ValueError as exc:
        raise ValueError(f"[inspection.limits] {exc}") from None


def _one_line(where: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where} {name}: {message}" if name else f"{where}: {message}"
