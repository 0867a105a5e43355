"""RFC 9162 Merkle tree hashing, proof generation and proof verification.

The audit log is a Certificate-Transparency-style Merkle tree (RFC 9162 §2.1, same
hashing as RFC 6962) over SHA-256:

* a leaf hash is ``H(0x00 || data)``, an interior node ``H(0x01 || left || right)``;
* the tree hash of ``n > 1`` leaves splits at ``k``, the largest power of two below
  ``n``: ``MTH(D[0:n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``; the empty tree hashes
  to ``H("")``.

Everything here is a pure function over hashes and integers, with no database, so
the same code serves the log writer, the API that hands out proofs and the
``spillguard audit verify`` command. Proof nodes are always listed from the leaf
(or subtree) level upwards, exactly as RFC 9162 ``PATH`` and ``PROOF`` produce them.

Proofs are generated from *ranges*: every node of an inclusion or consistency proof
is the tree hash of a range ``[a, b)`` of leaves that splits into a few perfect
(power-of-two, aligned) subtrees. :func:`inclusion_proof_ranges` and
:func:`consistency_proof_ranges` are index arithmetic only; a server that stores the
hash of every perfect subtree (the nodes :meth:`CompactRange.append` reports) answers
a proof with ``O(log² n)`` reads through a :data:`NodeReader`, and the plain
``inclusion_proof(leaf_hashes, index)`` forms compute the same nodes from leaf hashes.

Verification never returns a bool that a caller could forget to check: it returns
``None`` or raises :class:`ProofError` saying precisely what is wrong. Every hash given
to a verifier must be exactly 32 bytes, proofs must have exactly the expected number
of nodes, and sizes and indices must describe a real position in a real tree.

The *subtree* variants (inclusion of a leaf in the subtree ``[start, end)``, and
consistency of such a subtree with a whole tree) follow the subtree definitions of
the IETF Merkle Tree Certificates draft as implemented by transparency-dev/merkle:
``[start, end)`` is a valid subtree when ``start`` is a multiple of the smallest power
of two that is at least ``end - start``. With ``start == 0`` they are the ordinary
RFC 9162 proofs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree, ``SHA-256("")`` (RFC 9162 §2.1.1)."""


class ProofError(ValueError):
    """A Merkle proof, or the sizes, indices or hashes given with it, does not verify."""


@dataclass(frozen=True, slots=True)
class Node:
    """The root of the perfect subtree holding leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int
    hash: bytes


NodeReader = Callable[[int, int], bytes]
"""``read(level, index)``: the stored hash of the perfect subtree :class:`Node` (level, index)."""

Range = tuple[int, int]


# --- hashing -------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)`` of one log entry."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


_sha256 = hashlib.sha256


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return ``MTH`` of a whole list of leaf hashes, in one pass and ``O(log n)`` memory."""
    frontier: list[bytes] = []  # as CompactRange, without reporting completed nodes
    for size, leaf in enumerate(leaf_hashes):
        _check_hash("leaf hash", leaf)
        h, carry = leaf, size
        while carry & 1:
            h = node_hash(frontier.pop(), h)
            carry >>= 1
        frontier.append(h)
    return _fold(frontier)


def _fold(frontier: Sequence[bytes]) -> bytes:
    """Combine the perfect subtrees of a tree, largest first, into its root hash."""
    if not frontier:
        return EMPTY_ROOT
    result = frontier[-1]
    for h in reversed(frontier[:-1]):
        result = node_hash(h, result)
    return result


