"""Logging of the `moleblend` command (the library itself only logs into `logging.getLogger("moleblend_hf...")`
and adds no handler but a `NullHandler`, so that an application decides what is shown).

`--log-level` sets the level of our loggers and gives them one handler that writes short lines to stderr.
transformers and datasets follow the level too, except at `info`: their info messages are a page per model or
dataset load, so at our default they stay at `warning`, their own default (`debug` shows them).
"""

from __future__ import annotations

import logging
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
PACKAGE_LOGGER = "moleblend_hf"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is at each message (pytest and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it; the current sys.stderr is always used
        pass


def configure_logging(level: str) -> None:
    """Show our messages of `level` and above on stderr and set transformers' and datasets' verbosity; calling it
    again changes the level (one handler, never a second)."""
    import datasets.utils.logging
    import transformers.utils.logging

    number = LEVELS[level]
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(number)
    if not any(isinstance(handler, StderrHandler) for handler in package.handlers):
        package.addHandler(StderrHandler())
    libraries = logging.WARNING if number == logging.INFO else number
    transformers.utils.logging.set_verbosity(libraries)
    datasets.utils.logging.set_verbosity(libraries)


def reset_logging() -> None:
    """Undo `configure_logging` (tests run many commands in one process): our loggers without level or handler,
    transformers and datasets at their default, warning."""
    import datasets.utils.logging
    import transformers.utils.logging

    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(logging.NOTSET)
    for handler in [h for h in package.handlers if isinstance(h, StderrHandler)]:
        package.removeHandler(handler)
    transformers.utils.logging.set_verbosity(logging.WARNING)
    datasets.utils.logging.set_verbosity(logging.WARNING)
