"""RFC 9162 Merkle tree core: conformance vectors, known answers, and tampered proofs.

The vectors in tests/data/merkle-vectors/ come from transparency-dev/merkle (see its
README). Every file is one case; a correct verifier accepts it exactly when
``wantErr`` is false. The reference functions below restate RFC 9162 §2.1 over
Python lists, independently of the code under test.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillguard.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    ProofError,
    consistency_proof,
    consistency_proof_ranges,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    proof_from_ranges,
    root_hash,
    subtree_consistency_proof,
    subtree_inclusion_proof,
    subtree_root,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "data" / "merkle-vectors" / "testdata"
DOC = ROOT / "docs" / "audit.md"

VECTOR_COUNTS = {
    "inclusion": 98,
    "consistency": 98,
    "subtreeinclusion": 204,
    "subtreeconsistency": 118,
}
VECTOR_FILES = sorted(p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*.json"))

# RFC 6962 reference test data (Certificate Transparency's merkle_tree_test), also the
# tree behind the transparency-dev vectors' happy paths, with its published roots.
RFC6962_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC6962_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
REF_HASHES = [leaf_hash(d) for d in RFC6962_LEAVES]


# --- an independent restatement of RFC 9162 §2.1 ------------------------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, recursively as the RFC defines it."""
    if not d:
        return sha(b"")
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_split(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(start: int, end: int, d: Sequence[bytes], known: bool) -> list[bytes]:
    """SUBPROOF of RFC 9162 §2.1.4.1, generalised to subtrees as in the MTC draft."""
    if start == 0 and end == len(d):
        return [] if known else [ref_mth(d)]
    k = ref_split(len(d))
    if end <= k:
        return [*ref_subproof(start, end, d[:k], known), ref_mth(d[k:])]
    if start >= k:
        return [*ref_subproof(start - k, end - k, d[k:], known), ref_mth(d[:k])]
    assert start == 0
    return [*ref_subproof(0, end - k, d[k:], False), ref_mth(d[:k])]


def flip(h: bytes, bit: int) -> bytes:
    data = bytearray(h)
    data[bit // 8] ^= 1 << (bit % 8)
    return bytes(data)


def leaves_for(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + b"entry-%d" % i) for i in range(n)]


# --- vectors -------------------------------------------------------------------------


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def load_vector(rel: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((VECTORS / rel).read_text())
    return case


def run_vector(rel: str, case: dict[str, Any]) -> None:
    """Feed one vector to the matching verifier (a JSON null proof is an empty one)."""
    proof = [b64(p) for p in case["proof"] or []]
    kind = rel.split("/", 1)[0]
    if kind == "inclusion":
        verify_inclusion(
            case["leafIdx"], case["treeSize"], b64(case["leafHash"]), proof, b64(case["root"])
        )
    elif kind == "consistency":
        verify_consistency(
            case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), proof
        )
    elif kind == "subtreeinclusion":
        verify_subtree_inclusion(
            case["leafIdx"],
            case["start"],
            case["end"],
            b64(case["leafHash"]),
            proof,
            b64(case["root"]),
        )
    else:
        assert kind == "subtreeconsistency"
        verify_subtree_consistency(
            case["start"], case["end"], case["size"], b64(case["root1"]), b64(case["root2"]), proof
        )


def test_every_vector_file_is_collected() -> None:
    counts = {kind: 0 for kind in VECTOR_COUNTS}
    for rel in VECTOR_FILES:
        counts[rel.split("/", 1)[0]] += 1
    assert counts == VECTOR_COUNTS
    assert (VECTORS.parent / "LICENSE").read_text().count("Apache License") >= 1


@pytest.mark.parametrize("rel", VECTOR_FILES)
def test_vector(rel: str) -> None:
    case = load_vector(rel)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            run_vector(rel, case)
    else:
        run_vector(rel, case)


HAPPY_PATHS = [
    rel
    for rel in VECTOR_FILES
    if re.search(r"/\d/happy-path", rel) and not load_vector(rel)["wantErr"]
]


@pytest.mark.parametrize("rel", HAPPY_PATHS)
def test_generated_proofs_match_the_vectors(rel: str) -> None:
    """Our generator, on the RFC 6962 reference leaves, produces upstream's exact proofs."""
    case = load_vector(rel)
    kind = rel.split("/", 1)[0]
    want = [b64(p) for p in case["proof"] or []]
    if kind == "inclusion":
        leaves = REF_HASHES[: case["treeSize"]]
        assert leaves[case["leafIdx"]] == b64(case["leafHash"])
        assert root_hash(leaves) == b64(case["root"])
        assert inclusion_proof(leaves, case["leafIdx"]) == want
    elif kind == "consistency":
        leaves = REF_HASHES[: case["size2"]]
        assert root_hash(leaves[: case["size1"]]) == b64(case["root1"])
        assert root_hash(leaves) == b64(case["root2"])
        assert consistency_proof(leaves, case["size1"]) == want
    elif kind == "subtreeinclusion":
        start, end = case["start"], case["end"]
        leaves = leaves_for(start, b"filler") + REF_HASHES[: end - start]
        assert subtree_root(leaves, start, end) == b64(case["root"])
        assert subtree_inclusion_proof(leaves, case["leafIdx"], start, end) == want
    else:
        leaves = REF_HASHES[: case["size"]]
        assert subtree_root(leaves, case["start"], case["end"]) == b64(case["root1"])
        assert root_hash(leaves) == b64(case["root2"])
        assert subtree_consistency_proof(leaves, case["start"], case["end"]) == want


def test_happy_paths_cover_every_kind() -> None:
    assert {rel.split("/", 1)[0] for rel in HAPPY_PATHS} == set(VECTOR_COUNTS)
    assert len(HAPPY_PATHS) == 25


# --- known answers -------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    want = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == want
    assert root_hash([]).hex() == want
    assert CompactRange().root().hex() == want


def test_leaf_and_node_hashes_use_rfc_9162_domain_separation() -> None:
    assert leaf_hash(b"") == sha(b"\x00")
    assert leaf_hash(b"abc") == sha(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == sha(b"\x01" + b"L" * 32 + b"R" * 32)
    assert leaf_hash(b"") != sha(b"")


@pytest.mark.parametrize("size", sorted(RFC6962_ROOTS))
def test_rfc6962_reference_roots(size: int) -> None:
    assert root_hash(REF_HASHES[:size]).hex() == RFC6962_ROOTS[size]


def test_reference_roots_agree_with_the_vectors() -> None:
    seen: dict[int, bytes] = {}
    for rel in HAPPY_PATHS:
        case = load_vector(rel)
        if "treeSize" in case:
            seen[case["treeSize"]] = b64(case["root"])
        if "size1" in case:
            seen[case["size1"]] = b64(case["root1"])
            seen[case["size2"]] = b64(case["root2"])
    assert {1, 2, 3, 5, 6, 7, 8} <= set(seen)
    for size, root in seen.items():
        assert root.hex() == RFC6962_ROOTS[size]


# --- precise errors ------------------------------------------------------------------

H = sha(b"some node")
ROOT8 = root_hash(REF_HASHES)
PROOF_0_OF_8 = inclusion_proof(REF_HASHES, 0)
CONS_6_OF_8 = consistency_proof(REF_HASHES, 6)
ROOT6 = root_hash(REF_HASHES[:6])

ERRORS: list[tuple[str, Callable[[], None], str]] = [
    (
        "index beyond size",
        lambda: verify_inclusion(8, 8, REF_HASHES[0], PROOF_0_OF_8, ROOT8),
        r"leaf index 8 is beyond the tree size 8",
    ),
    (
        "negative index",
        lambda: verify_inclusion(-1, 8, REF_HASHES[0], PROOF_0_OF_8, ROOT8),
        r"leaf index -1 is beyond",
    ),
    (
        "empty tree",
        lambda: verify_inclusion(0, 0, REF_HASHES[0], [], EMPTY_ROOT),
        r"no leaf is included in a tree of size 0",
    ),
    (
        "short proof",
        lambda: verify_inclusion(0, 8, REF_HASHES[0], PROOF_0_OF_8[:2], ROOT8),
        r"wrong proof length: 2 nodes, expected 3",
    ),
    (
        "long proof",
        lambda: verify_inclusion(0, 8, REF_HASHES[0], [*PROOF_0_OF_8, H], ROOT8),
        r"wrong proof length: 4 nodes, expected 3",
    ),
    (
        "root mismatch",
        lambda: verify_inclusion(0, 8, REF_HASHES[1], PROOF_0_OF_8, ROOT8),
        r"root mismatch",
    ),
    (
        "short leaf hash",
        lambda: verify_inclusion(0, 8, b"x" * 31, PROOF_0_OF_8, ROOT8),
        r"leaf hash must be 32 bytes, got 31",
    ),
    (
        "long root",
        lambda: verify_inclusion(0, 8, REF_HASHES[0], PROOF_0_OF_8, ROOT8 + b"\0"),
        r"root hash must be 32 bytes, got 33",
    ),
    (
        "short proof node",
        lambda: verify_inclusion(0, 8, REF_HASHES[0], [*PROOF_0_OF_8[:2], b"x"], ROOT8),
        r"proof node 2 must be 32 bytes, got 1",
    ),
    (
        "str hash",
        lambda: verify_inclusion(0, 1, "a" * 32, [], ROOT8),  # type: ignore[arg-type]
        r"leaf hash must be 32 bytes, got str",
    ),
    (
        "bool index",
        lambda: verify_inclusion(True, 2, REF_HASHES[1], [H], ROOT8),
        r"leaf index must be an integer",
    ),
    (
        "size1 > size2",
        lambda: verify_consistency(8, 6, ROOT8, ROOT6, CONS_6_OF_8),
        r"old tree size 8 is larger than new tree size 6",
    ),
    (
        "size1 zero",
        lambda: verify_consistency(0, 8, EMPTY_ROOT, ROOT8, CONS_6_OF_8),
        r"from the empty tree proves nothing",
    ),
    (
        "equal sizes, proof",
        lambda: verify_consistency(8, 8, ROOT8, ROOT8, [H]),
        r"sizes are equal \(8\) but the proof is not empty",
    ),
    (
        "equal sizes, roots differ",
        lambda: verify_consistency(8, 8, ROOT8, ROOT6, []),
        r"root mismatch",
    ),
    (
        "empty proof",
        lambda: verify_consistency(6, 8, ROOT6, ROOT8, []),
        r"empty proof for different sizes 6 and 8",
    ),
    (
        "swapped roots",
        lambda: verify_consistency(6, 8, ROOT8, ROOT6, CONS_6_OF_8),
        r"root mismatch: the proof does not lead to the old",
    ),
    (
        "wrong new root",
        lambda: verify_consistency(6, 8, ROOT6, H, CONS_6_OF_8),
        r"root mismatch: the proof does not lead to the new root",
    ),
    (
        "invalid subtree",
        lambda: verify_subtree_inclusion(3, 3, 5, H, [H], H),
        r"\[3, 5\) is not a subtree: start must be a multiple of 2",
    ),
    (
        "index outside subtree",
        lambda: verify_subtree_inclusion(2, 4, 8, H, [H, H], H),
        r"leaf index 2 is outside the subtree \[4, 8\)",
    ),
    (
        "empty subtree inclusion",
        lambda: verify_subtree_inclusion(1, 1, 1, H, [], H),
        r"subtree \[1, 1\) is empty or reversed",
    ),
    (
        "subtree beyond tree",
        lambda: verify_subtree_consistency(4, 8, 7, H, H, [H]),
        r"subtree end 8 is beyond the tree size 7",
    ),
    (
        "empty subtree, proof",
        lambda: verify_subtree_consistency(2, 2, 4, EMPTY_ROOT, H, [H]),
        r"an empty subtree needs an empty proof",
    ),
    (
        "empty subtree, root",
        lambda: verify_subtree_consistency(2, 2, 4, H, H, []),
        r"an empty subtree must have the empty-tree hash",
    ),
]


@pytest.mark.parametrize(
    ("check", "pattern"), [(c, p) for _, c, p in ERRORS], ids=[name for name, _, _ in ERRORS]
)
def test_errors_say_what_is_wrong(check: Callable[[], None], pattern: str) -> None:
    with pytest.raises(ProofError, match=pattern):
        check()


def test_proof_error_is_a_value_error() -> None:
    assert issubclass(ProofError, ValueError)


def test_generation_refuses_impossible_requests() -> None:
    with pytest.raises(ProofError, match="leaf index 8 is not in a tree of size 8"):
        inclusion_proof(REF_HASHES, 8)
    with pytest.raises(ProofError, match="larger than new tree size 8"):
        consistency_proof(REF_HASHES, 9)
    with pytest.raises(ProofError, match="empty tree proves nothing"):
        consistency_proof(REF_HASHES, 0)
    with pytest.raises(ProofError, match="not a subtree"):
        subtree_consistency_proof(REF_HASHES, 2, 5)
    with pytest.raises(ProofError, match="beyond the tree size 8"):
        subtree_inclusion_proof(REF_HASHES, 8, 8, 9)


# --- properties ----------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.integers(min_value=1, max_value=300)
salts = st.binary(max_size=8)


def assert_rejected(check: Callable[[], None]) -> None:
    with pytest.raises(ProofError):
        check()


def tampered_proofs(draw: Callable[..., Any], proof: list[bytes]) -> list[list[bytes]]:
    """One bit flip in a drawn node, an inserted node, a removed node, garbage at either end."""
    extra = draw(st.binary(min_size=32, max_size=32))
    where = draw(st.integers(0, len(proof)))
    variants = [[*proof[:where], extra, *proof[where:]], [b"", *proof], [*proof, b"\x00"]]
    if proof:
        node = draw(st.integers(0, len(proof) - 1))
        bit = draw(st.integers(0, 255))
        variants.append([*proof[:node], flip(proof[node], bit), *proof[node + 1 :]])
        variants.append(proof[:node] + proof[node + 1 :])
    return variants


@PROPERTY
@given(n=sizes, salt=salts, data=st.data())
def test_inclusion_proofs_verify_and_tampering_is_rejected(
    n: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = leaves_for(n + 1, salt)
    tree = leaves[:n]
    index = data.draw(st.integers(0, n - 1))
    root = root_hash(tree)
    proof = inclusion_proof(tree, index)
    assert proof == ref_path(index, tree)
    assert root == ref_mth(tree)
    verify_inclusion(index, n, tree[index], proof, root)

    for bad in tampered_proofs(data.draw, proof):
        assert_rejected(lambda bad=bad: verify_inclusion(index, n, tree[index], bad, root))
    bit = data.draw(st.integers(0, 255))
    assert_rejected(lambda: verify_inclusion(index, n, tree[index], proof, flip(root, bit)))
    assert_rejected(lambda: verify_inclusion(index, n, flip(tree[index], bit), proof, root))
    for other in (index - 1, index + 1):  # a neighbour's position, with either leaf
        for leaf in {tree[index], tree[other % n]}:
            assert_rejected(lambda o=other, lf=leaf: verify_inclusion(o, n, lf, proof, root))
    # A wrong size is caught against that size's real root (a stale or early proof);
    # the size itself is bound to its root by the signed checkpoint, see docs/audit.md.
    for size in (n - 1, n + 1):
        if size > index:
            other_root = root_hash(leaves[:size])
            assert_rejected(
                lambda s=size, r=other_root: verify_inclusion(index, s, tree[index], proof, r)
            )


@PROPERTY
@given(n=sizes, salt=salts, data=st.data())
def test_consistency_proofs_verify_and_tampering_is_rejected(
    n: int, salt: bytes, data: st.DataObject
) -> None:
    leaves = leaves_for(n + 1, salt)
    tree = leaves[:n]
    m = data.draw(st.integers(1, n))
    root1, root2 = root_hash(tree[:m]), root_hash(tree)
    proof = consistency_proof(tree, m)
    assert proof == ref_subproof(0, m, tree, True)
    verify_consistency(m, n, root1, root2, proof)

    for bad in tampered_proofs(data.draw, proof):
        assert_rejected(lambda bad=bad: verify_consistency(m, n, root1, root2, bad))
    bit = data.draw(st.integers(0, 255))
    assert_rejected(lambda: verify_consistency(m, n, flip(root1, bit), root2, proof))
    assert_rejected(lambda: verify_consistency(m, n, root1, flip(root2, bit), proof))
    if root1 != root2:
        assert_rejected(lambda: verify_consistency(m, n, root2, root1, proof))
    for size1, size2 in ((m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)):
        if size1 >= 0 and size2 >= 0:
            r1 = root_hash(leaves[:size1])
            r2 = root_hash(leaves[:size2])
            assert_rejected(
                lambda a=size1, b=size2, r1=r1, r2=r2: verify_consistency(a, b, r1, r2, proof)
            )


@st.composite
def subtrees(draw: Callable[..., Any]) -> tuple[int, int, int]:
    """A tree size and a valid subtree [start, end) of it."""
    size = draw(sizes)
    width = draw(st.integers(1, size))
    align = 1 << (width - 1).bit_length()
    start = align * draw(st.integers(0, (size - width) // align))
    return size, start, start + width


@PROPERTY
@given(tree_and_subtree=subtrees(), salt=salts, data=st.data())
def test_subtree_proofs_verify_and_tampering_is_rejected(
    tree_and_subtree: tuple[int, int, int], salt: bytes, data: st.DataObject
) -> None:
    size, start, end = tree_and_subtree
    tree = leaves_for(size, salt)
    sub_root, root = subtree_root(tree, start, end), root_hash(tree)
    assert sub_root == ref_mth(tree[start:end])
    index = data.draw(st.integers(start, end - 1))

    inclusion = subtree_inclusion_proof(tree, index, start, end)
    assert inclusion == ref_path(index - start, tree[start:end])
    verify_subtree_inclusion(index, start, end, tree[index], inclusion, sub_root)
    consistency = subtree_consistency_proof(tree, start, end)
    assert consistency == ref_subproof(start, end, tree, True)
    verify_subtree_consistency(start, end, size, sub_root, root, consistency)
    if start == 0:
        assert consistency == consistency_proof(tree, end)

    for bad in tampered_proofs(data.draw, inclusion):
        assert_rejected(
            lambda bad=bad: verify_subtree_inclusion(index, start, end, tree[index], bad, sub_root)
        )
    for bad in tampered_proofs(data.draw, consistency):
        assert_rejected(
            lambda bad=bad: verify_subtree_consistency(start, end, size, sub_root, root, bad)
        )
    bit = data.draw(st.integers(0, 255))
    assert_rejected(
        lambda: verify_subtree_consistency(start, end, size, flip(sub_root, bit), root, consistency)
    )
    assert_rejected(
        lambda: verify_subtree_consistency(start, end, size, sub_root, flip(root, bit), consistency)
    )
    assert_rejected(
        lambda: verify_subtree_inclusion(
            index, start, end, tree[index], inclusion, flip(sub_root, bit)
        )
    )


@PROPERTY
@given(n=st.integers(0, 300), salt=salts, resume_at=st.integers(0, 300))
def test_compact_range_matches_root_hash_for_every_prefix(
    n: int, salt: bytes, resume_at: int
) -> None:
    tree = leaves_for(n, salt)

    @functools.cache
    def mth(lo: int, hi: int) -> bytes:  # ref_mth(tree[lo:hi]), memoised across prefixes
        if hi - lo <= 1:
            return ref_mth(tree[lo:hi])
        k = ref_split(hi - lo)
        return sha(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi))

    compact = CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    assert compact.root() == ref_mth([])
    for i, leaf in enumerate(tree):
        if i == resume_at:  # a writer restarting from its saved state
            compact = CompactRange(compact.size, compact.frontier)
        for node in compact.append(leaf):
            lo, hi = node.index << node.level, (node.index + 1) << node.level
            assert node.hash == mth(lo, hi)
            stored[(node.level, node.index)] = node.hash
        assert compact.size == i + 1
        assert len(compact.frontier) == (i + 1).bit_count()
        assert compact.root() == mth(0, i + 1)
    assert root_hash(tree) == compact.root()

    # Stored perfect subtrees answer any proof without the leaves.
    def read(level: int, index: int) -> bytes:
        return stored[(level, index)]

    for index in range(0, n, max(1, n // 7)):
        assert proof_from_ranges(inclusion_proof_ranges(index, n), read) == inclusion_proof(
            tree, index
        )
        if index:
            assert proof_from_ranges(consistency_proof_ranges(index, n), read) == (
                consistency_proof(tree, index)
            )


def test_compact_range_reports_the_subtrees_a_leaf_completes() -> None:
    compact = CompactRange()
    for leaf in REF_HASHES[:3]:
        compact.append(leaf)
    created = compact.append(REF_HASHES[3])
    assert created == [
        Node(0, 3, REF_HASHES[3]),
        Node(1, 1, node_hash(REF_HASHES[2], REF_HASHES[3])),
        Node(2, 0, bytes.fromhex(RFC6962_ROOTS[4])),
    ]


def test_compact_range_refuses_bad_state_and_leaves() -> None:
    with pytest.raises(ProofError, match="a tree of size 5 has 2 frontier hashes, got 1"):
        CompactRange(5, [H])
    with pytest.raises(ProofError, match="frontier hash must be 32 bytes"):
        CompactRange(1, [b"short"])
    with pytest.raises(ProofError, match="leaf hash must be 32 bytes, got 3"):
        CompactRange().append(b"abc")


# --- the offline verifier in docs/audit.md -------------------------------------------


def doc_script() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- offline-verifier[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/audit.md lost its offline verification script"
    return match.group(1)


def test_doc_script_is_short_and_standalone() -> None:
    script = doc_script()
    assert len(script.splitlines()) <= 45
    imported = set(re.findall(r"^import (.+)$", script, re.M)[0].replace(" ", "").split(","))
    assert imported == {"base64", "hashlib", "sys"}
    assert "from " not in script


@pytest.fixture(scope="module")
def doc_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auditor") / "verify_inclusion.py"
    path.write_text(doc_script())
    return path


def run_doc_verifier(
    script: Path, entry: Path, args: list[object]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", str(script), str(entry), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


ENTRIES = [b'{"event":"customers:record:viewed","n":%d}' % i for i in range(13)]
TREE = [leaf_hash(e) for e in ENTRIES]
INDEX = 9
GOOD = [
    INDEX,
    len(TREE),
    base64.b64encode(root_hash(TREE)).decode(),
    *(base64.b64encode(p).decode() for p in inclusion_proof(TREE, INDEX)),
]


def with_arg(position: int, value: object) -> list[object]:
    args: list[object] = list(GOOD)
    args[position] = value
    return args


def b64_flip(value: object) -> str:
    return base64.b64encode(flip(base64.b64decode(str(value)), 5)).decode()


TAMPERED = {
    "flipped proof node": with_arg(4, b64_flip(GOOD[4])),
    "flipped root": with_arg(2, b64_flip(GOOD[2])),
    "wrong index": with_arg(0, INDEX - 1),
    "index beyond size": with_arg(0, len(TREE)),
    "removed node": GOOD[:-1],
    "added node": [*GOOD, GOOD[-1]],
    "short node": with_arg(3, base64.b64encode(b"short").decode()),
    "not base64": with_arg(3, "not base64!"),
    "missing arguments": GOOD[:1],
}


def test_doc_script_accepts_a_generated_proof(doc_verifier: Path, tmp_path: Path) -> None:
    entry = tmp_path / "entry.json"
    entry.write_bytes(ENTRIES[INDEX])
    result = run_doc_verifier(doc_verifier, entry, GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: the entry is leaf 9 of the tree of size 13")


def test_doc_script_verifies_from_a_leaf_hash_when_the_entry_is_withheld(
    doc_verifier: Path,
) -> None:
    leaf = base64.b64encode(TREE[INDEX]).decode()
    result = run_doc_verifier(doc_verifier, Path(f"leaf:{leaf}"), GOOD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: the entry is leaf 9 of the tree of size 13")
    for bad, why in (
        (b64_flip(leaf), "does not lead to the checkpoint's root hash"),
        (base64.b64encode(TREE[INDEX][:31]).decode(), "every hash must be 32 bytes"),
        ("not base64!", "bad argument"),
    ):
        result = run_doc_verifier(doc_verifier, Path(f"leaf:{bad}"), GOOD)
        assert result.returncode == 1 and why in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", TAMPERED.values(), ids=TAMPERED.keys())
def test_doc_script_rejects_a_tampered_proof(
    doc_verifier: Path, tmp_path: Path, args: list[object]
) -> None:
    entry = tmp_path / "entry.json"
    entry.write_bytes(ENTRIES[INDEX])
    result = run_doc_verifier(doc_verifier, entry, args)
    assert result.returncode == 1
    assert result.stderr.startswith("FAIL: ")
    assert "Traceback" not in result.stderr


def test_doc_script_rejects_an_altered_entry(doc_verifier: Path, tmp_path: Path) -> None:
    entry = tmp_path / "entry.json"
    entry.write_bytes(ENTRIES[INDEX].replace(b"viewed", b"edited"))
    result = run_doc_verifier(doc_verifier, entry, GOOD)
    assert result.returncode == 1
    assert "does not lead to the checkpoint's root hash" in result.stderr
