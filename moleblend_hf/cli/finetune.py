"""`moleblend finetune`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..arguments import FinetuneArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Fine-tune MoleBLEND with the transformers Trainer: early stopping and checkpoint choice on the validation "
    "metric. Writes the model, processor and card at the root of --output-dir, with metrics.json, split.json, "
    "test_predictions.csv, skipped_rows.csv and figures (learning curves, a test parity or ROC/PR plot, each with its "
    "CSV). Labels may be numbers or class names ('active'/'inactive'). With "
    "--seeds or --kfold, one model per member in member directories and an ensemble that `moleblend predict` and "
    "the pipelines load as one directory, its uncertainty calibrated on the validation split. --search-trials first "
    "searches hyperparameters on the validation split (optuna)."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(FinetuneArguments, argv, "finetune", DESCRIPTION)

    def job() -> int:
        from ..training.finetune import finetune

        result = finetune(arguments)
        print(
            json.dumps(
                {k: result[k] for k in ("problem_type", "split", "valid", "test", "skipped_rows") if k in result},
                indent=2,
                default=str,
            )
        )
        return EXIT_OK

    return run(job, "finetune")
