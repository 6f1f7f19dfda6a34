"""`moleblend benchmark` reads a pretraining run's own records of what it kept out of training (the replacement of
the corpus-overlap column, which compared the test sets with the corpus minus the same exclusion list)."""

from __future__ import annotations

import json

from moleblend_hf.training.benchmark_tables import pretraining_exclusion, results_markdown
from moleblend_hf.training.run_directory import MARKER_FILE, MARKER_FORMAT, MARKER_VERSION

TESTS = {"esol": {"CCO", "c1ccccc1"}, "bbbp": {"CCN"}}


def _run_directory(
    path, exclude, summaries=({"molecules_seen": 10, "skipped": {"excluded (--exclude)": 2}},), job="pretrain"
):
    path.mkdir()
    (path / "run.json").write_text(
        json.dumps({"run_id": "r", "job": job, "started": "now", "settings": {"exclude": [str(f) for f in exclude]}})
    )
    # the marker every moleblend job writes (a run.json alone is not a run)
    (path / MARKER_FILE).write_text(
        json.dumps(
            {
                "format": MARKER_FORMAT,
                "version": MARKER_VERSION,
                "run_id": "r",
                "job": job,
                "finished": True,
                "written": ["run.json"],
            }
        )
    )
    for rank, summary in enumerate(summaries):
        (path / f"summary_rank{rank}.json").write_text(json.dumps(summary))
    return path


def test_counts_test_molecules_missing_from_the_runs_exclusion_list(tmp_path):
    excluded = tmp_path / "excluded.smi"
    excluded.write_text("OCC\nCCN\n")  # ethanol written differently; benzene missing
    run = _run_directory(
        tmp_path / "run",
        [excluded],
        summaries=(
            {"molecules_seen": 10, "skipped": {"excluded (--exclude)": 2, "invalid SMILES": 1}},
            {"molecules_seen": 12, "skipped": {"excluded (--exclude)": 3}},
        ),
    )
    record = pretraining_exclusion(str(run), TESTS)
    assert record["test_molecules_not_excluded"] == {"esol": 1, "bbbp": 0}
    assert record["molecules_drawn"] == 22 and record["excluded_by_stream"] == 5 and record["summaries"] == 2


def test_a_run_without_exclusion_lets_every_test_molecule_through(tmp_path):
    record = pretraining_exclusion(str(_run_directory(tmp_path / "run", [], summaries=({"molecules_seen": 4},))), TESTS)
    assert record["test_molecules_not_excluded"] == {"esol": 2, "bbbp": 1}
    assert record["excluded_by_stream"] == 0


def test_unreadable_records_are_not_checked_rather_than_zero(tmp_path):
    moved = _run_directory(tmp_path / "moved", [tmp_path / "gone.smi"])
    record = pretraining_exclusion(str(moved), TESTS)
    assert record["test_molecules_not_excluded"] is None and "gone.smi" in record["exclude_error"]
    assert pretraining_exclusion("org/some-hub-model", TESTS) is None
    assert pretraining_exclusion(str(_run_directory(tmp_path / "ft", [], job="finetune")), TESTS) is None


def test_results_markdown_reports_the_check_and_the_streams_counters(tmp_path):
    excluded = tmp_path / "excluded.smi"
    excluded.write_text("CCO\n")
    record = pretraining_exclusion(str(_run_directory(tmp_path / "run", [excluded])), TESTS)
    summary = {
        "columns": ["scratch", "pretrained"],
        "mean_rank": {"scratch": 1.5, "pretrained": 1.5},
        "budget": {"seeds": [0]},
        "subsampled": {},
        "pretraining_runs": {"pretrained": record},
        "table": {
            task: {
                "metric": "rmse",
                "unit": "",
                "test_overlap_with_pretraining": 0,
                "scratch": {"mean": 1.0, "std": 0.0, "n": 1},
                "pretrained": {"mean": 1.0, "std": 0.0, "n": 1},
            }
            for task in TESTS
        },
    }
    markdown = results_markdown(summary)
    assert "test molecules not excluded from pretraining" in markdown
    assert "| esol | rmse | 1.000 ± 0.000 | 1.000 ± 0.000 | 1 |" in markdown  # benzene was not excluded
    assert "| bbbp | rmse | 1.000 ± 0.000 | 1.000 ± 0.000 | 1 |" in markdown
    assert "dropped 2 as excluded" in markdown and "drew 10 molecules" in markdown
    summary["pretraining_runs"] = {"pretrained": None}
    assert "| esol | rmse | 1.000 ± 0.000 | 1.000 ± 0.000 | not checked |" in results_markdown(summary)
