"""Table rows matched a table at a time give the record matches of row by row.

``EdmIndex.match_rows`` finds, hashes and looks up the primary values of every cell of
a table together (bulk normalisers, ``FieldHasher.many``, bucketed look-ups).  The
reference here is the row-by-row loop it replaced, kept in this file: each cell tried
as every primary kind with ``_cell_primaries``, each value hashed and looked up alone.
Record-match semantics (a primary and a supporting value of the same customer in the
same row) are the reference's, on tables holding real customers' values written every
which way, strangers' values, and junk.
"""

from __future__ import annotations

import bisect
import random
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spillguard.core.keys import KeyRing
from spillguard.customers import EdmIndexBuilder, EdmSettings, FieldKind
from spillguard.customers.edm import EdmIndex, EdmResult, FieldHasher
from spillguard.customers.fields import (
    MAX_ADDRESS_TOKENS,
    LoyaltyFormat,
    address_tokens,
    hash_inputs,
    name_tokens,
    normalise_address,
    normalise_card,
    normalise_card_many,
    normalise_date,
    normalise_loyalty,
    normalise_loyalty_many,
    normalise_phone,
    normalise_phone_many,
    normalise_postcode,
)
from spillguard.inspection.corpus import generate_documents, generate_edm_corpus
from spillguard.inspection.corpus.evaluate import customer_rows
from spillguard.inspection.corpus.generator import _Gen

KEY = KeyRing(bytes(range(32)))
WORD = re.compile(r"[^\W_]+(?:['\u2019\u02bc][^\W_]+)*")


def reference_word_support(index: EdmIndex, run, found: dict[int, FieldKind]) -> None:
    """Names and address lines among consecutive words, each value hashed alone."""
    digest = index._hash
    minimum = index.settings.min_name_length
    names = [" ".join(name_tokens(w)) for w in run]
    for i in range(len(names)):
        for n in range(1, 4):
            gram = names[i : i + n]
            if len(gram) < n or any(len(g) < minimum for g in gram):
                break
            value = " ".join(gram)
            for kind in (FieldKind.FIRST_NAME, FieldKind.LAST_NAME):
                found[digest(kind, value)] = kind
            if n >= 2:
                found[digest(FieldKind.NAME, value)] = FieldKind.NAME
    tokens = [" ".join(address_tokens(w)) for w in run]
    for i in range(len(tokens)):
        for n in range(2, MAX_ADDRESS_TOKENS + 1):
            gram = tokens[i : i + n]
            if len(gram) < n:
                break
            found[digest(FieldKind.ADDRESS, " ".join(gram))] = FieldKind.ADDRESS


def reference_row_support(index: EdmIndex, cells, skip: set[int]) -> dict[int, FieldKind]:
    """A row's supporting hashes as they were read: cell by cell, value by value."""
    found: dict[int, FieldKind] = {}
    digest = index._hash
    for position, cell in enumerate(cells):
        if position in skip or not cell.strip() or len(cell) > 500:
            continue
        reference_word_support(index, [m.group() for m in WORD.finditer(cell)], found)
        tokens = name_tokens(cell)
        whole = " ".join(tokens) if tokens and len(tokens) <= 3 else None
        if whole is not None:
            for kind, value in hash_inputs(FieldKind.NAME, whole):
                found.setdefault(digest(kind, value), kind)
        address = normalise_address(cell)
        if address is not None:
            found[digest(FieldKind.ADDRESS, address)] = FieldKind.ADDRESS
        code = normalise_postcode(cell)
        if code is not None:
            found[digest(FieldKind.POSTCODE, code)] = FieldKind.POSTCODE
        for kind, past in (
            (FieldKind.DATE_OF_BIRTH, True),
            (FieldKind.CONTRACT_RENEWAL_DATE, False),
        ):
            iso = normalise_date(cell, past=past)
            if iso is not None:
                found[digest(kind, iso)] = kind
    return found


