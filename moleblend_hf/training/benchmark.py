"""`moleblend benchmark`: MoleculeNet tasks and QM9, several seeds, from scratch and from a pretrained model.

Writes `results.json` (every run), `results.md` (mean ± std over seeds) and `results.png` into the output
directory. MoleculeNet tasks use the scaffold split shipped next to the CSVs (`splits/<task>.json`) or, without
it, the same deterministic scaffold split computed here; QM9 uses a fixed random split (seed 0, 80/10/10) and the
DFT geometries (3D relations). With `--pretrained`, the molecules of the pretraining corpus are compared with
every test split by canonical SMILES and the overlap is reported (a leak otherwise invisible in the table).
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from .finetune import FinetuneArguments, finetune
from .data import canonical_set
from .data import canonical_smiles as canonical
from .splits import random_split, scaffold_split

logger = logging.getLogger(__name__)

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
HARTREE_TO_EV = 27.211386
#: QM9 targets given in Hartree, reported in eV (the literature's unit).
QM9_ENERGIES = ("homo", "lumo", "gap", "zpve", "u0", "u298", "h298", "g298")
QM9_UNITS = {"mu": "D", "alpha": "bohr^3", "r2": "bohr^2", "cv": "cal/(mol K)", **{k: "eV" for k in QM9_ENERGIES}}


@dataclass
class BenchmarkArguments:
    output_dir: str = "outputs/benchmark"
    moleculenet_dir: str | None = None
    tasks: list[str] = field(default_factory=lambda: list(MOLECULENET))
    qm9: str | None = None
    qm9_targets: list[str] = field(default_factory=lambda: ["gap"])
    qm9_max_molecules: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrained: str | None = None
    pretraining_corpus: list[str] = field(default_factory=list)
    pretraining_exclude: list[str] = field(default_factory=list)  # what `moleblend pretrain --exclude` left out
    preset: str = "tiny"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-4
    patience: int = 10
    modality: str = "2d"
    cache_dir: str | None = None


def _prepare_qm9(args: BenchmarkArguments, work: Path) -> tuple[Path, dict]:
    frame = pd.read_parquet(args.qm9)
    if args.qm9_max_molecules:
        frame = frame.iloc[np.sort(np.random.default_rng(0).choice(len(frame), args.qm9_max_molecules,
                                                                   replace=False))].reset_index(drop=True)
    for target in args.qm9_targets:
        if target not in QM9_UNITS:
            raise ValueError(f"unknown QM9 target {target!r}; choose from {sorted(QM9_UNITS)}")
        if target in QM9_ENERGIES:
            frame[target] = frame[target] * HARTREE_TO_EV
    path = work / "qm9_benchmark.parquet"
    frame[["id", "smiles", "molblock", *args.qm9_targets]].to_parquet(path)
    return path, random_split(len(frame), seed=0)


def _tasks(args: BenchmarkArguments, work: Path) -> list[dict]:
    tasks = []
    if args.moleculenet_dir:
        root = Path(args.moleculenet_dir)
        for name in args.tasks:
            if name not in MOLECULENET:
                raise ValueError(f"unknown task {name!r}; choose from {sorted(MOLECULENET)}")
            file, labels, metric, unit = MOLECULENET[name]
            data = root / file
            if not data.exists():
                raise FileNotFoundError(f"{data} not found (give --moleculenet-dir with the MoleculeNet CSVs)")
            split_file = root / "splits" / f"{name}.json"
            frame = pd.read_csv(data)
            split = json.loads(split_file.read_text()) if split_file.exists() else scaffold_split(
                frame["smiles"].tolist())
            tasks.append(dict(name=name, data=data, labels=labels, metric=metric, unit=unit, split=split,
                              molecules=frame["smiles"].tolist(), modality=args.modality, column="smiles"))
    if args.qm9:
        path, split = _prepare_qm9(args, work)
        frame = pd.read_parquet(path)
        for target in args.qm9_targets:
            tasks.append(dict(name=f"qm9_{target}", data=path, labels=[target], metric="mae",
                              unit=QM9_UNITS[target], split=split, molecules=frame["smiles"].tolist(),
                              modality="3d", column="molblock"))
    if not tasks:
        raise ValueError("nothing to run: give --moleculenet-dir and/or --qm9")
    return tasks


def export_test_molecules(args: BenchmarkArguments, path: str | Path) -> int:
    """Write the canonical SMILES of every test-split molecule of the configured tasks (one per line), to give
    to `moleblend pretrain --exclude`; returns how many."""
    work = Path(args.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    test = sorted({c for task in _tasks(args, work) for r in task["split"]["test"]
                   if (c := canonical(task["molecules"][r])) is not None})
    Path(path).write_text("\n".join(test) + "\n")
    return len(test)


def run_benchmark(args: BenchmarkArguments) -> dict:
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(args, output)
    corpus = None
    if args.pretraining_corpus:
        corpus = canonical_set(args.pretraining_corpus)
        if args.pretraining_exclude:
            corpus -= canonical_set(args.pretraining_exclude)
    overlap = {}
    for task in tasks:
        test = {canonical(task["molecules"][r]) for r in task["split"]["test"]} - {None}
        overlap[task["name"]] = None if corpus is None else len(test & corpus)
        if overlap[task["name"]]:
            logger.warning("%s: %d test molecules are in the pretraining corpus", task["name"],
                           overlap[task["name"]])
    inits = [("scratch", None)] + ([("pretrained", args.pretrained)] if args.pretrained else [])
    runs = []
    for task in tasks:
        split_path = output / "splits" / f"{task['name']}.json"
        split_path.parent.mkdir(exist_ok=True)
        split_path.write_text(json.dumps(task["split"]))
        for init, model in inits:
            for seed in args.seeds:
                run_dir = output / "runs" / task["name"] / init / f"seed{seed}"
                result = finetune(FinetuneArguments(
                    data=str(task["data"]), label_columns=task["labels"], output_dir=str(run_dir),
                    **({"molblock_column": "molblock"} if task["column"] == "molblock" else {"smiles_column": "smiles"}),
                    split="file", split_file=str(split_path), seed=seed, model=model, preset=args.preset,
                    modality=task["modality"], epochs=args.epochs, batch_size=args.batch_size,
                    learning_rate=args.learning_rate, patience=args.patience, cache_dir=args.cache_dir))
                runs.append({"task": task["name"], "init": init, "seed": seed, "metric": task["metric"],
                             "unit": task["unit"], "test": result["test"].get(task["metric"]),
                             "valid": result["valid"].get(task["metric"])})
    summary = _summarize(runs, overlap, args)
    (output / "results.json").write_text(json.dumps({"runs": runs, **summary}, indent=2, default=str))
    (output / "results.md").write_text(_markdown(summary))
    _plot(summary, output / "results.png")
    return summary


def _summarize(runs: list[dict], overlap: dict, args: BenchmarkArguments) -> dict:
    table = {}
    for run in runs:
        table.setdefault(run["task"], {"metric": run["metric"], "unit": run["unit"]}).setdefault(
            run["init"], []).append(run["test"])
    for task, row in table.items():
        for init in ("scratch", "pretrained"):
            values = [v for v in row.get(init, []) if v is not None and not np.isnan(v)]
            if values:
                row[init] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1
                             else 0.0, "n": len(values)}
        row["test_overlap_with_pretraining"] = overlap.get(task)
    budget = {k: getattr(args, k) for k in ("preset", "epochs", "batch_size", "learning_rate", "patience", "seeds",
                                            "modality", "pretrained", "qm9_max_molecules")}
    return {"table": table, "budget": budget}


def _markdown(summary: dict) -> str:
    lines = ["| task | metric (test) | from scratch | pretrained | test molecules in pretraining corpus |",
             "|---|---|---:|---:|---:|"]
    for task, row in summary["table"].items():
        cells = []
        for init in ("scratch", "pretrained"):
            value = row.get(init)
            cells.append(f"{value['mean']:.3f} ± {value['std']:.3f}" if isinstance(value, dict) else "—")
        unit = f" ({row['unit']})" if row["unit"] else ""
        overlap = row["test_overlap_with_pretraining"]
        lines.append(f"| {task} | {row['metric']}{unit} | {cells[0]} | {cells[1]} | "
                     f"{'not checked' if overlap is None else overlap} |")
    lines += ["", f"Budget: `{json.dumps(summary['budget'], default=str)}`", ""]
    return "\n".join(lines)


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary["table"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.2), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        row = summary["table"][task]
        names = [i for i in ("scratch", "pretrained") if isinstance(row.get(i), dict)]
        axis.bar(names, [row[i]["mean"] for i in names], yerr=[row[i]["std"] for i in names],
                 color=["#999999", "#3b7dd8"][: len(names)], capsize=4)
        axis.set_title(task)
        axis.set_ylabel(row["metric"] + (f" ({row['unit']})" if row["unit"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
