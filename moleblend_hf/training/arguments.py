"""Kept for one release: moved to `moleblend_hf.arguments`."""

from ..arguments import *  # noqa: F401,F403
