"""Kept for one release: moved to `moleblend_hf.inference.predict`."""

from ..inference.predict import *  # noqa: F401,F403
