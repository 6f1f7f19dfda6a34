"""Kept for one release: moved to `moleblend_hf.publishing.card` and `moleblend_hf.publishing.push`."""

from ..publishing.card import *  # noqa: F401,F403
from ..publishing.push import *  # noqa: F401,F403
