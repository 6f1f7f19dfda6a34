"""The arguments of `moleblend benchmark` and the MoleculeNet / QM9 task tables it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .common import (
    MOLECULE_FEATURE_SETS,
    OUTPUT_ALIASES,
    REPORT_TO_HELP,
    JobArguments,
    Modality,
    Pooling,
    Preset,
    _fraction,
    _non_negative,
    _positive,
    check_report_to,
    option,
    trainer_integrations,
)
from .finetune import FinetuneArguments


def _finetune_default(name: str) -> Any:
    """`moleblend finetune`'s default of a setting: the single source of the benchmark's recipe."""
    return FinetuneArguments.__dataclass_fields__[name].default


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
CHEMPROP = "chemprop"
HARTREE_TO_EV = 27.211386
#: QM9 targets given in Hartree, reported in eV (the literature's unit).
QM9_ENERGIES = ("homo", "lumo", "gap", "zpve", "u0", "u298", "h298", "g298")
QM9_UNITS = {"mu": "D", "alpha": "bohr^3", "r2": "bohr^2", "cv": "cal/(mol K)", **{k: "eV" for k in QM9_ENERGIES}}


@dataclass
class BenchmarkArguments(JobArguments):
    """Every option of `moleblend benchmark` (see `training/benchmark_tables.py`)."""

    output_dir: str = option(
        "outputs/benchmark",
        "results.json / .md / .png and one run directory per task, "
        "column and seed (finished runs with the same arguments are reused)",
        aliases=OUTPUT_ALIASES,
    )
    moleculenet_dir: str | None = option(None, "directory with the MoleculeNet CSVs (and splits/<task>.json)")
    tasks: list[str] = option(list(MOLECULENET), "MoleculeNet tasks", choices=sorted(MOLECULENET))
    qm9: str | None = option(None, "QM9 parquet with id, smiles, molblock and property columns")
    qm9_targets: list[str] = option(["gap"], "QM9 targets (energies reported in eV)", choices=sorted(QM9_UNITS))
    qm9_max_molecules: int | None = option(None, "a seeded subset of QM9 (for small budgets)")
    qm9_modality: Literal["2d", "3d"] = option(
        "2d", "QM9 from the 2D graph (the transfer-relevant setting) or from the DFT geometry"
    )
    seeds: list[int] = option([0, 1, 2], "fine-tuning seeds (mean ± std over them)")
    scratch: bool = option(True, "a column trained from scratch (--preset)")
    pretrained: str | None = option(None, "pretrained model to compare with training from scratch")
    compare: list[str] = option(
        [], "more pretrained models, each its own column (e.g. an ablation)", metavar="LABEL=PATH"
    )
    fingerprint_baseline: bool = option(True, "a random forest on Morgan fingerprints (radius 2, 2048 bits) column")
    chemprop_baseline: bool = option(
        True,
        "a chemprop 2 column (D-MPNN with its CLI defaults, same splits, seeds "
        'and metrics; needs `pip install "moleblend-hf[benchmarks]"`)',
    )
    chemprop_epochs: int | None = option(None, "epochs of the chemprop column (default: chemprop's own default)")
    feature_columns: list[str] = option(
        [],
        "neural columns (their labels) to run once more with --molecule-features, as a column LABEL+features",
        metavar="LABEL",
    )
    molecule_features: list[str] = option(
        ["rdkit2d"],
        "the descriptors of the +features columns (see `moleblend finetune --molecule-features`; RDKit 2D alone "
        "beat RDKit 2D + Morgan counts on validation)",
        choices=list(MOLECULE_FEATURE_SETS),
    )
    max_train_molecules: int | None = option(
        None, "a seeded subset of training splits larger than this (e.g. HIV); test is never cut"
    )
    max_valid_molecules: int | None = option(None, "likewise for validation splits")
    pretraining_corpus: list[str] = option([], "the pretraining inputs, to report overlap with every test split")
    pretraining_exclude: list[str] = option(
        [], "the files given to `moleblend pretrain --exclude` (subtracted from the corpus)"
    )
    export_test_molecules: str | None = option(
        None, "only write the canonical SMILES of all test-split molecules to this file and exit", metavar="FILE"
    )
    preset: Preset = option("mini", "model size of the from-scratch column (the shipped checkpoint's size)")
    # the fine-tuning recipe of every neural column: `moleblend finetune`'s defaults, its single source
    epochs: int = option(_finetune_default("epochs"), "fine-tuning epochs (see `moleblend finetune`)")
    batch_size: int = option(_finetune_default("batch_size"), "molecules per batch")
    learning_rate: float = option(_finetune_default("learning_rate"), "peak learning rate")
    encoder_learning_rate_ratio: float = option(
        _finetune_default("encoder_learning_rate_ratio"),
        "the encoder trains at learning rate x this",
        aliases=["--encoder-lr-ratio"],
    )
    layerwise_lr_decay: float = option(_finetune_default("layerwise_lr_decay"), "see `moleblend finetune`")
    pooling: Pooling = option(_finetune_default("pooling"), "what the head reads (see `moleblend finetune`)")
    head_layers: int = option(_finetune_default("head_layers"), "hidden layers of the property head")
    freeze_encoder_epochs: int = option(
        _finetune_default("freeze_encoder_epochs"), "epochs that train only the head (see `moleblend finetune`)"
    )
    ema_decay: float = option(_finetune_default("ema_decay"), "see `moleblend finetune --ema-decay`")
    weight_decay: float = option(_finetune_default("weight_decay"), "AdamW weight decay")
    max_grad_norm: float = option(_finetune_default("max_grad_norm"), "gradient clipping (0: off)")
    warmup_ratio: float = option(_finetune_default("warmup_ratio"), "warmup, as a fraction of all steps")
    classifier_dropout: float | None = option(None, "dropout of the property head")
    patience: int = option(_finetune_default("patience"), "early stopping, in epochs")
    group_by_size: bool = option(
        False, "training batches of molecules of similar atom counts (see `moleblend finetune --group-by-size`)"
    )
    modality: Modality = option("2d", "relations for the MoleculeNet tasks (QM9: --qm9-modality)")
    cache_dir: str | None = option(None, "cache featurized molecules here")
    report_to: list[str] = option(["none"], REPORT_TO_HELP + "; every fine-tuning run logs there")
    summarize_only: bool = option(
        False,
        "train nothing: the table from the runs already finished with these "
        "arguments (n shown where seeds are missing)",
    )

    def __post_init__(self) -> None:
        if not self.moleculenet_dir and not self.qm9:
            raise ValueError("nothing to run: give --moleculenet-dir and/or --qm9")
        if not self.seeds:
            raise ValueError("give at least one seed")
        self.report_to = check_report_to(self.report_to, *trainer_integrations())
        _positive(
            self,
            "qm9_max_molecules",
            "max_train_molecules",
            "max_valid_molecules",
            "chemprop_epochs",
            "head_layers",
            "layerwise_lr_decay",
            "epochs",
            "batch_size",
            "learning_rate",
            "encoder_learning_rate_ratio",
            "patience",
        )
        _non_negative(self, "weight_decay", "max_grad_norm", "freeze_encoder_epochs")
        _fraction(self, "warmup_ratio", "classifier_dropout")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1) (0: off), got {self.ema_decay}")
        self.columns()  # checks --compare

    def columns(self) -> list[tuple[str, str | None]]:
        """(column label, model path or None for from-scratch) of every neural column, in table order."""
        columns = ([("scratch", None)] if self.scratch else []) + (
            [("pretrained", self.pretrained)] if self.pretrained else []
        )
        for item in self.compare:
            label, _, path = item.partition("=")
            if not label or not path or label in dict(columns) or label == RANDOM_FOREST:
                raise ValueError(f"--compare takes distinct LABEL=PATH entries, got {item!r}")
            columns.append((label, path))
        for label in self.feature_columns:
            if label not in dict(columns):
                raise ValueError(f"--feature-columns names {label!r}, not a neural column ({list(dict(columns))})")
        columns += [(f"{label}+features", dict(columns)[label]) for label in self.feature_columns]
        return columns

    def uses_molecule_features(self, label: str) -> bool:
        return label.endswith("+features") and label.removesuffix("+features") in self.feature_columns
