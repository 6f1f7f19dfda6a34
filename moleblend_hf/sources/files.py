"""Reading molecules from files: SMILES (.smi/.csv), SDF (.sdf/.sdf.gz), parquet; bundled corpora."""

from __future__ import annotations

import glob
import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pyarrow.parquet as pq
from rdkit import Chem, RDLogger

from .._optional import import_optional

# the bundled default corpus (2,000 QM9 molecules with DFT geometries, see moleblend_hf/data/README.md), defined in
# arguments where the job defaults need it, without pandas; importable from here as before (`X as X`: a re-export)
from ..arguments import BUNDLED_QM9 as BUNDLED_QM9
from ..processing import read_sdf_records

# the row type and the column detection live in records.py (shared with remote.py); importable from here as before
from .records import MOLBLOCK_COLUMNS, SMILES_COLUMNS, MoleculeRecord, pick_column, table_columns
from .remote import DATASET_PREFIX, HUB_PREFIX, is_remote, read_remote, read_remote_table, remote_shard_count

PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"


def shard_count(source: str | Path) -> int:
    """Shards of a source: 1 for a local file or a URL; a `datasets` source's own (see remote.py)."""
    return remote_shard_count(source) if is_remote(source) else 1


def read_table(
    path: str | Path,
    smiles_column: str | None = None,
    molblock_column: str | None = None,
    id_column: str | None = None,
    *,
    shard: int = 0,
    start: int = 0,
) -> Iterator[MoleculeRecord]:
    """Yield the molecules of one file (or `datasets` dataset directory) in row order, streaming.

    `.smi` / `.smiles` / `.txt`: one SMILES per line (an optional second whitespace-separated field is the
    identifier). `.csv` / `.parquet` / a `save_to_disk` dataset: a molblock or SMILES column (detected, or given).
    `.sdf` / `.sdf.gz` / `.mol`: records as molblocks. Empty cells are yielded as None so they are reported,
    not dropped. Files are read in chunks, so they may be larger than memory.

    `start`: begin at that row (rows keep their numbers); parquet row groups before it are not read. `shard`: the
    shard of a `datasets` source (see `shard_count`); local files have one.
    """
    if is_remote(path):  # an http(s) URL or a `datasets` source: streamed with `datasets` (see remote.py)
        yield from read_remote(path, smiles_column, molblock_column, id_column, shard=shard, start=start)
        return
    if shard != 0:
        raise ValueError(f"{path}: a local file has one shard, not shard {shard}")
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.is_dir():
        yield from _read_saved_dataset(path, smiles_column, molblock_column, id_column, start)
    elif suffixes.endswith(".parquet"):
        yield from _read_parquet(path, smiles_column, molblock_column, id_column, start)
    else:  # text formats: the rows before `start` are read and passed over (no index to seek with)
        yield from itertools.islice(_read_text(path, suffixes, smiles_column, molblock_column, id_column), start, None)


def read_all(
    source: str | Path,
    smiles_column: str | None = None,
    molblock_column: str | None = None,
    id_column: str | None = None,
) -> Iterator[MoleculeRecord]:
    """Every molecule of a source in order: all its shards one after the other (a Hub dataset's data files),
    rows numbered from 0 across them (identifiers that were row numbers too)."""
    shards = shard_count(source)
    records = (
        record
        for shard in range(shards)
        for record in read_table(source, smiles_column, molblock_column, id_column, shard=shard)
    )
    for row, record in enumerate(records):
        yield (
            record
            if shards == 1
            else replace(
                record, row=row, identifier=str(row) if record.identifier == str(record.row) else record.identifier
            )
        )


def read_labeled_table(
    source: str | Path, smiles_column: str | None, molblock_column: str | None
) -> tuple[pd.DataFrame, str]:
    """A whole table of molecules and labels (fine-tuning data) and the name of its molecule column: a .csv,
    .parquet or .sdf / .sdf.gz (its records' properties become columns), local or an http(s) URL, a Hub dataset
    (hf://datasets/ORG/NAME[@REVISION][/PATH]) or a registered `datasets` object (dataset:NAME)."""
    remote = is_remote(source)
    name = (urlparse(str(source)).path if remote else str(source)).lower()
    if name.endswith((".sdf", ".sdf.gz", ".mol")) and not str(source).startswith((HUB_PREFIX, DATASET_PREFIX)):
        if remote:
            import_optional("aiohttp", "remote", f"reading {source}")
        rows = []
        for block in read_sdf_records(source):  # fsspec streams a URL
            mol = Chem.MolFromMolBlock(block, sanitize=False) if block else None
            rows.append({"molblock": block, **(mol.GetPropsAsDict() if mol is not None else {})})
        return pd.DataFrame(rows), "molblock"
    if remote:
        frame = read_remote_table(str(source))
    else:
        frame = pd.read_parquet(source) if name.endswith(".parquet") else pd.read_csv(source)
    column = (
        pick_column(frame, molblock_column, MOLBLOCK_COLUMNS, source) if molblock_column else None
    ) or pick_column(frame, smiles_column, SMILES_COLUMNS + MOLBLOCK_COLUMNS, source)
    if column is not None:
        return frame, column
    raise ValueError(f"{source}: no SMILES or molblock column found; pass --smiles-column or --molblock-column")


