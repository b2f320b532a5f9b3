"""The `thisthat` command line: serve, migrate, audit, seed and the rest (docs in README.md)."""