def reference_match_rows(index: EdmIndex, rows) -> EdmResult:
    """``match_rows`` as it was: row by row, cell by cell, value by value."""
    hits: dict[int, tuple[set[FieldKind], set[FieldKind]]] = {}
    for row in rows:
        cells = [c if isinstance(c, str) else "" for c in row]
        found = []
        for position, cell in enumerate(cells):
            for kind, value in index._cell_primaries(cell):
                owners = index.candidates(kind, value)
                if owners:
                    found.append((position, kind, owners))
        if not found:
            continue
        support = reference_row_support(index, cells, {p for p, _k, _o in found})
        for _position, kind, owners in found:
            for number in owners:
                kinds = {support[d] for d in index._supporting_of(number) if d in support}
                prim, supp = hits.setdefault(number, (set(), set()))
                prim.add(kind)
                supp.update(kinds)
    return index._result(hits)


@pytest.fixture(scope="module")
def corpus():
    return generate_edm_corpus(customers=200, unrelated=300, seed=12)


@pytest.fixture(scope="module", params=[None, "luhn"])
def index(request, corpus) -> EdmIndex:
    settings = EdmSettings(loyalty=LoyaltyFormat(check_digit=request.param))
    builder = EdmIndexBuilder(KEY, settings)
    builder.add_many(customer_rows(corpus.customers))
    return builder.build()


def _variants(rng: random.Random, value: str) -> str:
    changes = (
        lambda v: v,
        str.upper,
        lambda v: f"  {v} ",
        lambda v: v.replace(" ", ""),
        lambda v: v.replace(" ", "-"),
        lambda v: v.replace("+44 ", "0").replace("+44", "0"),
        lambda v: "+44 " + v[1:] if v.startswith("07") else v,
        lambda v: v + "\u00a0",
        lambda v: v[:-1] + rng.choice(string.digits),
    )
    return rng.choice(changes)(value)


def _tables(corpus, seed: int):
    rng = random.Random(seed)
    g = _Gen(seed)
    people = corpus.customers
    for _ in range(60):
        rows: list[list[object]] = [
            ["Name", "E-mail", "Phone", "Postcode", "Card", "Loyalty", "Notes"]
        ]
        for _ in range(rng.randint(1, 25)):
            person = rng.choice(people).directory_values()
            stranger = rng.random() < 0.3
            row: list[object] = [
                person.get("name", "") if not stranger else " ".join(g.name()),
                _variants(rng, person.get("email", "")) if not stranger else g.email(),
                _variants(rng, person.get("phone", "")),
                _variants(rng, person.get("postcode", "")),
                _variants(rng, person.get("card", g.card())),
                _variants(
                    rng,
                    person.get("loyalty_number", "LC " + "".join(rng.choices(string.digits, k=12))),
                ),
                rng.choice(
                    (
                        "",
                        "n/a",
                        "2024-03-05T10:01:00Z",
                        "ORD-2019-000042",
                        "GB82 WEST 1234 5698 7654 32",
                        "Zoë",
                        None,
                        7,
                    )
                ),
            ]
            rng.shuffle(row)
            if rng.random() < 0.1:
                row = row[: rng.randint(0, len(row))]
            rows.append(row)
        yield rows


def test_table_support_is_each_rows_own(index, corpus):
    """Every row's supporting hashes, read for the whole table at once (each distinct
    cell read once, each distinct value hashed once), map to the kinds a cell-by-cell
    reading gives, a whole name's parts keeping a kind set before them."""
    compared = 0
    for rows in _tables(corpus, 5):
        cells_of = [[c if isinstance(c, str) else "" for c in row] for row in rows]
        rng = random.Random(len(rows))
        skips = [{p for p in range(len(c)) if rng.random() < 0.2} for c in cells_of]
        table = index._rows_support(list(zip(cells_of, skips, strict=True)))
        for cells, skip, support in zip(cells_of, skips, table, strict=True):
            assert support == reference_row_support(index, cells, skip)
            compared += len(support)
    assert compared > 10_000
    # A cell met again gives the same hashes; a name with a title and a middle name
    # gives its first + last name, which no run of its words holds.
    rows = [(["Dr Mary Ann Smith", "12 High St", "01/02/1980"], set())] * 2
    first, second = index._rows_support(rows)
    assert first == second == reference_row_support(index, *rows[0])
    assert index._hash(FieldKind.NAME, "mary smith") in first


def test_table_match_gives_the_row_by_row_matches(index, corpus):
    matched = 0
    for rows in _tables(corpus, 3):
        result = index.match_rows(rows)
        assert result == reference_match_rows(index, rows)
        matched += len(result.records)
    assert matched > 300


