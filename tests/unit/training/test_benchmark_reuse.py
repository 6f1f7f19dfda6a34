"""A baseline run (forest, chemprop) stored by the benchmark is reused for the same data, split and settings, also
from a copied or moved benchmark directory, and never for other data."""

from __future__ import annotations

import shutil

from moleblend_hf.training.benchmark_tables import _same_key


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
