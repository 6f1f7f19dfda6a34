"""Molecule-level descriptors that the property head can read next to the learned embedding (as chemprop's
molecule featurizers): RDKit 2D descriptors and Morgan count fingerprints.

The processor computes raw values here; the model standardises them with statistics fitted on the training rows
(stored with its weights), so `predict`, the pipelines and remote code compute the same inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator

MOLECULE_FEATURE_SETS = ("rdkit2d", "morgan_count")
MORGAN_RADIUS = 2
MORGAN_SIZE = 2048


def rdkit2d_names() -> list[str]:
    """The RDKit 2D descriptors of the installed RDKit, in its order (stored with a processor, so a model keeps its
    inputs when RDKit adds descriptors)."""
    return [name for name, _ in Descriptors.descList]


def molecule_feature_size(sets: Sequence[str], descriptor_names: Sequence[str] | None = None) -> int:
    """Width of the feature vector of `sets` (the rdkit2d part: `descriptor_names`, default the installed list)."""
    check_feature_sets(sets)
    size = 0
    for name in sets:
        size += (
            len(descriptor_names if descriptor_names is not None else rdkit2d_names())
            if name == "rdkit2d"
            else MORGAN_SIZE
        )
    return size


def check_feature_sets(sets: Sequence[str]) -> None:
    unknown = [s for s in sets if s not in MOLECULE_FEATURE_SETS]
    if unknown or len(set(sets)) != len(sets):
        raise ValueError(f"molecule features must be distinct names among {MOLECULE_FEATURE_SETS}, got {list(sets)}")


@functools.cache
def _descriptor_functions(names: tuple[str, ...]) -> list:
    """RDKit's functions of `names`, looked up once per name list (featurization calls this per molecule)."""
    available = dict(Descriptors.descList)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(
            f"this RDKit lacks the descriptors {missing[:5]} (of {len(missing)}) that the model was "
            f"trained with: install the RDKit version it was made with"
        )
    return [available[n] for n in names]


@functools.cache
def _morgan_generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_SIZE)


def compute_molecule_features(mol: Chem.Mol, sets: Sequence[str], descriptor_names: Sequence[str]) -> np.ndarray:
    """[F] float32 features of one molecule, in the order of `sets`.

    RDKit 2D descriptors are compressed with sign(x)·log(1 + |x|) (heavy tails such as Ipc's 1e20 would otherwise
    dominate any scaling); a descriptor RDKit cannot compute is NaN (the model reads it as the training mean).
    Morgan counts (radius 2, 2,048 bins) are raw counts."""
    heavy = Chem.RemoveHs(mol, sanitize=False) if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()) else mol
    parts = []
    for name in sets:
        if name == "rdkit2d":
            values = np.full(len(descriptor_names), np.nan)
            for i, function in enumerate(_descriptor_functions(tuple(descriptor_names))):
                try:
                    values[i] = float(function(heavy))
                except Exception:  # noqa: BLE001 - RDKit descriptors raise many types on unusual molecules
                    pass
            with np.errstate(invalid="ignore", over="ignore"):
                values = np.where(np.isfinite(values), np.sign(values) * np.log1p(np.abs(values)), np.nan)
            parts.append(values)
        elif name == "morgan_count":
            parts.append(_morgan_generator().GetCountFingerprintAsNumPy(heavy).astype(np.float64))
        else:
            check_feature_sets([name])
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


__all__ = [
    "MOLECULE_FEATURE_SETS",
    "check_feature_sets",
    "compute_molecule_features",
    "molecule_feature_size",
    "rdkit2d_names",
]
