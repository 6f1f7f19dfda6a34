"""What an ensemble of fine-tuning seeds gains over its members: for every task where a `moleblend benchmark` column
finished at least two seeds, the members' and the ensemble's (mean of the members' probabilities or values, as
`moleblend predict` averages) validation metric, and the test metric recorded beside it (never used to choose).

    python -m recipes.seed_ensembles BENCHMARK_DIR COLUMN OUTPUT_JSON
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from moleblend_hf.inference.predict import load_ensemble, predict_molecules
from recipes.frozen_probe import score


def metrics(problem_type: str, labels: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """ROC-AUC of the positive class (single-task classification) or RMSE and MAE (single-task regression)."""
    if problem_type == "regression":
        return {name: score(name, labels, values[:, 0]) for name in ("rmse", "mae")}
    return {"roc_auc": score("roc_auc", labels, values[:, -1])}


def task_ensemble(runs: list[Path]) -> dict:
    """Members' and ensemble's metrics on the validation and test rows of the runs' (shared) split."""
    first = json.loads((runs[0] / "metrics.json").read_text())
    arguments, split = first["arguments"], json.loads((runs[0] / "split.json").read_text())
    data = arguments["data"]
    table = pd.read_parquet(data) if data.endswith(".parquet") else pd.read_csv(data)
    column = arguments["molblock_column"] or arguments["smiles_column"]
    members = load_ensemble([str(run) for run in runs])
    problem_type = members[0][0].config.problem_type
    result = {"seeds": [run.name for run in runs], "metric": first["selection_metric"]}
    for part in ("valid", "test"):
        rows = split[part]
        values, failures = predict_molecules(members, table[column].iloc[rows].tolist())
        keep = [i for i in range(len(rows)) if i not in failures]
        labels = table[first["task"][0]].iloc[rows].to_numpy()[keep]
        each = [metrics(problem_type, labels, values[m, keep]) for m in range(len(members))]
        result[part] = {
            "members": each,
            "members_mean": {k: statistics.mean(e[k] for e in each) for k in each[0]},
            "ensemble": metrics(problem_type, labels, values[:, keep].mean(0)),
        }
    return result


def main() -> None:
    benchmark, column, output = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    report = {}
    for task in sorted(p.name for p in (benchmark / "runs").iterdir()):
        runs = sorted((benchmark / "runs" / task / column).glob("seed*/metrics.json"))
        if len(runs) >= 2:
            report[task] = task_ensemble([r.parent for r in runs])
            valid = report[task]["valid"]
            metric = report[task]["metric"]
            print(
                task,
                metric,
                "members",
                round(valid["members_mean"][metric], 4),
                "ensemble",
                round(valid["ensemble"][metric], 4),
                flush=True,
            )
    output.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
