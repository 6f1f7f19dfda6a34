"""The accuracy cost of int8 dynamic quantization on a fine-tuned model: its test metric, predictions and graph
embeddings, fp32 against `--quantize int8`, through the code path of `moleblend predict` (CPU).

    moleblend finetune tests/data/esol.csv --split file --split-file tests/data/esol_split.json \\
        --model moleblend-mini-qm9-moses --output-dir runs/esol          # or any fine-tuned model directory
    python -m benchmarks.int8_accuracy --model runs/esol/model --data tests/data/esol.csv \\
        --split tests/data/esol_split.json [--runs 3] [--threads 2]

The model directory's `metrics.json` (written by `moleblend finetune`) names the label columns; the split file
lists the test rows. Reported: the test metric (RMSE and MAE for regression, ROC-AUC for classification) with
each, the largest and mean absolute difference of the predictions, the deviation of the graph embeddings (max and
mean absolute, lowest cosine similarity), and the prediction time of the test set (median of `--runs`,
alternating). Prints JSON and writes benchmarks/results/int8_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import mean_absolute_error, roc_auc_score, root_mean_squared_error

from moleblend_hf.inference.predict import load_ensemble, predict_molecules
from moleblend_hf.inference.speed import quantize_int8

HERE = Path(__file__).resolve().parent


def _metrics(labels: np.ndarray, predicted: np.ndarray, problem_type: str) -> dict[str, float]:
    if problem_type == "regression":
        return {
            "rmse": float(root_mean_squared_error(labels, predicted)),
            "mae": float(mean_absolute_error(labels, predicted)),
        }
    scores = predicted[:, -1] if problem_type == "single_label_classification" else predicted
    return {"roc_auc": float(roc_auc_score(labels, scores))}


@torch.inference_mode()
def _embeddings(model, processor, molecules: list[str]) -> torch.Tensor:
    features = [processor.featurize(m) for m in molecules]
    return torch.cat(
        [model.moleblend(**processor.pad(features[i : i + 64])).pooler_output for i in range(0, len(features), 64)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a fine-tuned model directory (moleblend finetune)")
    parser.add_argument("--data", required=True, help="the CSV it was fine-tuned on")
    parser.add_argument("--split", required=True, help="JSON with the test rows under 'test'")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ((model, processor),) = load_ensemble([args.model])
    label_columns = json.loads((Path(args.model) / "metrics.json").read_text())["task"]
    frame = pd.read_csv(args.data).iloc[json.loads(Path(args.split).read_text())["test"]]
    molecules = frame[[c for c in frame.columns if c.lower() == "smiles"][0]].tolist()
    labels = frame[label_columns].to_numpy(dtype=float)
    quantized = quantize_int8(load_ensemble([args.model])[0][0])
    problem_type = model.config.problem_type

    variants = {"fp32": model.eval(), "int8": quantized}
    predictions, seconds = {}, {name: [] for name in variants}
    for _ in range(args.runs):  # alternating, so that both see the same machine state
        for name, member in variants.items():
            start = time.perf_counter()
            values, failures = predict_molecules([(member, processor)], molecules)
            seconds[name].append(time.perf_counter() - start)
            predictions[name] = values[0]
    if failures:
        raise SystemExit(f"{len(failures)} test molecules could not be featurized: {failures}")
    fp32, int8 = _embeddings(model, processor, molecules), _embeddings(quantized, processor, molecules)
    difference = np.abs(predictions["fp32"] - predictions["int8"])
    report = {
        "model": args.model,
        "data": args.data,
        "test_molecules": len(molecules),
        "problem_type": problem_type,
        "test_metric": {
            name: _metrics(
                labels.squeeze(-1) if labels.shape[1] == 1 else labels,
                values.squeeze(-1) if values.shape[1] == 1 and problem_type == "regression" else values,
                problem_type,
            )
            for name, values in predictions.items()
        },
        "prediction_deviation": {
            "max_abs": float(difference.max()),
            "mean_abs": float(difference.mean()),
            "prediction_scale_mean_abs": float(np.abs(predictions["fp32"]).mean()),
        },
        "embedding_deviation": {
            "max_abs": float((fp32 - int8).abs().max()),
            "mean_abs": float((fp32 - int8).abs().mean()),
            "embedding_scale_mean_abs": float(fp32.abs().mean()),
            "min_cosine_similarity": float(torch.cosine_similarity(fp32, int8, dim=-1).min()),
        },
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "machine": {"processor": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
    }
    report["int8_speedup"] = report["median_seconds"]["fp32"] / report["median_seconds"]["int8"]
    print(json.dumps(report, indent=2))
    (HERE / "results" / "int8_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
