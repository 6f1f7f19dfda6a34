"""Checkpoints shipped inside the package, addressable by a short name.

`resolve_model("moleblend-mini-qm9-moses")` gives the directory of the bundled pretrained checkpoint; any other
string (a local directory or a Hub repo id) is returned unchanged, so every `--model` / `model=` argument takes
both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = Path(__file__).resolve().parent / "shipped"

#: short name -> directory inside the package (a save_pretrained directory with processor and model card)
SHIPPED = {
    "moleblend-mini-qm9-moses": CHECKPOINT_DIR / "moleblend-mini-qm9-moses",
}
#: the checkpoint the README recommends starting from
DEFAULT_PRETRAINED = "moleblend-mini-qm9-moses"
#: the manifest of an ensemble directory (`moleblend finetune --seeds` / `--kfold`): its member directories
ENSEMBLE_FILE = "ensemble.json"
#: the calibration of a single fine-tuned model (`moleblend finetune --conformal-alpha`); an ensemble keeps its own
#: in ENSEMBLE_FILE under "calibration"
CALIBRATION_FILE = "calibration.json"


def resolve_model(name_or_path: str | Path | None) -> str | None:
    """The directory of a shipped checkpoint for its short name; anything else unchanged (None stays None)."""
    if name_or_path is None:
        return None
    shipped = SHIPPED.get(str(name_or_path))
    if shipped is None:
        return str(name_or_path)
    if not (shipped / "config.json").exists():
        raise FileNotFoundError(
            f"the shipped checkpoint {name_or_path!r} is missing from {shipped}; reinstall moleblend-hf"
        )
    return str(shipped)


def calibration_of(directory: str | Path) -> dict | None:
    """The calibration fitted by `moleblend finetune` for a model or ensemble directory (see
    inference/calibration.py), or None."""
    directory = Path(directory)
    if (directory / ENSEMBLE_FILE).exists():
        return json.loads((directory / ENSEMBLE_FILE).read_text()).get("calibration")
    if (directory / CALIBRATION_FILE).exists():
        return json.loads((directory / CALIBRATION_FILE).read_text())
    return None


def ensemble_members(directory: str | Path) -> list[str]:
    """The member model directories of an ensemble directory; a plain model directory is its own one member."""
    directory = Path(directory)
    manifest = directory / ENSEMBLE_FILE
    if not manifest.exists():
        return [str(directory)]
    return [str(directory / name) for name in json.loads(manifest.read_text())["members"]]


def check_model_source(name_or_path: str | Path) -> str:
    """What `from_pretrained` will read for a `--model` argument (a shipped short name, a local directory or a Hub
    repo id), checked first where it is local: a one-line error for what `from_pretrained` would answer with a
    long traceback (a missing path, a run directory whose job never wrote a model, pickled weights only)."""
    source = resolve_model(name_or_path)
    path = Path(source).expanduser()
    kinds = f"a model directory (save_pretrained), a shipped checkpoint ({', '.join(SHIPPED)}) or a Hub repo id"
    if path.is_file():
        raise NotADirectoryError(f"--model {name_or_path} is a file; it takes {kinds}")
    if not path.is_dir():
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(source)
        except HFValidationError:
            raise FileNotFoundError(f"--model {name_or_path}: no such directory; it takes {kinds}") from None
        return source  # a Hub repo id: `load_model` names it if it cannot be loaded
    if (path / ENSEMBLE_FILE).exists():
        return source
    if not (path / "config.json").is_file():
        finished = sorted(
            (c for c in path.glob("checkpoint-*") if (c / "config.json").is_file()),
            key=lambda c: int(c.name.rpartition("-")[2]) if c.name.rpartition("-")[2].isdigit() else -1,
        )
        if finished or (path / "run.json").exists() or (path / "_run.json").exists():
            raise FileNotFoundError(
                f"--model {name_or_path}: a run directory without a final model (no config.json at its root): its "
                "job did not finish"
                + (f"; its last saved checkpoint is {finished[-1]}" if finished else "")
                + ". Rerun the job, or pass a finished model"
            )
        raise FileNotFoundError(f"--model {name_or_path} holds no config.json: not a saved model; it takes {kinds}")
    try:
        json.loads((path / "config.json").read_text())
    except ValueError as error:
        raise ValueError(f"{path / 'config.json'} is not valid JSON ({error})") from None
    if saved_weight_names(path) is None:
        pickled = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in path.glob(pattern))
        if pickled:
            raise ValueError(
                f"--model {name_or_path}: no safetensors weights; pickled weights are never loaded "
                f"({', '.join(pickled)}): save the model with save_pretrained (safetensors) where you "
                "trust the file"
            )
        raise FileNotFoundError(f"--model {name_or_path}: no model weights (model.safetensors)")
    return source


def load_model(model_class: Any, name_or_path: str | Path, **kwargs: Any) -> Any:
    """`model_class.from_pretrained` for a `--model` argument, safetensors only, checked by `check_model_source`;
    a Hub model that cannot be loaded is one line naming it and the reason."""
    source = check_model_source(name_or_path)
    try:
        return model_class.from_pretrained(source, use_safetensors=True, **kwargs)
    except OSError as error:
        raise FileNotFoundError(
            f"--model {name_or_path}: not a local directory or a shipped checkpoint "
            f"({', '.join(SHIPPED)}), and it could not be loaded from the Hub: "
            f"{_first_line(error)}"
        ) from None


def load_processor(processor_class: Any, source: str | Path, config: Any) -> Any:
    """The processor saved with a model (`preprocessor_config.json`), or the one its config implies; a saved one
    that cannot be read is one line naming the file."""
    saved = Path(source) / "preprocessor_config.json"
    if not saved.exists():
        return processor_class.from_config(config)
    try:
        return processor_class.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{saved}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def saved_weight_names(directory: str | Path) -> set[str] | None:
    """The names of the safetensors weights saved in a local model directory (single file or sharded); None when
    it is not a local directory with safetensors weights. Read from the files' headers only."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    if not (directory / "model.safetensors").is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "np") as handle:
        return set(handle.keys())
