"""Reading molecules from files: SMILES (.smi/.csv), SDF (.sdf/.sdf.gz), parquet; bundled corpora."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..processing import read_sdf_records

PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"
#: The bundled default corpus: 2,000 QM9 molecules with DFT geometries (see moleblend_hf/data/README.md).
BUNDLED_QM9 = PACKAGE_DATA / "qm9_small.parquet"

SMILES_COLUMNS = ("smiles", "SMILES", "Smiles", "canonical_smiles", "mol")
MOLBLOCK_COLUMNS = ("molblock", "mol_block", "molblocks")


@dataclass(frozen=True)
class MoleculeRecord:
    """One input row: its 0-based position in the file, the molecule (SMILES or molblock) and an identifier."""

    row: int
    molecule: str | None
    identifier: str


def _pick_column(frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], path: Path) -> str | None:
    if wanted is not None:
        if wanted not in frame.columns:
            raise ValueError(f"{path}: column {wanted!r} not found; columns are {list(frame.columns)}")
        return wanted
    return next((c for c in candidates if c in frame.columns), None)


def read_table(path: str | Path, smiles_column: str | None = None, molblock_column: str | None = None,
               id_column: str | None = None) -> Iterator[MoleculeRecord]:
    """Yield the molecules of one file in row order.

    `.smi` / `.smiles` / `.txt`: one SMILES per line (an optional second whitespace-separated field is the
    identifier). `.csv` / `.parquet`: a SMILES or molblock column (detected, or given). `.sdf` / `.sdf.gz` /
    `.mol`: records as molblocks. Empty cells are yielded as None so they are reported, not dropped.
    """
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".sdf", ".sdf.gz", ".mol")):
        for row, block in enumerate(read_sdf_records(path)):
            title = block.splitlines()[0].strip() if block else ""
            yield MoleculeRecord(row, block, title or str(row))
        return
    if suffixes.endswith((".smi", ".smiles", ".txt")):
        with open(path, encoding="utf-8") as handle:
            for row, line in enumerate(handle):
                fields = line.split()
                yield MoleculeRecord(row, fields[0] if fields else None, fields[1] if len(fields) > 1 else str(row))
        return
    if suffixes.endswith(".csv"):
        frame = pd.read_csv(path)
    elif suffixes.endswith(".parquet"):
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: unsupported file type; use .smi, .csv, .parquet, .sdf, .sdf.gz or .mol")
    column = _pick_column(frame, molblock_column, MOLBLOCK_COLUMNS, path) if smiles_column is None else None
    column = column or _pick_column(frame, smiles_column, SMILES_COLUMNS, path)
    if column is None:
        raise ValueError(f"{path}: no SMILES or molblock column found (looked for {SMILES_COLUMNS + MOLBLOCK_COLUMNS}); "
                         "pass --smiles-column or --molblock-column")
    ids = frame[id_column] if id_column is not None else None
    if id_column is None and "id" in frame.columns:
        ids = frame["id"]
    for row, value in enumerate(frame[column].tolist()):
        molecule = value if isinstance(value, str) else None
        yield MoleculeRecord(row, molecule, str(ids.iloc[row]) if ids is not None else str(row))
