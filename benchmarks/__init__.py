"""Measured comparisons (``make bench`` = ``python -m benchmarks.run``); see README.md."""
