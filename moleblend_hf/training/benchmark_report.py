"""The benchmark's report, from its runs: the summary (`results.json`: mean ± std per task and column, mean ranks,
median wall times, the budget), `results.md` and `results.png` (see `benchmark_tables.py`, which runs the benchmark).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from ..arguments import CHEMPROP, RANDOM_FOREST, BenchmarkArguments


def _write_results(
    output: Path,
    runs: list[dict],
    overlap: dict,
    args: BenchmarkArguments,
    tasks: list[dict],
    pretraining: dict | None = None,
) -> dict:
    summary = {**_summarize(runs, overlap, args, tasks), "pretraining_runs": pretraining or {}}
    (output / "results.json").write_text(json.dumps({"runs": runs, **summary}, indent=2, default=str))
    (output / "results.md").write_text(results_markdown(summary))
    _plot(summary, output / "results.png")
    return summary


def column_order(args: BenchmarkArguments) -> list[str]:
    return (
        [label for label, _ in args.columns()]
        + ([CHEMPROP] if args.chemprop_baseline else [])
        + ([RANDOM_FOREST] if args.fingerprint_baseline else [])
    )


def _summarize(runs: list[dict], overlap: dict, args: BenchmarkArguments, tasks: list[dict]) -> dict:
    table = {}
    for run in runs:
        table.setdefault(run["task"], {"metric": run["metric"], "unit": run["unit"]}).setdefault(
            run["init"], []
        ).append(run["test"])
    names = column_order(args)
    for task, row in table.items():
        for init in names:
            values = [v for v in row.get(init, []) if v is not None and not np.isnan(v)]
            row[init] = (
                {
                    "mean": statistics.mean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "n": len(values),
                }
                if values
                else None
            )
        row["test_overlap_with_pretraining"] = overlap.get(task)
    ranks = mean_ranks(table, names)
    wall = {
        name: [r["wall_time_s"] for r in runs if r["init"] == name and r.get("wall_time_s") is not None]
        for name in names
    }
    wall_time = {name: statistics.median(times) if times else None for name, times in wall.items()}
    budget = {
        k: getattr(args, k)
        for k in (
            "preset",
            "epochs",
            "batch_size",
            "learning_rate",
            "encoder_learning_rate_ratio",
            "layerwise_lr_decay",
            "pooling",
            "head_layers",
            "molecule_features",
            "feature_columns",
            "weight_decay",
            "max_grad_norm",
            "warmup_ratio",
            "classifier_dropout",
            "patience",
            "seeds",
            "modality",
            "qm9_modality",
            "pretrained",
            "compare",
            "qm9_max_molecules",
            "max_train_molecules",
            "max_valid_molecules",
        )
    }
    subsampled = {t["name"]: t["subsampled"] for t in tasks if "subsampled" in t}
    return {
        "table": table,
        "columns": names,
        "mean_rank": ranks,
        "median_wall_time_s": wall_time,
        "budget": budget,
        "subsampled": subsampled,
    }


#: The benchmark's error metrics, where lower is better (on the others, ROC-AUC, higher is).
ERROR_METRICS = ("rmse", "mae")


def ranking_sign(metric: str) -> float:
    """+1 for an error metric, -1 otherwise: `sign * value` is smaller for the better result."""
    return 1.0 if metric in ERROR_METRICS else -1.0


def mean_ranks(table: dict, names: list[str]) -> dict[str, float]:
    """Mean over tasks of each column's rank (1 = best) by the mean test metric; ties share the average rank.
    Only tasks where every column has a value count."""
    ranks: dict[str, list[float]] = {name: [] for name in names}
    for row in table.values():
        if any(not isinstance(row.get(n), dict) for n in names):
            continue
        sign = ranking_sign(row["metric"])  # rank 1 = lowest error / highest AUC
        values = {n: sign * row[n]["mean"] for n in names}
        for name in names:
            below = sum(v < values[name] for v in values.values())
            equal = sum(v == values[name] for v in values.values())
            ranks[name].append(below + (equal + 1) / 2)
    return {name: statistics.mean(r) if r else float("nan") for name, r in ranks.items()}


HEADERS = {
    "scratch": "from scratch",
    "pretrained": "pretrained",
    CHEMPROP: "chemprop 2 (defaults)",
    RANDOM_FOREST: "random forest (Morgan r=2, 2048)",
}


def _not_excluded(summary: dict, task: str) -> str:
    """The table's last cell: the most test molecules of `task` that any pretrained column's run did not exclude."""
    records = list(summary.get("pretraining_runs", {}).values())
    counts = [(r.get("test_molecules_not_excluded") or {}).get(task) for r in records if r]
    if not records or len(counts) < len(records) or None in counts:
        return "not checked"
    return str(max(counts))


def _exclusion_notes(summary: dict) -> list[str]:
    notes = []
    for label, record in summary.get("pretraining_runs", {}).items():
        if record is None:
            notes.append(f"- `{label}`: not a `moleblend pretrain` run directory: exclusion not checked")
            continue
        files = ", ".join(f"`{f}`" for f in record["exclude"]) or "none"
        notes.append(
            f"- `{label}` (`{record['run']}`): its stream drew {record['molecules_drawn']} molecules and "
            f"dropped {record['excluded_by_stream']} as excluded ({record['summaries']} summary_rank*.json); "
            f"--exclude files: {files}" + (f" ({record['exclude_error']})" if "exclude_error" in record else "")
        )
    return ["Pretraining runs' own records:", *notes, ""] if notes else []


def results_markdown(summary: dict) -> str:
    """`results.md`: the table (mean ± std per column, mean rank, median wall time), the pretraining runs' exclusion
    records, the budget and the subsampling, from a benchmark summary (`results.json` as stored)."""
    names = summary["columns"]
    lines = [
        "| task | metric (test) | "
        + " | ".join(HEADERS.get(n, n) for n in names)
        + " | test molecules not excluded from pretraining |",
        "|---|---|" + "---:|" * len(names) + "---:|",
    ]
    for task, row in summary["table"].items():
        seeds = len(summary["budget"]["seeds"])
        cells = [
            (f"{row[n]['mean']:.3f} ± {row[n]['std']:.3f}" + (f" (n={row[n]['n']})" if row[n]["n"] < seeds else ""))
            if isinstance(row.get(n), dict)
            else "—"
            for n in names
        ]
        unit = f" ({row['unit']})" if row["unit"] else ""
        lines.append(
            f"| {task} | {row['metric']}{unit} | " + " | ".join(cells) + f" | {_not_excluded(summary, task)} |"
        )
    lines.append(
        "| **mean rank** (1 = best) | | " + " | ".join(f"{summary['mean_rank'][n]:.2f}" for n in names) + " | |"
    )
    wall = summary.get("median_wall_time_s", {})
    lines.append(
        "| median wall time per run (s) | | "
        + " | ".join(f"{wall[n]:.0f}" if wall.get(n) is not None else "—" for n in names)
        + " | |"
    )
    lines += ["", *_exclusion_notes(summary), f"Budget: `{json.dumps(summary['budget'], default=str)}`", ""]
    if summary["subsampled"]:
        lines += [f"Subsampled (seeded, rows kept of each split): `{json.dumps(summary['subsampled'])}`", ""]
    return "\n".join(lines)


COLORS = ["#999999", "#3b7dd8", "#8fb8ef", "#d8893b", "#5aa05a", "#b05ab0"]


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary["table"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.2), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        row = summary["table"][task]
        names = [i for i in summary["columns"] if isinstance(row.get(i), dict)]
        axis.bar(
            range(len(names)),
            [row[i]["mean"] for i in names],
            yerr=[row[i]["std"] for i in names],
            color=[COLORS[k % len(COLORS)] for k in range(len(names))],
            capsize=4,
        )
        axis.set_xticks(
            range(len(names)), [HEADERS.get(i, i).split(" (")[0] for i in names], rotation=30, ha="right", fontsize=8
        )
        axis.set_title(task)
        axis.set_ylabel(row["metric"] + (f" ({row['unit']})" if row["unit"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
