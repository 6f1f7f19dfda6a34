"""Kept for one release: moved to `moleblend_hf.publishing.push`."""

from ..publishing.push import *  # noqa: F401,F403
