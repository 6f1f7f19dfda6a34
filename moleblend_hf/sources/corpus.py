"""`moleblend corpus`: generate conformers once and store them as a pretraining corpus file.

Pretraining with `--conformers generate` embeds a conformer every time a molecule is read, i.e. once per epoch;
on a CPU that costs more than the model step. This job embeds each molecule once (ETKDGv3 + MMFF94, seeded, in
worker processes) and writes a parquet file of molblocks with explicit hydrogens and the conformer, which the
pretraining job then reads with `--conformers given`. Molecules given to `exclude` (e.g. benchmark test sets) are
left out before any work; molecules whose embedding fails are kept out of the corpus and counted by reason.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rdkit import Chem, RDLogger

from ..arguments import CorpusArguments
from ..processing.conformers import generate_positions
from .files import canonical_set, canonical_smiles, expand_sources, read_table

SCHEMA = pa.schema([("id", pa.string()), ("smiles", pa.string()), ("molblock", pa.string())])


def _embed(task: tuple[str, str, int, int, int]) -> tuple[str, str, str | None, str]:
    """(id, smiles) -> (id, smiles, molblock with H and conformer or None, status)."""
    identifier, smiles, seed, timeout_s, mmff_max_iters = task
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        return identifier, smiles, None, "invalid SMILES"
    mol = Chem.RemoveHs(mol)
    result = generate_positions(mol, seed=seed, timeout_s=timeout_s, mmff_max_iters=mmff_max_iters)
    if result.positions is None:
        return identifier, smiles, None, result.source
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for index, xyz in enumerate(result.positions.tolist()):
        conformer.SetAtomPosition(index, xyz)
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    # the processor drops hydrogens, but a 3D molblock with explicit H is what other tools expect: place them
    # from their heavy atoms
    return identifier, smiles, Chem.MolToMolBlock(Chem.AddHs(mol, addCoords=True)), result.source


def _tasks(args: CorpusArguments, excluded: set[str], counts: Counter) -> Iterator[tuple]:
    for source in expand_sources(args.inputs):
        for record in read_table(source, smiles_column=args.smiles_column):
            if record.molecule is None:
                counts["empty row"] += 1
                continue
            if excluded and canonical_smiles(record.molecule) in excluded:
                counts["excluded"] += 1
                continue
            yield record.identifier, record.molecule, args.seed, args.timeout_s, args.mmff_max_iters


def build_conformer_corpus(args: CorpusArguments) -> dict:
    """Write `args.output` (parquet: id, smiles, molblock) and `<output>.json` (settings and counts)."""
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    if args.num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {args.num_workers}")
    excluded = canonical_set(args.exclude) if args.exclude else set()
    counts: Counter = Counter()
    temporary = output.with_name(output.name + ".partial")
    rows: list[tuple] = []

    def flush() -> None:
        if rows:
            writer.write_table(pa.Table.from_arrays([pa.array(c) for c in zip(*rows)], schema=SCHEMA))
            rows.clear()

    with (
        pq.ParquetWriter(temporary, SCHEMA) as writer,
        multiprocessing.get_context("spawn").Pool(args.num_workers) as pool,
    ):
        for identifier, smiles, molblock, status in pool.imap(_embed, _tasks(args, excluded, counts), chunksize=16):
            if molblock is None:
                counts[status] += 1
                continue
            counts["written"] += 1
            rows.append((identifier, smiles, molblock))
            if len(rows) == 4096:
                flush()
            if args.max_molecules and counts["written"] >= args.max_molecules:
                pool.terminate()
                break
        flush()
    temporary.replace(output)
    summary = {
        "output": str(output),
        "counts": dict(counts),
        "settings": asdict(args),
        "method": "RDKit ETKDGv3 (seeded) + MMFF94 minimisation, hydrogens placed from heavy atoms",
    }
    output.with_name(output.name + ".json").write_text(json.dumps(summary, indent=2))
    return summary
