"""`moleblend predict`: a file of molecules + fine-tuned models -> one prediction row per input row.

Every input row gets an output row, in input order: `row` (0-based position in the file), `id`, the predictions,
and `skipped_reason` (empty predictions and the reason for a row that cannot be featurized, e.g. a bad SMILES).
Several models (or an ensemble directory from `moleblend finetune --seeds` / `--kfold`) give the members' mean
and, as an uncertainty, their standard deviation (`std_...` columns). Where `moleblend finetune` fitted a
calibration (on its validation split): `calibrated_std_...` (regression ensembles), `calibrated_probability_...`
(temperature-scaled mean logit of classification ensembles), and `lower_...` / `upper_...` (conformal intervals,
`--conformal-alpha`). Molecules are featurized once per distinct
processor setting and batched by atom count (little padding), under `torch.inference_mode`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..arguments import PredictArguments
from ..modeling import MoleBlendForPropertyPrediction
from ..processing import MoleBlendProcessor, MoleculeError
from ..publishing.checkpoints import (
    calibration_of,
    check_model_source,
    ensemble_members,
    load_model,
    load_processor,
    resolve_model,
    saved_weight_names,
)
from ..sources.files import read_all
from ..sources.remote import is_remote, pin_revision, register_dataset
from .calibration import apply_calibration, probabilities
from .speed import apply_inference_options, atom_padding_multiple, inference_autocast

logger = logging.getLogger(__name__)
CHUNK_ROWS = 4096  # rows featurized and predicted at a time: memory stays bounded on large files


def load_ensemble(paths: list[str]) -> list[tuple[MoleBlendForPropertyPrediction, MoleBlendProcessor]]:
    """The members (model + its saved processor) of every given model or ensemble directory; all must predict the
    same thing (problem type, labels)."""
    members = []
    for path in paths:
        for member in ensemble_members(check_model_source(path)):
            check_model_source(member)
            names = saved_weight_names(member)  # checked before loading: a local checkpoint without a head
            if names is not None and not any(name.startswith("head.") for name in names):
                _untrained(path, json.loads((Path(member) / "config.json").read_text()).get("architectures"))
            model = load_model(MoleBlendForPropertyPrediction, member).eval()
            if not model.has_trained_head:  # a Hub checkpoint, known once loaded
                _untrained(path, model.config.architectures)
            processor = load_processor(MoleBlendProcessor, member, model.config)
            members.append((model, processor))
    first = members[0][0].config
    for model, _ in members[1:]:
        config = model.config
        if (config.problem_type, config.num_labels, config.id2label) != (
            first.problem_type,
            first.num_labels,
            first.id2label,
        ):
            raise ValueError(
                f"the models predict different things: {config.problem_type} {config.id2label} vs "
                f"{first.problem_type} {first.id2label}; an ensemble needs models of one task"
            )
    return members


def _untrained(name: str, architectures: list[str] | None) -> None:
    raise ValueError(
        f"{name}: no trained property head (a {(architectures or ['encoder'])[0]} checkpoint, e.g. from "
        "pretraining): its predictions would come from randomly initialised weights; fine-tune it first "
        f"(moleblend finetune DATA --label-columns ... --model {name})"
    )


def output_columns(config) -> list[str]:
    """Names of the prediction columns (class probabilities carry the class names)."""
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    kind = "prediction" if config.problem_type == "regression" else "probability"
    return [f"{kind}_{name}" for name in names]


def _to_values(logits: torch.Tensor, problem_type: str) -> torch.Tensor:
    if problem_type == "single_label_classification":
        return logits.softmax(-1)
    if problem_type == "multi_label_classification":
        return logits.sigmoid()
    return logits  # regression heads return label units (they undo the training standardisation)


@torch.inference_mode()
def predict_molecules(
    members: list[tuple[MoleBlendForPropertyPrediction, MoleBlendProcessor]],
    molecules: list,
    batch_size: int = 64,
    device: str = "cpu",
    mixed_precision: str = "no",
    raw: bool = False,
) -> tuple[np.ndarray, dict[int, str]]:
    """Predictions [members, molecules, outputs] (NaN for molecules that could not be featurized) and the reason
    for each such molecule (by position). `raw`: the models' logits (values for regression), not probabilities."""
    count, outputs = len(molecules), members[0][0].config.num_labels
    values = np.full((len(members), count, outputs), np.nan, dtype=np.float64)
    failures: dict[int, str] = {}
    featurized: dict[str, tuple[dict[int, dict], dict[int, str]]] = {}
    for index, (model, processor) in enumerate(members):
        key = json.dumps(processor.to_dict(), sort_keys=True, default=str)
        if key not in featurized:  # members of one fine-tuning run share their processor settings
            features, reasons = {}, {}
            for position, molecule in enumerate(molecules):
                try:
                    features[position] = processor.featurize(molecule, position)
                except MoleculeError as error:
                    reasons[position] = error.reason
            featurized[key] = (features, reasons)
        features, reasons = featurized[key]
        failures.update(reasons)
        model.to(device)
        order = sorted(features, key=lambda p: features[p]["num_atoms"])  # batches of similar size: little padding
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            batch = processor.pad(
                [features[p] for p in positions], return_tensors="pt", pad_to_multiple_of=atom_padding_multiple(model)
            ).to(device)
            with inference_autocast(device, mixed_precision):
                logits = model(**batch).logits.float()
            values[index, positions] = (logits if raw else _to_values(logits, model.config.problem_type)).cpu().numpy()
    return values, failures


