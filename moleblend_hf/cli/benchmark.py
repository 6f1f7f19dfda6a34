"""`moleblend benchmark`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..arguments import BenchmarkArguments
from .parser import EXIT_OK, parse, run

DESCRIPTION = (
    "Fine-tune on MoleculeNet tasks (scaffold splits) and QM9 targets (random split) for several seeds: from "
    "scratch, from --pretrained and --compare models, and a random forest on Morgan fingerprints; writes "
    "results.json, results.md and results.png. Finished runs with the same arguments are reused."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(BenchmarkArguments, argv, "benchmark", DESCRIPTION)

    def job() -> int:
        from ..training.benchmark_tables import export_test_molecules, run_benchmark

        if arguments.export_test_molecules:
            count = export_test_molecules(arguments, arguments.export_test_molecules)
            print(f"wrote {count} test molecules to {arguments.export_test_molecules}")
        else:
            print(json.dumps(run_benchmark(arguments), indent=2, default=str))
        return EXIT_OK

    return run(job, "benchmark")
