"""A baseline run (forest, chemprop) stored by the benchmark is reused for the same data, split and settings, also
from a copied or moved benchmark directory, and never for other data."""

from __future__ import annotations

import json
import shutil

import pytest

from moleblend_hf.training.benchmark_tables import _data_key, _same_key


def test_a_stored_baseline_is_reused_only_for_the_same_bytes_split_and_settings(tmp_path):
    first = tmp_path / "first" / "data" / "hiv.parquet"
    first.parent.mkdir(parents=True)
    first.write_bytes(b"rows of the subsampled table")
    moved = tmp_path / "second" / "data" / "hiv.parquet"
    moved.parent.mkdir(parents=True)
    shutil.copy(first, moved)
    key = {"data": str(moved), "bytes": moved.stat().st_size, "split": "3f2a", "seed": 0, "labels": ["HIV_active"]}
    assert _same_key(dict(key), key)
    assert _same_key({**key, "data": str(first)}, key)  # the same bytes elsewhere: the same run
    assert not _same_key({**key, "seed": 1}, key)
    assert not _same_key({**key, "split": "9c1b"}, key)
    assert not _same_key({**key, "data": str(tmp_path / "gone.parquet")}, key)
    assert not _same_key(None, key)
    first.write_bytes(b"other rows of the same size!")  # same size, other content
    assert not _same_key({**key, "data": str(first)}, key)


def test_a_content_hash_identifies_the_data_after_the_first_copy_is_gone(tmp_path):
    table = tmp_path / "data" / "hiv.parquet"
    table.parent.mkdir()
    table.write_bytes(b"rows of the subsampled table")
    key = {**_data_key(table), "split": "3f2a", "seed": 0}
    gone = {**key, "data": str(tmp_path / "moved-away" / "hiv.parquet")}
    assert _same_key(gone, key)  # the benchmark directory was moved and its tables written again
    assert not _same_key({**gone, "sha256": "0" * 64}, key)
    legacy = {k: v for k, v in gone.items() if k != "sha256"}  # stored before keys had a hash: the path decides
    assert not _same_key(legacy, key) and _same_key({**legacy, "data": str(table)}, key)


def test_summarize_only_never_trains_a_chemprop_run_stored_for_other_data(tmp_path, monkeypatch):
    from moleblend_hf.arguments import BenchmarkArguments
    from moleblend_hf.training import benchmark_tables

    data = tmp_path / "esol.csv"
    data.write_text("smiles,y\nCCO,1.0\nCCN,2.0\nCCC,3.0\n")
    task = {
        "name": "esol",
        "metric": "rmse",
        "unit": "",
        "data": str(data),
        "labels": ["y"],
        "split": {"train": [0], "valid": [1], "test": [2]},
    }
    monkeypatch.setattr(benchmark_tables, "chemprop_version", lambda: "2.3.1")
    monkeypatch.setattr(benchmark_tables, "chemprop_baseline", lambda *a, **k: pytest.fail("trained chemprop"))
    args = BenchmarkArguments(
        output_dir=str(tmp_path / "bench"),
        moleculenet_dir=str(tmp_path),
        summarize_only=True,
        scratch=False,
        fingerprint_baseline=False,
    )
    run_dir = tmp_path / "bench" / "runs" / "esol" / "chemprop" / "seed0"
    run_dir.mkdir(parents=True)
    stored = {"test": {"rmse": 0.5}, "valid": {"rmse": 0.4}, "wall_time_s": 3.0}
    key = benchmark_tables._chemprop_key(task, 0, None)
    (run_dir / "metrics.json").write_text(json.dumps({**stored, "key": {**key, "sha256": "0" * 64}}))
    split = tmp_path / "split.json"
    assert benchmark_tables._task_runs(args, task, 0, split, tmp_path / "bench", []) == []  # left out, not trained
    (run_dir / "metrics.json").write_text(json.dumps({**stored, "key": key}))
    (run,) = benchmark_tables._task_runs(args, task, 0, split, tmp_path / "bench", [])
    assert run["init"] == "chemprop" and run["test"] == 0.5 and run["wall_time_s"] == 3.0
