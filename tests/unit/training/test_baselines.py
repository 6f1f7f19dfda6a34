"""The random-forest-on-Morgan-fingerprints baseline of `moleblend benchmark`."""

from __future__ import annotations

import numpy as np
import pytest

from moleblend_hf.sources.splits import scaffold_split
from moleblend_hf.training.baselines import FingerprintSettings, morgan_fingerprints, random_forest_baseline

FAST = FingerprintSettings(n_estimators=50, n_jobs=1)


def test_fingerprints_are_morgan_radius_2_bits_and_mark_unparsable_rows():
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    bits, parsed = morgan_fingerprints(["CCO", "not a smiles", None, "c1ccccc1O"])
    assert bits.shape == (4, 2048) and bits.dtype == np.uint8
    assert parsed.tolist() == [True, False, False, True]
    assert bits[1].sum() == 0 and bits[2].sum() == 0
    expected = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048).GetFingerprint(
        Chem.MolFromSmiles("c1ccccc1O")
    )
    assert set(np.flatnonzero(bits[3])) == set(expected.GetOnBits())


def test_regression_baseline_beats_predicting_the_mean_on_esol(esol):
    smiles = esol.smiles.tolist()
    labels = esol[["measured log solubility in mols per litre"]].to_numpy(float)
    split = scaffold_split(smiles)
    result = random_forest_baseline(smiles, labels, split, "regression", seed=0, settings=FAST)
    mean_rmse = float(np.sqrt(np.mean((labels[split["test"]] - labels[split["train"]].mean()) ** 2)))
    assert result["test"]["rmse"] < 0.8 * mean_rmse
    assert result["skipped_rows"] == 0
    again = random_forest_baseline(smiles, labels, split, "regression", seed=0, settings=FAST)
    assert again["test"]["rmse"] == result["test"]["rmse"]  # seeded


def test_classification_baseline_scores_above_chance_on_bbbp(bbbp):
    smiles = bbbp.smiles.tolist() + ["C1CC"]  # an unparsable row is left out and counted
    labels = np.append(bbbp[["p_np"]].to_numpy(float), [[1.0]], axis=0)
    split = scaffold_split(smiles)
    result = random_forest_baseline(smiles, labels, split, "multi_label_classification", seed=0, settings=FAST)
    assert 0.6 < result["test"]["roc_auc"] <= 1.0 and 0.6 < result["valid"]["roc_auc"] <= 1.0
    assert result["skipped_rows"] == 1


def test_one_class_training_split_is_refused():
    smiles = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1"]
    split = {"train": [0, 1, 2], "valid": [3], "test": [4]}
    with pytest.raises(ValueError, match="one class"):
        random_forest_baseline(
            smiles, np.array([[1.0]] * 5), split, "multi_label_classification", seed=0, settings=FAST
        )
