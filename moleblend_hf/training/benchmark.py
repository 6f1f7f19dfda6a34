"""Kept for one release: moved to `moleblend_hf.training.benchmark_tables`."""

from .benchmark_tables import *  # noqa: F401,F403
