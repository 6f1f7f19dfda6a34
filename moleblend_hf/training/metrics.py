"""Evaluation metrics for molecular property prediction (MoleculeNet conventions)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, mean_absolute_error, r2_score, roc_auc_score


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def binary_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC per task (columns), averaged over the tasks that have both classes among their present
    (non-NaN) labels; tasks with one class are skipped, as in MoleculeNet, and counted in `tasks_scored`."""
    labels, scores = np.asarray(labels, float).reshape(len(labels), -1), _sigmoid(np.asarray(logits, float))
    scores = scores.reshape(labels.shape)
    roc, pr = [], []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task])
        y = labels[present, task]
        if len(np.unique(y)) < 2:
            continue
        roc.append(roc_auc_score(y, scores[present, task]))
        pr.append(average_precision_score(y, scores[present, task]))
    nan = float("nan")
    return {
        "roc_auc": float(np.mean(roc)) if roc else nan,
        "pr_auc": float(np.mean(pr)) if pr else nan,
        "tasks_scored": len(roc),
        "tasks": labels.shape[1],
    }


def multiclass_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy and one-vs-rest macro ROC-AUC of single-label multi-class predictions."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    logits = np.asarray(logits, float)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    result = {"accuracy": float((probabilities.argmax(1) == labels).mean())}
    try:
        result["roc_auc"] = float(
            roc_auc_score(labels, probabilities, multi_class="ovr", labels=list(range(logits.shape[1])))
        )
    except ValueError:  # a class absent from this split
        result["roc_auc"] = float("nan")
    return result


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R^2 per task over present labels, averaged over tasks (original units)."""
    labels = np.asarray(labels, float).reshape(len(labels), -1)
    predictions = np.asarray(predictions, float).reshape(labels.shape)
    rmse, mae, r2 = [], [], []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task])
        if not present.any():
            continue
        y, p = labels[present, task], predictions[present, task]
        rmse.append(float(np.sqrt(np.mean((y - p) ** 2))))
        mae.append(float(mean_absolute_error(y, p)))
        r2.append(float(r2_score(y, p)) if present.sum() > 1 else float("nan"))
    return {"rmse": float(np.mean(rmse)), "mae": float(np.mean(mae)), "r2": float(np.mean(r2))}


def compute_metrics(problem_type: str, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    if problem_type == "regression":
        return regression_metrics(labels, logits)
    if problem_type == "multi_label_classification":
        return binary_metrics(labels, logits)
    return multiclass_metrics(labels, logits)


#: The metric that selects checkpoints and stops early by default, and whether larger is better.
SELECTION_METRIC = {
    "regression": ("rmse", False),
    "multi_label_classification": ("roc_auc", True),
    "single_label_classification": ("roc_auc", True),
}
#: Every metric `compute_metrics` reports for a problem type (plus the validation loss), with whether larger is
#: better: the choices of `finetune --metric`.
SELECTABLE_METRICS = {
    "regression": {"rmse": False, "mae": False, "r2": True, "loss": False},
    "multi_label_classification": {"roc_auc": True, "pr_auc": True, "loss": False},
    "single_label_classification": {"accuracy": True, "roc_auc": True, "loss": False},
}


def selection_metric(problem_type: str, name: str | None) -> tuple[str, bool]:
    """(metric, greater_is_better) that selects checkpoints: `name`, or the problem type's default."""
    if name is None:
        return SELECTION_METRIC[problem_type]
    choices = SELECTABLE_METRICS[problem_type]
    if name not in choices:
        raise ValueError(f"--metric {name} is not reported for {problem_type}; choose one of {', '.join(choices)}")
    return name, choices[name]
