"""Exact data match (EDM): whose data is this?  Keyed hashes of the customer list.

The index holds, for every customer, keyed hashes of the normalised values of their
fields — never a value.  Each hash is HMAC-SHA256 under a key derived from the master
key for this purpose alone (:data:`EDM_KEY_PURPOSE`) over ``kind \\x1f value``,
truncated to its first 8 bytes and kept as an unsigned 64-bit integer:

* **primary** hashes (e-mail, phone, loyalty number, card) in one sorted array,
  beside a parallel array of customer numbers, so a found primary value leads to its
  candidate customers by binary search;
* **supporting** hashes (names, postcode, date of birth, address, renewal date) in one
  flat array, customer after customer, with an offset array: a candidate's supporting
  hashes are a slice of a few entries.

A **record match** needs a primary value of a customer *and* at least one supporting
value of the *same* customer: within ``window`` characters of the primary in text, or
in the same row of a table.  A primary value alone is reported separately as
primary-only, never as a record match.  Results name customers by their id and say
which kinds matched, never the values.

The index is pure data over plain Python arrays: no database, no plaintext.  The
customer directory (``customers.services``) stores the digests :meth:`EdmIndexBuilder.hash_values`
gives and rebuilds an index from them with :meth:`EdmIndexBuilder.add_hashed`.
"""

from __future__ import annotations

import bisect
import hashlib
import multiprocessing
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from itertools import accumulate, chain, repeat
from operator import add, itemgetter, or_, sub
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spillguard.core.errors import InvalidInput
from spillguard.core.keys import KeyRing
from spillguard.customers.fields import (
    MAX_ADDRESS_TOKENS,
    PRIMARY,
    FieldKind,
    LoyaltyFormat,
    address_tokens,
    hash_inputs,
    name_tokens,
    normalise,
    normalise_address,
    normalise_card,
    normalise_card_many,
    normalise_date,
    normalise_email,
    normalise_loyalty,
    normalise_loyalty_many,
    normalise_phone,
    normalise_phone_many,
    normalise_postcode,
)
from spillguard.inspection.detectors.base import Entity

__all__ = [
    "EDM_KEY_PURPOSE",
    "BuildStats",
    "CustomerMatch",
    "EdmIndex",
    "EdmIndexBuilder",
    "EdmResult",
    "EdmSettings",
    "FieldHasher",
]

EDM_KEY_PURPOSE = "spillguard/v1/edm-field-hash"
"""HKDF info string of the key for customer-field hashes.  Never change it: every
stored hash would stop matching."""

DIGEST_BYTES = 8
# Packing a primary digest with its customer number: ``(digest << 32) | number``.
_SHIFT_LEFT_32 = (32).__rlshift__  # d -> d << 32
_SHIFT_RIGHT_32 = (32).__rrshift__  # p -> p >> 32
_LOW_32 = (0xFFFFFFFF).__and__  # p -> p & 0xFFFFFFFF
_SEP = b"\x1f"
_FIRST_BYTES = itemgetter(slice(0, DIGEST_BYTES))
_BUCKET_BITS = 12
_BIG_ENDIAN = partial(int.from_bytes, byteorder="big")
_NO_DIGITS = str.maketrans("", "", "0123456789")
# An e-mail address that normalise_email gives back as written: lower case, local-part
# segments of letters then at most five digits, a domain of letters and hyphens (the
# table scan's e-mail shape; a unit test compares the two).
_SIMPLE_EMAIL = re.compile(
    r"(?=.{6,64}\Z)[a-z]++[0-9]{0,5}+(?:[._%+'-][a-z]++[0-9]{0,5}+)*+"
    r"@(?:[a-z]++(?:-[a-z]++)*+\.)++[a-z]{2,24}+",
    re.ASCII | re.DOTALL,
)
_MAX_NGRAM_NAME = 3