def test_corpus_cases_and_exports_match_as_before(index, corpus):
    for case in corpus.cases:
        if case.rows:
            assert index.match_rows(case.rows) == reference_match_rows(index, case.rows)
    for doc in generate_documents("csv", 10, seed=1000):
        assert index.match_rows(doc.rows) == reference_match_rows(index, doc.rows)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.text(alphabet="0123456789 +-()@.abcLC\u00a0é", max_size=24),
                st.sampled_from(["07700 900123", "jo@example.org", "", "4111 1111 1111 1111"]),
            ),
            max_size=6,
        ),
        max_size=6,
    )
)
def test_random_rows_match_as_before(rows):
    assert _INDEX.match_rows(rows) == reference_match_rows(_INDEX, rows)


_CORPUS = generate_edm_corpus(customers=50, unrelated=0, seed=13)
_BUILDER = EdmIndexBuilder(KEY)
_BUILDER.add_many(customer_rows(_CORPUS.customers))
_INDEX = _BUILDER.build()


# --- the pieces ---------------------------------------------------------------------------


def _cells(seed: int) -> list[str]:
    rng = random.Random(seed)
    g = _Gen(seed)
    cells = [c for d in generate_documents("csv", 12, seed=seed) for r in d.rows for c in r]
    cells += [g.phone() for _ in range(500)] + [g.card() for _ in range(200)]
    cells += [
        "".join(rng.choice("0123456789 +-()./\tLCx@\u00a0٣") for _ in range(rng.randint(0, 24)))
        for _ in range(3000)
    ]
    cells += [
        "",
        " ",
        "+44 07700 900123",
        "0044 (0)7700 900123",
        "180020123456",
        "07700\u00a0900123",
    ]
    return cells


def test_bulk_normalisers_agree_with_one_at_a_time():
    cells = _cells(21)
    for region in ("GB", "US"):
        assert normalise_phone_many(cells, region) == [normalise_phone(c, region) for c in cells]
    assert normalise_card_many(cells) == [normalise_card(c) for c in cells]
    for loyalty in (
        LoyaltyFormat(),
        LoyaltyFormat(check_digit="luhn"),
        LoyaltyFormat(pattern=r"LC[ -]?\d{4}[ -]?\d{4}"),
    ):
        assert normalise_loyalty_many(cells, loyalty) == [
            normalise_loyalty(c, loyalty) for c in cells
        ]
    assert normalise_phone_many(["07700 900123\n07700 900124"]) == [
        normalise_phone("07700 900123\n07700 900124")
    ]


def test_cells_primaries_are_each_cells_own():
    cells = _cells(22)
    assert _INDEX._cells_primaries(cells) == [_INDEX._cell_primaries(c) for c in cells]


def test_hashing_many_gives_each_digest():
    hasher = FieldHasher(KEY)
    kinds = [FieldKind.PHONE, FieldKind.EMAIL, FieldKind.CARD, FieldKind.LOYALTY_NUMBER] * 50
    values = [f"value {i} é" for i in range(200)]
    assert hasher.many(kinds, values) == [hasher(k, v) for k, v in zip(kinds, values, strict=True)]
    assert hasher.many([], []) == []


@pytest.mark.parametrize("size", [0, 1, 5, 64, 5000])
def test_bucketed_look_ups_are_plain_bisection(size):
    rng = random.Random(size)
    builder = EdmIndexBuilder(KEY)
    index = builder.build()
    keys = sorted(rng.getrandbits(64) for _ in range(size))
    keys += keys[: size // 10]  # repeated digests (customers sharing an e-mail address)
    keys.sort()
    from array import array

    index._primary_keys = array("Q", keys)
    index._primary_owners = array("I", range(len(keys)))
    index._bucket_bounds = None
    probes = (
        keys[:: max(1, size // 50)] + [0, 2**64 - 1] + [rng.getrandbits(64) for _ in range(200)]
    )
    expected = [bisect.bisect_left(keys, p) for p in probes]
    assert list(index._places(probes)) == expected
    for probe in probes:
        at = bisect.bisect_left(keys, probe)
        owners = []
        while at < len(keys) and keys[at] == probe:
            owners.append(at)
            at += 1
        assert index._owners(probe) == owners
