"""A small validator for configuration-profile payloads against Apple's payload YAML.

apple/device-management describes each payload as YAML: ``payload.payloadtype`` and a
list of ``payloadkeys``, each with ``key``, ``type`` (``<boolean>``, ``<integer>``, ...),
``presence``, an optional numeric ``range`` or a ``rangelist`` of allowed values, a
``format`` regular expression, and per-OS ``supportedOS`` (``introduced: n/a`` means the
key does not exist on that OS).  This checks a payload dictionary (as read back from the
plist) against one such file: every key is known and exists on the target OS, required
keys are present, and each value has the declared type and lies in its range.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "<boolean>": (bool,),
    "<integer>": (int,),
    "<real>": (int, float),
    "<string>": (str,),
    "<array>": (list,),
    "<dictionary>": (dict,),
    "<data>": (bytes,),
    "<date>": (datetime,),
}

# Keys every payload dictionary carries.  Apple documents them in CommonPayloadKeys.yaml,
# which is not among the vendored files; their types are the same as the profile's own
# keys of the same name in TopLevel.yaml, so they are checked against those.
COMMON_PAYLOAD_KEYS = (
    "PayloadIdentifier",
    "PayloadUUID",
    "PayloadVersion",
    "PayloadDisplayName",
    "PayloadDescription",
    "PayloadOrganization",
)


class PayloadSchema:
    """One payload's keys, read from its YAML file."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.payload_type: str = document["payload"]["payloadtype"]
        self.keys: dict[str, dict[str, Any]] = {
            spec["key"]: spec for spec in document["payloadkeys"]
        }

    @classmethod
    def load(cls, path: Path) -> PayloadSchema:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")))

    def validate(
        self,
        payload: dict[str, Any],
        *,
        target_os: str = "iOS",
        extra_keys: dict[str, dict[str, Any]] | None = None,
    ) -> list[str]:
        """Every problem with ``payload``, as "key: what is wrong" lines."""
        known = {**(extra_keys or {}), **self.keys}
        errors: list[str] = []
        for name, required in known.items():
            if required.get("presence") == "required" and name not in payload:
                errors.append(f"{name}: required key is missing")
        for name, value in payload.items():
            spec = known.get(name)
            if spec is None:
                errors.append(f"{name}: not a key of {self.payload_type}")
                continue
            support = (spec.get("supportedOS") or {}).get(target_os) or {}
            if support.get("introduced") == "n/a":
                errors.append(f"{name}: does not exist on {target_os}")
            errors.extend(f"{name}: {problem}" for problem in check_value(value, spec))
        return errors


def check_value(value: Any, spec: dict[str, Any]) -> list[str]:
    """Problems with one value against one key's type, range, rangelist and format."""
    declared = spec["type"]
    if declared == "<any>":
        return []
    allowed = _PYTHON_TYPES.get(declared)
    if allowed is None:
        return [f"schema type {declared} is not understood"]
    # bool is an int in Python but a distinct type in a property list.
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        return [f"expected {declared}, got {type(value).__name__} {value!r}"]
    problems: list[str] = []
    limits = spec.get("range")
    if limits is not None:
        if "min" in limits and value < limits["min"]:
            problems.append(f"{value} is below the minimum {limits['min']}")
        if "max" in limits and value > limits["max"]:
            problems.append(f"{value} is above the maximum {limits['max']}")
    rangelist = spec.get("rangelist")
    if rangelist is not None and value not in rangelist:
        problems.append(f"{value!r} is not one of {rangelist}")
    pattern = spec.get("format")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        problems.append(f"{value!r} does not match {pattern}")
    return problems
