"""Does more pretraining pay? Fine-tune from points along one pretraining run and plot each task's validation metric
against the pretraining steps behind it (validation only: how long to pretrain is chosen there, never on test).

    # 1. the run's checkpoints as model directories (moleblend_hf.training.checkpoint_export)
    python -m recipes.pretraining_compute export RUN_DIR MODELS_DIR --steps 500 1000 2000
    # 2. the benchmark fine-tunes every point (scratch = 0 steps) on the same splits and seeds
    moleblend benchmark ... --output-dir BENCH --compare step500=MODELS_DIR/step-500 step1000=... step2000=...
    # 3. validation metric per point and task -> OUTPUT.json and OUTPUT.png
    python -m recipes.pretraining_compute plot BENCH/results.json OUTPUT.json --points scratch=0 step500=500 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from moleblend_hf.training.checkpoint_export import export_pretraining_checkpoint


def export(run_dir: str, models_dir: str, steps: list[int]) -> list[Path]:
    """`MODELS_DIR/step-<N>` for each N (the run must have kept `checkpoint-<N>`); existing exports are kept."""
    written = []
    for step in steps:
        target = Path(models_dir) / f"step-{step}"
        if not (target / "config.json").exists():
            export_pretraining_checkpoint(Path(run_dir) / f"checkpoint-{step}", target)
        written.append(target)
    return written


def validation_by_steps(results: dict, points: dict[str, int]) -> dict:
    """{task: {"metric", "higher_is_better", "points": [{"column", "steps", "valid", "valid_std", "test", "n"}]}}
    from a benchmark's results.json: the mean over seeds of every column named in `points` (column -> steps)."""
    table: dict[str, dict] = {}
    for task, row in results["table"].items():
        runs = [r for r in results["runs"] if r["task"] == task and r["init"] in points]
        if not runs:
            continue
        entry = table.setdefault(
            task, {"metric": row["metric"], "higher_is_better": row["metric"] == "roc_auc", "points": []}
        )
        for column, steps in sorted(points.items(), key=lambda item: item[1]):
            chosen = [r for r in runs if r["init"] == column]
            if chosen:
                valid = [r["valid"] for r in chosen]
                entry["points"].append(
                    {
                        "column": column,
                        "steps": steps,
                        "valid": statistics.fmean(valid),
                        "valid_std": statistics.stdev(valid) if len(valid) > 1 else 0.0,
                        "test": statistics.fmean(r["test"] for r in chosen),
                        "n": len(chosen),
                    }
                )
    return table


def plot(table: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(3.2 * len(table), 3.0), squeeze=False)
    for axis, (task, entry) in zip(axes[0], table.items()):
        steps = [p["steps"] for p in entry["points"]]
        axis.errorbar(
            steps,
            [p["valid"] for p in entry["points"]],
            [p["valid_std"] for p in entry["points"]],
            marker="o",
            capsize=3,
        )
        axis.set_xscale("symlog", linthresh=500)
        axis.set_xticks(steps, [str(s) for s in steps], fontsize=7)
        better = "higher" if entry["higher_is_better"] else "lower"
        axis.set_title(task)
        axis.set_xlabel("pretraining steps (0 = scratch)")
        axis.set_ylabel(f"validation {entry['metric']} ({better} is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="checkpoints of a pretraining run as model directories")
    exporting.add_argument("run_dir")
    exporting.add_argument("models_dir")
    exporting.add_argument("--steps", type=int, nargs="+", required=True)
    plotting = commands.add_parser("plot", help="validation metric against pretraining steps")
    plotting.add_argument("results", help="the benchmark's results.json")
    plotting.add_argument("output", help="OUTPUT.json (and OUTPUT.png next to it)")
    plotting.add_argument("--points", nargs="+", required=True, metavar="COLUMN=STEPS")
    args = parser.parse_args()
    if args.command == "export":
        for path in export(args.run_dir, args.models_dir, args.steps):
            print(path)
        return
    points = {column: int(steps) for column, _, steps in (p.partition("=") for p in args.points)}
    results = json.loads(Path(args.results).read_text())
    table = validation_by_steps(results, points)
    output = Path(args.output)
    output.write_text(json.dumps({"points": points, "budget": results.get("budget"), "tasks": table}, indent=2))
    plot(table, output.with_suffix(".png"))
    print(json.dumps({t: [round(p["valid"], 4) for p in e["points"]] for t, e in table.items()}))


if __name__ == "__main__":
    main()
