"""Benchmarks: ratios against a floor measured in the same process (not part of the tests)."""
