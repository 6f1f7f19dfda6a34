"""`moleblend embed`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from ..arguments import EmbedArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Embed molecules with a MoleBLEND model into parquet parts (resumable). Without --input, embeds the bundled "
    "QM9 subset (2,000 molecules with DFT geometries)."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(EmbedArguments, argv, "embed", DESCRIPTION)

    def job() -> int:
        from ..inference.embed import embed

        if arguments.model is None:
            print(
                f"note: no --model given; embedding with a randomly initialised '{arguments.preset}' model (a demo "
                "of the pipeline; pass a trained model for meaningful embeddings)",
                file=sys.stderr,
            )
        print(json.dumps(asdict(embed(arguments)), indent=2))
        return EXIT_OK

    return run(job, "embed")
