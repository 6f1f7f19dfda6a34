"""The arguments of `moleblend corpus`."""

from __future__ import annotations

from dataclasses import dataclass

from .common import JobArguments, _positive, option


@dataclass
class CorpusArguments(JobArguments):
    """Every option of `moleblend corpus` (see `sources/corpus.py`)."""

    inputs: list[str] = option([], "files or globs of SMILES: .smi, .csv, .parquet", positional=True, nargs="+")
    output: str = option(None, "the corpus .parquet file to write", required=True)
    max_molecules: int | None = option(None, "stop after this many molecules with a conformer")
    exclude: list[str] = option(
        [], "leave these molecules out (canonical SMILES match), e.g. benchmark test sets", metavar="FILE"
    )
    seed: int = option(0, "conformer seed")
    num_workers: int = option(1, "worker processes")
    timeout_s: int = option(10, "seconds per molecule for embedding", aliases=["--timeout"])
    mmff_max_iters: int = option(2000, "MMFF94 optimisation iterations")
    smiles_column: str | None = option(None, "column of SMILES (default: detected)")
    overwrite: bool = option(False, "replace an existing output file")

    def __post_init__(self) -> None:
        if not self.inputs or not self.output:
            raise ValueError("give the input files and --output")
        _positive(self, "max_molecules", "num_workers", "timeout_s", "mmff_max_iters")
