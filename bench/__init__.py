"""Benchmarks and the fault kit: scripts measuring headstart against a baseline in the same run (see bench/README.md when it exists).

A package only so that the tests import ``bench.faultkit`` without touching ``sys.path``.
"""
