"""`moleblend benchmark` end to end on bundled data, with a pretrained model and the overlap check."""

from __future__ import annotations

import json

import pandas as pd

from moleblend_hf.cli import main
from moleblend_hf.training.splits import scaffold_split

from .conftest import DATA, PACKAGE_DATA


def test_benchmark_runs_seeds_inits_and_reports_overlap(tmp_path):
    pretrain = tmp_path / "pretrain"
    assert main(["pretrain", "--output", str(pretrain), "--max-steps", "3", "--batch-size", "8", "--window-size",
                 "32", "--no-progress", "--report-to", "jsonl"]) == 0
    esol = pd.read_csv(DATA / "esol.csv").head(200)
    corpus = tmp_path / "corpus.smi"  # the pretraining corpus, plus two ESOL test molecules to be caught
    split = scaffold_split(esol.smiles.tolist())  # what the runner computes without a shipped split file
    leaked = [esol.smiles[split["test"][0]], esol.smiles[split["test"][1]]]
    corpus.write_text("\n".join(["CCO", *leaked]) + "\n")
    moleculenet = tmp_path / "moleculenet"
    (moleculenet / "splits").mkdir(parents=True)
    esol.to_csv(moleculenet / "esol.csv", index=False)
    out = tmp_path / "bench"
    assert main(["benchmark", "--moleculenet-dir", str(moleculenet), "--tasks", "esol", "--qm9",
                 str(PACKAGE_DATA / "qm9_small.parquet"), "--qm9-max-molecules", "120", "--qm9-targets", "gap",
                 "--seeds", "0", "1", "--epochs", "1", "--batch-size", "32", "--pretrained",
                 str(pretrain / "final"), "--pretraining-corpus", str(corpus), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 2 * 2 * 2  # tasks x inits x seeds
    row = results["table"]["esol"]
    assert row["scratch"]["n"] == 2 and row["pretrained"]["n"] == 2 and row["metric"] == "rmse"
    assert results["table"]["qm9_gap"]["unit"] == "eV" and results["table"]["qm9_gap"]["metric"] == "mae"
    assert row["test_overlap_with_pretraining"] == 2
    assert results["table"]["qm9_gap"]["test_overlap_with_pretraining"] == 0
    assert (out / "results.png").stat().st_size > 1000
    assert "± " in (out / "results.md").read_text()
