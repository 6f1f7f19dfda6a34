"""Kept for one release: moved to `moleblend_hf.publishing.conversion`."""

from .publishing.conversion import *  # noqa: F401,F403
