"""Calibrated uncertainty: fitted on the validation split, checked on held-out rows.

- Regression ensembles: one scale per task, `s**2 = mean(z0**2)` with `z0 = (y - mean) / std` on validation, so
  that `(y - mean) / (s * std)` has unit variance there (`std` in predictions is then `s * std`).
- Classification ensembles: temperature scaling of the members' mean logit (one temperature per task; one for
  all classes of a multi-class task), fitted by minimising the validation negative log-likelihood.
- Split conformal intervals (regression, any model): scores `|y - mean| / std` (ensembles) or `|y - mean|`
  (one model) on validation, their `ceil((n + 1)(1 - alpha)) / n` quantile `q`; the interval is
  `mean ± q * std` (or `mean ± q`), which covers a new exchangeable row with probability >= 1 - alpha.
- Metrics: the miscalibration area of central intervals (chemprop's "MA") for regression, the expected calibration
  error (10 equal-width bins) for classification.

Plain numpy (and scipy's scalar minimiser): the same functions serve `finetune` (fitting) and `predict` (applying).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import erfinv, expit, log_softmax, softmax

#: std below this is treated as this (an ensemble whose members agree exactly would give infinite z-scores)
MIN_STD = 1e-8
#: confidence levels of the miscalibration area
MA_LEVELS = np.linspace(0.0, 1.0, 101)


def _columns(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)


def fit_std_scale(labels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> list[float]:
    """Per task: the scale `s` with `mean(((y - mean) / (s * std))**2) = 1` over the present labels (closed form)."""
    labels, mean, std = _columns(labels), _columns(mean), np.maximum(_columns(std), MIN_STD)
    scales = []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task]) & ~np.isnan(mean[:, task])
        z = (labels[present, task] - mean[present, task]) / std[present, task]
        scales.append(float(np.sqrt(np.mean(z**2))) if present.any() else 1.0)
    return scales


def miscalibration_area(labels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """Area between the observed and the expected coverage of central Gaussian intervals `mean ± z_p * std` over
    confidence levels p in [0, 1] (0: perfectly calibrated, 0.5: worst), averaged over tasks."""
    labels, mean, std = _columns(labels), _columns(mean), np.maximum(_columns(std), MIN_STD)
    half_widths = np.sqrt(2.0) * erfinv(MA_LEVELS)  # z of the central interval with coverage p
    areas = []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task]) & ~np.isnan(mean[:, task])
        if not present.any():
            continue
        z = np.abs(labels[present, task] - mean[present, task]) / std[present, task]
        observed = (z[None, :] <= half_widths[:, None]).mean(1)
        areas.append(float(np.trapezoid(np.abs(observed - MA_LEVELS), MA_LEVELS)))
    return float(np.mean(areas)) if areas else float("nan")


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = 10, multiclass: bool = False
) -> float:
    """ECE with equal-width bins: sum over bins of (rows in bin / rows) x |accuracy - confidence|. Binary tasks
    (columns, NaN labels left out): the positive-class probability against the positive rate, averaged over tasks;
    `multiclass`: the top-class probability against the top class being right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if multiclass:
        labels = np.asarray(labels).reshape(-1).astype(int)
        return _ece(probabilities.max(1), (probabilities.argmax(1) == labels).astype(float), bins)
    labels, probabilities = _columns(labels), probabilities.reshape(len(probabilities), -1)
    errors = [
        _ece(probabilities[present, t], labels[present, t], bins)
        for t in range(labels.shape[1])
        if (present := ~np.isnan(labels[:, t])).any()
    ]
    return float(np.mean(errors)) if errors else float("nan")


def _ece(confidence: np.ndarray, outcome: np.ndarray, bins: int) -> float:
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(outcome[inside].mean() - confidence[inside].mean())
    return float(total)


def fit_temperature(labels: np.ndarray, logits: np.ndarray, multiclass: bool = False) -> list[float]:
    """Temperatures T (one per binary task, one for a multi-class task) minimising the validation negative
    log-likelihood of `logits / T`; searched over log T in [-3, 3] (T from 0.05 to 20)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multiclass:
        target = np.asarray(labels).reshape(-1).astype(int)

        def nll(log_t: float) -> float:
            return float(-log_softmax(logits / math.exp(log_t), axis=1)[np.arange(len(target)), target].mean())

        return [_minimise(nll)]
    labels, logits = _columns(labels), logits.reshape(len(logits), -1)
    temperatures = []
    for task in range(labels.shape[1]):
        present = ~np.isnan(labels[:, task])
        y, x = labels[present, task], logits[present, task]
        if len(np.unique(y)) < 2:
            temperatures.append(1.0)
            continue

        def nll(log_t: float, y=y, x=x) -> float:
            scaled = x / math.exp(log_t)
            return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))  # binary cross-entropy on logits

        temperatures.append(_minimise(nll))
    return temperatures


def _minimise(nll) -> float:
    return float(math.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def calibrated_probabilities(logits: np.ndarray, temperatures: list[float], multiclass: bool) -> np.ndarray:
    """Probabilities of the temperature-scaled logits (sigmoid per task, or softmax over the classes)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multiclass:
        return softmax(logits / temperatures[0], axis=-1)
    return expit(logits / np.asarray(temperatures))


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile of the calibration scores: the ceil((n + 1)(1 - alpha))-th smallest (the
    finite-sample correction); infinite when there are too few scores for that coverage."""
    scores = np.sort(np.asarray(scores, dtype=np.float64)[~np.isnan(scores)])
    rank = math.ceil((len(scores) + 1) * (1.0 - alpha))
    return float("inf") if rank > len(scores) or rank < 1 else float(scores[rank - 1])


def fit_conformal(labels: np.ndarray, mean: np.ndarray, std: np.ndarray | None, alpha: float) -> list[float]:
    """Per task, the quantile `q` of the scores |y - mean| / std (or |y - mean| without `std`)."""
    labels, mean = _columns(labels), _columns(mean)
    scale = np.ones_like(mean) if std is None else np.maximum(_columns(std), MIN_STD)
    return [conformal_quantile(np.abs(labels[:, t] - mean[:, t]) / scale[:, t], alpha) for t in range(labels.shape[1])]


def conformal_interval(
    mean: np.ndarray, std: np.ndarray | None, quantiles: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds: mean ± q * std (or mean ± q)."""
    mean = _columns(mean)
    half = np.asarray(quantiles)[None, :] * (1.0 if std is None else np.maximum(_columns(std), MIN_STD))
    return mean - half, mean + half


