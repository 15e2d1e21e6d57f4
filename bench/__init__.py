"""Benchmarks of syncd (and the unsealer), run on demand: ``python -m bench SCENARIO``.

Never run by ``make test``; ``tests/bench`` only runs each scenario at a tiny size so the
harness keeps working. See ``bench/README.md``.
"""
