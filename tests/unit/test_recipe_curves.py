"""The learning-curves figure of the recipe study reads every epoch's validation metric from the stored study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.plot_sweep_curves import plot, validation_curves

SWEEP = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "finetune_recipe" / "sweep.json"


@pytest.mark.parametrize("setting", ["base", "gm_long20_lp2"])  # the Trainer's log entries; finetune's columns
def test_validation_curves_are_the_stored_epochs_in_order(setting):
    run = json.loads(SWEEP.read_text())["runs"][setting]["bace"]
    epochs, values = validation_curves(run)
    assert epochs == sorted(epochs) and epochs[0] == 1.0 and len(epochs) == len(values) >= 2
    assert max(values) == pytest.approx(run["valid"])  # the chosen checkpoint is the best validation epoch


def test_the_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib", reason="the figure needs the [plots] extra")
    plot(json.loads(SWEEP.read_text()), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
