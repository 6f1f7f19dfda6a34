"""Kept for one release: moved to `moleblend_hf.inference.pipelines`."""

from .inference.pipelines import *  # noqa: F401,F403
