"""Benchmark scripts, run from the repository root as ``python -m benchmarks.NAME`` (see README.md here).

Not installed with the package; what they share with tests/ lives in ``fixtures/``.
"""