def _read_text(path: Path, suffixes: str, smiles_column, molblock_column, id_column) -> Iterator[MoleculeRecord]:
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
    if not suffixes.endswith(".csv"):
        raise ValueError(
            f"{path}: unsupported input; use .smi, .csv, .parquet, .sdf, .sdf.gz, .mol or a "
            "datasets directory (save_to_disk)"
        )
    column, id_name = table_columns(pd.read_csv(path, nrows=0), smiles_column, molblock_column, id_column, path)
    yield from _records(pd.read_csv(path, chunksize=65536), column, id_name, 0)


def _read_parquet(path: Path, smiles_column, molblock_column, id_column, start: int) -> Iterator[MoleculeRecord]:
    """Row groups wholly before `start` are never read (their sizes are in the file's footer)."""
    parquet = pq.ParquetFile(path)
    column, id_name = table_columns(
        parquet.schema_arrow.empty_table().to_pandas(), smiles_column, molblock_column, id_column, path
    )
    group, first = 0, 0
    while group < parquet.num_row_groups and first + parquet.metadata.row_group(group).num_rows <= start:
        first += parquet.metadata.row_group(group).num_rows
        group += 1
    batches = parquet.iter_batches(
        batch_size=65536, row_groups=range(group, parquet.num_row_groups), columns=[c for c in (column, id_name) if c]
    )
    yield from itertools.islice(
        _records((batch.to_pandas() for batch in batches), column, id_name, first), start - first, None
    )


def _records(chunks: Iterator[pd.DataFrame], column: str, id_name: str | None, row: int) -> Iterator[MoleculeRecord]:
    """The molecules of table chunks, numbered from `row`."""
    for chunk in chunks:
        ids = chunk[id_name].tolist() if id_name else None
        for offset, value in enumerate(chunk[column].tolist()):
            yield MoleculeRecord(
                row, value if isinstance(value, str) else None, str(ids[offset]) if ids is not None else str(row)
            )
            row += 1


def _read_saved_dataset(
    path: Path, smiles_column, molblock_column, id_column, start: int = 0
) -> Iterator[MoleculeRecord]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    if hasattr(dataset, "keys"):  # a DatasetDict: use its train split
        if "train" not in dataset:
            raise ValueError(f"{path}: a DatasetDict without a 'train' split; point at one split's directory")
        dataset = dataset["train"]
    column, id_name = table_columns(
        pd.DataFrame(columns=dataset.column_names), smiles_column, molblock_column, id_column, path
    )
    rows = dataset.select_columns([c for c in (column, id_name) if c]).skip(start)  # memory-mapped: no reading
    for row, example in enumerate(rows.to_iterable_dataset(), start):
        value = example[column]
        yield MoleculeRecord(
            row, value if isinstance(value, str) else None, str(example[id_name]) if id_name else str(row)
        )


def expand_sources(patterns: list[str | Path]) -> list[str | Path]:
    """Files (and dataset directories) named by paths or glob patterns, in a stable sorted order; URLs as given."""
    sources: list[str | Path] = []
    for pattern in patterns:
        if is_remote(pattern):
            sources.append(pattern)
            continue
        matches = sorted(glob.glob(str(pattern), recursive=True))
        if not matches:
            raise FileNotFoundError(f"no input matches {pattern!r}")
        sources.extend(Path(m) for m in matches)
    return sources


def canonical_smiles(molecule: str | None) -> str | None:
    """Canonical SMILES without stereo of a SMILES or molblock (None if it does not parse): the identity used for
    exclusion and for overlap checks between corpora and test sets. Stereo is dropped on purpose: a molblock
    carries the stereo of its geometry while the same molecule's SMILES may not, and a stereoisomer of a test
    molecule is a leak too."""
    if not isinstance(molecule, str):
        return None
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromMolBlock(molecule) if "\n" in molecule else Chem.MolFromSmiles(molecule)
        if mol is None:
            return None
        return Chem.MolToSmiles(Chem.RemoveAllHs(mol, sanitize=False), isomericSmiles=False)
    finally:
        RDLogger.EnableLog("rdApp.*")


def canonical_set(patterns) -> set[str]:
    """Canonical SMILES of every molecule in the given files / globs."""
    return {
        c
        for source in expand_sources(list(patterns))
        for record in read_table(source)
        if (c := canonical_smiles(record.molecule)) is not None
    }
