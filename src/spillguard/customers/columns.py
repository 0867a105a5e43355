"""Which column of a customer CSV holds what: header names and ``--map`` overrides.

Headers are compared case- and punctuation-insensitively (``E-mail``, ``email_address``
and ``Email Address`` are all ``emailaddress``), against the names in
:data:`HEADER_NAMES`.  ``--map COLUMN=KIND`` overrides or adds a mapping, and
``COLUMN=ignore`` leaves a recognised column out.  The customer id column is required:
named with ``--id-column`` or recognised from its header (``Customer ID``…).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from spillguard.core.errors import InvalidInput
from spillguard.customers.fields import FieldKind

__all__ = [
    "HEADER_NAMES",
    "ID_HEADERS",
    "ColumnMapping",
    "header_key",
    "map_columns",
    "recognise_header",
]

IGNORE = "ignore"

ID_HEADERS = frozenset(
    {
        "id",
        "customerid",
        "customer",
        "custid",
        "customerno",
        "customernumber",
        "customerref",
        "customerreference",
        "clientid",
        "clientno",
        "clientnumber",
        "clientref",
        "memberid",
        "accountid",
    }
)
"""Normalised header names recognised as the customer id column."""

HEADER_NAMES: dict[FieldKind, frozenset[str]] = {
    FieldKind.NAME: frozenset(
        {"name", "fullname", "customername", "clientname", "contactname", "membername"}
    ),
    FieldKind.FIRST_NAME: frozenset(
        {"firstname", "forename", "forenames", "givenname", "givennames", "first", "fname"}
    ),
    FieldKind.LAST_NAME: frozenset(
        {"lastname", "surname", "familyname", "last", "lname", "secondname"}
    ),
    FieldKind.EMAIL: frozenset(
        {
            "email",
            "emailaddress",
            "emailaddr",
            "mail",
            "customeremail",
            "contactemail",
            "personalemail",
            "primaryemail",
        }
    ),
    FieldKind.PHONE: frozenset(
        {
            "phone",
            "phonenumber",
            "phoneno",
            "telephone",
            "telephonenumber",
            "telephoneno",
            "tel",
            "telno",
            "mobile",
            "mobilenumber",
            "mobileno",
            "mobilephone",
            "mob",
            "cell",
            "cellphone",
            "landline",
            "homephone",
            "contactnumber",
            "contactphone",
            "primaryphone",
        }
    ),
    FieldKind.POSTCODE: frozenset(
        {"postcode", "postalcode", "zip", "zipcode", "pcode", "addresspostcode"}
    ),
    FieldKind.ADDRESS: frozenset(
        {
            "address",
            "addressline1",
            "address1",
            "addr1",
            "street",
            "streetaddress",
            "homeaddress",
            "postaladdress",
            "firstlineofaddress",
        }
    ),
    FieldKind.DATE_OF_BIRTH: frozenset(
        {"dob", "dateofbirth", "birthdate", "birthday", "born", "dobddmmyyyy"}
    ),
    FieldKind.LOYALTY_NUMBER: frozenset(
        {
            "loyaltynumber",
            "loyaltyno",
            "loyaltycard",
            "loyaltycardno",
            "loyaltycardnumber",
            "loyaltyid",
            "rewardsnumber",
            "rewardscard",
            "membershipnumber",
            "membershipno",
            "clubcard",
            "clubcardnumber",
        }
    ),
    FieldKind.CARD: frozenset(
        {
            "card",
            "cardnumber",
            "cardno",
            "pan",
            "creditcard",
            "creditcardnumber",
            "debitcard",
            "paymentcard",
        }
    ),
    FieldKind.CONTRACT_RENEWAL_DATE: frozenset(
        {
            "contractend",
            "contractenddate",
            "contractrenewal",
            "contractrenewaldate",
            "renewaldate",
            "renewal",
            "renewson",
            "enddate",
        }
    ),
}
"""Normalised header names recognised for each field kind."""

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def header_key(header: str) -> str:
    """A header as compared: lower case, letters and digits only (``E-mail`` → ``email``)."""
    return _NOT_ALNUM.sub("", header.casefold())


_BY_KEY: dict[str, FieldKind] = {key: kind for kind, keys in HEADER_NAMES.items() for key in keys}


def recognise_header(header: str) -> FieldKind | None:
    """The field kind a header names, or ``None`` when it is not a known name."""
    return _BY_KEY.get(header_key(header))


@dataclass(frozen=True)
class ColumnMapping:
    """Where the id is and which kind each other used column holds (by position)."""

    headers: tuple[str, ...]
    id_position: int
    kinds: dict[int, FieldKind]

    def read(self, row: Sequence[str]) -> tuple[str, dict[FieldKind, list[str]]]:
        """The customer id and the raw values per kind of one CSV row."""
        customer_id = row[self.id_position] if self.id_position < len(row) else ""
        values: dict[FieldKind, list[str]] = {}
        for position, kind in self.kinds.items():
            if position < len(row) and row[position].strip():
                values.setdefault(kind, []).append(row[position])
        return customer_id, values

    def describe(self) -> dict[str, str]:
        """Column header → kind (``id`` for the id column), for showing the mapping."""
        shown = {self.headers[self.id_position]: "id"}
        shown.update({self.headers[p]: k.value for p, k in sorted(self.kinds.items())})
        return shown


def _find_column(headers: Sequence[str], name: str, what: str) -> int:
    exact = [i for i, h in enumerate(headers) if h.strip() == name.strip()]
    if not exact:
        exact = [i for i, h in enumerate(headers) if header_key(h) == header_key(name)]
    if not exact:
        raise InvalidInput(f"{what}: no column {name!r} in the header")
    if len(exact) > 1:
        raise InvalidInput(f"{what}: more than one column is called {name!r}")
    return exact[0]


def map_columns(
    headers: Sequence[str], *, id_column: str | None = None, overrides: Sequence[str] = ()
) -> ColumnMapping:
    """Decide what each column holds, from its header and the ``--map`` overrides.

    ``overrides`` are ``COLUMN=KIND`` strings; KIND is a :class:`FieldKind` value,
    ``id`` or ``ignore``.  Errors are :class:`InvalidInput` with a one-line message:
    malformed override, unknown kind, unknown or ambiguous column, a column mapped
    twice, no id column, or no column holding a customer field.
    """
    headers = tuple(headers)
    kinds: dict[int, FieldKind] = {}
    for position, header in enumerate(headers):
        kind = recognise_header(header)
        if kind is not None:
            kinds[position] = kind
    id_position: int | None = None
    if id_column is not None:
        id_position = _find_column(headers, id_column, "--id-column")
    mapped: set[int] = set()
    known = ", ".join(["id", IGNORE, *(k.value for k in FieldKind)])
    for override in overrides:
        column, equals, kind_name = override.rpartition("=")
        if not equals or not column.strip() or not kind_name.strip():
            raise InvalidInput(f"--map expects COLUMN=KIND, got {override!r}")
        kind_name = kind_name.strip().lower()
        if kind_name not in ("id", IGNORE) and kind_name not in FieldKind.__members__.values():
            raise InvalidInput(f"--map {override}: unknown field kind {kind_name!r} ({known})")
        position = _find_column(headers, column, f"--map {override}")
        if position in mapped:
            raise InvalidInput(f"--map: column {headers[position]!r} is mapped more than once")
        mapped.add(position)
        if kind_name == "id":
            if id_position is not None and id_position != position:
                raise InvalidInput("--map: the id column is given more than once")
            id_position = position
        elif kind_name == IGNORE:
            kinds.pop(position, None)
        else:
            kinds[position] = FieldKind(kind_name)
    if id_position is None:
        found = [i for i, h in enumerate(headers) if header_key(h) in ID_HEADERS]
        if len(found) > 1:
            raise InvalidInput("several columns look like the customer id: pass --id-column")
        if not found:
            raise InvalidInput("no customer id column: pass --id-column NAME")
        id_position = found[0]
    kinds.pop(id_position, None)
    if not kinds:
        raise InvalidInput("no column holds a customer field: name them with --map COLUMN=KIND")
    return ColumnMapping(headers=headers, id_position=id_position, kinds=kinds)
