"""CSV headers recognised as field kinds, and --map overrides with one-line errors."""

from __future__ import annotations

import pytest

from spillguard.core.errors import InvalidInput
from spillguard.customers.columns import map_columns, recognise_header
from spillguard.customers.fields import FieldKind


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("E-mail", FieldKind.EMAIL),
        ("email_address", FieldKind.EMAIL),
        ("Email Address", FieldKind.EMAIL),
        ("Mobile", FieldKind.PHONE),
        ("Tel", FieldKind.PHONE),
        ("Tel. No.", FieldKind.PHONE),
        ("Post Code", FieldKind.POSTCODE),
        ("POSTCODE", FieldKind.POSTCODE),
        ("Surname", FieldKind.LAST_NAME),
        ("Forename", FieldKind.FIRST_NAME),
        ("First Name", FieldKind.FIRST_NAME),
        ("Full name", FieldKind.NAME),
        ("DOB", FieldKind.DATE_OF_BIRTH),
        ("D.O.B.", FieldKind.DATE_OF_BIRTH),
        ("Date of Birth", FieldKind.DATE_OF_BIRTH),
        ("Loyalty Card No", FieldKind.LOYALTY_NUMBER),
        ("Contract End", FieldKind.CONTRACT_RENEWAL_DATE),
        ("Address Line 1", FieldKind.ADDRESS),
        ("Card Number", FieldKind.CARD),
    ],
)
def test_common_headers_are_recognised(header, kind):
    assert recognise_header(header) is kind


@pytest.mark.parametrize("header", ["Notes", "Order total", "Hotel", "Created at"])
def test_other_headers_are_not_fields(header):
    assert recognise_header(header) is None


def test_mapping_reads_rows_by_recognised_headers():
    mapping = map_columns(["Customer ID", "Forename", "Surname", "E-mail", "Notes"])
    assert mapping.describe() == {
        "Customer ID": "id",
        "Forename": "first_name",
        "Surname": "last_name",
        "E-mail": "email",
    }
    customer_id, values = mapping.read(["C1", "Jane", "Doe", "jane@example.org", "likes tea"])
    assert customer_id == "C1"
    assert values == {
        FieldKind.FIRST_NAME: ["Jane"],
        FieldKind.LAST_NAME: ["Doe"],
        FieldKind.EMAIL: ["jane@example.org"],
    }


def test_map_overrides_adds_and_ignores_columns():
    mapping = map_columns(
        ["ref", "Contact", "Mobile", "Club"],
        id_column="ref",
        overrides=["Contact=email", "club=loyalty_number", "Mobile=ignore"],
    )
    assert mapping.describe() == {"ref": "id", "Contact": "email", "Club": "loyalty_number"}


@pytest.mark.parametrize(
    ("overrides", "id_column", "message"),
    [
        (["Contact"], None, "--map expects COLUMN=KIND, got 'Contact'"),
        (["Contact=shoe_size"], None, "unknown field kind 'shoe_size'"),
        (["Missing=email"], None, "no column 'Missing' in the header"),
        (["Contact=email", "contact=phone"], None, "mapped more than once"),
        ([], "nope", "--id-column: no column 'nope'"),
    ],
)
def test_map_errors_are_one_line_invalid_input(overrides, id_column, message):
    with pytest.raises(InvalidInput) as caught:
        map_columns(["Customer ID", "Contact", "Mobile"], id_column=id_column, overrides=overrides)
    assert message in caught.value.detail
    assert "\n" not in caught.value.detail


def test_the_id_column_is_required():
    with pytest.raises(InvalidInput, match="no customer id column"):
        map_columns(["Name", "Email"])
    mapping = map_columns(["Name", "Email"], overrides=["Email=id", "Name=name"])
    assert mapping.describe() == {"Email": "id", "Name": "name"}


def test_a_file_without_any_field_column_is_refused():
    with pytest.raises(InvalidInput, match="no column holds a customer field"):
        map_columns(["Customer ID", "Notes"])
