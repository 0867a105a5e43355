"""The ``[inspection]`` table of the config file: how content is inspected here.

One table configures every process that inspects — the server (API, console, jobs),
``spillguard scan``, ``spillguard mail-filter`` and the customer import, which must
normalise customers' values as the scans that look for them do::

    [inspection]
    phone_region = "GB"                  # numbers written without +/00
    phone_requires_trunk_prefix = true
    phone_accept_drama_numbers = true
    disabled = ["ipv4", "ipv6"]          # built-in detectors left out

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

The table may also sit under ``[spillguard.inspection]`` (not both).  The file is the
one the settings read (``SPILLGUARD_CONFIG``, which must then exist, else
``config.toml`` in the data directory).  No file or no table gives the defaults.
Anything that cannot be used is a :class:`ValueError` whose message is one line naming
the key.

A process reads the table once (:func:`inspection_config_for`): the server when it
starts, each command when it runs.  A change takes effect when the server restarts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from spillguard.inspection.classify import LabelRules
from spillguard.inspection.detectors import DetectorSettings
from spillguard.inspection.detectors.base import Entity
from spillguard.inspection.detectors.custom import CustomIdentifier
from spillguard.inspection.extract.model import ExtractLimits

if TYPE_CHECKING:  # customers imports the detectors: imported lazily at run time
    from spillguard.core.settings import Settings
    from spillguard.customers.edm import EdmSettings

__all__ = [
    "InspectionConfig",
    "config_path",
    "inspection_config_for",
    "inspection_table",
    "load_inspection_config",
]

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
    explicit = _explicit(config)
    if explicit:
        return Path(explicit)
    return Path(home or os.environ.get("SPILLGUARD_HOME", ".spillguard")) / "config.toml"


def _explicit(config: Path | str | None) -> Path | str | None:
    return config or os.environ.get("SPILLGUARD_CONFIG") or None


def inspection_table(path: Path, *, must_exist: bool = False) -> dict[str, Any]:
    """The ``[inspection]`` (or ``[spillguard.inspection]``) table of the file at
    ``path``; ``{}`` when there is no file (an error when ``must_exist``) or no table."""
    if not path.is_file():
        if must_exist:
            raise ValueError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {path} cannot be read: {exc}") from exc
    nested = data.get("spillguard")
    inner = nested.get("inspection") if isinstance(nested, dict) else None
    outer = data.get("inspection")
    if inner is not None and outer is not None:
        raise ValueError(
            "the config file has both [inspection] and [spillguard.inspection]: keep one"
        )
    table = inner if inner is not None else outer
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ValueError("[inspection] must be a table")
    return table


_LOADED: dict[str, InspectionConfig] = {}


def inspection_config_for(settings: Settings) -> InspectionConfig:
    """The table of ``settings``' config file, read once per process and file (a server
    and its imports, scans and mail filter all see the same)."""
    path = config_path(settings.config, home=settings.home)
    key = str(path.resolve())
    loaded = _LOADED.get(key)
    if loaded is None:
        loaded = _LOADED[key] = load_inspection_config(settings.config, home=settings.home)
    return loaded


def load_inspection_config(
    config: Path | str | None = None, *, home: Path | str | None = None
) -> InspectionConfig:
    """Read and check the ``[inspection]`` table (see the module's documentation)."""
    path = config_path(config, home=home)
    table = inspection_table(path, must_exist=_explicit(config) is not None)
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
    _check_types("[inspection.edm]", _edm_model(), edm)
    loaded = InspectionConfig(
        detectors=detectors,
        labels=_labels(labels, detectors),
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
    _check_types("[inspection]", DetectorSettings, values)
    identifiers = values.get("custom_identifiers", [])
    if not isinstance(identifiers, list) or not all(isinstance(i, dict) for i in identifiers):
        raise ValueError(
            "[inspection] custom_identifiers: write each as an [[inspection.custom_identifiers]] "
            "table"
        )
    for number, identifier in enumerate(identifiers):
        _check_types(f"[inspection] custom_identifiers.{number}", CustomIdentifier, identifier)
    try:
        return DetectorSettings.model_validate(values)
    except ValidationError as exc:
        raise ValueError(_one_line("[inspection]", exc)) from None


def _labels(values: dict[str, Any], detectors: DetectorSettings) -> LabelRules:
    try:
        rules = LabelRules.from_mapping(values)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(
            message if message.startswith("[") else f"[inspection.labels] {message}"
        ) from None
    named = values.get("entity_labels", {})
    known = {e.value for e in Entity} | {c.name for c in detectors.custom_identifiers}
    unknown = sorted(set(named) - known)
    if unknown:
        raise ValueError(
            f"[inspection.labels.entity_labels] {unknown[0]!r} is not an entity: use one of "
            f"{', '.join(sorted(known))}"
        )
    return rules


def _edm_model() -> type[BaseModel]:
    from spillguard.customers.edm import EdmSettings

    return EdmSettings


def _check_types(where: str, model: type[BaseModel], values: dict[str, Any]) -> None:
    """What TOML gives each scalar or list field of ``model`` is of its type as written:
    a string is not a boolean ("no") nor a number ("300"), a list is a list."""
    for name, value in values.items():
        info = model.model_fields.get(name)
        if info is None:
            continue  # an unknown key is the model's own error
        annotation = info.annotation
        origin = get_origin(annotation)
        if annotation is bool:
            ok, kind = isinstance(value, bool), "true or false"
        elif annotation is int:
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif annotation is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            kind = "a number"
        elif annotation is str:
            ok, kind = isinstance(value, str), "a string"
        elif origin in (tuple, frozenset, list) and get_args(annotation)[:1] == (str,):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            kind = "a list of strings"
        else:
            continue
        if not ok:
            raise ValueError(f"{where} {name} must be {kind}")


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
    message = " ".join(message.split())  # a pattern quoted with a line break stays one line
    return f"{where} {name}: {message}" if name else f"{where}: {message}"
