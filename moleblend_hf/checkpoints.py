"""Kept for one release: moved to `moleblend_hf.publishing.checkpoints` and `moleblend_hf.inference.pipeline`."""

from .inference.pipeline import pipeline  # noqa: F401
from .publishing.checkpoints import *  # noqa: F401,F403
