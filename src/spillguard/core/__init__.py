"""Core: settings, database, app factory, errors, authentication, roles and the audit helper."""
