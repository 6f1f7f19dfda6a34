"""Dataset splits: deterministic scaffold (MoleculeNet / DeepChem order), seeded balanced scaffold, random, given."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

from .files import canonical_smiles

SPLIT_NAMES = ("train", "valid", "test")


def scaffold_of(smiles: str | None, row: int) -> str:
    """Bemis-Murcko scaffold (no chirality); a row that cannot be parsed gets a group of its own."""
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
        if mol is None:
            return f"<unparsable row {row}>"
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
    finally:
        RDLogger.EnableLog("rdApp.*")


def _groups(smiles: list[str | None]) -> list[list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for row, s in enumerate(smiles):
        groups[scaffold_of(s, row)].append(row)
    return list(groups.values())


def scaffold_split(smiles: list[str | None], fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    """DeepChem's ScaffoldSplitter: largest scaffold groups first (ties: larger first row index first), filling
    train, then valid, then test. No randomness."""
    n = len(smiles)
    train_cut, valid_cut = fractions[0] * n, (fractions[0] + fractions[1]) * n
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for group in sorted(_groups(smiles), key=lambda g: (len(g), g[0]), reverse=True):
        if len(split["train"]) + len(group) <= train_cut:
            split["train"] += group
        elif len(split["train"]) + len(split["valid"]) + len(group) <= valid_cut:
            split["valid"] += group
        else:
            split["test"] += group
    return {k: sorted(v) for k, v in split.items()}


def balanced_scaffold_split(smiles: list[str | None], seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    """Seeded scaffold split (chemprop's "balanced" variant): groups too large for valid/test go first, the rest
    in a seeded random order, so that several seeds give different but scaffold-disjoint splits."""
    n = len(smiles)
    sizes = [fractions[0] * n, fractions[1] * n, fractions[2] * n]
    rng = np.random.default_rng(seed)
    groups = _groups(smiles)
    big = [g for g in groups if len(g) > sizes[1] / 2 or len(g) > sizes[2] / 2]
    small = [g for g in groups if not (len(g) > sizes[1] / 2 or len(g) > sizes[2] / 2)]
    ordered = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for group in ordered:
        if len(split["train"]) + len(group) <= sizes[0]:
            split["train"] += group
        elif len(split["valid"]) + len(group) <= sizes[1]:
            split["valid"] += group
        else:
            split["test"] += group
    return {k: sorted(v) for k, v in split.items()}


def duplicate_groups(molecules: list[str | None]) -> list[list[int]]:
    """Rows that hold the same molecule (canonical SMILES without stereo, see `canonical_smiles`), for every
    molecule that occurs more than once; unparsable rows are never grouped."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, molecule in enumerate(molecules):
        key = canonical_smiles(molecule)
        if key is not None:
            groups[key].append(row)
    return [rows for rows in groups.values() if len(rows) > 1]


def random_split(
    molecules: list[str | None], seed: int, fractions=(0.8, 0.1, 0.1), duplicates: list[list[int]] | None = None
) -> dict[str, list[int]]:
    """Seeded random split that keeps the rows of one molecule together (a duplicate in train and test would be
    a leak). Molecules are taken in the seeded random order of their first row and fill train, valid, then test,
    with all their rows; without duplicates this is a plain random split of the rows. `duplicates`: the
    `duplicate_groups` of `molecules`, when the caller has them."""
    n = len(molecules)
    groups = duplicate_groups(molecules) if duplicates is None else duplicates
    rows_of = {rows[0]: rows for rows in groups}
    follower = {row for rows in rows_of.values() for row in rows[1:]}
    first, second = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    filled = 0
    for row in np.random.default_rng(seed).permutation(n).tolist():
        if row in follower:
            continue  # placed with the first row of its molecule
        rows = rows_of.get(row, [row])
        split["train" if filled < first else "valid" if filled < second else "test"] += rows
        filled += len(rows)
    return {k: sorted(v) for k, v in split.items()}


def split_from_column(values: list) -> dict[str, list[int]]:
    """Rows whose value is train / valid (or val, validation) / test."""
    aliases = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for row, value in enumerate(values):
        key = aliases.get(str(value).strip().lower())
        if key is None:
            raise ValueError(f"split column: row {row} has {value!r}; expected train, valid or test")
        split[key].append(row)
    return split


def load_split_file(path: str | Path, n: int) -> dict[str, list[int]]:
    split = json.loads(Path(path).read_text())
    check_split(split, n)
    return {k: list(map(int, split[k])) for k in SPLIT_NAMES}


def check_split(split: dict[str, list[int]], n: int) -> None:
    """Raise unless the three lists partition 0..n-1."""
    missing = [k for k in SPLIT_NAMES if k not in split]
    if missing:
        raise ValueError(f"split lacks {missing}")
    rows = [r for k in SPLIT_NAMES for r in split[k]]
    if sorted(rows) != list(range(n)):
        raise ValueError(f"split does not partition the {n} rows (duplicates, gaps or out-of-range rows)")


def make_split(
    kind: str,
    smiles: list[str | None],
    seed: int = 0,
    column_values: list | None = None,
    path: str | None = None,
    duplicates: list[list[int]] | None = None,
    fractions: tuple[float, float, float] | list[float] | None = None,
) -> dict[str, list[int]]:
    """One of: scaffold, balanced_scaffold, random, column (needs `column_values`), file (needs `path`).
    `duplicates`: the `duplicate_groups` of `smiles` when already computed (used by the random split);
    `fractions`: train / valid / test sizes of the scaffold and random splits (default 0.8 / 0.1 / 0.1)."""
    fractions = tuple(fractions) if fractions is not None else (0.8, 0.1, 0.1)
    if kind == "scaffold":
        split = scaffold_split(smiles, fractions)
    elif kind == "balanced_scaffold":
        split = balanced_scaffold_split(smiles, seed, fractions)
    elif kind == "random":
        split = random_split(smiles, seed, fractions, duplicates=duplicates)
    elif kind == "column":
        split = split_from_column(column_values or [])
    elif kind == "file":
        split = load_split_file(path, len(smiles))
    else:
        raise ValueError(f"unknown split {kind!r}: use scaffold, balanced_scaffold, random, column or file")
    check_split(split, len(smiles))
    return split
