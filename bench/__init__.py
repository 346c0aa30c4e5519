"""Benchmarks: each prints a markdown table for docs/benchmarks.md."""