class EdmSettings(BaseModel):
    """How customer values are read and matched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(
        default=300, ge=1, le=100_000, description="Characters either side of a primary."
    )
    phone_region: str = Field(default="GB", description="Region for numbers without +/00.")
    loyalty: LoyaltyFormat = LoyaltyFormat()
    loyalty_entity: str = Field(
        default="loyalty_number",
        description="Entity name of the custom detector that finds loyalty numbers.",
    )
    min_name_length: int = Field(
        default=2, ge=1, description="Shorter name words (initials) never confirm a match."
    )


class FieldHasher:
    """HMAC-SHA256 of ``kind \\x1f value`` under the EDM key, truncated to 64 bits.

    The inner and outer pads are hashed once and copied per value (RFC 2104 exactly;
    the same digest as :func:`hmac.digest`, at less than half the cost per value).
    """

    def __init__(self, keyring: KeyRing) -> None:
        key = keyring.derive(EDM_KEY_PURPOSE)
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._prefixes = {kind: kind.value.encode() + _SEP for kind in FieldKind}

    def __call__(self, kind: FieldKind, value: str) -> int:
        inner = self._inner.copy()
        inner.update(self._prefixes[kind] + value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return int.from_bytes(outer.digest()[:DIGEST_BYTES], "big")

    def many(self, kinds: Sequence[FieldKind], values: Sequence[str]) -> list[int]:
        """The digest of each ``(kinds[i], values[i])``, as :meth:`__call__` gives it,
        computed with C-level maps over the lists."""
        count = len(values)
        hash_type = type(self._inner)
        messages = map(add, map(self._prefixes.__getitem__, kinds), map(str.encode, values))
        inners = list(map(hash_type.copy, repeat(self._inner, count)))
        deque(map(hash_type.update, inners, messages), maxlen=0)
        outers = list(map(hash_type.copy, repeat(self._outer, count)))
        deque(map(hash_type.update, outers, map(hash_type.digest, inners)), maxlen=0)
        return list(map(_BIG_ENDIAN, map(_FIRST_BYTES, map(hash_type.digest, outers))))


@dataclass
class BuildStats:
    """What an index build read: counts only, never values."""

    customers: int = 0
    primary_values: int = 0
    supporting_values: int = 0
    without_primary: int = 0
    invalid: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomerMatch:
    """One customer found in content: their id and the kinds that matched (no values)."""

    customer_id: str
    primary: frozenset[FieldKind]
    supporting: frozenset[FieldKind] = frozenset()

    @property
    def is_record_match(self) -> bool:
        """A primary and a supporting field of this customer were found together."""
        return bool(self.primary) and bool(self.supporting)


@dataclass(frozen=True)
class EdmResult:
    """Record matches (primary + supporting) and, apart, primary-only hits."""

    records: tuple[CustomerMatch, ...] = ()
    primary_only: tuple[CustomerMatch, ...] = ()

    @property
    def customer_ids(self) -> list[str]:
        """Ids of the customers with a record match, sorted."""
        return sorted(m.customer_id for m in self.records)

    @property
    def primary_only_ids(self) -> list[str]:
        """Ids of customers found by a primary value alone, sorted."""
        return sorted(m.customer_id for m in self.primary_only)


class EdmIndexBuilder:
    """Reads customer rows, normalises and hashes their values, and builds an index.

    ``add`` takes the customer id and raw values per kind (one string or several);
    invalid values are skipped and counted per kind in :attr:`stats`, never raised.
    A repeated customer id is an :class:`~spillguard.core.errors.InvalidInput`.
    """

    def __init__(self, keyring: KeyRing, settings: EdmSettings | None = None) -> None:
        self.settings = settings or EdmSettings()
        self.stats = BuildStats()
        self._hash = FieldHasher(keyring)
        self._keyring = keyring
        self._ids: list[str] = []
        self._seen: set[str] = set()
        # Primary entries are packed as (digest << 32 | customer number) for one sort.
        self._primary: list[int] = []
        self._support = array("Q")
        self._offsets = array("Q", [0])
        today = date.today()
        settings = self.settings
        self._normalisers: dict[FieldKind, Callable[[str], str | None]] = {
            kind: partial(
                normalise, kind, region=settings.phone_region, loyalty=settings.loyalty, today=today
            )
            for kind in FieldKind
        }
        # The kind's own normaliser rather than the dispatching ``normalise``: the same
        # answers (a normaliser that raises is caught in hash_values, as in normalise).
        self._normalisers.update(
            {
                FieldKind.EMAIL: normalise_email,
                FieldKind.PHONE: partial(normalise_phone, region=settings.phone_region),
                FieldKind.POSTCODE: normalise_postcode,
                FieldKind.FIRST_NAME: _normalise_name_part,
                FieldKind.LAST_NAME: _normalise_name_part,
                FieldKind.NAME: _normalise_name_part,
                FieldKind.ADDRESS: normalise_address,
                FieldKind.DATE_OF_BIRTH: partial(normalise_date, past=True, today=today),
                FieldKind.CONTRACT_RENEWAL_DATE: partial(normalise_date, past=False, today=today),
                FieldKind.CARD: normalise_card,
                FieldKind.LOYALTY_NUMBER: partial(normalise_loyalty, loyalty=settings.loyalty),
            }
        )

    def add(self, customer_id: str, values: Mapping[FieldKind, str | Iterable[str]]) -> None:
        """Add one customer; ``values`` maps kinds to raw values as found in the list."""
        primaries, supporting = self._split_digests(values)
        self.add_hashed(customer_id, primaries, supporting)

    def _split_digests(
        self, values: Mapping[FieldKind, str | Iterable[str]]
    ) -> tuple[set[int], set[int]]:
        """The digests of :meth:`hash_values`, split into primary and supporting.

        The same normalisers, pairs and counts, with the HMAC written out (the pads'
        copies as :class:`FieldHasher` does) and no (kind, digest) pairs built: this is
        the per-customer cost of an index build.  A unit test compares the two.
        """
        invalid = self.stats.invalid
        normalisers = self._normalisers
        prefixes = self._hash._prefixes
        inner_pad = self._hash._inner
        outer_pad = self._hash._outer
        primaries: set[int] = set()
        supporting: set[int] = set()
        names: dict[FieldKind, str] = {}

        def digest(prefix: bytes, value: str) -> int:
            inner = inner_pad.copy()
            inner.update(prefix + value.encode())
            outer = outer_pad.copy()
            outer.update(inner.digest())
            return int.from_bytes(outer.digest()[:DIGEST_BYTES], "big")

        for kind, raw in values.items():
            items = (raw,) if isinstance(raw, str) else raw
            normaliser = normalisers[kind]
            for item in items:
                if not item or not item.strip():
                    continue
                try:
                    value = normaliser(item)
                except Exception:  # a bad value is counted, never fatal
                    value = None
                if value is None:
                    invalid[kind.value] = invalid.get(kind.value, 0) + 1
                    continue
                if kind in PRIMARY:
                    primaries.add(digest(prefixes[kind], value))
                    continue
                if kind is FieldKind.NAME:
                    for pair_kind, pair_value in hash_inputs(kind, value):
                        supporting.add(digest(prefixes[pair_kind], pair_value))
                    continue
                if kind in _SUPPORT_NAME_KINDS:
                    names.setdefault(kind, value)
                supporting.add(digest(prefixes[kind], value))
        if len(names) == 2:  # first and last name columns also make a full name
            full = f"{names[FieldKind.FIRST_NAME]} {names[FieldKind.LAST_NAME]}"
            supporting.add(digest(prefixes[FieldKind.NAME], full))
        return primaries, supporting

    def hash_values(
        self, values: Mapping[FieldKind, str | Iterable[str]]
    ) -> set[tuple[FieldKind, int]]:
        """The (kind, digest) pairs one customer's raw values give; invalid ones are counted.

        This is what the customer directory stores (``customers.models.CustomerFieldHash``)
        and what :meth:`add_hashed` takes back when the index is rebuilt from it.
        """
        stats = self.stats
        digest = self._hash
        normalisers = self._normalisers
        pairs: set[tuple[FieldKind, int]] = set()
        names: dict[FieldKind, str] = {}
        for kind, raw in values.items():
            items = (raw,) if isinstance(raw, str) else raw
            for item in items:
                if not item or not item.strip():
                    continue
                try:
                    value = normalisers[kind](item)
                except Exception:  # a bad value is counted, never fatal
                    value = None
                if value is None:
                    stats.invalid[kind.value] = stats.invalid.get(kind.value, 0) + 1
                    continue
                if kind in PRIMARY:
                    pairs.add((kind, digest(kind, value)))
                    continue
                if kind in (FieldKind.FIRST_NAME, FieldKind.LAST_NAME):
                    names.setdefault(kind, value)
                for pair_kind, pair_value in hash_inputs(kind, value):
                    pairs.add((pair_kind, digest(pair_kind, pair_value)))
        if len(names) == 2:  # first and last name columns also make a full name
            full = f"{names[FieldKind.FIRST_NAME]} {names[FieldKind.LAST_NAME]}"
            pairs.add((FieldKind.NAME, digest(FieldKind.NAME, full)))
        return pairs

    def add_hashed(
        self, customer_id: str, primaries: Iterable[int], supporting: Iterable[int]
    ) -> None:
        """Add one customer from digests already computed (by :meth:`hash_values`)."""
        customer_id = customer_id.strip()
        if not customer_id:
            raise InvalidInput("a customer row has an empty id")
        if customer_id in self._seen:
            raise InvalidInput(f"customer id {customer_id!r} appears more than once")
        self._seen.add(customer_id)
        number = len(self._ids)
        if number >= 2**32:
            raise InvalidInput("more than 4,294,967,295 customers")
        self._ids.append(customer_id)
        primaries = set(primaries)
        supporting = set(supporting)
        stats = self.stats
        stats.customers += 1
        if not primaries:
            stats.without_primary += 1
        stats.primary_values += len(primaries)
        stats.supporting_values += len(supporting)
        self._primary.extend((p << 32) | number for p in primaries)
        self._support.extend(supporting)
        self._offsets.append(len(self._support))

    def add_many(
        self,
        rows: Iterable[tuple[str, Mapping[FieldKind, str | Iterable[str]]]],
        *,
        workers: int = 1,
        chunk_size: int = 4096,
    ) -> None:
        """Add many customers, normalising and hashing in ``workers`` processes.

        Rows are sent to forked worker processes in chunks and merged in order, so the
        index is identical to one built with :meth:`add`.  The key is inherited by
        the fork, never sent over a pipe.  Falls back to :meth:`add` for one worker or
        where ``fork`` is unavailable.
        """
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            for customer_id, values in rows:
                self.add(customer_id, values)
            return
        global _FORKED
        _FORKED = (self._keyring, self.settings)
        try:
            context = multiprocessing.get_context("fork")
            with context.Pool(workers) as pool:
                for part in pool.imap(_hash_chunk, _chunks(rows, chunk_size)):
                    self._merge(part)
        finally:
            _FORKED = None

    def _merge(self, part: _Chunk) -> None:
        base = len(self._ids)
        for customer_id in part.ids:
            if customer_id in self._seen:
                raise InvalidInput(f"customer id {customer_id!r} appears more than once")
            self._seen.add(customer_id)
        self._ids.extend(part.ids)
        if len(part.primary) != len(part.owners):
            raise ValueError("an EDM worker returned mismatched primary arrays")
        # (digest << 32) | (base + owner), and offsets moved by ``start``: written with
        # C-level maps (no Python frame per value), a million customers' worth adds up.
        self._primary.extend(
            map(or_, map(_SHIFT_LEFT_32, part.primary), map(base.__add__, part.owners))
        )
        start = len(self._support)
        self._support.extend(part.support)
        self._offsets.extend(map(start.__add__, part.offsets[1:]))
        stats, other = self.stats, part.stats
        stats.customers += other.customers
        stats.primary_values += other.primary_values
        stats.supporting_values += other.supporting_values
        stats.without_primary += other.without_primary
        for kind, count in other.invalid.items():
            stats.invalid[kind] = stats.invalid.get(kind, 0) + count

    def build(self) -> EdmIndex:
        """The finished index; the builder must not be used afterwards."""
        self._primary.sort()
        keys = array("Q", map(_SHIFT_RIGHT_32, self._primary))
        owners = array("I", map(_LOW_32, self._primary))
        self._primary = []
        self._seen = set()
        index = EdmIndex(
            keyring=self._keyring,
            settings=self.settings,
            ids=self._ids,
            primary_keys=keys,
            primary_owners=owners,
            support=self._support,
            offsets=self._offsets,
            stats=self.stats,
        )
        self._ids = []
        self._support = array("Q")
        self._offsets = array("Q", [0])
        return index


@dataclass
class _Chunk:
    ids: list[str]
    primary: array[int]
    owners: array[int]
    support: array[int]
    offsets: array[int]
    stats: BuildStats


_FORKED: tuple[KeyRing, EdmSettings] | None = None


def _chunks(
    rows: Iterable[tuple[str, Mapping[FieldKind, str | Iterable[str]]]], size: int
) -> Iterator[list[tuple[str, Mapping[FieldKind, str | Iterable[str]]]]]:
    batch: list[tuple[str, Mapping[FieldKind, str | Iterable[str]]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _hash_chunk(batch: list[tuple[str, Mapping[FieldKind, str | Iterable[str]]]]) -> _Chunk:
    """In a forked worker: normalise and hash one chunk of rows with the inherited key."""
    if _FORKED is None:
        raise RuntimeError("EDM worker started without a key")
    builder = EdmIndexBuilder(*_FORKED)
    for customer_id, values in batch:
        builder.add(customer_id, values)
    packed = builder._primary
    return _Chunk(
        ids=builder._ids,
        primary=array("Q", map(_SHIFT_RIGHT_32, packed)),
        owners=array("I", map(_LOW_32, packed)),
        support=builder._support,
        offsets=builder._offsets,
        stats=builder.stats,
    )


_WORD = re.compile(r"[^\W_]+(?:['\u2019\u02bc][^\W_]+)*")
_POSTCODE_LIKE = re.compile(r"\b[A-Za-z]{1,2}\d[A-Za-z\d]? ?\d[A-Za-z]{2}\b")
_DATE_LIKE = re.compile(
    r"\b(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2}"
    r"|\d{1,2}(?:st|nd|rd|th)? (?:of )?[A-Za-z]{3,9}\.?,? \d{4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4})\b"
)
_SUPPORT_NAME_KINDS = (FieldKind.FIRST_NAME, FieldKind.LAST_NAME)
_DIGIT = re.compile(r"\d")
_KIND = itemgetter(0)
_VALUE = itemgetter(1)


@dataclass(frozen=True)
class _Primary:
    kind: FieldKind
    value: str
    start: int
    end: int


class EdmIndex:
    """Keyed hashes of a customer list, and record matching against text and tables.

    Build with :class:`EdmIndexBuilder`.  Safe to share between threads (read-only).
    """

    def __init__(
        self,
        *,
        keyring: KeyRing,
        settings: EdmSettings,
        ids: list[str],
        primary_keys: array[int],
        primary_owners: array[int],
        support: array[int],
        offsets: array[int],
        stats: BuildStats,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self._hash = FieldHasher(keyring)
        self._ids = ids
        self._primary_keys = primary_keys
        self._primary_owners = primary_owners
        self._support = support
        self._offsets = offsets
        self._bucket_bounds: tuple[int, array[int]] | None = None
        self._buckets()
        self._entities: dict[str, FieldKind] = {
            Entity.EMAIL.value: FieldKind.EMAIL,
            Entity.PHONE.value: FieldKind.PHONE,
            Entity.PAYMENT_CARD.value: FieldKind.CARD,
            settings.loyalty_entity: FieldKind.LOYALTY_NUMBER,
        }

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def primary_entities(self) -> frozenset[str]:
        """The inspection entities whose findings are primaries (e-mail, phone, card and
        the loyalty-number detector named in the settings)."""
        return frozenset(self._entities)

    def parts(self) -> dict[str, Any]:
        """The index's data, for :mod:`spillguard.customers.snapshot` (no copy made)."""
        return {
            "ids": self._ids,
            "primary_keys": self._primary_keys,
            "primary_owners": self._primary_owners,
            "support": self._support,
            "offsets": self._offsets,
        }

    @classmethod
    def from_parts(
        cls,
        *,
        keyring: KeyRing,
        settings: EdmSettings,
        ids: list[str],
        primary_keys: array[int],
        primary_owners: array[int],
        support: array[int],
        offsets: array[int],
        stats: BuildStats,
    ) -> EdmIndex:
        """An index from :meth:`parts` saved earlier (the arrays are used as given)."""
        return cls(
            keyring=keyring,
            settings=settings,
            ids=ids,
            primary_keys=primary_keys,
            primary_owners=primary_owners,
            support=support,
            offsets=offsets,
            stats=stats,
        )

    def nbytes(self) -> int:
        """Bytes held by the hash arrays (without the customer-id strings)."""
        arrays = (self._primary_keys, self._primary_owners, self._support, self._offsets)
        return sum(a.itemsize * len(a) for a in arrays)

    # --- lookups ------------------------------------------------------------------

    def candidates(self, kind: FieldKind, value: str) -> list[int]:
        """Customer numbers whose ``kind`` field has this normalised ``value``."""
        return self._owners(self._hash(kind, value))

    def customers_with(self, kind: FieldKind, value: str) -> list[str]:
        """Ids of the customers whose ``kind`` field holds ``value`` as a person typed it
        (normalised, hashed, looked up; nothing is kept). Primary kinds only: e-mail,
        phone, card, loyalty number."""
        if kind not in PRIMARY:
            raise ValueError(f"only a primary field can be looked up, not {kind.value}")
        normalised = self._normalise_primary(kind, value)
        if normalised is None:
            return []
        return sorted({self._ids[n] for n in self.candidates(kind, normalised)})

    def _buckets(self) -> tuple[int, array[int]]:
        """``(shift, bounds)``: the sorted primary digests cut into buckets by their top
        bits (at most 4,096 buckets, about 64 digests a bucket in smaller indexes);
        ``bounds[b]`` is where bucket ``b`` starts, so a look-up bisects one bucket
        instead of the whole array.  Derived from the digests, never stored; made when
        the index is (a few milliseconds for a million customers)."""
        made = self._bucket_bounds
        if made is None:
            keys = self._primary_keys
            bits = max(0, min(_BUCKET_BITS, len(keys).bit_length() - 6))
            shift = 64 - bits
            bounds = array("Q", (bisect.bisect_left(keys, b << shift) for b in range(1 << bits)))
            bounds.append(len(keys))
            made = self._bucket_bounds = (shift, bounds)
        return made

    def _places(self, digests: Sequence[int]) -> Iterator[int]:
        """``bisect_left(primary keys, d)`` for each digest, bucket by bucket."""
        shift, bounds = self._buckets()
        tops = list(map(shift.__rrshift__, digests))
        return map(
            bisect.bisect_left,
            repeat(self._primary_keys),
            digests,
            map(bounds.__getitem__, tops),
            map(bounds.__getitem__, map((1).__add__, tops)),
        )

    def _owners(self, digest: int) -> list[int]:
        keys = self._primary_keys
        shift, bounds = self._buckets()
        top = digest >> shift
        at = bisect.bisect_left(keys, digest, bounds[top], bounds[top + 1])
        found = []
        while at < len(keys) and keys[at] == digest:
            found.append(self._primary_owners[at])
            at += 1
        return found

    def _supporting_of(self, number: int) -> array[int]:
        return self._support[self._offsets[number] : self._offsets[number + 1]]

    # --- text ---------------------------------------------------------------------

    def match_text(self, text: str, findings: Iterable[object]) -> EdmResult:
        """Record matches in ``text`` given the inspection findings for it.

        Primary values come from the findings (e-mail, phone, card, and the custom
        loyalty-number detector named in the settings).  For a primary that belongs to
        customers, the supporting values within ``window`` characters either side are
        hashed — names as 1-3 word runs, address lines as 2-8 word runs, postcodes and
        dates wherever written — and compared with those customers' own.  Words inside
        a finding (the ``jane.doe`` of an e-mail address) never count as a name.
        """
        spans: list[tuple[int, int]] = []
        primaries: list[_Primary] = []
        for finding in findings:
            start = getattr(finding, "start", None)
            end = getattr(finding, "end", None)
            if not isinstance(start, int) or not isinstance(end, int):
                continue
            spans.append((start, end))
            kind = self._entities.get(str(getattr(finding, "entity", "")))
            value = getattr(finding, "value", None)
            if kind is None or not isinstance(value, str):
                continue
            normalised = self._normalise_primary(kind, value)
            if normalised is not None:
                primaries.append(_Primary(kind, normalised, start, end))
        hits: dict[int, tuple[set[FieldKind], set[FieldKind]]] = {}
        window_cache: dict[tuple[int, int], dict[int, FieldKind]] = {}
        window = self.settings.window
        for primary in primaries:
            owners = self.candidates(primary.kind, primary.value)
            if not owners:
                continue
            bounds = (max(0, primary.start - window), min(len(text), primary.end + window))
            if bounds not in window_cache:
                window_cache[bounds] = self._text_support(text, *bounds, spans)
            nearby = window_cache[bounds]
            for number in owners:
                kinds = {nearby[d] for d in self._supporting_of(number) if d in nearby}
                prim, supp = hits.setdefault(number, (set(), set()))
                prim.add(primary.kind)
                supp.update(kinds)
        return self._result(hits)

    def _normalise_primary(self, kind: FieldKind, value: str) -> str | None:
        if kind is FieldKind.EMAIL:
            return normalise_email(value)
        if kind is FieldKind.PHONE:
            return normalise_phone(value, self.settings.phone_region)
        if kind is FieldKind.CARD:
            return normalise_card(value)
        return normalise_loyalty(value, self.settings.loyalty)

    def _text_support(
        self, text: str, lo: int, hi: int, spans: list[tuple[int, int]]
    ) -> dict[int, FieldKind]:
        """Hashes of every supporting value written in ``text[lo:hi]``, with their kind."""
        part = text[lo:hi]
        inside = [(s - lo, e - lo) for s, e in spans if s < hi and e > lo]
        words: list[list[str]] = [[]]  # runs of words not broken by a finding
        for match in _WORD.finditer(part):
            s, e = match.span()
            if any(fs < e and s < fe for fs, fe in inside):
                words.append([])
                continue
            # A word cut by the window's edge is not a word of the text.
            cut = (s == 0 and lo > 0) or (e == len(part) and hi < len(text))
            if not cut:
                words[-1].append(match.group())
        found: dict[int, FieldKind] = {}
        for run in words:
            self._word_support(run, found)
        for match in _POSTCODE_LIKE.finditer(part):
            code = normalise_postcode(match.group())
            if code is not None:
                found[self._hash(FieldKind.POSTCODE, code)] = FieldKind.POSTCODE
        self._date_support((m.group() for m in _DATE_LIKE.finditer(part)), found)
        return found

    def _word_support(self, run: Sequence[str], found: dict[int, FieldKind]) -> None:
        """Names (1-3 words) and address lines (2-8 words) among consecutive words."""
        digest = self._hash
        for kind, value in self._word_values(run, {}, {}):
            found[digest(kind, value)] = kind

    def _word_values(
        self, run: Sequence[str], names_of: dict[str, str], tokens_of: dict[str, str]
    ) -> list[tuple[FieldKind, str]]:
        """The supporting values :meth:`_word_support` hashes, in its order.
        ``names_of`` and ``tokens_of`` remember each word's name and address tokens
        (a table repeats its words: first names, "road", town names)."""
        minimum = self.settings.min_name_length
        first, last, whole = FieldKind.FIRST_NAME, FieldKind.LAST_NAME, FieldKind.NAME
        out: list[tuple[FieldKind, str]] = []
        names = []
        for word in run:
            name = names_of.get(word)
            if name is None:
                name = names_of[word] = " ".join(name_tokens(word))
            names.append(name)
        # n-grams of 1 to 3 names, each of at least ``minimum`` characters: a gram one
        # longer than the last adds one name, so only that one needs looking at.
        count = len(names)
        for i in range(count):
            value = ""
            for n in range(_MAX_NGRAM_NAME):
                if i + n >= count or len(names[i + n]) < minimum:
                    break
                value = f"{value} {names[i + n]}" if n else names[i]
                out.append((first, value))
                out.append((last, value))
                if n:
                    out.append((whole, value))
        tokens = []
        for word in run:
            token = tokens_of.get(word)
            if token is None:
                token = tokens_of[word] = " ".join(address_tokens(word))
            tokens.append(token)
        address = FieldKind.ADDRESS
        for i in range(count - 1):
            value = tokens[i]
            for n in range(1, min(MAX_ADDRESS_TOKENS, count - i)):
                value = f"{value} {tokens[i + n]}"
                out.append((address, value))
        return out

    def _date_support(self, texts: Iterable[str], found: dict[int, FieldKind]) -> None:
        for written in texts:
            for kind, past in (
                (FieldKind.DATE_OF_BIRTH, True),
                (FieldKind.CONTRACT_RENEWAL_DATE, False),
            ):
                iso = normalise_date(written, past=past)
                if iso is not None:
                    found[self._hash(kind, iso)] = kind

    # --- tables -------------------------------------------------------------------

    def match_rows(
        self,
        rows: Iterable[Sequence[str]],
        findings: Iterable[tuple[int, int, object]] | None = None,
    ) -> EdmResult:
        """Record matches in table rows: a primary and a supporting value of the same
        customer in the same row; the other cells of a row with a primary that belongs
        to someone are read as names, address lines, postcodes and dates.

        ``findings`` are the inspection findings of the table, each as ``(row, cell,
        finding)`` (``row`` counts from the table's first row, as ``rows`` does): the
        primaries are then the e-mail, phone, card and loyalty-number findings (the
        custom detector named in the settings), as in :meth:`match_text` — the pattern
        finds the primary, the hash confirms it.  Without findings every cell is read
        as each primary kind itself (:meth:`_cells_primaries`): the same customers for
        an export whose cells each hold one value, at several times the cost.

        The primaries are hashed and looked up for the whole table at once
        (:meth:`FieldHasher.many`).
        """
        rows = [row if isinstance(row, (list, tuple)) else list(row) for row in rows]
        widths = list(map(len, rows))
        row_starts = list(accumulate(widths, initial=0))
        flat = list(chain.from_iterable(rows))
        if not set(map(type, flat)) <= {str}:
            flat = [c if isinstance(c, str) else "" for c in flat]
        positions: list[int] = []
        kinds: list[FieldKind] = []
        values: list[str] = []
        if findings is None:
            for position, found in enumerate(self._cells_primaries(flat)):
                for kind, value in found:
                    positions.append(position)
                    kinds.append(kind)
                    values.append(value)
        else:
            self._finding_primaries(findings, widths, row_starts, positions, kinds, values)
        hits: dict[int, tuple[set[FieldKind], set[FieldKind]]] = {}
        if not values:
            return self._result(hits)
        keys = self._primary_keys
        size = len(keys)
        digests = self._hash.many(kinds, values)
        places = self._places(digests)
        # (row, position in row, kind, owners) of every primary that belongs to someone.
        by_row: dict[int, list[tuple[int, FieldKind, list[int]]]] = {}
        owners_of = self._primary_owners
        for position, kind, digest, at in zip(positions, kinds, digests, places, strict=True):
            if at >= size or keys[at] != digest:
                continue
            owners = []
            while at < size and keys[at] == digest:
                owners.append(owners_of[at])
                at += 1
            row = bisect.bisect_right(row_starts, position) - 1
            by_row.setdefault(row, []).append((position - row_starts[row], kind, owners))
        supports = self._rows_support(
            [
                (flat[row_starts[row] : row_starts[row + 1]], {p for p, _k, _o in in_row})
                for row, in_row in by_row.items()
            ]
        )
        for in_row, support in zip(by_row.values(), supports, strict=True):
            for _position, kind, owners in in_row:
                for number in owners:
                    kinds_found = {support[d] for d in self._supporting_of(number) if d in support}
                    prim, supp = hits.setdefault(number, (set(), set()))
                    prim.add(kind)
                    supp.update(kinds_found)
        return self._result(hits)

    def _finding_primaries(
        self,
        findings: Iterable[tuple[int, int, object]],
        widths: Sequence[int],
        row_starts: Sequence[int],
        positions: list[int],
        kinds: list[FieldKind],
        values: list[str],
    ) -> None:
        """The primaries of a table's findings, appended to ``positions`` (the cell's
        place among the table's cells), ``kinds`` and ``values``.  The engine's values
        are normalised already (E.164 phones, card digits); those of that shape are
        taken as they are, anything else is normalised as :meth:`match_text` does."""
        entities = self._entities
        phone, email, card = FieldKind.PHONE, FieldKind.EMAIL, FieldKind.CARD
        simple_email = _SIMPLE_EMAIL.fullmatch
        rows = len(widths)
        for row, cell, finding in findings:
            kind = entities.get(getattr(finding, "entity", None))  # type: ignore[arg-type]
            if kind is None:
                continue
            value = getattr(finding, "value", None)
            if not isinstance(value, str):
                continue
            if not (0 <= row < rows and 0 <= cell < widths[row]):
                raise ValueError(f"a finding's cell ({row}, {cell}) is outside the table")
            as_found = (
                (kind is phone and value[:1] == "+" and value[1:].isdigit())
                or (kind is email and simple_email(value) is not None)
                or (kind is card and value.isdigit() and 12 <= len(value) <= 19)
            )
            normalised = value if as_found else self._normalise_primary(kind, value)
            if normalised is not None:
                positions.append(row_starts[row] + cell)
                kinds.append(kind)
                values.append(normalised)

    def _cells_primaries(self, cells: Sequence[str]) -> list[list[tuple[FieldKind, str]]]:
        """:meth:`_cell_primaries` of each cell, the table's cells together: digits
        counted for all at once (ASCII cells), e-mail addresses of the simple shape
        taken as written, phones, cards and loyalty numbers normalised as lists."""
        texts = list(map(str.strip, cells))
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1 or not joined.isascii():
            return list(map(self._cell_primaries, cells))
        counts = map(sub, map(len, texts), map(len, joined.translate(_NO_DIGITS).split("\n")))
        out: list[list[tuple[FieldKind, str]]] = [[] for _ in texts]
        numeric: list[int] = []
        phones: list[int] = []
        for at, (text, digits) in enumerate(zip(texts, counts, strict=True)):
            if not text or len(text) > 320:
                continue
            if "@" in text:
                email = text if _SIMPLE_EMAIL.fullmatch(text) else normalise_email(text)
                if email is not None:
                    out[at].append((FieldKind.EMAIL, email))
                continue
            if digits < 6:
                continue
            numeric.append(at)
            if digits >= 7:
                phones.append(at)
        if not numeric:
            return out
        settings = self.settings
        for at, phone in zip(
            phones,
            normalise_phone_many([texts[i] for i in phones], settings.phone_region),
            strict=True,
        ):
            if phone is not None:
                out[at].append((FieldKind.PHONE, phone))
        numbers = [texts[i] for i in numeric]
        for kind, found in (
            (FieldKind.CARD, normalise_card_many(numbers)),
            (FieldKind.LOYALTY_NUMBER, normalise_loyalty_many(numbers, settings.loyalty)),
        ):
            for at, value in zip(numeric, found, strict=True):
                if value is not None:
                    out[at].append((kind, value))
        return out

    def _cell_primaries(self, cell: str) -> list[tuple[FieldKind, str]]:
        text = cell.strip()
        if not text or len(text) > 320:
            return []
        found: list[tuple[FieldKind, str]] = []
        if "@" in text:
            email = normalise_email(text)
            if email is not None:
                found.append((FieldKind.EMAIL, email))
            return found
        digits = sum(ch.isdigit() for ch in text)
        if digits < 6:
            return found
        phone = normalise_phone(text, self.settings.phone_region) if digits >= 7 else None
        if phone is not None:
            found.append((FieldKind.PHONE, phone))
        card = normalise_card(text)
        if card is not None:
            found.append((FieldKind.CARD, card))
        loyalty = normalise_loyalty(text, self.settings.loyalty)
        if loyalty is not None:
            found.append((FieldKind.LOYALTY_NUMBER, loyalty))
        return found

    def _row_support(self, cells: Sequence[str], skip: set[int]) -> dict[int, FieldKind]:
        """Hashes of every supporting value in a row's cells but those in ``skip``."""
        return self._rows_support([(cells, skip)])[0]

    def _rows_support(
        self, rows: Sequence[tuple[Sequence[str], set[int]]]
    ) -> list[dict[int, FieldKind]]:
        """:meth:`_row_support` of each ``(cells, skip)``, for a whole table at once.

        Each cell is read as words (names and address lines), as a whole name, an
        address line, a postcode and a date.  What a cell gives depends on its text
        alone, so a text met again (a town, a common first name) is read once per
        table; the values of every row are then hashed together, each distinct value
        once (:meth:`FieldHasher.many`).

        A row's hashes map to their kind as a cell-by-cell reading sets them: a value
        is set (the last setting wins), except a whole name's parts, which keep a kind
        set before them.  Applying every keep-first value first (the first of each wins)
        and then every set value gives the same mapping, whatever the order in between.
        """
        today = date.today()
        names_of: dict[str, str] = {}
        tokens_of: dict[str, str] = {}
        # Per distinct cell text: its set values and its keep-first values.
        read: dict[str, tuple[list[tuple[FieldKind, str]], list[tuple[FieldKind, str]]]] = {}
        plans: list[tuple[list[tuple[FieldKind, str]], list[tuple[FieldKind, str]]]] = []
        for cells, skip in rows:
            sets: list[tuple[FieldKind, str]] = []
            keeps: list[tuple[FieldKind, str]] = []
            for position, cell in enumerate(cells):
                if position in skip or not cell.strip() or len(cell) > 500:
                    continue
                values = read.get(cell)
                if values is None:
                    values = read[cell] = self._cell_values(cell, today, names_of, tokens_of)
                sets += values[0]
                keeps += values[1]
            plans.append((sets, keeps))
        distinct = list(
            dict.fromkeys(chain.from_iterable(chain.from_iterable(plan) for plan in plans))
        )
        hashed = self._hash.many(list(map(_KIND, distinct)), list(map(_VALUE, distinct)))
        digest_of = dict(zip(distinct, hashed, strict=True)).__getitem__
        out: list[dict[int, FieldKind]] = []
        for sets, keeps in plans:
            found = dict(
                zip(map(digest_of, reversed(keeps)), map(_KIND, reversed(keeps)), strict=True)
            )
            found.update(zip(map(digest_of, sets), map(_KIND, sets), strict=True))
            out.append(found)
        return out

    def _cell_values(
        self, cell: str, today: date, names_of: dict[str, str], tokens_of: dict[str, str]
    ) -> tuple[list[tuple[FieldKind, str]], list[tuple[FieldKind, str]]]:
        """The supporting values of one table cell: those set and those that keep a kind
        set before them (a whole name's parts), each in reading order."""
        sets = self._word_values(_WORD.findall(cell), names_of, tokens_of)
        whole = normalise_name(cell)
        keeps = hash_inputs(FieldKind.NAME, whole) if whole is not None else []
        address = normalise_address(cell)
        if address is not None:
            sets.append((FieldKind.ADDRESS, address))
        code = normalise_postcode(cell)
        if code is not None:
            sets.append((FieldKind.POSTCODE, code))
        if _DIGIT.search(cell) is not None:  # every date normalise_date reads has digits
            for kind, past in (
                (FieldKind.DATE_OF_BIRTH, True),
                (FieldKind.CONTRACT_RENEWAL_DATE, False),
            ):
                iso = normalise_date(cell, past=past, today=today)
                if iso is not None:
                    sets.append((kind, iso))
        return sets, keeps

    # --- results ------------------------------------------------------------------

    def _result(self, hits: dict[int, tuple[set[FieldKind], set[FieldKind]]]) -> EdmResult:
        records: list[CustomerMatch] = []
        primary_only: list[CustomerMatch] = []
        for number, (prim, supp) in sorted(hits.items(), key=lambda i: self._ids[i[0]]):
            match = CustomerMatch(self._ids[number], frozenset(prim), frozenset(supp))
            (records if supp else primary_only).append(match)
        return EdmResult(records=tuple(records), primary_only=tuple(primary_only))


def _normalise_name_part(value: str) -> str | None:
    tokens = name_tokens(value)
    return " ".join(tokens) if tokens else None


def normalise_name(value: str) -> str | None:
    """A whole cell read as a name (see :func:`spillguard.customers.fields.normalise_name`)."""
    tokens = name_tokens(value)
    return " ".join(tokens) if tokens and len(tokens) <= _MAX_NGRAM_NAME else None
