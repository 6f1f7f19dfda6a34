"""`moleblend benchmark` end to end on bundled data: seeds, inits, test-set exclusion and the overlap check."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moleblend_hf.cli import main
from moleblend_hf.sources.files import canonical_set
from moleblend_hf.sources.splits import scaffold_split
from tests.conftest import DATA, PACKAGE_DATA

BENCH = [
    "--tasks",
    "esol",
    "--qm9",
    str(PACKAGE_DATA / "qm9_small.parquet"),
    "--qm9-max-molecules",
    "120",
    "--qm9-targets",
    "gap",
]


@pytest.mark.slow
def test_benchmark_with_a_pretraining_corpus_that_excludes_the_test_sets(tmp_path):
    esol = pd.read_csv(DATA / "esol.csv").head(200)
    moleculenet = tmp_path / "moleculenet"
    moleculenet.mkdir()
    esol.to_csv(moleculenet / "esol.csv", index=False)
    split = scaffold_split(esol.smiles.tolist())  # what the runner computes without a shipped split file
    corpus = tmp_path / "corpus.smi"  # real molecules plus two ESOL test molecules that must not be trained on
    moses = (DATA.parent.parent / "benchmarks" / "data" / "moses_5k.smi").read_text().splitlines()[:200]
    corpus.write_text("\n".join(moses + [esol.smiles[split["test"][0]], esol.smiles[split["test"][1]]]) + "\n")

    test_file, out = tmp_path / "test_molecules.smi", tmp_path / "bench"
    common = ["--moleculenet-dir", str(moleculenet), *BENCH, "--output", str(out), "--no-chemprop-baseline"]
    assert main(["benchmark", *common, "--export-test-molecules", str(test_file)]) == 0
    assert len(canonical_set([corpus]) & canonical_set([test_file])) == 2

    pretrain = tmp_path / "pretrain"
    assert (
        main(
            [
                "pretrain",
                str(corpus),
                "--output",
                str(pretrain),
                "--max-steps",
                "3",
                "--batch-size",
                "8",
                "--window-size",
                "32",
                "--no-progress",
                "--report-to",
                "jsonl",
                "--exclude",
                str(test_file),
                "--shuffle-buffer",
                "1",
            ]
        )
        == 0
    )

    run = [
        "benchmark",
        *common,
        "--seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--pretrained",
        str(pretrain),
        "--compare",
        f"again={pretrain}",
        "--pretraining-corpus",
        str(corpus),
        "--pretraining-exclude",
        str(test_file),
        "--max-train-molecules",
        "100",
    ]
    assert main(run) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 * 4 * 2  # tasks x (scratch, pretrained, again, random forest) x seeds
    assert results["columns"] == ["scratch", "pretrained", "again", "random_forest"]
    row = results["table"]["esol"]
    assert row["scratch"]["n"] == 2 and row["pretrained"]["n"] == 2 and row["metric"] == "rmse"
    assert row["random_forest"]["n"] == 2 and row["random_forest"]["mean"] > 0
    # the same pretrained model under two labels, same seeds: the same numbers
    assert row["again"]["mean"] == row["pretrained"]["mean"]
    assert sorted(results["mean_rank"]) == sorted(results["columns"])
    assert results["subsampled"]["esol"]["train"].startswith("100 of")
    # QM9 targets come from the 2D graph by default
    qm9_run = json.loads((out / "runs" / "qm9_gap" / "scratch" / "seed0" / "metrics.json").read_text())
    assert qm9_run["modality"] == "2d"
    # a second invocation reuses every finished run (same arguments) instead of training again
    stamp = (out / "runs" / "esol" / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns
    forest = (out / "runs" / "esol" / "random_forest" / "seed0" / "metrics.json").stat().st_mtime_ns
    assert main(run) == 0
    assert (out / "runs" / "esol" / "random_forest" / "seed0" / "metrics.json").stat().st_mtime_ns == forest
    assert (out / "runs" / "esol" / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["table"] == results["table"]  # the random forest too
    # --summarize-only trains nothing: a seed that never ran is missing from the table, and the cell says n=2
    assert (
        main(
            [*run[: run.index("--seeds")], "--seeds", "0", "1", "7", *run[run.index("--epochs") :], "--summarize-only"]
        )
        == 0
    )
    assert not (out / "runs" / "esol" / "scratch" / "seed7").exists()
    summary = json.loads((out / "results.json").read_text())
    assert summary["table"]["esol"]["scratch"]["n"] == 2 and "(n=2)" in (out / "results.md").read_text()
    assert row["test_overlap_with_pretraining"] == 0
    # the pretraining run's own records: its --exclude list holds every test molecule; its stream's counters
    for label in ("pretrained", "again"):
        record = results["pretraining_runs"][label]
        assert record["test_molecules_not_excluded"] == {"esol": 0, "qm9_gap": 0}
        assert record["exclude"] == [str(test_file)] and record["molecules_drawn"] > 0
    assert results["table"]["qm9_gap"]["unit"] == "eV" and results["table"]["qm9_gap"]["metric"] == "mae"
    assert (out / "results.png").stat().st_size > 1000
    markdown = (out / "results.md").read_text()
    assert "± " in markdown and "mean rank" in markdown and "random forest" in markdown
    assert "test molecules not excluded from pretraining" in markdown and "its stream drew" in markdown


def test_excluded_molecules_never_reach_a_batch(tmp_path):
    from moleblend_hf import MoleBlendProcessor
    from moleblend_hf.sources.streaming import PretrainingStream, StreamSettings

    lines = (DATA.parent.parent / "benchmarks" / "data" / "moses_5k.smi").read_text().splitlines()[:50]
    corpus, excluded = tmp_path / "c.smi", tmp_path / "x.smi"
    corpus.write_text("\n".join(lines) + "\n")
    excluded.write_text("\n".join(lines[10:15]) + "\n")
    settings = StreamSettings(
        sources=(str(corpus),), batch_size=10, window_size=50, shuffle_buffer=1, exclude=(str(excluded),)
    )
    seen, skipped = [], {}
    for _, meta in PretrainingStream(settings, MoleBlendProcessor(), log_molecule_ids=True):
        if meta["epoch"] > 0:
            break
        seen += meta["ids"]
        for key, count in meta["skipped"].items():
            skipped[key] = skipped.get(key, 0) + count
    assert sorted(int(i.split(":")[1]) for i in seen) == [r for r in range(50) if not 10 <= r < 15]
    assert skipped == {"excluded (--exclude)": 5}


def test_group_by_size_reaches_the_runs_and_older_runs_count_as_shuffled(tmp_path):
    """`--group-by-size` is a fine-tuning setting of every run; a run stored before the option existed was
    shuffled, so it is reused without the flag and trained again with it."""
    from dataclasses import asdict

    from moleblend_hf.arguments import BenchmarkArguments
    from moleblend_hf.training.benchmark_tables import _finetune_arguments, _finished

    task = {"data": str(DATA / "esol.csv"), "labels": ["y"], "column": "smiles", "modality": "2d"}
    runs = {}
    for grouped in (False, True):
        args = BenchmarkArguments(moleculenet_dir=str(tmp_path), group_by_size=grouped)
        runs[grouped] = _finetune_arguments(args, task, tmp_path / "split.json", tmp_path / "run", None, 0)
    assert runs[True].group_by_size and not runs[False].group_by_size
    stored = {k: v for k, v in asdict(runs[False]).items() if k not in ("group_by_size", "config_overrides")}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(
        json.dumps({"config_overrides": {}, "arguments": stored}, default=str)
    )
    assert _finished(runs[False]) is not None and _finished(runs[True]) is None


@pytest.mark.slow
def test_the_chemprop_and_feature_columns_run_on_the_same_split_with_wall_times(tmp_path):
    """chemprop 2 and a `+features` column beside the others on a tiny table: same rows, the shared metric, a wall
    time per run, and the table's order."""
    pytest.importorskip("chemprop", reason="chemprop is not installed (pip install 'moleblend-hf[benchmarks]')")
    esol = pd.read_csv(DATA / "esol.csv").head(60)
    moleculenet = tmp_path / "moleculenet"
    moleculenet.mkdir()
    esol.to_csv(moleculenet / "esol.csv", index=False)
    out = tmp_path / "bench"
    assert (
        main(
            [
                "benchmark",
                "--moleculenet-dir",
                str(moleculenet),
                "--tasks",
                "esol",
                "--output",
                str(out),
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--chemprop-epochs",
                "3",
                "--feature-columns",
                "scratch",
                "--molecule-features",
                "rdkit2d",
                "--no-fingerprint-baseline",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["columns"] == ["scratch", "scratch+features", "chemprop"]
    row = results["table"]["esol"]
    assert row["chemprop"]["n"] == 1 and 0 < row["chemprop"]["mean"] < 10
    stored = json.loads((out / "runs" / "esol" / "chemprop" / "seed0" / "metrics.json").read_text())
    split = scaffold_split(esol.smiles.tolist())
    chemprop_rows = pd.read_csv(out / "runs" / "esol" / "chemprop" / "seed0" / "work" / "data.csv")
    assert (chemprop_rows["split"] == "test").sum() == len(split["test"])  # the same test rows as every column
    assert stored["test"]["rmse"] == row["chemprop"]["mean"] and stored["wall_time_s"] > 0
    features_run = json.loads((out / "runs" / "esol" / "scratch+features" / "seed0" / "metrics.json").read_text())
    assert features_run["arguments"]["molecule_features"] == ["rdkit2d"]
    assert all(results["median_wall_time_s"][c] > 0 for c in results["columns"])
    assert "chemprop 2" in (out / "results.md").read_text() and "wall time" in (out / "results.md").read_text()
