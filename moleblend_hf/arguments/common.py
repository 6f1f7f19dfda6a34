"""What every job's arguments share: `option()`, the value checks, the `Literal` choices and shared help.

The arguments modules import neither torch nor the model, so `moleblend ... --help` answers at once. Field metadata:
`help`; `aliases` (extra flags, e.g. `--output` for `--output-dir`); `positional` (a positional argument, with
`nargs`). Values are checked in `__post_init__` (`ValueError` with a one-line message), so a bad value is refused
before any work, from the command line and from Python alike.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Any, Literal

#: the size presets of `MoleBlendConfig.from_preset` (tests check that the two lists agree)
Preset = Literal["tiny", "mini", "small", "base"]
Conformers = Literal["given", "generate", "none"]
Modality = Literal["2d", "3d", "both"]
FinetuneTask = Literal["auto", "regression", "classification", "multiclass"]
SplitMethod = Literal["scaffold", "balanced_scaffold", "random", "column", "file"]
BUNDLED_QM9 = Path(__file__).resolve().parent.parent / "data" / "qm9_small.parquet"
REPORTERS = ("jsonl", "tensorboard", "none")


def option(default: Any = None, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with CLI metadata; a list default becomes a default_factory."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def _positive(owner: object, *names: str, allow_none: bool = True) -> None:
    for name in names:
        value = getattr(owner, name)
        if value is None and allow_none:
            continue
        if value is None or value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


def _non_negative(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


def _fraction(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")


def _overrides(value: Any) -> dict[str, Any]:
    """`--set` gives (field, value) pairs; Python callers give a dict."""
    if isinstance(value, (dict, list, tuple)):
        return dict(value)
    raise ValueError(f"config overrides must be a dict of MoleBlendConfig fields, got {type(value).__name__}")


OUTPUT_ALIASES = ["--output"]  # the flag before --output-dir, kept working
SET_HELP = "override a MoleBlendConfig field, FIELD=VALUE (VALUE read as JSON when it is JSON); repeatable"