def coverage(labels: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of the present labels inside their intervals (all tasks pooled)."""
    labels = _columns(labels)
    present = ~np.isnan(labels)
    inside = (labels >= lower) & (labels <= upper)
    return float(inside[present].mean()) if present.any() else float("nan")


def probabilities(problem_type: str, logits: np.ndarray) -> np.ndarray:
    """Model outputs -> what is reported: class probabilities (sigmoid per task, softmax over classes), values for
    regression (the heads return label units)."""
    if problem_type == "multi_label_classification":
        return expit(logits)
    if problem_type == "single_label_classification":
        return softmax(logits, axis=-1)
    return np.asarray(logits, dtype=np.float64)


def fit_calibration(
    problem_type: str, labels: np.ndarray, members: np.ndarray, alpha: float | None = None
) -> dict[str, Any]:
    """The calibration of `members` [members, rows, outputs] (raw outputs: logits, or values for regression)
    against the validation `labels`: a std scale per task (regression ensembles), temperatures (classification
    ensembles), conformal quantiles (regression, with `alpha`)."""
    members = np.asarray(members, dtype=np.float64)
    mean, std = members.mean(0), (members.std(0) if len(members) > 1 else None)
    calibration: dict[str, Any] = {"fitted_on": "valid", "rows": int(members.shape[1]), "members": len(members)}
    if problem_type == "regression":
        if std is not None:
            calibration["std_scale"] = fit_std_scale(labels, mean, std)
        if alpha is not None:
            calibration["conformal"] = {
                "alpha": alpha,
                "quantiles": fit_conformal(labels, mean, std, alpha),
                "score": "|y - mean| / std" if std is not None else "|y - mean|",
            }
    elif std is not None:
        calibration["temperature"] = fit_temperature(labels, mean, problem_type == "single_label_classification")
    return calibration


def apply_calibration(
    problem_type: str, members: np.ndarray, calibration: dict[str, Any] | None
) -> dict[str, np.ndarray]:
    """Calibrated outputs of `members` [members, rows, outputs]: `calibrated_std` (regression ensembles),
    `calibrated_probability` (temperature-scaled mean logit), `lower` / `upper` (conformal intervals)."""
    if not calibration:
        return {}
    members = np.asarray(members, dtype=np.float64)
    mean, std = members.mean(0), (members.std(0) if len(members) > 1 else None)
    result = {}
    if "std_scale" in calibration and std is not None:
        result["calibrated_std"] = std * np.asarray(calibration["std_scale"])[None, :]
    if "temperature" in calibration:
        result["calibrated_probability"] = calibrated_probabilities(
            mean, calibration["temperature"], problem_type == "single_label_classification"
        )
    conformal = calibration.get("conformal")
    if conformal and (std is not None or conformal["score"] == "|y - mean|"):
        result["lower"], result["upper"] = conformal_interval(
            mean, None if conformal["score"] == "|y - mean|" else std, [float(q) for q in conformal["quantiles"]]
        )
    return result


def calibration_metrics(
    problem_type: str, labels: np.ndarray, members: np.ndarray, calibration: dict[str, Any]
) -> dict[str, Any]:
    """Before / after: the miscalibration area (regression ensembles) or the expected calibration error
    (classification ensembles); the conformal intervals' coverage and mean width."""
    members = np.asarray(members, dtype=np.float64)
    calibrated = apply_calibration(problem_type, members, calibration)
    result: dict[str, Any] = {"rows": int(members.shape[1])}
    if "calibrated_std" in calibrated:
        mean, std = members.mean(0), members.std(0)
        result["miscalibration_area"] = {
            "before": miscalibration_area(labels, mean, std),
            "after": miscalibration_area(labels, mean, calibrated["calibrated_std"]),
        }
    if "calibrated_probability" in calibrated:
        multiclass = problem_type == "single_label_classification"
        before = probabilities(problem_type, members).mean(0)
        result["expected_calibration_error"] = {
            "before": expected_calibration_error(labels, before, multiclass=multiclass),
            "after": expected_calibration_error(labels, calibrated["calibrated_probability"], multiclass=multiclass),
        }
    if "lower" in calibrated:
        width = calibrated["upper"] - calibrated["lower"]
        result["conformal"] = {
            "alpha": calibration["conformal"]["alpha"],
            "coverage": coverage(labels, calibrated["lower"], calibrated["upper"]),
            "mean_width": float(np.mean(width)) if np.isfinite(width).all() else float("inf"),
        }
    return result