def _split(n: int) -> int:
    """Return the largest power of two strictly below ``n`` (``n > 1``), RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _bit_ceil(n: int) -> int:
    """Return the smallest power of two that is at least ``n``."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split the valid subtree ``[start, end)`` into its perfect subtrees, largest first.

    Returns ``(level, index)`` positions for a :data:`NodeReader`; the tree hash of the
    range is their hashes folded from the right (:func:`range_hash`).
    """
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:  # an aligned block can be no larger than start's lowest set bit
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, read: NodeReader) -> bytes:
    """Return ``MTH(D[start:end])`` of a valid, non-empty subtree from stored perfect nodes."""
    return _fold([read(level, index) for level, index in perfect_subtrees(start, end)])


def leaf_reader(leaf_hashes: Sequence[bytes]) -> NodeReader:
    """Return a :data:`NodeReader` that computes perfect-subtree hashes from leaf hashes."""

    def read(level: int, index: int) -> bytes:
        lo = index << level
        hi = lo + (1 << level)
        if hi > len(leaf_hashes):
            raise IndexError(f"node ({level}, {index}) is beyond {len(leaf_hashes)} leaves")
        return root_hash(leaf_hashes[lo:hi])

    return read


# --- compact range -------------------------------------------------------------------


class CompactRange:
    """The right frontier of a growing tree: append leaves, read the root at any size.

    Holds one perfect-subtree hash per set bit of the size (at most 64 for any real
    log), so a writer appending millions of entries keeps ``O(log n)`` memory and
    ``O(1)`` amortised hashing per leaf. :meth:`append` returns every perfect subtree
    completed by the new leaf so that a store can keep them for fast proofs.
    """

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        """Resume from a stored ``size`` and ``frontier`` (hashes of its perfect subtrees).

        The frontier lists the perfect subtrees of ``[0, size)`` from the left, one per
        set bit of ``size``, largest first, as :attr:`frontier` returns them.
        """
        if size < 0:
            raise ProofError(f"tree size {size} is negative")
        if len(frontier) != size.bit_count():
            raise ProofError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(frontier)}"
            )
        for h in frontier:
            _check_hash("frontier hash", h)
        self._size = size
        self._frontier = list(frontier)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """The hashes of the perfect subtrees covering ``[0, size)``, largest first."""
        return tuple(self._frontier)

    def append(self, leaf: bytes) -> list[Node]:
        """Append one leaf hash; return the perfect subtrees it completes, leaf first."""
        _check_hash("leaf hash", leaf)
        index = self._size
        created = [Node(0, index, leaf)]
        current, level, size = leaf, 0, self._size
        while size & 1:
            current = node_hash(self._frontier.pop(), current)
            size >>= 1
            level += 1
            created.append(Node(level, index >> level, current))
        self._frontier.append(current)
        self._size += 1
        return created

    def extend_one(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """:meth:`append` for bulk writers: the completed interior nodes (level >= 1) only,
        as ``(level, index, hash)`` tuples, without building :class:`Node` objects."""
        if type(leaf) is not bytes or len(leaf) != HASH_SIZE:
            _check_hash("leaf hash", leaf)
        created = []
        frontier = self._frontier
        current, level, size = leaf, 0, self._size
        while size & 1:
            current = _sha256(NODE_PREFIX + frontier.pop() + current).digest()
            size >>= 1
            level += 1
            created.append((level, self._size >> level, current))
        frontier.append(current)
        self._size += 1
        return created

    def root(self) -> bytes:
        """Return ``MTH`` of the leaves appended so far (``EMPTY_ROOT`` when none)."""
        return _fold(self._frontier)


# --- proof shapes (index arithmetic only) -----------------------------------------------


def _check_subtree(start: int, end: int, *, allow_empty: bool) -> None:
    """Raise unless ``[start, end)`` is a subtree that exists in some tree."""
    if start < 0:
        raise ProofError(f"subtree start {start} is negative")
    if start > end or (start == end and not allow_empty):
        raise ProofError(f"subtree [{start}, {end}) is empty or reversed: start must be < end")
    if start == end or start == 0:
        return
    width = _bit_ceil(end - start)
    if start % width:
        raise ProofError(
            f"[{start}, {end}) is not a subtree: start must be a multiple of {width}, "
            f"the smallest power of two >= its width {end - start}"
        )


def _path(index: int, offset: int, n: int) -> list[Range]:
    """RFC 9162 ``PATH(m, D[n])`` as leaf ranges, for the tree ``D[offset:offset+n]``."""
    ranges: list[Range] = []
    while n > 1:
        k = _split(n)
        if index < k:
            ranges.append((offset + k, offset + n))
            n = k
        else:
            ranges.append((offset, offset + k))
            index -= k
            offset += k
            n -= k
    ranges.reverse()
    return ranges


def inclusion_proof_ranges(index: int, size: int) -> list[Range]:
    """Return the leaf ranges whose tree hashes form the inclusion proof of ``index``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    return _path(index, 0, size)


# A consistency step says where the next proof node sits relative to the subtree path:
# _RIGHT: a right sibling that exists only in the larger tree;
# _LEFT: a left sibling outside the subtree, shared by both trees;
# _GROW: a left sibling inside the subtree, so part of both the subtree and the tree.
_RIGHT, _LEFT, _GROW = "right", "left", "grow"
_Step = tuple[str, Range]


