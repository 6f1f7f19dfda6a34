"""Kept for one release: moved to `moleblend_hf.inference.embed`."""

from ..inference.embed import *  # noqa: F401,F403
