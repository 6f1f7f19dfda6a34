"""Processor throughput: molecules/s of 2D featurization (atom/bond features, shortest paths, K-hop path bonds,
no conformer generation) plus collation into padded batches, on 5,000 MOSES molecules, in one process, for both
path tie-breaks (`canonical`, the default, and `official`, the official code's Floyd-Warshall choice; runs
interleaved).

Compared in the same run with OGB `smiles2graph` + Graphormer `preprocess_item` + `GraphormerDataCollator`
(transformers 4.x, Cython), run in the venv made by `benchmarks/setup_graphormer_venv.sh`.

    python -m benchmarks.processor_throughput [--runs 5] [--graphormer-python .venv-graphormer/bin/python]

Prints JSON (medians of the runs) and writes it to benchmarks/results/processor_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from moleblend_hf import MoleBlendProcessor

HERE = Path(__file__).resolve().parent


def time_moleblend(smiles: list[str], batch_size: int, tie_break: str = "canonical") -> float:
    processor = MoleBlendProcessor(conformers="none", path_tie_break=tie_break)
    start = time.perf_counter()
    features = [processor.featurize(s, i) for i, s in enumerate(smiles)]
    for begin in range(0, len(features), batch_size):
        processor.pad(features[begin : begin + batch_size])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(HERE / "data" / "moses_5k.smi"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--graphormer-python", default=str(HERE.parent / ".venv-graphormer" / "bin" / "python"))
    parser.add_argument("--output", default=str(HERE / "results" / "processor_throughput.json"))
    args = parser.parse_args()

    smiles = [line.split()[0] for line in open(args.data) if line.strip()]
    time_moleblend(smiles[:50], args.batch_size)  # warm up
    ours, official = [], []
    for _ in range(args.runs):
        ours.append(time_moleblend(smiles, args.batch_size))
        official.append(time_moleblend(smiles, args.batch_size, "official"))
    result = {
        "benchmark": "processor_throughput",
        "molecules": len(smiles),
        "runs": args.runs,
        "batch_size": args.batch_size,
        "moleblend_molecules_per_s": len(smiles) / statistics.median(ours),
        "moleblend_seconds": ours,
        "moleblend_official_tie_break_molecules_per_s": len(smiles) / statistics.median(official),
        "moleblend_official_tie_break_seconds": official,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "python": platform.python_version(),
    }
    if Path(args.graphormer_python).exists():
        completed = subprocess.run(
            [
                args.graphormer_python,
                str(HERE / "_graphormer_pipeline.py"),
                args.data,
                str(args.runs),
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE,
        )
        reference = json.loads(completed.stdout.strip().splitlines()[-1])
        result["graphormer_molecules_per_s"] = len(smiles) / statistics.median(reference["seconds"])
        result["graphormer_seconds"] = reference["seconds"]
        result["speedup"] = result["moleblend_molecules_per_s"] / result["graphormer_molecules_per_s"]
        result["speedup_official_tie_break"] = (
            result["moleblend_official_tie_break_molecules_per_s"] / result["graphormer_molecules_per_s"]
        )
    else:
        result["graphormer_molecules_per_s"] = None
        result["note"] = f"{args.graphormer_python} not found: run benchmarks/setup_graphormer_venv.sh"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
