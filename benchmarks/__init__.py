"""gradc's benchmark suite: ``python -m benchmarks`` (see ``benchmarks/run.py`` and the README)."""
