"""Alembic migrations, applied by `spillguard serve` and `spillguard db upgrade`."""
