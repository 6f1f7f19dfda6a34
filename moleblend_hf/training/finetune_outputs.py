"""What `moleblend finetune` writes besides its checkpoints (see `finetune.py`): the calibration (calibration.json,
an ensemble's in ensemble.json), test_predictions.csv, skipped_rows.csv, the figures with their CSVs, and the
model, processor and card (pushed with --push-to-hub).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..arguments import FinetuneArguments
from ..inference.calibration import apply_calibration, calibration_metrics, fit_calibration, probabilities
from ..processing import MoleBlendProcessor
from ..publishing.card import write_model_card
from ..publishing.checkpoints import CALIBRATION_FILE, resolve_model
from ..publishing.push import push_directory
from ..sources.files import MOLBLOCK_COLUMNS
from .labels import count_labels
from .plots import write_learning_curves, write_parity, write_roc_pr
from .run_directory import RunDirectory, save_model_atomically

logger = logging.getLogger(__name__.rpartition(".")[0] + ".finetune")  # logs as the job, as before the move


def _fit_single_model_calibration(
    args: FinetuneArguments, problem_type: str, raw: dict[str, tuple], output: Path, result: dict
) -> dict | None:
    """With --conformal-alpha (regression): intervals from the validation residuals, stored in calibration.json
    (read by `moleblend predict`), their coverage in metrics.json."""
    if args.conformal_alpha is None:
        return None
    _, labels, predictions = raw["valid"]
    calibration = fit_calibration(problem_type, labels, predictions[None], args.conformal_alpha)
    (output / CALIBRATION_FILE).write_text(json.dumps({"problem_type": problem_type, **calibration}, indent=2))
    result["calibration"] = {
        "fitted": calibration,
        **{name: calibration_metrics(problem_type, part[1], part[2][None], calibration) for name, part in raw.items()},
    }
    return calibration


def _write_figures(
    output: Path,
    curves: pd.DataFrame,
    metric: str,
    problem_type: str,
    test: tuple,
    label_columns: list[str],
    test_metrics: dict,
) -> None:
    """Learning curves; on the test rows a parity plot (regression) or ROC and precision-recall curves (binary
    tasks); each with its CSV."""
    write_learning_curves(output, curves, metric)
    rows, labels, outputs = test
    if not len(rows):
        return
    if problem_type == "regression":
        write_parity(output, rows, labels, outputs, label_columns, test_metrics)
    elif problem_type == "multi_label_classification":
        write_roc_pr(output, labels, probabilities(problem_type, outputs), label_columns)


def _save_model(args: FinetuneArguments, output: Path, model, processor: MoleBlendProcessor, run: RunDirectory) -> None:
    """Model, processor and card as one whole (`save_model_atomically`)."""
    # Hub ids only
    base_model = (
        args.model if args.model and resolve_model(args.model) == args.model and not Path(args.model).exists() else None
    )

    def write(directory: Path) -> None:
        model.save_pretrained(directory)  # not trainer.save_model: it adds a pickled training_args.bin
        processor.save_pretrained(directory)
        write_model_card(directory, model.config, base_model=base_model, repo_id=args.push_to_hub)

    save_model_atomically(run, output, write)
    if args.push_to_hub:
        push_directory(output, args.push_to_hub)


def _strip(metrics: dict, prefix: str) -> dict:
    return {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix + "_")}


def _prediction_values(
    problem_type: str, members: np.ndarray, label_columns: list[str], class_names: dict[int, str] | None
) -> tuple[np.ndarray, list[str]]:
    """The members' mean reported value (probabilities, or values for regression) [rows, outputs] and the
    column names."""
    values = probabilities(problem_type, members).mean(0)
    if problem_type == "single_label_classification":
        names = [
            f"probability_{class_names[k]}" if class_names else f"probability_class_{k}" for k in range(values.shape[1])
        ]
    else:
        kind = "prediction" if problem_type == "regression" else "probability"
        names = [f"{kind}_{c}" for c in label_columns]
    return values, names


def _write_predictions(
    output: Path,
    values: np.ndarray,
    names: list[str],
    predicted_rows: list[int],
    test_rows: list[int],
    prepared: dict,
    label_columns: list[str],
    failures: dict[int, str],
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """test_predictions.csv: every test row in input order, with its labels, prediction columns `names` (and
    `<key>_<task>` columns of `extra`: std, calibrated std or probabilities, conformal bounds); unusable rows
    stay, with the reason."""
    frame, molecule_column = prepared["frame"], prepared["molecule_column"]
    columns = {name: values[:, i] for i, name in enumerate(names)}
    for key, array in (extra or {}).items():
        columns.update({f"{key}_{name.split('_', 1)[1]}": array[:, i] for i, name in enumerate(names)})
    position = {row: i for i, row in enumerate(predicted_rows)}
    records = []
    for row in test_rows:
        record = {
            "row": row,
            "molecule": frame[molecule_column].iloc[row]
            if molecule_column not in MOLBLOCK_COLUMNS
            else f"molblock row {row}",
        }
        record.update({c: frame[c].iloc[row] for c in label_columns})
        i = position.get(row)
        record.update({n: (float(v[i]) if i is not None else None) for n, v in columns.items()})
        record["skipped_reason"] = failures.get(row)
        records.append(record)
    pd.DataFrame(records, columns=["row", "molecule", *label_columns, *columns, "skipped_reason"]).to_csv(
        output / "test_predictions.csv", index=False
    )


def _write_skipped(output: Path, split: dict, failures: dict[int, str], molecules: list) -> None:
    where = {row: name for name, rows in split.items() for row in rows}
    pd.DataFrame(
        [
            {"row": r, "split": where[r], "input": str(molecules[r])[:200], "reason": reason}
            for r, reason in sorted(failures.items())
        ],
        columns=["row", "split", "input", "reason"],
    ).to_csv(output / "skipped_rows.csv", index=False)


def _common_rows(raws: dict[str, dict[str, tuple]], part: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The rows of `part` that every member predicted, their labels and the members' outputs [members, rows, ...]."""
    present = [raw[part] for raw in raws.values() if part in raw]
    if len(present) < len(raws):
        return [], np.zeros((0,)), np.zeros((len(raws), 0))
    common = set.intersection(*(set(rows) for rows, _, _ in present))
    rows = [r for r in present[0][0] if r in common]
    positions = [[list(member_rows).index(r) for r in rows] for member_rows, _, _ in present]
    outputs = np.stack([np.asarray(out)[where] for (_, _, out), where in zip(present, positions)])
    return rows, np.asarray(present[0][1])[positions[0]], outputs


