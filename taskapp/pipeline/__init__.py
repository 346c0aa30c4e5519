"""Carrying a run through: intake, orchestration, batching, calls, recovery."""
