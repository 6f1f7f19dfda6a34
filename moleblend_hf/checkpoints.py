"""Kept for one release: moved to `moleblend_hf.publishing.checkpoints`."""

from .publishing.checkpoints import *  # noqa: F401,F403