def _calibrate_ensemble(
    args: FinetuneArguments, prepared: dict, raws: dict[str, dict[str, tuple]], output: Path
) -> dict | None:
    """Calibration fitted on the validation split shared by the members (--seeds; --kfold members have no common
    held-out rows, so their uncertainty stays uncalibrated), and the ensemble's test predictions (mean, std and the
    calibrated columns) in test_predictions.csv."""
    problem_type = prepared["problem_type"]
    calibration = None
    if args.seeds:
        _, labels, outputs = _common_rows(raws, "valid")
        calibration = fit_calibration(problem_type, labels, outputs, args.conformal_alpha)
    else:
        logger.info("--kfold: no validation rows shared by the members; the ensemble's std stays uncalibrated")
    rows, _, outputs = _common_rows(raws, "test")
    if outputs.shape[1] == 0:
        outputs = np.zeros((len(raws), 0, count_labels(problem_type, prepared["labels"])))
    values, names = _prediction_values(problem_type, outputs, args.label_columns, prepared["class_names"])
    extra = {
        "std": probabilities(problem_type, outputs).std(0),
        **apply_calibration(problem_type, outputs, calibration),
    }
    reason = "not predicted by every member (see the members' skipped_rows.csv)"
    _write_predictions(
        output,
        values,
        names,
        rows,
        prepared["split"]["test"],
        prepared,
        args.label_columns,
        {r: reason for r in prepared["split"]["test"] if r not in set(rows)},
        extra,
    )
    return calibration


def _write_run_outputs(
    args: FinetuneArguments,
    prepared: dict,
    output: Path,
    raw: dict[str, tuple],
    result: dict,
    curves: pd.DataFrame,
    failures: dict[int, str],
    num_labels: int,
) -> None:
    """One model's files besides the model: calibration.json (with --conformal-alpha), metrics.json (`result`),
    test_predictions.csv, skipped_rows.csv and the figures."""
    problem_type, split, (metric, _) = prepared["problem_type"], prepared["split"], prepared["metric"]
    calibration = _fit_single_model_calibration(args, problem_type, raw, output, result)
    (output / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    test_raw = raw.get("test", ([], np.zeros((0, num_labels)), np.zeros((0, num_labels))))
    values, columns = _prediction_values(problem_type, test_raw[2][None], args.label_columns, prepared["class_names"])
    _write_predictions(
        output,
        values,
        columns,
        test_raw[0],
        split["test"],
        prepared,
        args.label_columns,
        failures,
        apply_calibration(problem_type, test_raw[2][None], calibration),
    )
    _write_skipped(output, split, failures, prepared["molecules"])
    _write_figures(output, curves, metric, problem_type, test_raw, args.label_columns, result["test"])
