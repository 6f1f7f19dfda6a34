"""Choose fine-tuning defaults on validation splits only: fine-tune one model under a small grid of settings on a
few MoleculeNet tasks (shipped scaffold splits, one seed) and print each setting's validation metrics and its mean
rank over tasks. Test metrics are never read.

    python recipes/finetune_sweep.py MODEL_DIR MOLECULENET_DIR OUTPUT_DIR
"""

import json
import statistics
import sys
from pathlib import Path

from moleblend_hf.training.benchmark_tables import MOLECULENET
from moleblend_hf.training.finetune import FinetuneArguments, finetune

TASKS = ("bbbp", "esol", "freesolv")
GRID = {  # name -> FinetuneArguments fields
    "lr5e-4": dict(learning_rate=5e-4),
    "lr5e-4_enc0.3": dict(learning_rate=5e-4, encoder_learning_rate_ratio=0.3),
    "lr2e-4": dict(learning_rate=2e-4),
}
COMMON = dict(epochs=8, patience=4, batch_size=32, seed=0, modality="2d")


def main(model: str, moleculenet: str, output: str) -> None:
    root, out = Path(moleculenet), Path(output)
    scores: dict[str, dict[str, float]] = {}
    for name, settings in GRID.items():
        for task in TASKS:
            file, labels, metric, _ = MOLECULENET[task]
            run = out / name / task
            previous = run / "metrics.json"
            result = json.loads(previous.read_text()) if previous.exists() else finetune(FinetuneArguments(
                data=str(root / file), label_columns=labels, output_dir=str(run), split="file",
                split_file=str(root / "splits" / f"{task}.json"), model=model, cache_dir=str(out / "cache"),
                **COMMON, **settings))
            scores.setdefault(name, {})[task] = result["valid"][metric]
            print(name, task, metric, round(result["valid"][metric], 4), flush=True)
    ranks = {name: [] for name in GRID}
    for task in TASKS:
        lower_is_better = MOLECULENET[task][2] in ("rmse", "mae")
        ordered = sorted(GRID, key=lambda n: scores[n][task] if lower_is_better else -scores[n][task])
        for rank, name in enumerate(ordered, 1):
            ranks[name].append(rank)
    summary = {name: {"valid": scores[name], "mean_rank": statistics.mean(ranks[name]), **GRID[name], **COMMON}
               for name in GRID}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
