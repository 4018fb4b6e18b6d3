"""Benchmarks run by ``unrolled bench``: measured in one process, interleaved, written to JSON."""
