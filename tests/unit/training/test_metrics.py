"""The selection metrics: `finetune --metric`'s choices are exactly the metrics reported per problem type."""

from __future__ import annotations

import numpy as np
import pytest

from moleblend_hf.arguments.finetune import METRIC_CHOICES
from moleblend_hf.training.metrics import SELECTABLE_METRICS, compute_metrics, selection_metric


@pytest.mark.parametrize("problem_type", sorted(SELECTABLE_METRICS))
def test_selectable_metrics_are_the_reported_ones(problem_type):
    labels = {
        "regression": np.array([[0.0], [1.0], [2.0], [3.0]]),
        "multi_label_classification": np.array([[0.0], [1.0], [0.0], [1.0]]),
        "single_label_classification": np.array([0, 1, 2, 1]),
    }[problem_type]
    logits = np.random.default_rng(0).normal(size=(4, 3 if problem_type == "single_label_classification" else 1))
    reported = compute_metrics(problem_type, labels, logits)
    assert set(SELECTABLE_METRICS[problem_type]) - {"loss"} <= set(reported)
    assert {name for name, value in reported.items() if name not in ("tasks", "tasks_scored")} == set(
        SELECTABLE_METRICS[problem_type]
    ) - {"loss"}


def test_metric_choices_of_the_flag_and_their_directions():
    assert set(METRIC_CHOICES) == {name for names in SELECTABLE_METRICS.values() for name in names}
    assert selection_metric("regression", None) == ("rmse", False)
    assert selection_metric("regression", "r2") == ("r2", True)
    assert selection_metric("multi_label_classification", "pr_auc") == ("pr_auc", True)
    with pytest.raises(ValueError, match="not reported for regression; choose one of rmse, mae, r2, loss"):
        selection_metric("regression", "accuracy")
