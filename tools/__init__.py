"""Benchmarks and utilities over detkit's public API; run from the repository root as ``python -m tools.NAME``."""
