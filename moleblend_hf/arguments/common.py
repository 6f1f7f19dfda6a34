"""What every job's arguments share: `option()`, the value checks, the `Literal` choices and shared help.

The arguments modules import neither torch nor the model, so `moleblend ... --help` answers at once. Field metadata:
`help`; `aliases` (extra flags, e.g. `--output` for `--output-dir`); `positional` (a positional argument, with
`nargs`). Values are checked in `__post_init__` (`ValueError` with a one-line message), so a bad value is refused
before any work, from the command line and from Python alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: the size presets of `MoleBlendConfig.from_preset` (tests check that the two lists agree)
Preset = Literal["tiny", "mini", "small", "base"]
Conformers = Literal["given", "generate", "none"]
Modality = Literal["2d", "3d", "both"]
Pooling = Literal["graph", "mean", "graph_mean"]
#: the molecule feature sets of `processing.molecule_features` (tests check that the two lists agree)
MOLECULE_FEATURE_SETS = ("rdkit2d", "morgan_count")
FinetuneTask = Literal["auto", "regression", "classification", "multiclass"]
SplitMethod = Literal["scaffold", "balanced_scaffold", "random", "column", "file"]
BUNDLED_QM9 = Path(__file__).resolve().parent.parent / "data" / "qm9_small.parquet"


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


LogLevel = Literal["debug", "info", "warning", "error"]
#: what --report-to takes beyond the integrations' names
NO_REPORTING, ALL_REPORTING = "none", "all"


@dataclass
class JobArguments:
    """What every job's arguments share (each job's dataclass extends it)."""

    log_level: LogLevel = option(
        "info",
        "messages shown on stderr (the `moleblend` command; the library adds no "
        "handler): debug, info, warning or error; transformers and datasets "
        "show theirs from warning on, or from debug with debug",
    )


def check_report_to(
    names: list[str], known: list[str], installed: list[str], always: tuple[str, ...] = ()
) -> list[str]:
    """--report-to as the job passes it on: `none` -> [], `all` kept (every installed integration); an unknown or
    uninstalled integration is refused with a one-line message listing the choices. `always`: names accepted for
    compatibility that need nothing installed (pretrain's `jsonl`, whose log is always written)."""
    names = list(names)
    for name in names:
        if name in (NO_REPORTING, ALL_REPORTING, *always) or name in installed:
            continue
        if name in known:
            install = 'pip install "moleblend-hf[tracking]"' if name == "tensorboard" else f"install {name}"
            raise ValueError(
                f"--report-to {name}: its package is not installed ({install}); installed "
                f"integrations: {', '.join(installed) or 'none'}"
            )
        raise ValueError(
            f"--report-to: unknown integration {name!r}; choose from "
            f"{', '.join([ALL_REPORTING, NO_REPORTING, *always, *sorted(known)])}"
        )
    return [] if NO_REPORTING in names else names


REPORT_TO_HELP = (
    "Trainer integrations to log to: any that the installed transformers knows and finds installed "
    "(tensorboard, wandb, mlflow, trackio, comet_ml, ...), all, or none"
)


def trainer_integrations() -> tuple[list[str], list[str]]:
    """(known, installed) integrations of the installed transformers' Trainer (imports transformers' integrations,
    and so torch: called when a job's arguments are checked, never for --help)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    return sorted(INTEGRATION_TO_CALLBACK), get_available_reporting_integrations()


def accelerate_trackers() -> tuple[list[str], list[str]]:
    """(known, installed) trackers of the installed Accelerate (what `pretrain` logs through)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    return sorted(str(getattr(k, "value", k)) for k in LOGGER_TYPE_TO_CLASS), [
        str(getattr(t, "value", t)) for t in get_available_trackers()
    ]
