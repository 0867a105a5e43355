"""Audit-log REST API (``/api/v1/audit``): checkpoints, inclusion and consistency proofs,
and the public key that signs checkpoints. Read-only; needs ``audit:view``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from spillguard.audit.schemas import (
    CheckpointPublic,
    ConsistencyProofPublic,
    InclusionProofPublic,
    LogKeyPublic,
    b64,
)
from spillguard.audit.services import AuditLogService, CheckpointView
from spillguard.core.deps import MAX_ID, ApiPrincipal, AppSettings, DbSession, Keys, Paging
from spillguard.core.schemas import Page

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

MAX_SIZE = 2**62
TreeSize = Annotated[int, Query(ge=1, le=MAX_SIZE, description="A tree size (entries)")]


def checkpoint_public(view: CheckpointView) -> CheckpointPublic:
    cp = view.checkpoint
    return CheckpointPublic(
        tree_size=cp.tree_size,
        root_hash=b64(cp.root_hash),
        created_at=cp.created_at,
        origin=cp.origin,
        key_id=cp.key_id,
        signature=b64(cp.signature),
        checkpoint=view.text,
    )


@router.get("/checkpoints/latest", response_model=CheckpointPublic)
def latest_checkpoint(
    db: DbSession, principal: ApiPrincipal, keys: Keys, settings: AppSettings
) -> CheckpointPublic:
    """The newest signed checkpoint of the audit log."""
    return checkpoint_public(AuditLogService(db, principal, keys, settings).latest())


@router.get("/checkpoints", response_model=Page[CheckpointPublic])
def list_checkpoints(
    db: DbSession, principal: ApiPrincipal, keys: Keys, settings: AppSettings, paging: Paging
) -> Page[CheckpointPublic]:
    """Signed checkpoints, newest first."""
    views, total = AuditLogService(db, principal, keys, settings).checkpoints(
        limit=paging.limit, offset=paging.offset
    )
    return Page(
        items=[checkpoint_public(v) for v in views],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/proofs/inclusion", response_model=InclusionProofPublic)
def inclusion_proof(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    event_id: Annotated[int, Query(ge=1, le=MAX_ID, description="Audit event id")],
    tree_size: TreeSize | None = None,
) -> InclusionProofPublic:
    """Proof that an audit event is in the log (default: at the latest checkpoint)."""
    proof = AuditLogService(db, principal, keys, settings).inclusion(event_id, tree_size)
    return InclusionProofPublic(
        event_id=proof.event_id,
        entry=b64(proof.entry) if proof.entry is not None else None,
        leaf_hash=b64(proof.leaf_hash),
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        root_hash=b64(proof.root_hash),
        inclusion_proof=[b64(p) for p in proof.proof],
        checkpoint=proof.checkpoint,
        withheld=proof.withheld,
    )


@router.get("/proofs/consistency", response_model=ConsistencyProofPublic)
def consistency_proof(
    db: DbSession,
    principal: ApiPrincipal,
    keys: Keys,
    settings: AppSettings,
    first: TreeSize,
    second: TreeSize,
) -> ConsistencyProofPublic:
    """Proof that the log of `first` entries is a prefix of the log of `second` entries."""
    proof = AuditLogService(db, principal, keys, settings).consistency(first, second)
    return ConsistencyProofPublic(
        first=proof.first,
        second=proof.second,
        first_root=b64(proof.first_root),
        second_root=b64(proof.second_root),
        consistency_proof=[b64(p) for p in proof.proof],
    )


@router.get("/log-key", response_model=LogKeyPublic)
def log_key(
    db: DbSession, principal: ApiPrincipal, keys: Keys, settings: AppSettings
) -> LogKeyPublic:
    """The Ed25519 public key that signs the audit log's checkpoints."""
    key, origin = AuditLogService(db, principal, keys, settings).log_key()
    return LogKeyPublic(
        algorithm="Ed25519",
        key_id=key.key_id,
        public_key=b64(key.public_key),
        public_key_pem=key.pem,
        origin=origin,
        note_verifier_key=key.note_verifier_key(origin),
    )
