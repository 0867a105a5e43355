"""API schemas of the audit log. Hashes, proofs and entries are standard base64."""

from __future__ import annotations

import base64
from datetime import datetime

from pydantic import BaseModel, Field


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CheckpointPublic(BaseModel):
    tree_size: int = Field(description="Entries in the log when this was signed.")
    root_hash: str = Field(description="RFC 9162 root hash of those entries, base64.")
    created_at: datetime
    origin: str = Field(description="The log's name, the first line of the checkpoint.")
    key_id: str = Field(description="First 8 bytes (hex) of SHA-256 of the public key.")
    signature: str = Field(description="Ed25519 signature over the checkpoint body, base64.")
    checkpoint: str = Field(description="The signed note: body, blank line, signature line.")


class InclusionProofPublic(BaseModel):
    event_id: int
    entry: str | None = Field(
        description="The event's canonical bytes as logged, base64; null when withheld "
        "from this reader (see `withheld`)."
    )
    leaf_hash: str = Field(
        description="RFC 9162 leaf hash of the entry, H(0x00 || entry), base64: where the "
        "proof starts."
    )
    leaf_index: int
    tree_size: int
    root_hash: str = Field(description="Root hash of the tree of tree_size entries, base64.")
    inclusion_proof: list[str] = Field(description="Sibling hashes, leaf level first, base64.")
    checkpoint: str | None = Field(
        description="The signed checkpoint of tree_size, if one was made at that size."
    )
    withheld: str | None = Field(
        None,
        description="Why `entry` is null: it names a honeytoken customer and the reader "
        "lacks honeytokens:manage.",
    )


class ConsistencyProofPublic(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    consistency_proof: list[str] = Field(description="RFC 9162 PROOF(first, second), base64.")


class LogKeyPublic(BaseModel):
    algorithm: str = Field(description="Always Ed25519.")
    key_id: str = Field(description="First 8 bytes (hex) of SHA-256 of the raw public key.")
    public_key: str = Field(description="The raw 32-byte public key, base64.")
    public_key_pem: str = Field(description="The public key as PEM SubjectPublicKeyInfo.")
    origin: str
    note_verifier_key: str = Field(
        description="signed-note verifier key <name>+<hash>+<key> (golang.org/x/mod/sumdb/note)."
    )
