"""`moleblend benchmark`: MoleculeNet tasks and QM9, several seeds, from scratch and from a pretrained model.

Writes `results.json` (every run), `results.md` (mean ± std over seeds) and `results.png` into the output
directory. MoleculeNet tasks use the scaffold split shipped next to the CSVs (`splits/<task>.json`) or, without
it, the same deterministic scaffold split computed here; QM9 uses a fixed random split (seed 0, 80/10/10) and the
DFT geometries (3D relations). For every pretrained column that is a `moleblend pretrain` run directory, the run's
own records are read (`pretraining_exclusion`): how many test molecules of each task are missing from its
`--exclude` files (molecules its stream would not have dropped; the `results.md` column), and its stream's counters
(molecules drawn and dropped as excluded). With `--pretraining-corpus`, the corpus minus `--pretraining-exclude` is
also compared with every test split (`test_overlap_with_pretraining` in `results.json`).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import logging
import time
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .._optional import import_optional
from ..arguments import (
    CHEMPROP,
    HARTREE_TO_EV,
    MOLECULENET,
    QM9_ENERGIES,
    QM9_UNITS,
    RANDOM_FOREST,
    BenchmarkArguments,
    FinetuneArguments,
)
from ..sources.files import canonical_set
from ..sources.files import canonical_smiles as canonical
from ..sources.splits import random_split, scaffold_split
from .baselines import FingerprintSettings, random_forest_baseline

# the report (summary, results.md, results.png) lives in benchmark_report.py; its names are importable from here as
# before (`X as X`: a re-export)
from .benchmark_report import COLORS as COLORS
from .benchmark_report import ERROR_METRICS
from .benchmark_report import HEADERS as HEADERS
from .benchmark_report import _exclusion_notes as _exclusion_notes
from .benchmark_report import _not_excluded as _not_excluded
from .benchmark_report import _plot as _plot
from .benchmark_report import _summarize as _summarize
from .benchmark_report import _write_results as _write_results
from .benchmark_report import column_order as column_order
from .benchmark_report import mean_ranks as mean_ranks
from .benchmark_report import results_markdown as results_markdown
from .chemprop_baseline import chemprop_available, chemprop_baseline, chemprop_version
from .finetune import finetune
from .run_directory import read_run

logger = logging.getLogger(__name__)
EXCLUDED = "excluded (--exclude)"  # the pretraining stream's skip reason for --exclude (sources/streaming.py)


def _prepare_qm9(args: BenchmarkArguments, work: Path) -> tuple[Path, dict]:
    frame = pd.read_parquet(args.qm9)
    if args.qm9_max_molecules:
        frame = frame.iloc[
            np.sort(np.random.default_rng(0).choice(len(frame), args.qm9_max_molecules, replace=False))
        ].reset_index(drop=True)
    for target in args.qm9_targets:
        if target not in QM9_UNITS:
            raise ValueError(f"unknown QM9 target {target!r}; choose from {sorted(QM9_UNITS)}")
        if target in QM9_ENERGIES:
            frame[target] = frame[target] * HARTREE_TO_EV
    path = work / "qm9_benchmark.parquet"
    frame[["id", "smiles", "molblock", *args.qm9_targets]].to_parquet(path)
    return path, random_split(frame["smiles"].tolist(), seed=0)


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
            split = (
                json.loads(split_file.read_text()) if split_file.exists() else scaffold_split(frame["smiles"].tolist())
            )
            tasks.append(
                dict(
                    name=name,
                    data=data,
                    labels=labels,
                    metric=metric,
                    unit=unit,
                    split=split,
                    molecules=frame["smiles"].tolist(),
                    modality=args.modality,
                    column="smiles",
                )
            )
    if args.qm9:
        path, split = _prepare_qm9(args, work)
        frame = pd.read_parquet(path)
        for target in args.qm9_targets:
            tasks.append(
                dict(
                    name=f"qm9_{target}",
                    data=path,
                    labels=[target],
                    metric="mae",
                    unit=QM9_UNITS[target],
                    split=split,
                    molecules=frame["smiles"].tolist(),
                    modality=args.qm9_modality,
                    column="smiles" if args.qm9_modality == "2d" else "molblock",
                )
            )
    if not tasks:
        raise ValueError("nothing to run: give --moleculenet-dir and/or --qm9")
    return tasks


def export_test_molecules(args: BenchmarkArguments, path: str | Path) -> int:
    """Write the canonical SMILES of every test-split molecule of the configured tasks (one per line), to give
    to `moleblend pretrain --exclude`; returns how many."""
    work = Path(args.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    test = sorted(
        {
            c
            for task in _tasks(args, work)
            for r in task["split"]["test"]
            if (c := canonical(task["molecules"][r])) is not None
        }
    )
    Path(path).write_text("\n".join(test) + "\n")
    return len(test)


def _subsample(task: dict, args: BenchmarkArguments, work: Path) -> dict:
    """Cut the training and validation splits to seeded subsets (the test split is always whole): writes the kept
    rows to their own table with a split re-indexed into it, so every column trains on the same molecules."""
    limits = {"train": args.max_train_molecules, "valid": args.max_valid_molecules}
    if not any(limit and len(task["split"][name]) > limit for name, limit in limits.items()):
        return task
    rng = np.random.default_rng(0)
    kept = {
        name: sorted(rng.choice(rows, limits[name], replace=False).tolist())
        if limits.get(name) and len(rows) > limits[name]
        else list(rows)
        for name, rows in task["split"].items()
    }
    order = [r for name in ("train", "valid", "test") for r in kept[name]]
    reader = pd.read_parquet if str(task["data"]).endswith(".parquet") else pd.read_csv
    frame = reader(task["data"]).iloc[order].reset_index(drop=True)
    path = work / "data" / f"{task['name']}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    sizes = [len(kept[name]) for name in ("train", "valid", "test")]
    split = {
        "train": list(range(sizes[0])),
        "valid": list(range(sizes[0], sizes[0] + sizes[1])),
        "test": list(range(sizes[0] + sizes[1], len(order))),
    }
    return {
        **task,
        "data": path,
        "split": split,
        "molecules": [task["molecules"][r] for r in order],
        "subsampled": {name: f"{len(kept[name])} of {len(task['split'][name])}" for name in kept},
    }


def _finetune_arguments(
    args: BenchmarkArguments,
    task: dict,
    split_path: Path,
    run_dir: Path,
    model: str | None,
    seed: int,
    molecule_features: list[str] | None = None,
) -> FinetuneArguments:
    column = {"molblock_column": "molblock"} if task["column"] == "molblock" else {"smiles_column": "smiles"}
    overrides = {} if args.classifier_dropout is None else {"classifier_dropout": args.classifier_dropout}
    return FinetuneArguments(
        data=str(task["data"]),
        label_columns=task["labels"],
        output_dir=str(run_dir),
        **column,
        split="file",
        split_file=str(split_path),
        seed=seed,
        model=model,
        preset=args.preset,
        config_overrides=overrides,
        modality=task["modality"],
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        encoder_learning_rate_ratio=args.encoder_learning_rate_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        layerwise_lr_decay=args.layerwise_lr_decay,
        pooling=args.pooling,
        head_layers=args.head_layers,
        freeze_encoder_epochs=args.freeze_encoder_epochs,
        ema_decay=args.ema_decay,
        molecule_features=list(molecule_features or []),
        warmup_ratio=args.warmup_ratio,
        patience=args.patience,
        group_by_size=args.group_by_size,
        cache_dir=args.cache_dir,
        report_to=args.report_to,
        overwrite=True,
    )  # the benchmark owns its run directories: a run that is not reused is trained again


#: FinetuneArguments that do not change a run's result
_NOT_COMPARED = ("config_overrides", "overwrite", "report_to", "log_level")
#: the value a run stored before an option existed had (where it differs from today's default)
_BEFORE_THE_OPTION = {
    "pooling": "graph",
    "head_layers": 1,
    "layerwise_lr_decay": 1.0,
    "molecule_features": [],
    "freeze_encoder_epochs": 0,
}


def _finished(arguments: FinetuneArguments) -> dict | None:
    """The metrics of a run finished with the very same arguments, or None."""
    previous = Path(arguments.output_dir) / "metrics.json"
    if not previous.exists():
        return None
    stored = json.loads(previous.read_text())
    return stored if trained_with(stored, arguments) else None


def trained_with(stored: dict, arguments: FinetuneArguments, ignored: tuple[str, ...] = ()) -> bool:
    """Whether the run whose metrics are `stored` was trained with `arguments` (those that do not change a result
    and `ignored` aside); options added to FinetuneArguments after the run was stored count as they were before."""
    if stored.get("config_overrides") != arguments.config_overrides:
        return False
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(arguments)
        if f.default is not MISSING or f.default_factory is not MISSING
    } | _BEFORE_THE_OPTION
    skipped = _NOT_COMPARED + ignored
    now = json.loads(json.dumps({k: v for k, v in asdict(arguments).items() if k not in skipped}, default=str))
    then = stored.get("arguments", {})
    return all(then.get(k, json.loads(json.dumps(defaults.get(k), default=str))) == v for k, v in now.items())


def _finetune_or_reuse(arguments: FinetuneArguments) -> dict:
    """A finished run with the very same arguments is reused (an interrupted benchmark continues where it
    stopped); anything else is trained again."""
    stored = _finished(arguments)
    if stored is not None:
        logger.info("reusing %s", arguments.output_dir)
        return stored
    return finetune(arguments)


def _random_forest(task: dict, seed: int, run_dir: Path) -> dict:
    """The fingerprint baseline's metrics; stored in `run_dir/metrics.json` and reused by a rerun on the same data
    (the table's hash) and split."""
    key = {**_run_key(task, seed), "settings": asdict(FingerprintSettings()), "column": task["column"]}
    stored = _stored_baseline(run_dir, key)
    if stored is not None:
        return stored
    start = time.perf_counter()
    result = {**_fit_random_forest(task, seed), "key": key}
    result["wall_time_s"] = time.perf_counter() - start
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def _stored_baseline(run_dir: Path, key: dict) -> dict | None:
    """The metrics a baseline stored in `run_dir` for the run `key` describes, or None."""
    path = run_dir / "metrics.json"
    stored = json.loads(path.read_text()) if path.exists() else None
    return stored if stored is not None and _same_key(stored.get("key"), key) else None


def _data_key(data: Path) -> dict:
    """What identifies a baseline's input table: its path, size and content hash (the hash lets a benchmark directory
    be moved or copied, and its subsampled tables written again, without training its baselines again)."""
    return {"data": str(data), "bytes": data.stat().st_size, "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}


def _run_key(task: dict, seed: int) -> dict:
    """What every baseline run's key holds: the data, the split (its hash), the seed and the label columns."""
    split = hashlib.sha256(json.dumps(task["split"], sort_keys=True).encode()).hexdigest()
    return {**_data_key(Path(task["data"])), "split": split, "seed": seed, "labels": task["labels"]}


def _chemprop_key(task: dict, seed: int, epochs: int | None) -> dict:
    return {**_run_key(task, seed), "chemprop": chemprop_version(), "epochs": epochs}


def _same_key(stored: dict | None, key: dict) -> bool:
    """A baseline run stored under `stored` is the run `key` describes: the same settings and split, and the same
    data: the same content hash, or (a run stored before keys had one) the same file or one with the very same
    bytes (a benchmark directory that was moved or copied)."""
    content = ("data", "sha256")
    if not stored or {k: v for k, v in stored.items() if k not in content} != {
        k: v for k, v in key.items() if k not in content
    }:
        return False
    if "sha256" in stored and "sha256" in key:
        return stored["sha256"] == key["sha256"]
    if stored.get("data") == key["data"]:
        return True
    before = Path(stored.get("data", ""))
    return before.is_file() and filecmp.cmp(before, key["data"], shallow=False)


def _task_table(task: dict) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The task's rows, labels [n, tasks] float and problem type, for the baselines."""
    reader = pd.read_parquet if str(task["data"]).endswith(".parquet") else pd.read_csv
    frame = reader(task["data"])
    labels = frame[task["labels"]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    problem = "regression" if task["metric"] in ERROR_METRICS else "multi_label_classification"
    return frame, labels, problem


def _fit_random_forest(task: dict, seed: int) -> dict:
    frame, labels, problem = _task_table(task)
    return random_forest_baseline(frame[task["column"]].tolist(), labels, task["split"], problem, seed)


def _chemprop(task: dict, seed: int, run_dir: Path, epochs: int | None) -> dict:
    """chemprop 2's metrics on the task's SMILES (chemprop reads no conformers: QM9 runs from the 2D graph whatever
    --qm9-modality says); stored in `run_dir/metrics.json`, reused by a rerun on the same data, split, seed and
    chemprop version."""
    key = _chemprop_key(task, seed, epochs)
    stored = _stored_baseline(run_dir, key)
    if stored is not None:
        return stored
    frame, labels, problem = _task_table(task)
    extra = ("--epochs", str(epochs)) if epochs else ()
    result = {
        **chemprop_baseline(frame["smiles"].tolist(), labels, task["split"], problem, seed, run_dir / "work", extra),
        "key": key,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def run_benchmark(args: BenchmarkArguments) -> dict:
    import_optional("matplotlib", "benchmarks", "the benchmark's figure")  # before hours of training, not after
    if args.chemprop_baseline and not args.summarize_only and not chemprop_available():
        raise ValueError(
            'the chemprop column needs chemprop: pip install "moleblend-hf[benchmarks]" (or pass '
            "--no-chemprop-baseline)"
        )
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    columns = args.columns()
    tasks = [_subsample(task, args, output) for task in _tasks(args, output)]
    corpus = None
    if args.pretraining_corpus:
        corpus = canonical_set(args.pretraining_corpus)
        if args.pretraining_exclude:
            corpus -= canonical_set(args.pretraining_exclude)
    tests = {task["name"]: {canonical(task["molecules"][r]) for r in task["split"]["test"]} - {None} for task in tasks}
    overlap = {name: None if corpus is None else len(test & corpus) for name, test in tests.items()}
    for name, count in overlap.items():
        if count:
            logger.warning("%s: %d test molecules are in the pretraining corpus", name, count)
    pretraining = {label: pretraining_exclusion(model, tests) for label, model in columns if model}
    for label, record in pretraining.items():
        for name, count in ((record or {}).get("test_molecules_not_excluded") or {}).items():
            if count:
                logger.warning(
                    "%s: %d test molecules are not excluded by the pretraining run of %r", name, count, label
                )
    runs = []
    for task in tasks:
        split_path = output / "splits" / f"{task['name']}.json"
        split_path.parent.mkdir(exist_ok=True)
        split_path.write_text(json.dumps(task["split"]))
    # seed by seed over all tasks: an interrupted benchmark leaves complete tables for its first seeds
    for seed in args.seeds:
        for task in tasks:
            runs += _task_runs(args, task, seed, output / "splits" / f"{task['name']}.json", output, columns)
            # after every run: a partial table is readable
            _write_results(output, runs, overlap, args, tasks, pretraining)
    return _write_results(output, runs, overlap, args, tasks, pretraining)


def _task_runs(
    args: BenchmarkArguments,
    task: dict,
    seed: int,
    split_path: Path,
    output: Path,
    columns: list[tuple[str, str | None]],
) -> list[dict]:
    """The runs of one task and seed: the forest, chemprop, then every neural column (each reused when finished)."""
    record = {"task": task["name"], "metric": task["metric"], "unit": task["unit"], "seed": seed}
    runs = []
    forest_dir = output / "runs" / task["name"] / RANDOM_FOREST / f"seed{seed}"
    if args.fingerprint_baseline:  # cheap: computed (or reused) even with summarize_only
        result = _random_forest(task, seed, forest_dir)
        runs.append(
            {
                **record,
                "init": RANDOM_FOREST,
                "test": result["test"][task["metric"]],
                "valid": result["valid"][task["metric"]],
                "wall_time_s": result.get("wall_time_s"),
            }
        )
    chemprop_dir = output / "runs" / task["name"] / CHEMPROP / f"seed{seed}"
    if args.chemprop_baseline and args.summarize_only:
        # --summarize-only trains nothing: a stored chemprop run for other data or settings is left out
        result = _stored_baseline(chemprop_dir, _chemprop_key(task, seed, args.chemprop_epochs))
    elif args.chemprop_baseline:
        result = _chemprop(task, seed, chemprop_dir, args.chemprop_epochs)
    else:
        result = None
    if result is not None:
        runs.append(
            {
                **record,
                "init": CHEMPROP,
                "test": result["test"][task["metric"]],
                "valid": result["valid"][task["metric"]],
                "wall_time_s": result.get("wall_time_s"),
            }
        )
    for init, model in columns:
        run_dir = output / "runs" / task["name"] / init / f"seed{seed}"
        features = args.molecule_features if args.uses_molecule_features(init) else None
        arguments = _finetune_arguments(args, task, split_path, run_dir, model, seed, features)
        result = _finished(arguments) if args.summarize_only else _finetune_or_reuse(arguments)
        if result is None:
            continue
        runs.append(
            {
                **record,
                "init": init,
                "test": result["test"].get(task["metric"]),
                "valid": result["valid"].get(task["metric"]),
                "wall_time_s": result.get("wall_time_s"),
            }
        )
    return runs


def pretraining_exclusion(model: str | None, tests: dict[str, set[str]]) -> dict | None:
    """What a `moleblend pretrain` run directory's own files say about keeping the test molecules out, or None when
    `model` is not one (a Hub id, a shipped checkpoint, a fine-tuned model): per task, the test molecules (canonical
    SMILES) missing from the run's `--exclude` files as recorded in its `run.json` — molecules its stream would not
    have dropped — and the stream's counters summed over ranks (`summary_rank*.json`: molecules drawn, molecules
    dropped as excluded). Exclusion files that cannot be read (paths relative to where the run started, moved
    files) leave the check undone (`None`), never 0."""
    root = Path(model) if model else None
    run = read_run(root) if root is not None and root.is_dir() else None
    if run is None or run.job != "pretrain":
        return None
    counts = [json.loads(path.read_text()) for path in sorted(root.glob("summary_rank*.json"))]
    files = [str(f) for f in run.settings.get("exclude") or []]
    record = {
        "run": str(root),
        "exclude": files,
        "summaries": len(counts),
        "molecules_drawn": sum(c.get("molecules_seen", 0) for c in counts),
        "excluded_by_stream": sum(c.get("skipped", {}).get(EXCLUDED, 0) for c in counts),
    }
    try:
        excluded = canonical_set(files) if files else set()
    except FileNotFoundError as error:
        return {**record, "test_molecules_not_excluded": None, "exclude_error": str(error)}
    return {**record, "test_molecules_not_excluded": {name: len(test - excluded) for name, test in tests.items()}}
