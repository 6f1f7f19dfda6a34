"""The arguments of `moleblend pretrain`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from ..sources.remote import HUB_PREFIX, HubSource
from .common import (
    BUNDLED_QM9,
    OUTPUT_ALIASES,
    SET_HELP,
    Conformers,
    JobArguments,
    Preset,
    _fraction,
    _non_negative,
    _overrides,
    _positive,
    accelerate_trackers,
    check_report_to,
    option,
)


@dataclass
class PretrainArguments(JobArguments):
    """Every option of `moleblend pretrain` (see `training/pretrain.py`)."""

    inputs: list[str] = option(
        [],
        "files, globs or `datasets` directories: .smi, .csv, .parquet, .sdf, .sdf.gz; "
        "http(s) URLs of such files and hf://datasets/ORG/NAME[@REVISION][/PATH] Hub "
        "datasets (streamed) (default: the bundled QM9 subset)",
        positional=True,
        nargs="*",
    )
    dataset: str | None = option(
        None,
        "a Hub dataset to stream, ORG/NAME[@REVISION] (the same as the input "
        "hf://datasets/ORG/NAME[@REVISION][?config=C&split=S])",
        metavar="ORG/NAME",
    )
    dataset_config: str | None = option(None, "with --dataset: its configuration (the card's `configs`)")
    dataset_split: str = option("train", "with --dataset: its split")
    output_dir: str = option(
        "outputs/pretrain",
        "run directory: the final model, processor and card at its root, checkpoint-N/ beside them",
        aliases=OUTPUT_ALIASES,
    )
    overwrite: bool = option(
        False,
        "start a new run in a non-empty --output-dir, removing the previous run's "
        "files (checkpoints, logs, model) first",
    )
    resume: str | None = option(
        None,
        "continue from the latest checkpoint of --output-dir (or the given checkpoint directory)",
        nargs="?",
        const="latest",
    )
    allow_changed_settings: bool = option(
        False,
        "with --resume: accept settings that differ from the run's "
        "(learning rate, schedule, ...); they apply from the resumed step",
    )
    preset: Preset = option("tiny", "model size")
    config_overrides: dict[str, Any] = option({}, SET_HELP, aliases=["--set"])
    init_from: str | None = option(
        None, "start from a saved MoleBlendForPreTraining / MoleBlendModel directory or a shipped checkpoint's name"
    )
    max_steps: int = option(300, "optimizer steps")
    batch_size: int | None = option(32, "molecules per batch and process")
    max_tokens: int | None = option(None, "instead of --batch-size: a budget of (atoms+1)^2 x molecules per batch")
    window_size: int = option(1024, "molecules grouped by atom count before batching")
    shuffle_buffer: int = option(
        10_000, "molecules per seeded shuffle block (rows are shuffled within consecutive blocks)"
    )
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    learning_rate: float = option(5e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay (not on biases, norms, embeddings)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    warmup_steps: int = option(30, "linear warmup steps, then cosine decay")
    min_learning_rate_ratio: float = option(
        0.0, "the cosine decay ends at learning rate x this", aliases=["--min-lr-ratio"]
    )
    max_grad_norm: float = option(1.0, "gradient clipping (0: none)")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "autocast dtype")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)")
    seed: int = option(0, "seed of the data order, noise and blend masks")
    num_workers: int = option(0, "DataLoader workers (featurization and conformer generation happen there)")
    conformers: Conformers = option("given", "conformer policy of the processor")
    smiles_column: str | None = option(None, "column of SMILES in tabular inputs (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks in tabular inputs")
    exclude: list[str] = option(
        [],
        "never train on these molecules (canonical SMILES match), e.g. the test sets "
        "of `moleblend benchmark --export-test-molecules`",
        metavar="FILE",
    )
    eval_inputs: list[str] = option(
        [],
        "held-out molecules (keep them out of training with --exclude); their pretraining losses go to eval_log.jsonl",
        metavar="FILE",
    )
    eval_steps: int = option(0, "evaluate every N steps (0: at the end only)")
    eval_max_molecules: int = option(2000, "held-out molecules evaluated")
    save_steps: int = option(100, "checkpoint every N steps")
    save_total_limit: int = option(2, "checkpoints kept (this run's, oldest removed first)")
    logging_steps: int = option(10, "log means every N steps")
    report_to: list[str] = option(
        ["jsonl"],
        "trackers to log to besides train_log.jsonl (always written): any of "
        "Accelerate's (tensorboard, wandb, mlflow, trackio, comet_ml, aim, "
        "clearml, dvclive, swanlab) that is installed, all, or none",
    )
    stop_after_steps: int | None = option(
        None, "end this invocation after N more steps (checkpointed; continue later with --resume)"
    )
    log_molecule_ids: bool = option(False, "write the id of every molecule trained on, in order, per rank")
    push_to_hub: str | None = option(None, "upload the final model to this Hub repo", metavar="REPO_ID")
    progress: bool = option(True, "show a progress bar")
    cpu: bool = option(False, "force the CPU even when a GPU is present")

    def __post_init__(self) -> None:
        if self.dataset:
            source = HubSource.parse(HUB_PREFIX + self.dataset)
            self.inputs = [*self.inputs, str(replace(source, config=self.dataset_config, split=self.dataset_split))]
        elif self.dataset_config or self.dataset_split != "train":
            raise ValueError("--dataset-config and --dataset-split choose a configuration and split of --dataset")
        if not self.inputs:
            self.inputs = [str(BUNDLED_QM9)]
        self.config_overrides = _overrides(self.config_overrides)
        self.report_to = check_report_to(self.report_to, *accelerate_trackers(), always=("jsonl",))
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --output-dir, --overwrite replaces it: give one")
        if self.max_tokens is not None:
            self.batch_size = None
        _positive(
            self,
            "max_steps",
            "max_tokens",
            "window_size",
            "shuffle_buffer",
            "gradient_accumulation_steps",
            "learning_rate",
            "save_steps",
            "save_total_limit",
            "logging_steps",
            "stop_after_steps",
            "eval_max_molecules",
        )
        if self.batch_size is None and self.max_tokens is None:
            raise ValueError("give --batch-size or --max-tokens")
        _positive(self, "batch_size")
        _non_negative(self, "weight_decay", "warmup_steps", "max_grad_norm", "num_workers", "eval_steps", "adam_eps")
        _fraction(self, "min_learning_rate_ratio", "adam_beta1", "adam_beta2")
