"""Exposure ledger: where inspected content went (issue 5)."""
