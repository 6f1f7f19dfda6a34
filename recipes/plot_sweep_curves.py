"""The learning curves behind the fine-tuning defaults: the validation metric after every epoch of every run of
the recipe study, one panel per task, one line per setting.

    python -m recipes.plot_sweep_curves benchmarks/results/finetune_recipe/sweep.json OUTPUT.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def validation_curves(run: dict) -> tuple[list[float], list[float]]:
    """(epochs, validation metric) of one stored run's per-epoch curves: columns {"epoch": [...],
    "valid_<metric>": [...]} as `finetune` writes them, or the Trainer's log entries of runs stored before."""
    curves = run.get("curves") or []
    if isinstance(curves, dict):
        return list(curves["epoch"]), list(curves[f"valid_{run['metric']}"])
    key = f"eval_{run['metric']}"
    points = [(entry["epoch"], entry[key]) for entry in curves if key in entry]
    return [epoch for epoch, _ in points], [value for _, value in points]


def plot(sweep: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for runs in sweep["runs"].values() for task in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.0 * len(tasks), 3.0), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for index, (setting, runs) in enumerate(sweep["runs"].items()):
            if task in runs:  # one colour per setting on every panel
                epochs, values = validation_curves(runs[task])
                axis.plot(epochs, values, marker=".", label=setting, color=f"C{index}")
        metric = next(runs[task]["metric"] for runs in sweep["runs"].values() if task in runs)
        axis.set_title(task)
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"validation {metric}")
    labels = {}  # every setting once, whichever panels it ran on
    for axis in axes[0]:
        labels.update({label: handle for handle, label in zip(*axis.get_legend_handles_labels())})
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="the study's sweep.json")
    parser.add_argument("output", help="the figure (.png)")
    args = parser.parse_args()
    plot(json.loads(Path(args.sweep).read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
