"""The arguments of `moleblend finetune`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import (OUTPUT_ALIASES, SET_HELP, FinetuneTask, Modality, Preset, SplitMethod, _fraction,
                     _non_negative, _overrides, _positive, option)

@dataclass
class FinetuneArguments:
    """Every option of `moleblend finetune` (see `training/finetune.py`)."""

    data: str = option(None, ".csv, .parquet, .sdf or .sdf.gz of molecules and labels", positional=True)
    label_columns: list[str] = option([], "the label columns (one task each; words become class names)",
                                      required=True)
    output_dir: str = option("outputs/finetune", "run directory: the model, processor and card at its root, "
                             "metrics.json, split.json, test_predictions.csv, skipped_rows.csv beside them",
                             aliases=OUTPUT_ALIASES)
    overwrite: bool = option(False, "replace the run in a non-empty --output-dir")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    task: FinetuneTask = option("auto", "auto: 0/1 or two class names -> classification (one task per column), "
                                        "more class names -> multiclass, numbers -> regression")
    split: SplitMethod = option("scaffold", "how rows are split into train / valid / test")
    split_column: str | None = option(None, "with --split column: a column of train/valid/test")
    split_file: str | None = option(None, 'with --split file: JSON {"train": [rows], "valid": [...], "test": [...]}')
    seed: int = option(0, "seed of the split, the new head and training")
    seeds: list[int] = option([], "train one model per seed into <output-dir>/seed-<s>/ and write an ensemble "
                                  "that `moleblend predict` and the pipeline load as one directory")
    kfold: int | None = option(None, "train K models, each validated on another fold of the train+valid rows "
                                     "(test kept fixed); an ensemble like --seeds")
    model: str | None = option(None, "pretrained directory, Hub id or shipped checkpoint name (default: a fresh "
                                     "--preset model)")
    preset: Preset = option("tiny", "model size without --model")
    config_overrides: dict[str, Any] = option({}, SET_HELP, aliases=["--set"])
    modality: Modality = option("2d", "relations used: 2d (the released recipe), 3d, or both (conformers generated)")
    # defaults chosen on validation splits from the shipped checkpoint (README, "Fine-tuning defaults")
    epochs: int = option(8, "training epochs")
    batch_size: int = option(32, "molecules per batch")
    learning_rate: float = option(5e-4, "peak learning rate of the new head")
    encoder_learning_rate_ratio: float = option(1.0, "the encoder trains at learning rate x this",
                                                aliases=["--encoder-lr-ratio"])
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.06, "warmup, as a fraction of all steps")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    group_by_size: bool = option(False, "training batches of molecules of similar atom counts (transformers' "
                                        "LengthGroupedSampler: less padding, a different batch order from the "
                                        "default shuffle); evaluation keeps the input order")
    patience: int = option(4, "early stopping, in epochs without a better validation metric")
    max_steps: int = option(-1, "stop after this many steps (-1: --epochs decide)")
    cache_dir: str | None = option(None, "cache featurized molecules (and conformers) here")
    num_workers: int = option(0, "DataLoader workers")
    push_to_hub: str | None = option(None, "upload the model to this Hub repo", metavar="REPO_ID")
    report_to: list[str] = option([], "Trainer integrations to log to", choices=["tensorboard", "none"])

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("give the data file (a .csv, .parquet, .sdf or .sdf.gz)")
        if not self.label_columns:
            raise ValueError("give --label-columns")
        self.config_overrides = _overrides(self.config_overrides)
        self.report_to = [r for r in self.report_to if r != "none"]
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
        _positive(self, "epochs", "batch_size", "learning_rate", "encoder_learning_rate_ratio",
                  "gradient_accumulation_steps", "patience")
        _non_negative(self, "weight_decay", "num_workers")
        _fraction(self, "warmup_ratio")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"--max-steps must be positive (or -1: epochs decide), got {self.max_steps}")
