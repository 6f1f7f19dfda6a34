"""Optional dependencies: imported where they are used, with a one-line message naming the extra that installs
them (`pip install "moleblend-hf[plots]"`), never an ImportError traceback from deep inside a job."""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "moleblend-hf"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """`module`, imported; if it is missing, a MissingExtraError naming `extra` and what needed it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f'{purpose} needs {module.split(".")[0]}, which is not installed: pip install "{DISTRIBUTION}[{extra}]"'
        ) from None