def _subproof_shape(start: int, end: int, size: int) -> tuple[Range | None, list[_Step]]:
    """Walk RFC 9162 ``SUBPROOF`` generalised to the subtree ``[start, end)`` of ``D[0:size]``.

    Returns the range of the seed node that opens the proof (the smallest subtree on
    the path, which the verifier cannot know), or ``None`` when the verifier starts
    from the subtree root it holds, and the steps above it, lowest first, each with
    the range its proof node covers.
    """
    steps: list[_Step] = []
    offset, n, known = 0, size, True
    while not (start == 0 and end == n):
        k = _split(n)
        if end <= k:
            steps.append((_RIGHT, (offset + k, offset + n)))
            n = k
        elif start >= k:
            steps.append((_LEFT, (offset, offset + k)))
            start, end, offset, n = start - k, end - k, offset + k, n - k
        else:  # start == 0 < k < end: the subtree itself splits at k
            steps.append((_GROW, (offset, offset + k)))
            end, offset, n, known = end - k, offset + k, n - k, False
    steps.reverse()
    return (None if known else (offset, offset + n)), steps


def consistency_proof_ranges(size1: int, size2: int) -> list[Range]:
    """Return the leaf ranges whose tree hashes form ``PROOF(size1, D[size2])``."""
    _check_consistency_sizes(size1, size2)
    return subtree_consistency_proof_ranges(0, size1, size2)


def subtree_consistency_proof_ranges(start: int, end: int, size: int) -> list[Range]:
    """Return the leaf ranges of the proof that subtree ``[start, end)`` is in ``D[0:size]``."""
    _check_subtree(start, end, allow_empty=True)
    if end > size:
        raise ProofError(f"subtree end {end} is beyond the tree size {size}")
    if start == end:
        return []
    seed, steps = _subproof_shape(start, end, size)
    return ([] if seed is None else [seed]) + [rng for _, rng in steps]


def _check_consistency_sizes(size1: int, size2: int) -> None:
    if size1 < 0:
        raise ProofError(f"old tree size {size1} is negative")
    if size1 > size2:
        raise ProofError(f"old tree size {size1} is larger than new tree size {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing (size1 is 0)")


# --- proof generation ----------------------------------------------------------------


def proof_from_ranges(ranges: Iterable[Range], read: NodeReader) -> list[bytes]:
    """Return the proof nodes for ``ranges`` from stored perfect-subtree hashes."""
    return [range_hash(lo, hi, read) for lo, hi in ranges]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return RFC 9162 ``PATH(index, D[n])`` for the tree of all ``leaf_hashes``."""
    return proof_from_ranges(
        inclusion_proof_ranges(index, len(leaf_hashes)), leaf_reader(leaf_hashes)
    )


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return RFC 9162 ``PROOF(old_size, D[n])`` from the tree of ``old_size`` leaves to all."""
    return proof_from_ranges(
        consistency_proof_ranges(old_size, len(leaf_hashes)), leaf_reader(leaf_hashes)
    )


