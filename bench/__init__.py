"""Benchmarks of credbroker on the local control plane with a real PostgreSQL server.

``python -m bench --scale full`` (or ``make bench``) runs every benchmark,
writes ``bench/results/<date>.json`` and updates ``docs/benchmarks.md``.
docs/benchmarks.md describes what each benchmark measures and how.
"""
