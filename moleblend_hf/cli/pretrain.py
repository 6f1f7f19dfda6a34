"""`moleblend pretrain`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..arguments import PretrainArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Pretrain MoleBLEND with Accelerate: each atom pair's attention bias comes from one relation (shortest path, "
    "bonds along it, 3D distance) and the model predicts all of them back. Without inputs, pretrains the tiny "
    "preset on the bundled QM9 subset (2,000 molecules with DFT geometries). The final model, processor and card "
    "land at the root of --output-dir (AutoModel.from_pretrained(output_dir) works), checkpoint-N/ beside them. "
    "Several processes: launch with torchrun or accelerate launch."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(PretrainArguments, argv, "pretrain", DESCRIPTION)

    def job() -> int:
        from ..training.pretrain import pretrain

        print(json.dumps(pretrain(arguments), indent=2))
        return EXIT_OK

    return run(job, "pretrain")
