"""The tool users pick first for molecular property prediction: chemprop 2 (a D-MPNN), run with its CLI defaults.

The benchmark gives it the very rows, split, seed and metrics of every other column: a CSV of SMILES, labels and
a `split` column (`train` / `val` / `test`) goes to `chemprop train --splits-column split`, and the saved best
model predicts the validation and test rows with `chemprop predict`; both are scored with
`metrics.compute_metrics`. chemprop is an optional dependency (`pip install "moleblend-hf[benchmarks]"`); it runs
in a subprocess, so its Lightning and logging settings never touch ours.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger

from .metrics import compute_metrics

#: chemprop's CLI reads sys.argv; its package has no `__main__`, so the console script's entry point is called
_CHEMPROP = "import sys; from chemprop.cli.main import main; sys.argv[0] = 'chemprop'; main()"
CHEMPROP_SPLIT_NAMES = {"train": "train", "valid": "val", "test": "test"}


class ChempropUnavailable(RuntimeError):
    """chemprop is not installed."""


def chemprop_available() -> bool:
    return importlib.util.find_spec("chemprop") is not None


def chemprop_version() -> str | None:
    if not chemprop_available():
        return None
    from importlib.metadata import version

    return version("chemprop")


def _parsable(molecules: list) -> np.ndarray:
    """[n] bool: SMILES RDKit can read (chemprop would stop on the others; they are left out and counted)."""
    RDLogger.DisableLog("rdApp.*")
    try:
        return np.array([isinstance(m, str) and "\n" not in m and Chem.MolFromSmiles(m) is not None for m in molecules])
    finally:
        RDLogger.EnableLog("rdApp.*")


def _run(arguments: list[str], log: Path) -> None:
    with log.open("a") as stream:
        done = subprocess.run([sys.executable, "-c", _CHEMPROP, *arguments], stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"chemprop {arguments[0]} failed (exit {done.returncode}; log {log}): {tail[0]}")


def chemprop_baseline(
    molecules: list,
    labels: np.ndarray,
    split: dict[str, list[int]],
    problem_type: str,
    seed: int,
    work_dir: str | Path,
    extra_arguments: tuple[str, ...] = (),
) -> dict:
    """Train chemprop 2 with its defaults on the train rows (validation rows for its early stopping / model
    choice), then score the valid and test rows.

    `molecules`: SMILES per row; `labels` [n_rows, n_tasks] float (NaN = missing); `problem_type`
    `"regression"` or `"multi_label_classification"`. Returns `{"valid": metrics, "test": metrics,
    "skipped_rows": count, "wall_time_s": seconds, "chemprop_version": str}`; the data, chemprop's log and its
    predictions stay in `work_dir` (its model files are removed)."""
    if not chemprop_available():
        raise ChempropUnavailable('chemprop is not installed: pip install "moleblend-hf[benchmarks]" (or chemprop>=2)')
    if problem_type not in ("regression", "multi_label_classification"):
        raise ValueError(f"the chemprop baseline supports regression and binary classification, not {problem_type}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.float64).reshape(len(molecules), -1)
    parsed = _parsable(molecules)
    rows, targets, table = _write_inputs(work, molecules, labels, split, parsed)
    task_type = "regression" if problem_type == "regression" else "classification"
    log = work / "chemprop.log"
    log.write_text("")
    start = time.perf_counter()
    _train(work, targets, task_type, seed, extra_arguments, log)
    _predict(work, log)
    wall = time.perf_counter() - start
    values = _read_predictions(work, table, targets, problem_type)
    n_valid = len(rows["valid"])
    result = {
        "valid": compute_metrics(problem_type, labels[rows["valid"]], values[:n_valid]),
        "test": compute_metrics(problem_type, labels[rows["test"]], values[n_valid:]),
        "skipped_rows": int((~parsed).sum()),
        "wall_time_s": wall,
        "chemprop_version": chemprop_version(),
    }
    for model_file in (work / "model").rglob("*"):  # weights are not needed for the table; keep logs and config
        if model_file.suffix in (".pt", ".ckpt"):
            model_file.unlink()
    return result


def _write_inputs(
    work: Path, molecules: list, labels: np.ndarray, split: dict[str, list[int]], parsed: np.ndarray
) -> tuple[dict[str, list[int]], list[str], pd.DataFrame]:
    """chemprop's input files in `work`: data.csv (the usable rows of each split, with a `split` column) and
    evaluate.csv (the valid then test SMILES to predict). Returns the rows used per split, the target columns and
    the table written."""
    targets = [f"target_{i}" for i in range(labels.shape[1])]
    rows = {name: [r for r in split[name] if parsed[r] and not np.isnan(labels[r]).all()] for name in split}
    table = pd.DataFrame(
        {
            "smiles": [molecules[r] for name in ("train", "valid", "test") for r in rows[name]],
            **{
                t: [labels[r, i] for name in ("train", "valid", "test") for r in rows[name]]
                for i, t in enumerate(targets)
            },
            "split": [CHEMPROP_SPLIT_NAMES[name] for name in ("train", "valid", "test") for _ in rows[name]],
        }
    )
    table.to_csv(work / "data.csv", index=False)
    table[table["split"] != "train"][["smiles"]].to_csv(work / "evaluate.csv", index=False)
    return rows, targets, table


#: chemprop on the CPU, one device, no DataLoader workers (the benchmark's runs share the machine)
_ON_ONE_CPU = ("--accelerator", "cpu", "--devices", "1", "-n", "0")


def _train(
    work: Path, targets: list[str], task_type: str, seed: int, extra_arguments: tuple[str, ...], log: Path
) -> None:
    """`chemprop train` with its defaults on data.csv (its `split` column), the model saved under `work/model`."""
    _run(
        [
            "train",
            "-i",
            str(work / "data.csv"),
            "-s",
            "smiles",
            "--target-columns",
            *targets,
            "-t",
            task_type,
            "--splits-column",
            "split",
            "--pytorch-seed",
            str(seed),
            "--data-seed",
            str(seed),
            "-o",
            str(work / "model"),
            *_ON_ONE_CPU,
            *extra_arguments,
        ],
        log,
    )


def _predict(work: Path, log: Path) -> None:
    """`chemprop predict` of evaluate.csv with the best saved model, into predictions.csv."""
    _run(
        [
            "predict",
            "-i",
            str(work / "evaluate.csv"),
            "-s",
            "smiles",
            "--model-paths",
            str(work / "model" / "model_0" / "best.pt"),
            "-o",
            str(work / "predictions.csv"),
            *_ON_ONE_CPU,
        ],
        log,
    )


def _read_predictions(work: Path, table: pd.DataFrame, targets: list[str], problem_type: str) -> np.ndarray:
    """chemprop's predictions [valid + test rows, tasks], checked to be in its input's order; logits for
    classification."""
    predicted = pd.read_csv(work / "predictions.csv")
    if predicted["smiles"].tolist() != table[table["split"] != "train"]["smiles"].tolist():
        raise RuntimeError(f"chemprop's predictions ({work / 'predictions.csv'}) are not in the order of its input")
    values = predicted[targets].to_numpy(dtype=np.float64)
    if problem_type != "regression":  # probabilities -> logits, as the models and the forest report
        values = np.clip(values, 1e-6, 1 - 1e-6)
        values = np.log(values / (1 - values))
    return values


__all__ = ["ChempropUnavailable", "chemprop_available", "chemprop_baseline", "chemprop_version"]
