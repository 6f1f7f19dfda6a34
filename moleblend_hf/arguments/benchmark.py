"""The arguments of `moleblend benchmark` and the MoleculeNet / QM9 task tables it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .common import (OUTPUT_ALIASES, REPORT_TO_HELP, JobArguments, Modality, Preset, _fraction, _positive,
                     check_report_to, option, trainer_integrations)

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
class BenchmarkArguments(JobArguments):
    """Every option of `moleblend benchmark` (see `training/benchmark_tables.py`)."""

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
    report_to: list[str] = option(["none"], REPORT_TO_HELP + "; every fine-tuning run logs there")
    summarize_only: bool = option(False, "train nothing: the table from the runs already finished with these "
                                         "arguments (n shown where seeds are missing)")

    def __post_init__(self) -> None:
        if not self.moleculenet_dir and not self.qm9:
            raise ValueError("nothing to run: give --moleculenet-dir and/or --qm9")
        if not self.seeds:
            raise ValueError("give at least one seed")
        self.report_to = check_report_to(self.report_to, *trainer_integrations())
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
