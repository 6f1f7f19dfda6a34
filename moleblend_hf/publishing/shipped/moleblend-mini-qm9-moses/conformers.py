"""Conformers: checking a given one, generating a missing one (ETKDGv3 + MMFF94, seeded, time-limited)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem, rdDistGeom


class ConformerError(ValueError):
    """A given conformer is unusable (NaN, missing, wrong atom count)."""


@dataclass(frozen=True)
class ConformerResult:
    """Positions [N, 3] float32 or None, and where they came from: 'given', 'generated', or why there are none."""

    positions: np.ndarray | None
    source: str


def given_positions(mol: Chem.Mol) -> np.ndarray | None:
    """Coordinates of the molecule's first 3D conformer, or None if it has no 3D conformer.

    Raises ConformerError for coordinates that cannot be used: non-finite values, or every atom at one point
    (how some writers mark coordinates as missing).
    """
    if mol.GetNumConformers() == 0:
        return None
    conformer = mol.GetConformer()
    positions = np.asarray(conformer.GetPositions(), dtype=np.float64)
    if not conformer.Is3D():
        return None
    check_positions(positions, mol.GetNumAtoms())
    return positions.astype(np.float32)


def check_positions(positions: np.ndarray, num_atoms: int) -> None:
    """Raise ConformerError unless `positions` is a finite [num_atoms, 3] array of distinct-looking coordinates."""
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ConformerError(f"coordinates must have shape [atoms, 3], got {list(positions.shape)}")
    if positions.shape[0] != num_atoms:
        raise ConformerError(f"{positions.shape[0]} coordinates given for {num_atoms} atoms")
    if not np.isfinite(positions).all():
        raise ConformerError("coordinates contain NaN or infinite values")
    if num_atoms > 1 and np.ptp(positions, axis=0).max() == 0.0:
        raise ConformerError("coordinates are missing: every atom sits at the same point")


def generate_positions(
    mol: Chem.Mol, seed: int = 0, timeout_s: int = 10, mmff_max_iters: int = 2000
) -> ConformerResult:
    """Embed one conformer of the heavy-atom molecule `mol` (hydrogens are added for embedding, then dropped).

    Returns positions of the atoms of `mol` in their order, or None with the reason when embedding fails or
    times out. MMFF failures keep the unoptimised ETKDG geometry (source 'generated (no MMFF: reason)').
    """
    with_hs = Chem.AddHs(mol)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    params.timeout = timeout_s
    status = AllChem.EmbedMolecule(with_hs, params)
    if status != 0:
        params.useRandomCoords = True
        status = AllChem.EmbedMolecule(with_hs, params)
    if status != 0:
        return ConformerResult(None, "generation failed: ETKDG embedding did not converge")
    source = "generated"
    try:
        properties = AllChem.MMFFGetMoleculeProperties(with_hs)
        if properties is None:
            source = "generated (no MMFF: atom types missing)"
        else:
            AllChem.MMFFGetMoleculeForceField(with_hs, properties).Minimize(maxIts=mmff_max_iters)
    except (RuntimeError, ValueError) as error:
        source = f"generated (no MMFF: {error})"
    positions = with_hs.GetConformer().GetPositions()[: mol.GetNumAtoms()]  # AddHs appends hydrogens last
    if not np.isfinite(positions).all():
        return ConformerResult(None, "generation failed: non-finite coordinates")
    return ConformerResult(positions.astype(np.float32), source)
