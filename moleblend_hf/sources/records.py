"""One input row (`MoleculeRecord`) and how a table's molecule and identifier columns are found; shared by the
local readers (files.py) and the streamed ones (remote.py). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SMILES_COLUMNS = ("smiles", "SMILES", "Smiles", "canonical_smiles", "mol")
MOLBLOCK_COLUMNS = ("molblock", "mol_block", "molblocks")


@dataclass(frozen=True)
class MoleculeRecord:
    """One input row: its 0-based position in the file, the molecule (SMILES or molblock) and an identifier."""

    row: int
    molecule: str | None
    identifier: str


def pick_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], path: Path) -> str | None:
    if wanted is not None:
        if wanted not in frame.columns:
            raise ValueError(f"{path}: column {wanted!r} not found; columns are {list(frame.columns)}")
        return wanted
    return next((c for c in candidates if c in frame.columns), None)


def table_columns(frame: pd.DataFrame, smiles_column, molblock_column, id_column, path) -> tuple[str, str | None]:
    """(molecule column, identifier column or None) of a table, given or detected."""
    column = pick_column(frame, molblock_column, MOLBLOCK_COLUMNS, path) if smiles_column is None else None
    column = column or pick_column(frame, smiles_column, SMILES_COLUMNS, path)
    if column is None:
        raise ValueError(
            f"{path}: no SMILES or molblock column found (looked for "
            f"{SMILES_COLUMNS + MOLBLOCK_COLUMNS}); pass --smiles-column or --molblock-column"
        )
    if id_column is not None and id_column not in frame.columns:
        raise ValueError(f"{path}: id column {id_column!r} not found")
    return column, id_column or ("id" if "id" in frame.columns else None)
