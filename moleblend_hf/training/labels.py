"""Labels of a fine-tuning table: class names to indices, the problem type, and the label names and count a model
carries (the table itself is read by `sources.files.read_labeled_table`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: String values read as the positive class of a two-valued label column (compared case-insensitively).
POSITIVE_NAMES = ("1", "active", "yes", "true", "positive", "pos", "+", "bbb+", "toxic", "inhibitor", "binder")


def encode_labels(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, dict[int, str] | None]:
    """Labels [rows, columns] float (NaN = missing) and, for a column of words, the class names.

    Numbers stay numbers. One column of words (labels as users have them: "active"/"inactive", "BBB+"/"BBB-")
    becomes class indices: two values -> 0/1 (the value that reads as positive is 1, else the second in sorted
    order), more -> 0..K-1 in sorted order; the names go to `id2label`. A column mixing numbers and words is an
    error that lists the offending values and rows, never a silent NaN.
    """
    values = np.full((len(frame), len(columns)), np.nan)
    names = None
    for position, column in enumerate(columns):
        raw = frame[column]
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        numeric = pd.to_numeric(raw[present], errors="coerce")
        words = raw[present][numeric.isna()]
        if words.empty:
            _check_representable(column, numeric)
            values[present.to_numpy(), position] = numeric.to_numpy(dtype=np.float64)
            continue
        if len(words) < present.sum():
            numbers = raw[present][numeric.notna()]
            raise ValueError(
                f"label column {column!r} mixes numbers and words: numbers such as {numbers.head(3).tolist()} "
                f"(rows {numbers.index[:3].tolist()}) and words such as {words.head(3).tolist()} (rows "
                f"{words.index[:3].tolist()}); make the column all numbers or all class names"
            )
        if len(columns) > 1:
            raise ValueError(
                f"label column {column!r} holds class names; class names are supported for a single "
                "label column (one task), give numeric 0/1 columns for several tasks"
            )
        classes = sorted({str(v).strip() for v in words})
        if len(classes) == 2:
            positive = [c for c in classes if c.lower() in POSITIVE_NAMES]
            if len(positive) == 1:
                classes = [c for c in classes if c != positive[0]] + positive
        index = {name: i for i, name in enumerate(classes)}
        values[present.to_numpy(), position] = [index[str(v).strip()] for v in words]
        names = dict(enumerate(classes))
    return values, names


def _check_representable(column: str, numbers: pd.Series) -> None:
    """Labels train in float32: an infinite value, or one beyond float32's range (1e300), would turn the loss into
    NaN after the first step. They are refused here, with their rows, before anything is written."""
    bad = numbers[
        ~np.isfinite(numbers.to_numpy(dtype=np.float64))
        | (np.abs(numbers.to_numpy(dtype=np.float64)) > np.finfo(np.float32).max)
    ]
    if len(bad):
        shown = ", ".join(f"{value!r} (row {row})" for row, value in bad.head(5).items())
        raise ValueError(
            f"label column {column!r} holds {len(bad)} value(s) that are not finite numbers within "
            f"float32's range (±{np.finfo(np.float32).max:.3g}): {shown}; fix or remove those rows "
            "(an empty cell is a missing label)"
        )


def detect_problem_type(task: str, labels: np.ndarray) -> str:
    """auto: all present labels 0/1 -> binary (multi-label) classification; otherwise regression."""
    if task == "regression":
        return "regression"
    if task == "multiclass":
        return "single_label_classification"
    present = labels[~np.isnan(labels)]
    binary = present.size > 0 and np.isin(present, (0.0, 1.0)).all()
    if task == "classification" and not binary:
        raise ValueError(
            "--task classification needs 0/1 labels (NaN = missing); use --task multiclass for class indices"
        )
    return "multi_label_classification" if binary else "regression"


def id2label_for(problem_type: str, class_names: dict[int, str] | None, columns: list[str]) -> dict[int, str] | None:
    """id2label: the class names of a single-label task; one task name per column otherwise (a binary task of
    class names keeps the positive class's name)."""
    if problem_type == "single_label_classification" and class_names:
        return class_names
    if problem_type == "multi_label_classification" and class_names:
        return {0: f"{columns[0]}={class_names[1]}"}
    if problem_type == "single_label_classification":
        return None  # class indices without names: transformers' LABEL_k
    return dict(enumerate(columns))


def check_classes(problem_type: str, labels: np.ndarray, columns: list[str]) -> None:
    """A classification task whose labels hold one class cannot be learned: refuse before any training."""
    if problem_type == "regression":
        return
    for position, column in enumerate(columns):
        present = labels[~np.isnan(labels[:, position]), position]
        if len(np.unique(present)) < 2:
            raise ValueError(
                f"label column {column!r} has a single class ({np.unique(present).tolist()}); a "
                "classifier cannot be trained on it"
            )


def count_labels(problem_type: str, labels: np.ndarray) -> int:
    if problem_type == "single_label_classification":
        present = labels[~np.isnan(labels[:, 0]), 0]
        if not np.equal(np.mod(present, 1), 0).all() or present.min() < 0:
            raise ValueError("multiclass labels must be non-negative class indices")
        return int(present.max()) + 1
    return labels.shape[1]
