"""Figures without matplotlib: skipped with a warning naming the extra, their CSVs still written."""

from __future__ import annotations

import logging
import sys

import numpy as np

from moleblend_hf.training.plots import write_parity


def test_figures_are_skipped_with_a_warning_without_matplotlib_and_the_csvs_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING):
        write_parity(
            tmp_path,
            [3, 5],
            np.array([[1.0], [2.0]]),
            np.array([[1.5], [2.5]]),
            ["y"],
            {"rmse": 0.5, "mae": 0.5, "r2": 0.0},
        )
    assert (tmp_path / "test_parity.csv").exists() and not (tmp_path / "test_parity.png").exists()
    assert "moleblend-hf[plots]" in caplog.text
