"""`spillguard demo`: story 1 staged on a throwaway data directory (see docs/demo.md)."""
