"""Kept for one release: moved to `moleblend_hf.sources.files`."""

from ..sources.files import *  # noqa: F401,F403
