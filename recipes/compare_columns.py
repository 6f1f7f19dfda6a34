"""Columns of `moleblend benchmark` results compared as arms, where an arm may pool several columns: the paper's
ablation over pretraining runs (blended against no blending, each arm with its pretraining runs, each run one
column fine-tuned with the same recipe, splits and metrics) or a choice made on validation (e.g. which molecule
descriptors). Only the fine-tuning seeds every column has are used, so each column weighs the same.

    python -m recipes.compare_columns OUTPUT.json --run ARM=RESULTS_JSON:COLUMN [--run ...] [--seeds 0]
        [--split test|valid]

Per task: each column's metric (mean over the seeds), each arm's mean ± std over its columns; then which arm is
best on how many tasks and each arm's mean rank (1 = best on every task).
"""

import argparse
import json
import statistics
from pathlib import Path

from moleblend_hf.training.benchmark_report import mean_ranks, ranking_sign


def _run_values(results: dict, column: str, seeds: list[int], split: str) -> dict[str, tuple[str, float]]:
    """task -> (metric, mean `split` metric over `seeds`) of one column, for tasks where it has every seed."""
    found: dict[str, dict[int, float]] = {}
    metrics = {}
    for run in results["runs"]:
        if run["init"] == column and run["seed"] in seeds and run[split] is not None:
            found.setdefault(run["task"], {})[run["seed"]] = run[split]
            metrics[run["task"]] = run["metric"]
    return {
        task: (metrics[task], statistics.mean(by_seed[s] for s in seeds))
        for task, by_seed in found.items()
        if set(by_seed) == set(seeds)
    }


def compare(runs: list[tuple[str, Path, str]], seeds: list[int], split: str = "test") -> dict:
    """`runs`: (arm, results.json, column) of every column; `split`: "test" or "valid"."""
    values = [
        (arm, f"{path}:{column}", _run_values(json.loads(path.read_text()), column, seeds, split))
        for arm, path, column in runs
    ]
    arms = list(dict.fromkeys(arm for arm, _, _ in runs))
    tasks = [t for t in values[0][2] if all(t in v for _, _, v in values)]
    table = {}
    for task in tasks:
        row = {"metric": values[0][2][task][0]}
        for arm in arms:
            per_run = [v[task][1] for a, _, v in values if a == arm]
            row[arm] = {
                "mean": statistics.mean(per_run),
                "std": statistics.stdev(per_run) if len(per_run) > 1 else 0.0,
                "n": len(per_run),
                "runs": per_run,
            }
        table[task] = row
    better = {arm: [] for arm in arms}
    for task, row in table.items():
        sign = ranking_sign(row["metric"])
        best = min(arms, key=lambda a: sign * row[a]["mean"])
        if sum(sign * row[a]["mean"] == sign * row[best]["mean"] for a in arms) == 1:
            better[best].append(task)
    return {
        "seeds": seeds,
        "split": split,
        "runs": [{"arm": arm, "source": source} for arm, source, _ in values],
        "table": table,
        "better_on": better,
        "mean_rank": mean_ranks(table, arms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("--run", action="append", required=True, metavar="ARM=RESULTS_JSON:COLUMN")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--split", choices=["test", "valid"], default="test")
    args = parser.parse_args()
    runs = []
    for item in args.run:
        arm, _, rest = item.partition("=")
        path, _, column = rest.rpartition(":")
        if not arm or not path or not column or not Path(path).is_file():
            parser.error(f"--run takes ARM=RESULTS_JSON:COLUMN with an existing file, got {item!r}")
        runs.append((arm, Path(path), column))
    result = compare(runs, args.seeds, args.split)
    if not result["table"]:
        parser.error(f"no task has every run at seeds {args.seeds}")
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    for task, row in result["table"].items():
        print(task, {arm: round(v["mean"], 3) for arm, v in row.items() if isinstance(v, dict)})
    print("mean rank", result["mean_rank"], "better on", {a: len(t) for a, t in result["better_on"].items()})


if __name__ == "__main__":
    main()
