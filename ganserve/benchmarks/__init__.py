"""Benchmarks behind `ganserve bench`."""
