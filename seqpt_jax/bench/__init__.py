"""Benchmarks that print figures (`seqpt bench ...`); never timed assertions in tests."""
