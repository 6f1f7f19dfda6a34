"""The arguments of every job, one dataclass each: the single source of the `moleblend` flags, their defaults,
help and choices (parsed by `transformers.HfArgumentParser`, see `moleblend_hf/cli/`), and of the Python API
(`pretrain(PretrainArguments(...))`).

This module imports neither torch nor the model, so `moleblend ... --help` answers at once. Field metadata:
`help`; `aliases` (extra flags, e.g. `--output` for `--output-dir`); `positional` (a positional argument, with
`nargs`). Values are checked in `__post_init__` (`ValueError` with a one-line message), so a bad value is refused
before any work, from the command line and from Python alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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


@dataclass
class PretrainArguments:
    """Every option of `moleblend pretrain` (see `training/pretrain.py`)."""

    inputs: list[str] = option([], "files, globs or `datasets` directories: .smi, .csv, .parquet, .sdf, .sdf.gz; "
                                   "http(s) URLs of such files and hf://datasets/ORG/NAME[@REVISION][/PATH] Hub "
                                   "datasets (streamed) (default: the bundled QM9 subset)", positional=True,
                                   nargs="*")
    dataset: str | None = option(None, "a Hub dataset to stream, ORG/NAME[@REVISION] (the same as the input "
                                       "hf://datasets/ORG/NAME[@REVISION][?config=C&split=S])", metavar="ORG/NAME")
    dataset_config: str | None = option(None, "with --dataset: its configuration (the card's `configs`)")
    dataset_split: str = option("train", "with --dataset: its split")
    output_dir: str = option("outputs/pretrain", "run directory: the final model, processor and card at its root, "
                             "checkpoint-N/ beside them", aliases=OUTPUT_ALIASES)
    overwrite: bool = option(False, "start a new run in a non-empty --output-dir, removing the previous run's "
                                    "files (checkpoints, logs, model) first")
    resume: str | None = option(None, "continue from the latest checkpoint of --output-dir (or the given "
                                      "checkpoint directory)", nargs="?", const="latest")
    allow_changed_settings: bool = option(False, "with --resume: accept settings that differ from the run's "
                                                 "(learning rate, schedule, ...); they apply from the resumed step")
    preset: Preset = option("tiny", "model size")
    config_overrides: dict[str, Any] = option({}, SET_HELP, aliases=["--set"])
    init_from: str | None = option(None, "start from a saved MoleBlendForPreTraining / MoleBlendModel directory "
                                         "or a shipped checkpoint's name")
    max_steps: int = option(300, "optimizer steps")
    batch_size: int | None = option(32, "molecules per batch and process")
    max_tokens: int | None = option(None, "instead of --batch-size: a budget of (atoms+1)^2 x molecules per batch")
    window_size: int = option(1024, "molecules grouped by atom count before batching")
    shuffle_buffer: int = option(10_000, "molecules per seeded shuffle block (rows are shuffled within "
                                         "consecutive blocks)")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    learning_rate: float = option(5e-4, "peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay (not on biases, norms, embeddings)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    warmup_steps: int = option(30, "linear warmup steps, then cosine decay")
    min_learning_rate_ratio: float = option(0.0, "the cosine decay ends at learning rate x this",
                                            aliases=["--min-lr-ratio"])
    max_grad_norm: float = option(1.0, "gradient clipping (0: none)")
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", "autocast dtype")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)")
    seed: int = option(0, "seed of the data order, noise and blend masks")
    num_workers: int = option(0, "DataLoader workers (featurization and conformer generation happen there)")
    conformers: Conformers = option("given", "conformer policy of the processor")
    smiles_column: str | None = option(None, "column of SMILES in tabular inputs (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks in tabular inputs")
    exclude: list[str] = option([], "never train on these molecules (canonical SMILES match), e.g. the test sets "
                                    "of `moleblend benchmark --export-test-molecules`", metavar="FILE")
    eval_inputs: list[str] = option([], "held-out molecules (keep them out of training with --exclude); their "
                                        "pretraining losses go to eval_log.jsonl", metavar="FILE")
    eval_steps: int = option(0, "evaluate every N steps (0: at the end only)")
    eval_max_molecules: int = option(2000, "held-out molecules evaluated")
    save_steps: int = option(100, "checkpoint every N steps")
    save_total_limit: int = option(2, "checkpoints kept (this run's, oldest removed first)")
    logging_steps: int = option(10, "log means every N steps")
    report_to: list[str] = option(["jsonl", "tensorboard"], "where to log", choices=REPORTERS)
    stop_after_steps: int | None = option(None, "end this invocation after N more steps (checkpointed; "
                                                "continue later with --resume)")
    log_molecule_ids: bool = option(False, "write the id of every molecule trained on, in order, per rank")
    push_to_hub: str | None = option(None, "upload the final model to this Hub repo", metavar="REPO_ID")
    progress: bool = option(True, "show a progress bar")
    cpu: bool = option(False, "force the CPU even when a GPU is present")

    def __post_init__(self) -> None:
        if self.dataset:
            from .remote import HUB_PREFIX, HubSource

            source = HubSource.parse(HUB_PREFIX + self.dataset)
            self.inputs = [*self.inputs, str(replace(source, config=self.dataset_config, split=self.dataset_split))]
        elif self.dataset_config or self.dataset_split != "train":
            raise ValueError("--dataset-config and --dataset-split choose a configuration and split of --dataset")
        if not self.inputs:
            self.inputs = [str(BUNDLED_QM9)]
        self.config_overrides = _overrides(self.config_overrides)
        if "none" in self.report_to:
            self.report_to = []
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --output-dir, --overwrite replaces it: give one")
        if self.max_tokens is not None:
            self.batch_size = None
        _positive(self, "max_steps", "max_tokens", "window_size", "shuffle_buffer", "gradient_accumulation_steps",
                  "learning_rate", "save_steps", "save_total_limit", "logging_steps", "stop_after_steps",
                  "eval_max_molecules")
        if self.batch_size is None and self.max_tokens is None:
            raise ValueError("give --batch-size or --max-tokens")
        _positive(self, "batch_size")
        _non_negative(self, "weight_decay", "warmup_steps", "max_grad_norm", "num_workers", "eval_steps", "adam_eps")
        _fraction(self, "min_learning_rate_ratio", "adam_beta1", "adam_beta2")


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


QUANTIZE_HELP = ("int8: dynamic int8 quantization of the linear layers (CPU only; faster, slightly different "
                 "outputs: see benchmarks/int8_accuracy.py)")


CUDA_GRAPHS_HELP = ("replay each batch shape's kernels as a CUDA graph (CUDA only; atoms padded to a multiple of 8 "
                    "so that few shapes occur; same outputs; where kernel launches dominate, e.g. batch 64 with "
                    "--mixed-precision bf16, 2.4x the eager throughput on an H100)")
INFERENCE_PRECISION_HELP = "autocast dtype of the forward (e.g. bf16 on a GPU); outputs are written in float32"


def _inference_options(arguments: Any) -> None:
    """int8 runs on the CPU, CUDA graphs on CUDA; each replaces the other speed options."""
    if arguments.quantize == "int8" and arguments.device != "cpu":
        raise ValueError("--quantize int8 runs on the CPU only (--device cpu)")
    if arguments.mixed_precision != "no" and arguments.quantize == "int8":
        raise ValueError("--quantize int8 computes in int8/fp32; leave --mixed-precision at no")
    if arguments.cuda_graphs:
        if not arguments.device.startswith("cuda"):
            raise ValueError(f"--cuda-graphs needs a CUDA device (--device cuda), got --device {arguments.device}")
        if arguments.compile:
            raise ValueError("--cuda-graphs and --compile exclude each other (choose one)")


@dataclass
class PredictArguments:
    """Every option of `moleblend predict` (see `training/predict.py`)."""

    data: str = option(None, ".csv, .parquet, .smi, .sdf or .sdf.gz of molecules", positional=True)
    model: list[str] = option([], "fine-tuned model directories (several: an ensemble) or an ensemble directory "
                                  "written by `moleblend finetune --seeds`", required=True)
    output: str = option("predictions.csv", "the predictions file (.csv or .parquet): one row per input row, in "
                                            "input order")
    overwrite: bool = option(False, "replace an existing --output file")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    batch_size: int = option(64, "molecules per forward pass")
    device: str = option("cpu", "torch device")
    quantize: Literal["none", "int8"] = option("none", QUANTIZE_HELP)
    compile: bool = option(False, "torch.compile the models (dynamic shapes; compiling takes a minute or more)")
    cuda_graphs: bool = option(False, CUDA_GRAPHS_HELP)
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", INFERENCE_PRECISION_HELP)
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        _inference_options(self)
        if not self.data:
            raise ValueError("give the data file (a .csv, .parquet, .smi, .sdf or .sdf.gz)")
        if not self.model:
            raise ValueError("give --model (one or more fine-tuned model directories)")
        if not self.output.endswith((".csv", ".parquet")):
            raise ValueError(f"--output must end in .csv or .parquet, got {self.output!r}")
        _positive(self, "batch_size")


@dataclass
class EmbedArguments:
    """Every option of `moleblend embed` (see `training/embed.py`)."""

    input: str | None = option(None, "a .smi, .csv, .parquet, .sdf, .sdf.gz or .mol file (default: the bundled "
                                     "QM9 subset)")
    output_dir: str = option("outputs/embeddings", "output directory of parquet parts", aliases=OUTPUT_ALIASES)
    overwrite: bool = option(False, "replace the embeddings in a non-empty --output-dir")
    model: str | None = option(None, "a saved model directory, Hub id or shipped checkpoint name (default: a "
                                     "randomly initialised --preset model, a demo)")
    preset: Preset = option("tiny", "model size without --model")
    seed: int = option(0, "seed of the random model without --model")
    batch_size: int = option(64, "molecules per forward pass")
    chunk_size: int = option(2048, "rows per output part (the resume unit)")
    per_atom: bool = option(False, "also write per-atom embeddings")
    quantize: Literal["none", "int8"] = option("none", QUANTIZE_HELP)
    compile: bool = option(False, "torch.compile the model (dynamic shapes; compiling takes a minute or more, then "
                                  "each batch runs the compiled graph)")
    cuda_graphs: bool = option(False, CUDA_GRAPHS_HELP)
    mixed_precision: Literal["no", "fp16", "bf16"] = option("no", INFERENCE_PRECISION_HELP)
    conformers: Conformers | None = option(None, "conformer policy (default: the saved processor's, else given)")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    molblock_column: str | None = option(None, "column of molblocks")
    device: str = option("cpu", "torch device")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "chunk_size")
        _inference_options(self)


@dataclass
class CorpusArguments:
    """Every option of `moleblend corpus` (see `training/corpus.py`)."""

    inputs: list[str] = option([], "files or globs of SMILES: .smi, .csv, .parquet", positional=True, nargs="+")
    output: str = option(None, "the corpus .parquet file to write", required=True)
    max_molecules: int | None = option(None, "stop after this many molecules with a conformer")
    exclude: list[str] = option([], "leave these molecules out (canonical SMILES match), e.g. benchmark test sets",
                                metavar="FILE")
    seed: int = option(0, "conformer seed")
    num_workers: int = option(1, "worker processes")
    timeout_s: int = option(10, "seconds per molecule for embedding", aliases=["--timeout"])
    mmff_max_iters: int = option(2000, "MMFF94 optimisation iterations")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    overwrite: bool = option(False, "replace an existing output file")

    def __post_init__(self) -> None:
        if not self.inputs or not self.output:
            raise ValueError("give the input files and --output")
        _positive(self, "max_molecules", "num_workers", "timeout_s", "mmff_max_iters")


@dataclass
class PushArguments:
    """`moleblend push DIR REPO_ID`."""

    directory: str = option(None, "a directory written by save_pretrained", positional=True, metavar="DIR")
    repo_id: str = option(None, "namespace/name of the Hub model repo", positional=True, metavar="REPO_ID")
    private: bool = option(False, "create the repo as private (if it is created)")
    commit_message: str | None = option(None, "commit title (default: 'Upload MoleBLEND model')")
    force: bool = option(False, "push into an existing repo that holds another kind of model (replaces its files)")
    retries: int = option(3, "further attempts after a Hub server (5xx) or network error, with backoff")

    def __post_init__(self) -> None:
        _non_negative(self, "retries")


@dataclass
class ConvertArguments:
    """`moleblend convert CHECKPOINT OUTPUT_DIR`."""

    checkpoint: str = option(None, "official .pt checkpoint", positional=True, metavar="CHECKPOINT")
    output_dir: str = option(None, "directory to write (save_pretrained layout)", positional=True,
                             metavar="OUTPUT_DIR")
    config_overrides: dict[str, Any] = option({}, "override a MoleBlendConfig field derived from the checkpoint "
                                                  "args (JSON value), repeatable", aliases=["--set"])

    def __post_init__(self) -> None:
        self.config_overrides = _overrides(self.config_overrides)


#: task -> (file, label columns, metric reported on test, unit)
MOLECULENET = {
    "bbbp": ("bbbp.csv", ["p_np"], "roc_auc", ""),
    "bace": ("bace.csv", ["Class"], "roc_auc", ""),
    "clintox": ("clintox.csv", ["CT_TOX"], "roc_auc", ""),
    "hiv": ("hiv.csv", ["HIV_active"], "roc_auc", ""),
    "esol": ("esol.csv", ["measured log solubility in mols per litre"], "rmse", "log10(mol/L)"),
    "freesolv": ("freesolv.csv", ["expt"], "rmse", "kcal/mol"),
    "lipo": ("lipo.csv", ["exp"], "rmse", "logD"),
}
RANDOM_FOREST = "random_forest"
HARTREE_TO_EV = 27.211386
#: QM9 targets given in Hartree, reported in eV (the literature's unit).
QM9_ENERGIES = ("homo", "lumo", "gap", "zpve", "u0", "u298", "h298", "g298")
QM9_UNITS = {"mu": "D", "alpha": "bohr^3", "r2": "bohr^2", "cv": "cal/(mol K)", **{k: "eV" for k in QM9_ENERGIES}}


@dataclass
class BenchmarkArguments:
    """Every option of `moleblend benchmark` (see `training/benchmark.py`)."""

    output_dir: str = option("outputs/benchmark", "results.json / .md / .png and one run directory per task, "
                             "column and seed (finished runs with the same arguments are reused)",
                             aliases=OUTPUT_ALIASES)
    moleculenet_dir: str | None = option(None, "directory with the MoleculeNet CSVs (and splits/<task>.json)")
    tasks: list[str] = option(list(MOLECULENET), "MoleculeNet tasks", choices=sorted(MOLECULENET))
    qm9: str | None = option(None, "QM9 parquet with id, smiles, molblock and property columns")
    qm9_targets: list[str] = option(["gap"], "QM9 targets (energies reported in eV)", choices=sorted(QM9_UNITS))
    qm9_max_molecules: int | None = option(None, "a seeded subset of QM9 (for small budgets)")
    qm9_modality: Literal["2d", "3d"] = option("2d", "QM9 from the 2D graph (the transfer-relevant setting) or "
                                                     "from the DFT geometry")
    seeds: list[int] = option([0, 1, 2], "fine-tuning seeds (mean ± std over them)")
    pretrained: str | None = option(None, "pretrained model to compare with training from scratch")
    compare: list[str] = option([], "more pretrained models, each its own column (e.g. an ablation)",
                                metavar="LABEL=PATH")
    fingerprint_baseline: bool = option(True, "a random forest on Morgan fingerprints (radius 2, 2048 bits) column")
    max_train_molecules: int | None = option(None, "a seeded subset of training splits larger than this (e.g. "
                                                   "HIV); test is never cut")
    max_valid_molecules: int | None = option(None, "likewise for validation splits")
    pretraining_corpus: list[str] = option([], "the pretraining inputs, to report overlap with every test split")
    pretraining_exclude: list[str] = option([], "the files given to `moleblend pretrain --exclude` (subtracted "
                                                "from the corpus)")
    export_test_molecules: str | None = option(None, "only write the canonical SMILES of all test-split molecules "
                                                     "to this file and exit", metavar="FILE")
    preset: Preset = option("mini", "model size of the from-scratch column (the shipped checkpoint's size)")
    epochs: int = option(8, "fine-tuning epochs (defaults: see `moleblend finetune`)")
    batch_size: int = option(32, "molecules per batch")
    learning_rate: float = option(5e-4, "peak learning rate")
    encoder_learning_rate_ratio: float = option(1.0, "the encoder trains at learning rate x this",
                                                aliases=["--encoder-lr-ratio"])
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.06, "warmup, as a fraction of all steps")
    classifier_dropout: float | None = option(None, "dropout of the property head")
    patience: int = option(4, "early stopping, in epochs")
    group_by_size: bool = option(False, "training batches of molecules of similar atom counts (see `moleblend "
                                        "finetune --group-by-size`)")
    modality: Modality = option("2d", "relations for the MoleculeNet tasks (QM9: --qm9-modality)")
    cache_dir: str | None = option(None, "cache featurized molecules here")
    summarize_only: bool = option(False, "train nothing: the table from the runs already finished with these "
                                         "arguments (n shown where seeds are missing)")

    def __post_init__(self) -> None:
        if not self.moleculenet_dir and not self.qm9:
            raise ValueError("nothing to run: give --moleculenet-dir and/or --qm9")
        if not self.seeds:
            raise ValueError("give at least one seed")
        _positive(self, "qm9_max_molecules", "max_train_molecules", "max_valid_molecules", "epochs", "batch_size",
                  "learning_rate", "encoder_learning_rate_ratio", "patience")
        _fraction(self, "warmup_ratio", "classifier_dropout")
        self.columns()  # checks --compare

    def columns(self) -> list[tuple[str, str | None]]:
        """(column label, model path or None for from-scratch) of every neural column, in table order."""
        columns = [("scratch", None)] + ([("pretrained", self.pretrained)] if self.pretrained else [])
        for item in self.compare:
            label, _, path = item.partition("=")
            if not label or not path or label in dict(columns) or label == RANDOM_FOREST:
                raise ValueError(f"--compare takes distinct LABEL=PATH entries, got {item!r}")
            columns.append((label, path))
        return columns
