"""A small validator for JSON against a Google API discovery document's schemas.

Discovery documents describe resources with a JSON-Schema-like dialect (``type``,
``format``, ``enum``, ``properties``, ``items``, ``additionalProperties``, ``$ref``,
``deprecated``).  This checks what matters for an exported policy: every field name
exists, every value has the declared type and format (int32 range, int64 as a decimal
string, durations), enum values are allowed, and no deprecated field or value is used.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_DECIMAL = re.compile(r"^-?\d+$")


@dataclass
class Report:
    """Problems found: ``errors`` break the schema, ``deprecated`` lists deprecated uses."""

    errors: list[str] = field(default_factory=list)
    deprecated: list[str] = field(default_factory=list)


class Discovery:
    """The ``schemas`` of one discovery document, ready to validate values against."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = document["schemas"]
        self.revision: str = document.get("revision", "")

    @classmethod
    def load(cls, path: Path) -> Discovery:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def validate(self, value: Any, schema_name: str) -> Report:
        report = Report()
        self._check(value, {"$ref": schema_name}, schema_name, report)
        return report

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        return schema

    def _check(self, value: Any, schema: dict[str, Any], path: str, report: Report) -> None:
        if schema.get("deprecated"):
            report.deprecated.append(path)
        schema = self._resolve(schema)
        kind = schema.get("type")
        if kind == "object":
            self._check_object(value, schema, path, report)
        elif kind == "array":
            if not isinstance(value, list):
                report.errors.append(f"{path}: expected an array, got {type(value).__name__}")
                return
            for index, item in enumerate(value):
                self._check(item, schema["items"], f"{path}[{index}]", report)
        elif kind == "string":
            self._check_string(value, schema, path, report)
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                report.errors.append(f"{path}: expected an integer, got {type(value).__name__}")
                return
            low, high = _INT_RANGES.get(schema.get("format", "int64"), _INT_RANGES["int64"])
            if not low <= value <= high:
                report.errors.append(f"{path}: {value} is outside {schema.get('format')}")
        elif kind == "number":
            if not isinstance(value, int | float) or isinstance(value, bool):
                report.errors.append(f"{path}: expected a number, got {type(value).__name__}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                report.errors.append(f"{path}: expected a boolean, got {type(value).__name__}")
        elif kind == "any":
            pass
        else:
            report.errors.append(f"{path}: schema type {kind!r} is not understood")

    def _check_object(self, value: Any, schema: dict[str, Any], path: str, report: Report) -> None:
        if not isinstance(value, dict):
            report.errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        properties: dict[str, Any] | None = schema.get("properties")
        extra: dict[str, Any] | None = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                self._check(item, properties[key], f"{path}.{key}", report)
            elif extra is not None:
                self._check(item, extra, f"{path}.{key}", report)
            else:
                report.errors.append(f"{path}: unknown field {key!r}")

    def _check_string(self, value: Any, schema: dict[str, Any], path: str, report: Report) -> None:
        if not isinstance(value, str):
            report.errors.append(f"{path}: expected a string, got {type(value).__name__}")
            return
        enum = schema.get("enum")
        if enum is not None:
            if value not in enum:
                report.errors.append(f"{path}: {value!r} is not one of {enum}")
            elif schema.get("enumDeprecated", [False] * len(enum))[enum.index(value)]:
                report.deprecated.append(f"{path}={value}")
        fmt = schema.get("format")
        if fmt in ("int64", "uint64"):
            low, high = _INT_RANGES[fmt]
            if not _DECIMAL.match(value) or not low <= int(value) <= high:
                report.errors.append(f"{path}: {value!r} is not a decimal {fmt}")
        elif fmt == "google-duration":
            if not _DURATION.match(value):
                report.errors.append(f"{path}: {value!r} is not a duration like '3.5s'")
        elif fmt == "google-datetime":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                report.errors.append(f"{path}: {value!r} is not an RFC 3339 timestamp")
        elif fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
            except (ValueError, binascii.Error):
                report.errors.append(f"{path}: {value!r} is not base64")
