"""The baseline users compare against first: a random forest on RDKit Morgan fingerprints.

Same splits, same seeds and same metrics as the fine-tuned models (`metrics.compute_metrics`), so its column in
`moleblend benchmark` is directly comparable. Molecules RDKit cannot parse are left out and counted, as they are
for the neural models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from .metrics import compute_metrics


@dataclass(frozen=True)
class FingerprintSettings:
    """ECFP4-like bits: Morgan radius 2, 2048 bits (the common MoleculeNet baseline)."""

    radius: int = 2
    num_bits: int = 2048
    n_estimators: int = 500
    min_samples_leaf: int = 1
    n_jobs: int = -1


def morgan_fingerprints(
    molecules: list[str | None], settings: FingerprintSettings = FingerprintSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints [n, num_bits] uint8 of SMILES or molblocks, and a [n] bool mask of those that parsed."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=settings.radius, fpSize=settings.num_bits)
    bits = np.zeros((len(molecules), settings.num_bits), dtype=np.uint8)
    parsed = np.zeros(len(molecules), dtype=bool)
    RDLogger.DisableLog("rdApp.*")
    try:
        for row, molecule in enumerate(molecules):
            if not isinstance(molecule, str):
                continue
            mol = Chem.MolFromMolBlock(molecule) if "\n" in molecule else Chem.MolFromSmiles(molecule)
            if mol is None:
                continue
            DataStructs.ConvertToNumpyArray(generator.GetFingerprint(mol), bits[row])
            parsed[row] = True
    finally:
        RDLogger.EnableLog("rdApp.*")
    return bits, parsed


def random_forest_baseline(
    molecules: list[str | None],
    labels: np.ndarray,
    split: dict[str, list[int]],
    problem_type: str,
    seed: int,
    settings: FingerprintSettings = FingerprintSettings(),
) -> dict:
    """Fit on the train rows, score valid and test rows with the fine-tuning metrics.

    `labels` [n_rows, n_tasks] float (NaN = missing); `problem_type` is `"regression"` or
    `"multi_label_classification"` (one forest per task column, trained on the rows where that task is present).
    Returns `{"valid": metrics, "test": metrics, "skipped_rows": count}`.
    """
    if problem_type not in ("regression", "multi_label_classification"):
        raise ValueError(f"the fingerprint baseline supports regression and binary classification, not {problem_type}")
    labels = np.asarray(labels, dtype=np.float64).reshape(len(molecules), -1)
    features, parsed = morgan_fingerprints(molecules, settings)
    rows = {name: np.asarray([r for r in split[name] if parsed[r]], dtype=int) for name in ("train", "valid", "test")}
    predictions = {name: np.full((len(rows[name]), labels.shape[1]), np.nan) for name in ("valid", "test")}
    for task in range(labels.shape[1]):
        train = rows["train"][~np.isnan(labels[rows["train"], task])]
        y = labels[train, task]
        if problem_type == "regression":
            forest = RandomForestRegressor(
                n_estimators=settings.n_estimators,
                random_state=seed,
                min_samples_leaf=settings.min_samples_leaf,
                n_jobs=settings.n_jobs,
            )
            forest.fit(features[train], y)
            for name in predictions:
                predictions[name][:, task] = forest.predict(features[rows[name]])
            continue
        if len(np.unique(y)) < 2:
            raise ValueError(f"task column {task} has one class in the training split; it cannot be learned")
        forest = RandomForestClassifier(
            n_estimators=settings.n_estimators,
            random_state=seed,
            min_samples_leaf=settings.min_samples_leaf,
            n_jobs=settings.n_jobs,
        )
        forest.fit(features[train], y.astype(int))
        for name in predictions:
            probability = np.clip(forest.predict_proba(features[rows[name]])[:, 1], 1e-6, 1 - 1e-6)
            predictions[name][:, task] = np.log(probability / (1 - probability))  # logits, as the models return
    return {
        **{name: compute_metrics(problem_type, labels[rows[name]], predictions[name]) for name in predictions},
        "skipped_rows": int((~parsed).sum()),
    }
