"""The tamper-evident audit log and insider-risk detection (issue 7).

Built so far (§1): ``merkle``, the database-free RFC 9162 Merkle tree core; ``models``
and ``log``, the log in the database and its sequencer; ``checkpoints``, the signed
checkpoint format and the log key; ``verify``; ``services`` and ``api``, checkpoints and
proofs for audit:view holders. Ingestion, detectors and honeytokens come later; see
docs/audit.md.
"""
