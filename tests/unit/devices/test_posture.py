"""The check-in posture parser: what a device may report, and what it is refused."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spillguard.core.errors import InvalidInput
from spillguard.devices.posture import (
    MAX_MANAGED_DOCUMENTS,
    PasscodeType,
    Platform,
    Posture,
    ReportedAtInFuture,
    check_reported_at,
)
from tests.unit.devices.strategies import NOW, SHA, json_values, posture, posture_data


def errors_of(data: Any) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        Posture.model_validate(data)
    return caught.value.errors()


def single_error(data: Any) -> tuple[tuple[str | int, ...], str]:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return tuple(errors[0]["loc"]), errors[0]["type"]


def test_a_full_check_in_parses_into_the_posture_the_device_reported() -> None:
    parsed = posture()
    assert parsed.platform is Platform.ANDROID
    assert parsed.passcode.type is PasscodeType.PIN
    assert parsed.passcode.length == 6
    assert parsed.storage_encrypted is True
    assert parsed.managed_documents[0].file_name == "loyalty-top-1000.xlsx"
    assert parsed.reported_at.utcoffset() == timedelta(0)


def test_the_same_check_in_parses_from_json_text() -> None:
    assert Posture.model_validate_json(json.dumps(posture_data())) == posture()


def test_a_device_without_an_agent_or_serial_or_documents_may_still_report() -> None:
    data = posture_data(agent_version=None, serial=None)
    del data["managed_documents"]
    parsed = Posture.model_validate(data)
    assert parsed.agent_version is None
    assert parsed.serial is None
    assert parsed.managed_documents == []


def test_never_locking_screen_is_reported_as_none() -> None:
    assert posture(auto_lock_seconds=None).auto_lock_seconds is None


def test_content_hashes_are_stored_in_lower_case() -> None:
    document = {"sha256": SHA.upper(), "file_name": "a.pdf", "size": 1}
    assert posture(managed_documents=[document]).managed_documents[0].sha256 == SHA


@pytest.mark.parametrize(
    ("where", "extra"),
    [
        ((), {"location": {"lat": 51.5, "lon": -0.12}}),
        (("passcode",), {"hint": "birthday"}),
        (("managed_documents", 0), {"owner": "someone"}),
    ],
    ids=["top-level", "passcode", "document"],
)
def test_unknown_fields_are_refused_by_name(where: tuple[Any, ...], extra: dict[str, Any]) -> None:
    data = posture_data()
    target: Any = data
    for step in where:
        target = target[step]
    target.update(extra)
    loc, kind = single_error(data)
    assert kind == "extra_forbidden"
    assert loc == (*where, next(iter(extra)))


@pytest.mark.parametrize(
    ("changes", "loc", "kind"),
    [
        ({"passcode": {"type": "pin", "length": -1}}, ("passcode", "length"), "greater_than_equal"),
        (
            {"passcode": {"type": "pin", "length": 10_000}},
            ("passcode", "length"),
            "less_than_equal",
        ),
        ({"auto_lock_seconds": -30}, ("auto_lock_seconds",), "greater_than_equal"),
        ({"auto_lock_seconds": 10**9}, ("auto_lock_seconds",), "less_than_equal"),
        (
            {"managed_documents": [{"sha256": SHA, "file_name": "a", "size": -1}]},
            ("managed_documents", 0, "size"),
            "greater_than_equal",
        ),
        (
            {"managed_documents": [{"sha256": SHA, "file_name": "a", "size": 2**63}]},
            ("managed_documents", 0, "size"),
            "less_than_equal",
        ),
    ],
    ids=[
        "negative-length",
        "absurd-length",
        "negative-lock",
        "absurd-lock",
        "negative-size",
        "size-over-int64",
    ],
)
def test_impossible_numbers_are_refused(
    changes: dict[str, Any], loc: tuple[Any, ...], kind: str
) -> None:
    assert single_error(posture_data(**changes)) == (loc, kind)


@pytest.mark.parametrize(
    ("changes", "loc", "kind"),
    [
        ({"storage_encrypted": "true"}, ("storage_encrypted",), "bool_type"),
        ({"rooted": 0}, ("rooted",), "bool_type"),
        ({"passcode": {"type": "pin", "length": 6.0}}, ("passcode", "length"), "int_type"),
        ({"passcode": {"type": "pin", "length": "6"}}, ("passcode", "length"), "int_type"),
        ({"os_version": 17}, ("os_version",), "string_type"),
        ({"platform": 1}, ("platform",), "value_error"),
        ({"platform": "windows"}, ("platform",), "enum"),
        ({"passcode": {"type": "face", "length": None}}, ("passcode", "type"), "enum"),
    ],
    ids=[
        "bool-as-text",
        "bool-as-int",
        "float-length",
        "text-length",
        "number-version",
        "number-platform",
        "unknown-platform",
        "unknown-passcode-type",
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(
    changes: dict[str, Any], loc: tuple[Any, ...], kind: str
) -> None:
    assert single_error(posture_data(**changes)) == (loc, kind)


@pytest.mark.parametrize("kind", ["none", "swipe"])
def test_a_lock_without_a_secret_cannot_have_a_length(kind: str) -> None:
    loc, error = single_error(posture_data(passcode={"type": kind, "length": 4}))
    assert (loc, error) == (("passcode",), "value_error")
    assert posture(passcode={"type": kind, "length": 0}).passcode.length == 0


@pytest.mark.parametrize(
    "missing",
    [
        "platform",
        "passcode",
        "storage_encrypted",
        "rooted",
        "auto_lock_seconds",
        "agent_version",
        "reported_at",
    ],
)
def test_posture_facts_cannot_be_left_out(missing: str) -> None:
    data = posture_data()
    del data[missing]
    assert single_error(data) == ((missing,), "missing")


@pytest.mark.parametrize(
    "value",
    ["2025-03-14T09:29:00", 1_741_944_540, "yesterday", None],
    ids=["no-offset", "unix-time", "words", "null"],
)
def test_reported_at_must_be_an_iso_timestamp_with_offset(value: Any) -> None:
    loc, _ = single_error(posture_data(reported_at=value))
    assert loc == ("reported_at",)


def test_file_names_are_bounded_single_names() -> None:
    def document(name: str) -> list[dict[str, Any]]:
        return [{"sha256": SHA, "file_name": name, "size": 1}]

    assert posture(managed_documents=document("x" * 255)).managed_documents[0].file_name
    for bad in ["x" * 256, "", "../etc/passwd", "report\x00.pdf", ".."]:
        loc, _ = single_error(posture_data(managed_documents=document(bad)))
        assert loc == ("managed_documents", 0, "file_name"), bad


@pytest.mark.parametrize("digest", [SHA[:-1], SHA + "0", "z" * 64, ""])
def test_content_hash_must_be_sha256_hex(digest: str) -> None:
    data = posture_data(managed_documents=[{"sha256": digest, "file_name": "a", "size": 1}])
    assert single_error(data)[0] == ("managed_documents", 0, "sha256")


def test_the_document_inventory_is_capped() -> None:
    documents = [
        {"sha256": SHA, "file_name": f"{i}.pdf", "size": i} for i in range(MAX_MANAGED_DOCUMENTS)
    ]
    assert len(posture(managed_documents=documents).managed_documents) == MAX_MANAGED_DOCUMENTS
    documents.append({"sha256": SHA, "file_name": "one-too-many.pdf", "size": 1})
    assert single_error(posture_data(managed_documents=documents)) == (
        ("managed_documents",),
        "too_long",
    )


@pytest.mark.parametrize("field", ["model", "serial", "os_version", "agent_version"])
def test_labels_are_bounded_and_single_line(field: str) -> None:
    for bad in ["", "x" * 200, "Pixel\n8"]:
        assert single_error(posture_data(**{field: bad}))[0] == (field,), bad


# --- clock skew ---------------------------------------------------------------------------


def test_a_timestamp_within_the_clock_skew_is_accepted() -> None:
    ahead = posture(reported_at=(NOW + timedelta(minutes=4)).isoformat())
    check_reported_at(ahead, NOW)
    behind = posture(reported_at=(NOW - timedelta(days=2)).isoformat())
    check_reported_at(behind, NOW)  # queued while offline


def test_a_timestamp_beyond_the_clock_skew_is_refused_with_a_clear_reason() -> None:
    ahead = posture(reported_at=(NOW + timedelta(minutes=6)).isoformat())
    with pytest.raises(ReportedAtInFuture) as caught:
        check_reported_at(ahead, NOW)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.status == 422
    assert "360 seconds ahead of the server clock; at most 300" in caught.value.detail
    check_reported_at(ahead, NOW, max_skew=timedelta(minutes=10))


def test_the_skew_is_measured_across_time_zones() -> None:
    # 10:33 at +01:00 is 09:33 UTC: three minutes ahead, not an hour.
    check_reported_at(posture(reported_at="2025-03-14T10:33:00+01:00"), NOW)


def test_the_skew_check_needs_an_aware_server_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_reported_at(posture(), NOW.replace(tzinfo=None))


# --- property tests: the parser never fails any other way --------------------------------


def parse_or_refuse(data: Any) -> None:
    with contextlib.suppress(ValidationError):
        Posture.model_validate(data)
    with contextlib.suppress(ValidationError):
        Posture.model_validate_json(json.dumps(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_either_parses_or_is_refused_with_a_validation_error(data: Any) -> None:
    parse_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(posture_data())) | st.sampled_from(["length", "type", "size", "sha256"]),
    json_values,
)
def test_a_valid_check_in_with_one_field_replaced_never_crashes(field: str, value: Any) -> None:
    data = posture_data()
    if field in ("length", "type"):
        data["passcode"] = {**data["passcode"], field: value}
    elif field in ("size", "sha256"):
        data["managed_documents"] = [{**data["managed_documents"][0], field: value}]
    else:
        data[field] = value
    parse_or_refuse(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_as_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationError):
        Posture.model_validate_json(body)
