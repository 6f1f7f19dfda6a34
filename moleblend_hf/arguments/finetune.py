"""The arguments of `moleblend finetune`."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    MOLECULE_FEATURE_SETS,
    OUTPUT_ALIASES,
    REPORT_TO_HELP,
    SET_HELP,
    FinetuneTask,
    JobArguments,
    Modality,
    Pooling,
    Preset,
    SplitMethod,
    _fraction,
    _non_negative,
    _overrides,
    _positive,
    check_report_to,
    option,
    trainer_integrations,
)

#: every metric `finetune --metric` may name (which ones apply depends on the problem type: training/metrics.py)
METRIC_CHOICES = ("accuracy", "loss", "mae", "pr_auc", "r2", "rmse", "roc_auc")
#: `finetune --search-trials`: what is searched, and how (`--search-space` overrides entries)
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "encoder_learning_rate_ratio": {"low": 0.05, "high": 1.0, "log": True},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "dropout": {"low": 0.0, "high": 0.3},
    "batch_size": {"choices": [16, 32, 64]},
}


@dataclass
class FinetuneArguments(JobArguments):
    """Every option of `moleblend finetune` (see `training/finetune.py`)."""

    data: str = option(
        None,
        ".csv, .parquet, .sdf or .sdf.gz of molecules and labels: a file, an http(s) URL or a "
        "Hub dataset, hf://datasets/ORG/NAME[@REVISION][/PATH] (its revision recorded)",
        positional=True,
    )
    label_columns: list[str] = option([], "the label columns (one task each; words become class names)", required=True)
    output_dir: str = option(
        "outputs/finetune",
        "run directory: the model, processor and card at its root, "
        "metrics.json, split.json, test_predictions.csv, skipped_rows.csv beside them",
        aliases=OUTPUT_ALIASES,
    )
    overwrite: bool = option(False, "replace the run in a non-empty --output-dir")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    task: FinetuneTask = option(
        "auto",
        "auto: 0/1 or two class names -> classification (one task per column), "
        "more class names -> multiclass, numbers -> regression",
    )
    split: SplitMethod = option("scaffold", "how rows are split into train / valid / test")
    split_column: str | None = option(None, "with --split column: a column of train/valid/test")
    split_file: str | None = option(None, 'with --split file: JSON {"train": [rows], "valid": [...], "test": [...]}')
    split_sizes: list[float] | None = option(
        None,
        "train, valid and test fractions of a scaffold, balanced_scaffold or random split (default: 0.8 0.1 0.1)",
        metavar="FRACTION",
    )
    metric: str | None = option(
        None,
        "the validation metric that selects the checkpoint and stops early (default: "
        "roc_auc for classification, rmse for regression); any metric reported for "
        "the task",
        choices=METRIC_CHOICES,
    )
    seed: int = option(0, "seed of the split, the new head and training")
    seeds: list[int] = option(
        [],
        "train one model per seed into <output-dir>/seed-<s>/ and write an ensemble "
        "that `moleblend predict` and the pipeline load as one directory",
    )
    kfold: int | None = option(
        None,
        "train K models, each validated on another fold of the train+valid rows "
        "(test kept fixed); an ensemble like --seeds",
    )
    model: str | None = option(
        None, "pretrained directory, Hub id or shipped checkpoint name (default: a fresh --preset model)"
    )
    preset: Preset = option("tiny", "model size without --model")
    config_overrides: dict[str, Any] = option({}, SET_HELP, aliases=["--set"])
    modality: Modality = option("2d", "relations used: 2d (the released recipe), 3d, or both (conformers generated)")
    # defaults chosen on validation splits from the shipped checkpoint (README, "Fine-tuning defaults")
    epochs: int = option(20, "training epochs")
    batch_size: int = option(32, "molecules per batch")
    learning_rate: float = option(5e-4, "peak learning rate of the new head")
    encoder_learning_rate_ratio: float = option(
        1.0, "the encoder trains at learning rate x this", aliases=["--encoder-lr-ratio"]
    )
    layerwise_lr_decay: float = option(
        1.0,
        "each encoder layer below the top trains at this x the learning rate "
        "of the layer above (embeddings below the first layer); 1: off",
    )
    pooling: Pooling = option(
        "graph_mean", "what the head reads: the graph token, the mean of the atom states, or both concatenated"
    )
    head_layers: int = option(1, "hidden layers of the property head")
    freeze_encoder_epochs: int = option(
        2,
        "with a pretrained --model: train only the head for the first N epochs, then the whole model (linear "
        "probing, then fine-tuning: the head starts from a fit to the pretrained features; N >= --epochs: a "
        "linear probe; 0: off); a model from scratch trains whole from the start",
    )
    ema_decay: float = option(
        0.0,
        "evaluate, keep and save an exponential moving average of the weights with this decay (e.g. 0.99; the "
        "best epoch is chosen on the average's validation metric); 0: off",
    )
    molecule_features: list[str] = option(
        [],
        "molecule-level descriptors concatenated with the embedding in the "
        "head (standardised with training-row statistics, stored with the "
        "model): rdkit2d (RDKit 2D descriptors), morgan_count (Morgan counts, "
        "radius 2, 2048)",
        choices=list(MOLECULE_FEATURE_SETS),
    )
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(
        1.0, "gradient clipping: the gradient's norm is scaled down to at most this before each step (0: off)"
    )
    warmup_ratio: float = option(0.06, "warmup, as a fraction of all steps")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    group_by_size: bool = option(
        False,
        "training batches of molecules of similar atom counts (transformers' "
        "LengthGroupedSampler: less padding, a different batch order from the "
        "default shuffle); evaluation keeps the input order",
    )
    patience: int = option(8, "early stopping, in epochs without a better validation metric")
    max_steps: int = option(-1, "stop after this many steps (-1: --epochs decide)")
    cache_dir: str | None = option(None, "cache featurized molecules (and conformers) here")
    num_workers: int = option(0, "DataLoader workers")
    push_to_hub: str | None = option(None, "upload the model to this Hub repo", metavar="REPO_ID")
    report_to: list[str] = option(["none"], REPORT_TO_HELP)
    search_trials: int = option(
        0,
        "first search hyperparameters with this many optuna trials on the validation "
        "split (Trainer.hyperparameter_search; needs the [search] extra), then train "
        "with the best",
    )
    search_space: dict[str, Any] | str | None = option(
        None,
        "with --search-trials: JSON (text or a .json file) "
        "replacing entries of the search space, e.g. "
        '\'{"batch_size": {"choices": [8, 16]}, '
        '"dropout": {"value": 0.1}}\'',
        metavar="JSON",
    )
    conformal_alpha: float | None = option(
        None,
        "split-conformal prediction intervals (regression) with coverage "
        ">= 1 - ALPHA, fitted on the validation split: lower_/upper_ "
        "columns in test_predictions.csv and `moleblend predict`",
        metavar="ALPHA",
    )

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("give the data file (a .csv, .parquet, .sdf or .sdf.gz)")
        if not self.label_columns:
            raise ValueError("give --label-columns")
        self.config_overrides = _overrides(self.config_overrides)
        self.report_to = check_report_to(self.report_to, *trainer_integrations())
        if self.split == "file" and not self.split_file:
            raise ValueError("--split file needs --split-file")
        if self.split == "column" and not self.split_column:
            raise ValueError("--split column needs --split-column")
        if self.split_file and self.split != "file":
            raise ValueError("--split-file is read only with --split file")
        if self.split_column and self.split != "column":
            raise ValueError("--split-column is read only with --split column")
        if self.seeds and self.kfold:
            raise ValueError("--seeds and --kfold both make an ensemble: give one")
        if self.kfold is not None and self.kfold < 2:
            raise ValueError(f"--kfold needs at least 2 folds, got {self.kfold}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds repeats a seed: {self.seeds}")
        _positive(
            self,
            "epochs",
            "batch_size",
            "learning_rate",
            "encoder_learning_rate_ratio",
            "gradient_accumulation_steps",
            "patience",
            "head_layers",
            "layerwise_lr_decay",
        )
        if len(set(self.molecule_features)) != len(self.molecule_features):
            raise ValueError(f"--molecule-features repeats a name: {self.molecule_features}")
        _non_negative(self, "weight_decay", "max_grad_norm", "num_workers", "freeze_encoder_epochs")
        _fraction(self, "warmup_ratio")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be positive (or -1: epochs decide), got {self.max_steps}")
        self._check_split_sizes()
        self._check_search()
        if self.conformal_alpha is not None:
            if not 0 < self.conformal_alpha < 1:
                raise ValueError(f"--conformal-alpha must be between 0 and 1, got {self.conformal_alpha}")
            if self.kfold:
                raise ValueError(
                    "--conformal-alpha needs a validation split shared by all members: use --seeds, not --kfold"
                )

    def _check_split_sizes(self) -> None:
        if self.split_sizes is None:
            return
        sizes = [float(v) for v in self.split_sizes]
        if self.split not in ("scaffold", "balanced_scaffold", "random"):
            raise ValueError(
                f"--split-sizes applies to scaffold, balanced_scaffold and random splits, not --split {self.split}"
            )
        if len(sizes) != 3 or min(sizes) < 0 or abs(sum(sizes) - 1) > 1e-6 or not (sizes[0] > 0 and sizes[1] > 0):
            raise ValueError(
                f"--split-sizes takes three fractions (train valid test), train and valid > 0, test "
                f">= 0, summing to 1; got {' '.join(map(str, self.split_sizes))}"
            )
        self.split_sizes = sizes

    def _check_search(self) -> None:
        _non_negative(self, "search_trials")
        if self.search_space is not None and not self.search_trials:
            raise ValueError("--search-space is read only with --search-trials")
        if not self.search_trials:
            return
        if importlib.util.find_spec("optuna") is None:
            raise ValueError("--search-trials needs optuna: pip install 'moleblend-hf[search]'")
        if self.seeds or self.kfold:
            raise ValueError(
                "--search-trials searches for one model: run it without --seeds / --kfold, then "
                "train the ensemble with the settings in search_best.json"
            )
        self.search_space = search_space(self.search_space)


def search_space(given: dict[str, Any] | str | None) -> dict[str, dict[str, Any]]:
    """SEARCH_SPACE with the entries of `given` (a dict, JSON text or the path of a JSON file) replacing its own:
    {"low": L, "high": H[, "log": true]} a float range, {"choices": [...]} a list, {"value": V} fixed."""
    if isinstance(given, str):
        text = Path(given).read_text() if given.endswith(".json") and Path(given).is_file() else given
        try:
            given = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--search-space is not JSON ({error.msg}): {given[:80]!r}") from None
    space = {name: dict(spec) for name, spec in SEARCH_SPACE.items()}
    for name, spec in (given or {}).items():
        valid = isinstance(spec, dict) and (
            set(spec) == {"value"}
            or set(spec) == {"choices"}
            and spec["choices"]
            or {"low", "high"} <= set(spec) <= {"low", "high", "log"}
            and spec["low"] <= spec["high"]
        )
        if name not in SEARCH_SPACE or not valid:
            raise ValueError(
                f"--search-space: {name!r}: {spec!r} is not one of {{'low': L, 'high': H[, 'log': "
                f"true]}}, {{'choices': [...]}}, {{'value': V}} for a parameter among "
                f"{', '.join(SEARCH_SPACE)}"
            )
        space[name] = spec
    return space
