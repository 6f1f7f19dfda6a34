"""Frozen-embedding probe: how much a linear model on the shipped checkpoint's frozen embeddings gets, per task,
next to fine-tuning (the diagnosis behind the fine-tuning recipe).

The checkpoint encodes every molecule from its 2D graph; the graph token, the mean of the atom states, or both
feed a logistic regression (classification) or ridge regression (regression) whose regularisation is chosen on the
validation split from 5 values. Tasks and splits are those of `moleblend benchmark` (scaffold splits; HIV and
Lipophilicity training splits cut to 2,000 molecules, HIV validation to 500; QM9 gap/HOMO/LUMO, 3,000 molecules).

    python -m recipes.frozen_probe MOLECULENET_DIR QM9_PARQUET OUTPUT_JSON
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score
from sklearn.preprocessing import StandardScaler

import moleblend_hf
from moleblend_hf import MoleBlendModel, MoleBlendProcessor
from moleblend_hf.arguments import BenchmarkArguments
from moleblend_hf.training.benchmark_tables import _subsample, _tasks

REGULARISATION = (0.001, 0.01, 0.1, 1.0, 10.0)  # C of the logistic regression; 1/alpha of the ridge


def benchmark_tasks(moleculenet: str, qm9: str, work: Path) -> list[dict]:
    args = BenchmarkArguments(
        moleculenet_dir=moleculenet,
        qm9=qm9,
        qm9_targets=["gap", "homo", "lumo"],
        qm9_max_molecules=3000,
        max_train_molecules=2000,
        max_valid_molecules=500,
        output_dir=str(work),
        chemprop_baseline=False,
    )
    work.mkdir(parents=True, exist_ok=True)
    return [_subsample(task, args, work) for task in _tasks(args, work)]


@torch.inference_mode()
def embeddings(model: MoleBlendModel, processor: MoleBlendProcessor, smiles: list[str]) -> tuple:
    """Graph token [n, D] and atom mean [n, D] of the molecules that featurize, and their row numbers."""
    graph, mean, rows = [], [], []
    for start in range(0, len(smiles), 128):
        batch = processor(smiles[start : start + 128], errors="skip")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool().unsqueeze(-1)
        graph.append(hidden[:, 0].numpy())
        mean.append(((hidden[:, 1:] * mask).sum(1) / mask.sum(1)).numpy())
        rows += [start + i for i in batch.input_indices]
    return np.concatenate(graph), np.concatenate(mean), rows


def score(metric: str, y: np.ndarray, predicted: np.ndarray) -> float:
    if metric == "roc_auc":
        return float(roc_auc_score(y, predicted))
    return float(mean_squared_error(y, predicted) ** 0.5 if metric == "rmse" else mean_absolute_error(y, predicted))


def probe(features: np.ndarray, labels: np.ndarray, split: dict[str, list[int]], metric: str) -> dict:
    """The validation-chosen linear model's validation and test metric."""
    scaler = StandardScaler().fit(features[split["train"]])
    x = {name: scaler.transform(features[rows]) for name, rows in split.items()}
    y = {name: labels[rows] for name, rows in split.items()}
    best = None
    for strength in REGULARISATION:
        if metric == "roc_auc":
            fitted = LogisticRegression(C=strength, max_iter=2000).fit(x["train"], y["train"])
            valid, test = (fitted.predict_proba(x[n])[:, 1] for n in ("valid", "test"))
        else:
            fitted = Ridge(alpha=1.0 / strength).fit(x["train"], y["train"])
            valid, test = (fitted.predict(x[n]) for n in ("valid", "test"))
        result = {"valid": score(metric, y["valid"], valid), "test": score(metric, y["test"], test), "C": strength}
        if best is None or (
            result["valid"] > best["valid"] if metric == "roc_auc" else result["valid"] < best["valid"]
        ):
            best = result
    return best


def main(moleculenet: str, qm9: str, output: str) -> None:
    path = moleblend_hf.resolve_model("moleblend-mini-qm9-moses")
    model = MoleBlendModel.from_pretrained(path, use_3d_relations=False).eval()
    processor = MoleBlendProcessor.from_config(model.config, conformers="none")
    results = {}
    for task in benchmark_tasks(moleculenet, qm9, Path(output).parent / "probe_data"):
        reader = pd.read_parquet if str(task["data"]).endswith(".parquet") else pd.read_csv
        labels = reader(task["data"])[task["labels"][0]].to_numpy(dtype=float)
        graph, mean, rows = embeddings(model, processor, task["molecules"])
        position = {row: i for i, row in enumerate(rows)}
        split = {
            name: [position[r] for r in task["split"][name] if r in position and not np.isnan(labels[r])]
            for name in ("train", "valid", "test")
        }
        values = labels[rows]
        results[task["name"]] = {
            name: probe(features, values, split, task["metric"])
            for name, features in (("graph", graph), ("mean", mean), ("both", np.concatenate([graph, mean], 1)))
        }
        print(task["name"], json.dumps(results[task["name"]]), flush=True)
    Path(output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
