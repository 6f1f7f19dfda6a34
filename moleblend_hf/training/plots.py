"""Figures of a run, each written with the data behind it (CSV): fine-tuning learning curves and test-set figures
(parity plot for regression, ROC and precision-recall curves for classification), pretraining loss curves.

matplotlib is optional (`pip install 'moleblend-hf[plots]'`): without it the CSVs are still written and the
figures are skipped with one logged warning. Figures are drawn with `matplotlib.figure.Figure` (no pyplot state,
no display backend needed).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

logger = logging.getLogger(__name__)
MISSING_MATPLOTLIB = "matplotlib is not installed, figures are skipped (pip install 'moleblend-hf[plots]')"


def _figure(**kwargs: Any):
    """A matplotlib Figure, or None (and a warning) without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(MISSING_MATPLOTLIB)
        return None
    return Figure(**kwargs)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def learning_curves(log_history: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    """Per epoch: train loss, validation loss and the validation `metric`, from `trainer.state.log_history`
    (logged once per epoch; an epoch without an entry has NaN)."""
    rows: dict[float, dict[str, float]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = rows.setdefault(round(float(entry["epoch"]), 6), {})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        if "eval_loss" in entry:
            row["valid_loss"] = float(entry["eval_loss"])
        if f"eval_{metric}" in entry:
            row[f"valid_{metric}"] = float(entry[f"eval_{metric}"])
    columns = ["epoch", "train_loss", "valid_loss", f"valid_{metric}"]
    frame = pd.DataFrame(
        [{"epoch": epoch, **values} for epoch, values in sorted(rows.items()) if values], columns=columns
    )
    return frame.dropna(subset=["train_loss", "valid_loss", f"valid_{metric}"], how="all").reset_index(drop=True)


def write_learning_curves(output: Path, curves: pd.DataFrame, metric: str) -> None:
    """learning_curves.csv and learning_curves.png (losses left, the validation metric right)."""
    curves.to_csv(output / "learning_curves.csv", index=False)
    figure = _figure(figsize=(8, 3.2))
    if figure is None:
        return
    losses, score = figure.subplots(1, 2)
    for column, label in (("train_loss", "train"), ("valid_loss", "validation")):
        present = curves[column].notna()
        losses.plot(curves["epoch"][present], curves[column][present], marker="o", label=label)
    losses.set(xlabel="epoch", ylabel="loss", title="loss")
    losses.legend()
    present = curves[f"valid_{metric}"].notna()
    score.plot(curves["epoch"][present], curves[f"valid_{metric}"][present], marker="o", color="C2")
    score.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    _save(figure, output / "learning_curves.png")


def write_parity(
    output: Path,
    rows: list[int],
    labels: np.ndarray,
    predictions: np.ndarray,
    tasks: list[str],
    metrics: dict[str, float],
) -> None:
    """test_parity.csv (row, task, label, prediction) and test_parity.png, RMSE / MAE / R^2 in the title."""
    labels = np.asarray(labels, dtype=np.float64).reshape(len(rows), -1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(labels.shape)
    frame = pd.DataFrame(
        [
            {"row": row, "task": task, "label": labels[i, t], "prediction": predictions[i, t]}
            for t, task in enumerate(tasks)
            for i, row in enumerate(rows)
            if not np.isnan(labels[i, t])
        ],
        columns=["row", "task", "label", "prediction"],
    )
    frame.to_csv(output / "test_parity.csv", index=False)
    figure = _figure(figsize=(4.2, 4.2))
    if figure is None:
        return
    axes = figure.subplots()
    for task, part in frame.groupby("task", sort=False):
        axes.scatter(part["label"], part["prediction"], s=12, alpha=0.7, label=task if len(tasks) > 1 else None)
    if len(frame):
        low, high = float(frame[["label", "prediction"]].min().min()), float(frame[["label", "prediction"]].max().max())
        axes.plot([low, high], [low, high], color="grey", linewidth=1)
    axes.set(
        xlabel="measured",
        ylabel="predicted",
        title=f"test: RMSE {metrics['rmse']:.3g}, MAE {metrics['mae']:.3g}, R² {metrics['r2']:.3g}",
    )
    if len(tasks) > 1:
        axes.legend(fontsize="small")
    _save(figure, output / "test_parity.png")


def write_roc_pr(output: Path, labels: np.ndarray, probabilities: np.ndarray, tasks: list[str]) -> None:
    """test_roc_pr.csv (task, curve = roc / pr, x, y, threshold: sklearn's roc_curve and precision_recall_curve
    points; x = FPR or recall, y = TPR or precision) and test_roc_pr.png. Tasks with one class in the test rows
    have no curve."""
    labels = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(labels.shape)
    records = []
    for t, task in enumerate(tasks):
        present = ~np.isnan(labels[:, t])
        y, p = labels[present, t], probabilities[present, t]
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, roc_thresholds = roc_curve(y, p)
        precision, recall, pr_thresholds = precision_recall_curve(y, p)
        records += [
            {"task": task, "curve": "roc", "x": a, "y": b, "threshold": c} for a, b, c in zip(fpr, tpr, roc_thresholds)
        ]
        records += [
            {"task": task, "curve": "pr", "x": a, "y": b, "threshold": c}  # the last point has no threshold
            for a, b, c in zip(recall, precision, [*pr_thresholds, np.nan])
        ]
    frame = pd.DataFrame(records, columns=["task", "curve", "x", "y", "threshold"])
    frame.to_csv(output / "test_roc_pr.csv", index=False)
    figure = _figure(figsize=(8, 3.6))
    if figure is None:
        return
    roc, pr = figure.subplots(1, 2)
    for (task, curve), part in frame.groupby(["task", "curve"], sort=False):
        (roc if curve == "roc" else pr).plot(part["x"], part["y"], label=task)
    roc.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="test ROC")
    pr.set(xlabel="recall", ylabel="precision", title="test precision-recall")
    for axes in (roc, pr):
        axes.legend(fontsize="small")
    _save(figure, output / "test_roc_pr.png")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_pretraining_curves(output: Path) -> pd.DataFrame:
    """loss_curves.csv (split = train / eval, step and the loss columns, from train_log.jsonl and eval_log.jsonl)
    and loss_curves.png (the total loss, and each term)."""
    frames = []
    for split, name in (("train", "train_log.jsonl"), ("eval", "eval_log.jsonl")):
        records = _read_jsonl(output / name)
        if records:
            frame = pd.DataFrame(records)
            frames.append(frame[["step", *(c for c in frame.columns if c.endswith("loss"))]].assign(split=split))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "loss", "split"])
    curves = curves[["split", "step", *(c for c in curves.columns if c not in ("split", "step"))]]
    curves.to_csv(output / "loss_curves.csv", index=False)
    figure = _figure(figsize=(8, 3.2)) if len(curves) else None
    if figure is None:
        return curves
    total, terms = figure.subplots(1, 2)
    for split, part in curves.groupby("split", sort=False):
        total.plot(part["step"], part["loss"], label=split, marker="o" if split == "eval" else None)
        if split == "train":
            for column in (c for c in part.columns if c.endswith("_loss")):
                terms.plot(part["step"], part[column], label=column.removesuffix("_loss"))
    total.set(xlabel="step", ylabel="loss", title="pretraining loss")
    terms.set(xlabel="step", ylabel="loss", title="train loss terms", yscale="log")
    for axes in (total, terms):
        axes.legend(fontsize="small")
    _save(figure, output / "loss_curves.png")
    return curves
