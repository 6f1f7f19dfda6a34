"""`moleblend corpus`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..arguments import CorpusArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Embed one conformer per molecule (ETKDGv3 + MMFF94, seeded) in worker processes and write a parquet file "
    "(id, smiles, molblock with explicit H) for `moleblend pretrain`, so conformers are generated once rather "
    "than every epoch. Writes OUTPUT.json with the settings and counts."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(CorpusArguments, argv, "corpus", DESCRIPTION)

    def job() -> int:
        from ..sources.corpus import build_conformer_corpus

        print(json.dumps(build_conformer_corpus(arguments)["counts"], indent=2))
        return EXIT_OK

    return run(job, "corpus")
