"""The featurized-rows cache of fine-tuning (`--cache-dir`): entries appear whole (written beside, renamed into
place), are reused by later runs, and two runs writing the same entry at once leave one complete entry."""

from __future__ import annotations

import numpy as np
import pytest

from moleblend_hf.processing import MoleBlendProcessor
from moleblend_hf.training.property_trainer import _move_into_place, featurize_rows

MOLECULES = ["CCO", "c1ccccc1O", "not a smiles", "CC(=O)N"]


def test_an_entry_is_written_whole_and_reused_with_the_same_features_and_failures(tmp_path, monkeypatch):
    processor = MoleBlendProcessor(conformers="none")
    features, failures = featurize_rows(processor, MOLECULES, tmp_path)
    assert sorted(features) == [0, 1, 3] and list(failures) == [2]
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("features-")  # no temporary directory left behind
    monkeypatch.setattr(MoleBlendProcessor, "featurize", lambda *a: pytest.fail("featurized again"))
    again, failed_again = featurize_rows(processor, MOLECULES, tmp_path)
    assert failed_again == failures and sorted(again) == sorted(features)
    for row, row_features in features.items():
        for key, value in row_features.items():
            np.testing.assert_array_equal(np.asarray(again[row][key]), np.asarray(value), err_msg=key)


def test_the_first_complete_entry_stays_and_an_interrupted_one_is_replaced(tmp_path):
    target = tmp_path / "features-abc"
    first, second = tmp_path / ".tmp-1", tmp_path / ".tmp-2"
    for directory, text in ((first, "first"), (second, "second")):
        directory.mkdir()
        (directory / "dataset_info.json").write_text(text)
    _move_into_place(first, target)
    _move_into_place(second, target)  # another run wrote the same entry meanwhile: its copy is dropped
    assert (target / "dataset_info.json").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features-abc"]
    (target / "dataset_info.json").unlink()  # an entry without its info file: a write that never finished
    third = tmp_path / ".tmp-3"
    third.mkdir()
    (third / "dataset_info.json").write_text("third")
    _move_into_place(third, target)
    assert (target / "dataset_info.json").read_text() == "third"
