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


def test_pretraining_compute_points_are_the_mean_validation_of_each_column_in_step_order(tmp_path):
    from recipes.pretraining_compute import plot as plot_compute
    from recipes.pretraining_compute import validation_by_steps

    def run(column, seed, valid):
        return {"task": "bace", "metric": "roc_auc", "init": column, "seed": seed, "valid": valid, "test": valid - 0.1}

    results = {
        "table": {"bace": {"metric": "roc_auc"}, "esol": {"metric": "rmse"}},
        "runs": [run("step1000", 0, 0.8), run("scratch", 0, 0.6), run("scratch", 1, 0.7), run("chemprop", 0, 0.9)],
    }
    table = validation_by_steps(results, {"step1000": 1000, "scratch": 0, "step500": 500})
    assert list(table) == ["bace"]  # a task without runs of these columns is left out
    points = table["bace"]["points"]
    assert [(p["column"], p["steps"], p["n"]) for p in points] == [("scratch", 0, 2), ("step1000", 1000, 1)]
    assert points[0]["valid"] == pytest.approx(0.65) and points[0]["test"] == pytest.approx(0.55)
    assert table["bace"]["higher_is_better"]
    pytest.importorskip("matplotlib", reason="the figure needs the [plots] extra")
    plot_compute(table, tmp_path / "compute.png")
    assert (tmp_path / "compute.png").stat().st_size > 5_000


def test_compared_columns_weigh_every_pretraining_run_once_on_the_seeds_they_share(tmp_path):
    from recipes.compare_columns import compare

    def run(task, metric, column, seed, test):
        return {"task": task, "metric": metric, "init": column, "seed": seed, "valid": test - 0.5, "test": test}

    first = tmp_path / "first.json"  # the blended run with 2 seeds, the first no-blending run with seed 0 only
    first.write_text(
        json.dumps(
            {
                "runs": [
                    run("bace", "roc_auc", "pretrained", 0, 0.80),
                    run("bace", "roc_auc", "pretrained", 1, 0.90),
                    run("bace", "roc_auc", "no_blending", 0, 0.70),
                    run("esol", "rmse", "pretrained", 0, 1.0),
                    run("esol", "rmse", "no_blending", 0, 0.8),
                ]
            }
        )
    )
    second = tmp_path / "second.json"  # the second no-blending run has no ESOL: ESOL is left out
    second.write_text(json.dumps({"runs": [run("bace", "roc_auc", "no_blending_2", 0, 0.90)]}))
    result = compare(
        [
            ("blended", first, "pretrained"),
            ("no_blending", first, "no_blending"),
            ("no_blending", second, "no_blending_2"),
        ],
        seeds=[0],
    )
    assert list(result["table"]) == ["bace"]
    row = result["table"]["bace"]
    assert row["blended"] == {"mean": 0.80, "std": 0.0, "n": 1, "runs": [0.80]}  # seed 1 is not shared: left out
    assert row["no_blending"]["runs"] == [0.70, 0.90] and row["no_blending"]["mean"] == pytest.approx(0.80)
    assert result["better_on"] == {"blended": [], "no_blending": []}  # a tie counts for neither
    assert result["mean_rank"] == {"blended": 1.5, "no_blending": 1.5}
    runs = [("blended", first, "pretrained"), ("no_blending", first, "no_blending")]
    on_valid = compare(runs, seeds=[0, 1], split="valid")  # no_blending lacks seed 1 everywhere: nothing shared
    assert on_valid["table"] == {}
    on_valid = compare(runs, seeds=[0], split="valid")
    assert on_valid["table"]["esol"]["blended"]["mean"] == pytest.approx(0.5)
    assert on_valid["better_on"] == {"blended": ["bace"], "no_blending": ["esol"]}


def test_a_sweep_keeps_the_settings_an_earlier_call_ran_and_replaces_those_it_runs_again():
    from recipes.finetune_sweep import with_earlier_settings

    earlier = {
        "defaults_ema0.99": {"bbbp": {"valid": 0.97}},
        "gm_long20_lp2": {"bbbp": {"valid": 0.90}},
        "renamed_since": {"bbbp": {"valid": 0.5}},  # no longer a setting: dropped
    }
    now = {"defaults_noclip": {"bbbp": {"valid": 0.96}}, "gm_long20_lp2": {"bbbp": {"valid": 0.974}}}
    merged = with_earlier_settings(now, earlier)
    assert list(merged) == ["gm_long20_lp2", "defaults_ema0.99", "defaults_noclip"]  # the order of SETTINGS
    assert (
        merged["gm_long20_lp2"]["bbbp"]["valid"] == 0.974 and merged["defaults_ema0.99"] == earlier["defaults_ema0.99"]
    )