def predict_file(args: PredictArguments, datasets: dict[str, Any] | None = None) -> dict:
    """Predict every row of `args.data` (a file, an http(s) URL, a Hub dataset, or `dataset:<name>` of the
    `datasets` objects given by name) into `args.output`; returns counts and the source read (a Hub dataset's
    revision resolved to its commit)."""
    output = Path(args.output)
    for name, dataset in (datasets or {}).items():
        register_dataset(name, dataset)
    source = pin_revision(args.data)
    if not is_remote(source) and not Path(source).exists():
        raise FileNotFoundError(f"{args.data} not found")
    if output.exists() and not is_remote(source) and os.path.samefile(output, source):  # a symlink, a hard link
        raise ValueError(
            f"--output {output} is the input file {args.data}: the predictions would replace the "
            "molecules (--overwrite or not); choose another --output"
        )
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it or choose another --output")
    members = load_ensemble(args.model)
    config = members[0][0].config
    members = [
        (apply_inference_options(model, args.quantize, args.compile, args.cuda_graphs), processor)
        for model, processor in members
    ]
    names = output_columns(config)
    calibration = calibration_of(resolve_model(args.model[0])) if len(args.model) == 1 else None
    records = read_all(source, smiles_column=args.smiles_column, molblock_column=args.molblock_column)
    frames, skipped, bar = [], 0, tqdm(desc="predicting", unit="mol", disable=not args.progress)
    while chunk := list(itertools.islice(records, CHUNK_ROWS)):
        logits, failures = predict_molecules(
            members, [r.molecule for r in chunk], args.batch_size, args.device, args.mixed_precision, raw=True
        )
        values = probabilities(config.problem_type, logits)
        mean = values.mean(0)
        frame = pd.DataFrame({"row": [r.row for r in chunk], "id": [r.identifier for r in chunk]})
        for column, name in enumerate(names):
            frame[name] = mean[:, column]
        extra = {"std": values.std(0)} if len(members) > 1 else {}
        for key, array in {**extra, **apply_calibration(config.problem_type, logits, calibration)}.items():
            for column, name in enumerate(names):
                frame[f"{key}_{name.split('_', 1)[1]}"] = array[:, column]
        if config.problem_type == "single_label_classification":
            best = np.nan_to_num(mean, nan=-1).argmax(1)
            frame["predicted_class"] = [
                None if position in failures else str(config.id2label[int(k)]) for position, k in enumerate(best)
            ]
        frame["skipped_reason"] = [failures.get(position) for position in range(len(chunk))]
        frames.append(frame)
        skipped += len(failures)
        bar.update(len(chunk))
    bar.close()
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["row", "id", *names, "skipped_reason"])  # an empty input: the same columns
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    table.to_parquet(temporary, index=False) if output.suffix == ".parquet" else table.to_csv(temporary, index=False)
    temporary.replace(output)  # the file exists only once complete
    return {
        "input": str(source),
        "output": str(output),
        "rows": len(table),
        "predicted": len(table) - skipped,
        "skipped": skipped,
        "models": len(members),
        "problem_type": config.problem_type,
        "columns": names,
        "calibrated": bool(calibration),
    }
