"""The customer directory: whose data is this?

This package holds the database-free core of exact data match (EDM):

* ``fields`` — the field kinds of a customer list (primary: e-mail, phone, loyalty
  number, card; supporting: names, postcode, date of birth, address, renewal date) and
  the normalisers that make format variants meet before hashing;
* ``columns`` — which CSV column holds which kind, from header names and
  ``--map COLUMN=KIND`` overrides;
* ``edm`` — the index of keyed hashes (HMAC-SHA256 under a key derived from the
  master key, never plaintext) and record matching in text and table rows.

Import, storage, the encrypted contact store and the CLI are not built yet; see
docs/customers.md.
"""

from __future__ import annotations

from spillguard.customers.columns import ColumnMapping, map_columns, recognise_header
from spillguard.customers.edm import (
    EDM_KEY_PURPOSE,
    BuildStats,
    CustomerMatch,
    EdmIndex,
    EdmIndexBuilder,
    EdmResult,
    EdmSettings,
)
from spillguard.customers.fields import PRIMARY, SUPPORTING, FieldKind, LoyaltyFormat, normalise

__all__ = [
    "EDM_KEY_PURPOSE",
    "PRIMARY",
    "SUPPORTING",
    "BuildStats",
    "ColumnMapping",
    "CustomerMatch",
    "EdmIndex",
    "EdmIndexBuilder",
    "EdmResult",
    "EdmSettings",
    "FieldKind",
    "LoyaltyFormat",
    "map_columns",
    "normalise",
    "recognise_header",
]
