"""The `spillguard` command line: one thin module per command group."""