def subtree_inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, start: int, end: int
) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the subtree ``[start, end)``."""
    _check_subtree(start, end, allow_empty=False)
    if not start <= index < end:
        raise ProofError(f"leaf index {index} is outside the subtree [{start}, {end})")
    if end > len(leaf_hashes):
        raise ProofError(f"subtree end {end} is beyond the tree size {len(leaf_hashes)}")
    ranges = [(lo + start, hi + start) for lo, hi in _path(index - start, 0, end - start)]
    return proof_from_ranges(ranges, leaf_reader(leaf_hashes))


def subtree_consistency_proof(leaf_hashes: Sequence[bytes], start: int, end: int) -> list[bytes]:
    """Return the proof that the subtree ``[start, end)`` is part of the tree of all leaves."""
    ranges = subtree_consistency_proof_ranges(start, end, len(leaf_hashes))
    return proof_from_ranges(ranges, leaf_reader(leaf_hashes))


def subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """Return the hash of the subtree ``[start, end)`` (``EMPTY_ROOT`` when empty)."""
    _check_subtree(start, end, allow_empty=True)
    if end > len(leaf_hashes):
        raise ProofError(f"subtree end {end} is beyond the tree size {len(leaf_hashes)}")
    return root_hash(leaf_hashes[start:end])


# --- verification --------------------------------------------------------------------


def _check_hash(name: str, value: object) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, got {size}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof length: {len(proof)} nodes, expected {want}")
    for i, h in enumerate(proof):
        _check_hash(f"proof node {i}", h)


def _check_index(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{name} must be an integer, got {type(value).__name__}")


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``leaf_index`` of the tree ``(tree_size, root)``.

    RFC 9162 §2.1.3.2. Returns ``None``; raises :class:`ProofError` on any mismatch.
    """
    _check_index("leaf index", leaf_index)
    _check_index("tree size", tree_size)
    if tree_size <= 0:
        raise ProofError(f"no leaf is included in a tree of size {tree_size}")
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf index {leaf_index} is beyond the tree size {tree_size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    _check_proof(proof, len(_path(leaf_index, 0, tree_size)))
    fn, sn, r = leaf_index, tree_size - 1, bytes(leaf_hash)
    for p in proof:
        # This check and the one after the loop are RFC 9162's own; the exact length
        # check above already guarantees both, they stay as defence in depth.
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if r != root:
        raise ProofError("root mismatch: the proof does not lead to the given root hash")


def verify_subtree_inclusion(
    leaf_index: int,
    start: int,
    end: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that ``leaf_hash`` is leaf ``leaf_index`` of the subtree ``[start, end)``.

    ``root`` is the hash of that subtree. Raises :class:`ProofError` on any mismatch.
    """
    for name, value in (("leaf index", leaf_index), ("start", start), ("end", end)):
        _check_index(name, value)
    _check_subtree(start, end, allow_empty=False)
    if not start <= leaf_index < end:
        raise ProofError(f"leaf index {leaf_index} is outside the subtree [{start}, {end})")
    verify_inclusion(leaf_index - start, end - start, leaf_hash, proof, root)


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(size1, root1)`` is a prefix of the tree ``(size2, root2)``.

    RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots; a proof from
    the empty tree is refused because it proves nothing. Raises :class:`ProofError`.
    """
    _check_index("size1", size1)
    _check_index("size2", size2)
    _check_consistency_sizes(size1, size2)
    if size1 == size2 and proof:
        raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
    if size1 < size2 and not proof:
        raise ProofError(f"empty proof for different sizes {size1} and {size2}")
    verify_subtree_consistency(0, size1, size2, root1, root2, proof)


def verify_subtree_consistency(
    start: int,
    end: int,
    size: int,
    subtree_hash: bytes,
    root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that ``subtree_hash`` is the hash of ``[start, end)`` in the tree ``(size, root)``.

    With ``start == 0`` this is RFC 9162 consistency from size ``end`` to ``size``. An
    empty subtree (``start == end``) is part of every tree: it needs ``subtree_hash`` to
    be the empty-tree hash and an empty proof. Raises :class:`ProofError`.
    """
    for name, value in (("start", start), ("end", end), ("size", size)):
        _check_index(name, value)
    _check_subtree(start, end, allow_empty=True)
    if end > size:
        raise ProofError(f"subtree end {end} is beyond the tree size {size}")
    if start == end:
        # The empty subtree is part of every tree: the tree's root plays no part.
        if proof:
            raise ProofError("an empty subtree needs an empty proof")
        if subtree_hash != EMPTY_ROOT:
            raise ProofError("root mismatch: an empty subtree must have the empty-tree hash")
        return
    if start == 0 and end == size:
        # The subtree is the whole tree: no hashing, the two roots must be the same value.
        # They are compared as given (transparency-dev/merkle accepts opaque placeholders
        # here, and the conformance vectors say so).
        if proof:
            raise ProofError(f"sizes are equal ({size}) but the proof is not empty")
        if not all(isinstance(h, bytes | bytearray) for h in (subtree_hash, root)):
            raise ProofError("root hashes must be bytes")
        if bytes(subtree_hash) != bytes(root):
            raise ProofError("root mismatch: equal sizes but different root hashes")
        return
    _check_hash("subtree root hash", subtree_hash)
    _check_hash("root hash", root)
    seed, steps = _subproof_shape(start, end, size)
    _check_proof(proof, len(steps) + (seed is not None))
    nodes = iter(proof)
    sub = tree = next(nodes) if seed is not None else bytes(subtree_hash)
    for (kind, _), p in zip(steps, nodes, strict=True):
        if kind == _RIGHT:
            tree = node_hash(tree, p)
        elif kind == _LEFT:
            tree = node_hash(p, tree)
        else:
            sub = node_hash(p, sub)
            tree = node_hash(p, tree)
    if sub != subtree_hash:
        raise ProofError("root mismatch: the proof does not lead to the old (subtree) root hash")
    if tree != root:
        raise ProofError("root mismatch: the proof does not lead to the new root hash")
