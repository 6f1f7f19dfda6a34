"""`moleblend predict`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..arguments import PredictArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Predict every molecule of a file with fine-tuned models. One output row per input row, in input order: rows "
    "that cannot be used stay, with an empty prediction and the reason. Several --model directories (or an "
    "ensemble directory from `moleblend finetune --seeds`) give the ensemble mean and its standard deviation as "
    "an uncertainty column; class probabilities are named by class."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(PredictArguments, argv, "predict", DESCRIPTION)

    def job() -> int:
        from ..inference.predict import predict_file

        print(json.dumps(predict_file(arguments), indent=2))
        return EXIT_OK

    return run(job, "predict")
