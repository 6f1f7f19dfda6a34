"""`moleblend finetune`: a CSV / parquet / SDF of molecules and labels -> a tuned, evaluated model.

Writes to the output directory, like the Trainer: the model, processor and card at its root (save_pretrained;
`AutoModelForSequenceClassification.from_pretrained(output_dir)` works), `checkpoint-N/` beside them, `run.json`
(the run's identity: a used directory is refused without `--overwrite`), `split.json` (row indices used),
`metrics.json` (validation and test metrics of the checkpoint chosen on the validation metric),
`test_predictions.csv` (one line per test row of the input, in input order; rows that could not be featurized
are there too, with an empty prediction and the reason), `skipped_rows.csv` (every row that was left out), and
figures with their data: `learning_curves.png/.csv` (per epoch: train loss, validation loss and metric), and on the
test rows `test_parity.png/.csv` (regression) or `test_roc_pr.png/.csv` (binary tasks). `--search-trials` adds
`search_trials.json` and `search_best.json`; `--conformal-alpha` adds `calibration.json` and the `lower_` /
`upper_` columns.

With `seeds` (or `kfold`), one run per member in `seed-<s>/` (or `fold-<k>/`), all on the same test rows, and
`ensemble.json` naming them: `moleblend predict` and `moleblend_hf.pipeline` take the directory as one model whose
prediction is the members' mean with their standard deviation. A `--seeds` ensemble fits its calibration on the
shared validation split (a std scale for regression, a temperature for classification, conformal quantiles with
`--conformal-alpha`; see inference/calibration.py), stored in `ensemble.json` and reported in `metrics.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import EarlyStoppingCallback

from .._optional import import_optional
from ..arguments import FinetuneArguments
from ..inference.calibration import calibration_metrics
from ..modeling import MoleBlendConfig
from ..processing import MoleBlendCollator, MoleBlendProcessor
from ..publishing.checkpoints import CALIBRATION_FILE, ENSEMBLE_FILE
from ..sources.files import MOLBLOCK_COLUMNS, canonical_smiles, read_labeled_table
from ..sources.remote import pin_revision, register_dataset
from ..sources.splits import SPLIT_NAMES, duplicate_groups, make_split
from .finetune_outputs import (
    _calibrate_ensemble,
    _common_rows,
    _save_model,
    _strip,
    _write_run_outputs,
)
from .labels import (
    POSITIVE_NAMES,  # noqa: F401  (importable from here as before)
    check_classes,
    count_labels,
    detect_problem_type,
    encode_labels,
    id2label_for,
)
from .metrics import selection_metric
from .plots import learning_curves
from .property_trainer import (
    FeatureDataset,
    FrozenEncoderEpochs,
    MoleculeTrainer,
    MovingAverageWeights,
    build_model,
    build_optimizer,
    featurize_rows,
    metrics_function,
    training_arguments,
)
from .run_directory import RunDirectory, TrainerManifest, open_run
from .search import run_search

logger = logging.getLogger(__name__)
#: what a fine-tuning run (or ensemble) may write beside its model, checkpoints and members: its manifest
RUN_FILES = (
    "split.json",
    "metrics.json",
    "test_predictions.csv",
    "skipped_rows.csv",
    "learning_curves.csv",
    "learning_curves.png",
    "test_parity.csv",
    "test_parity.png",
    "test_roc_pr.csv",
    "test_roc_pr.png",
    "search",
    "search_trials.json",
    "search_best.json",
    CALIBRATION_FILE,
    ENSEMBLE_FILE,
    "runs",
)
TASKS = ("auto", "regression", "classification", "multiclass")
MODALITIES = ("2d", "3d", "both")


def _prepare(args: FinetuneArguments) -> dict:
    """Everything decided from the data before any training: the table, labels, problem type and split. Raises
    on a bad input (missing columns, mixed labels, one class, bad split) before the output directory is touched."""
    MoleBlendConfig.check_overrides(args.config_overrides)
    if args.modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}")
    if args.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    frame, molecule_column = read_labeled_table(args.data, args.smiles_column, args.molblock_column)
    missing = [c for c in args.label_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"label columns {missing} not in {args.data}; columns are {list(frame.columns)}")
    molecules = [m if isinstance(m, str) else None for m in frame[molecule_column].tolist()]
    labels, class_names = encode_labels(frame, args.label_columns)
    task = args.task
    if class_names is not None and task == "auto":
        task = "classification" if len(class_names) == 2 else "multiclass"
    problem_type = detect_problem_type(task, labels)
    check_classes(problem_type, labels, args.label_columns)

    # The split is made on every input row (unusable ones included), so it does not depend on featurization.
    is_smiles = molecule_column not in MOLBLOCK_COLUMNS
    split_smiles = molecules if is_smiles else [canonical_smiles(m) for m in molecules]
    groups = duplicate_groups(split_smiles)  # once: the random split and the report both use them
    split = make_split(
        args.split,
        split_smiles,
        seed=args.seed,
        column_values=frame[args.split_column].tolist() if args.split_column else None,
        path=args.split_file,
        duplicates=groups,
        fractions=args.split_sizes,
    )
    if args.conformal_alpha is not None and problem_type != "regression":
        raise ValueError(f"--conformal-alpha gives intervals for regression; {args.label_columns} is {problem_type}")
    return dict(
        frame=frame,
        molecule_column=molecule_column,
        molecules=molecules,
        labels=labels,
        class_names=class_names,
        problem_type=problem_type,
        split=split,
        is_smiles=is_smiles,
        duplicates=_duplicates_report(groups, split),
        metric=selection_metric(problem_type, args.metric),
    )


def _duplicates_report(groups: list[list[int]], split: dict[str, list[int]]) -> dict[str, int]:
    """How many molecules occur in several rows (`groups`, see `duplicate_groups`), and in how many of them the
    rows sit in different splits (only possible with a given split: random and scaffold splits keep them
    together)."""
    where = {row: name for name, rows in split.items() for row in rows}
    across = sum(1 for rows in groups if len({where[r] for r in rows}) > 1)
    if groups:
        logger.warning(
            "%d molecules occur in more than one row (%d rows)%s",
            len(groups),
            sum(len(rows) for rows in groups),
            f"; {across} of them in more than one split (a leak: check the split)"
            if across
            else "; each one's rows stay in one split",
        )
    return {"molecules": len(groups), "rows": sum(len(rows) for rows in groups), "across_splits": across}


def finetune(args: FinetuneArguments, datasets: dict[str, Any] | None = None) -> dict:
    """Run one fine-tuning job (or an ensemble, with `seeds` / `kfold`); returns what metrics.json holds.

    `datasets`: `datasets.Dataset` / `IterableDataset` objects by name, each readable as the source
    `dataset:<name>` (`args.data`). A Hub dataset's revision is resolved to its commit first, so run.json and
    metrics.json record the data trained on.
    """
    if args.search_trials:  # named before the data is read and the output directory claimed
        import_optional("optuna", "search", "finetune --search-trials")
    for name, dataset in (datasets or {}).items():
        register_dataset(name, dataset)
    pinned = pin_revision(args.data)
    if pinned != args.data:
        args = replace(args, data=pinned)
    if args.seeds or args.kfold:
        return finetune_ensemble(args)
    return _finetune_run(args)[0]


def _finetune_run(args: FinetuneArguments) -> tuple[dict, dict[str, tuple]]:
    """One model; returns what metrics.json holds and, per split (valid, test), its rows, labels and the model's
    raw outputs (logits, or values for regression), from which an ensemble fits its calibration."""
    start = time.perf_counter()
    prepared = _prepare(args)
    prepared["started"] = start  # the run's wall time counts reading and splitting the data too
    with open_run(
        args.output_dir, "finetune", asdict(args), overwrite=args.overwrite, inputs=_inputs(args), resume_hint=""
    ) as run:
        run.record(*RUN_FILES)  # those never written leave the manifest when the run finishes
        done = _train_one(args, prepared, run)
        run.finish()
    return done


def _inputs(args: FinetuneArguments) -> list[str | None]:
    """What a fine-tuning run reads: --overwrite never removes it."""
    return [args.data, args.model, args.split_file, args.cache_dir]


def _train_one(args: FinetuneArguments, prepared: dict, run: RunDirectory) -> tuple[dict, dict[str, tuple]]:
    problem_type, split, (metric, greater) = prepared["problem_type"], prepared["split"], prepared["metric"]
    output = Path(args.output_dir)
    (output / "split.json").write_text(json.dumps({"method": args.split, "seed": args.seed, **split}))

    conformers = "none" if args.modality == "2d" else ("generate" if prepared["is_smiles"] else "given")
    names = id2label_for(problem_type, prepared["class_names"], args.label_columns)
    num_labels = count_labels(problem_type, prepared["labels"])
    model = build_model(args, problem_type, num_labels=num_labels, label_names=names)
    processor = MoleBlendProcessor.from_config(model.config, conformers=conformers, seed=args.seed)
    datasets, failures = _datasets(args, prepared, processor)

    def make_model(run_args: FinetuneArguments):
        built = build_model(run_args, problem_type, num_labels=num_labels, label_names=names)
        if problem_type == "regression":
            built.set_label_statistics(torch.as_tensor(datasets["train"].labels))
        if built.config.molecule_feature_size:  # standardised with the training rows' statistics only
            built.set_molecule_feature_statistics(
                torch.as_tensor(
                    np.stack([np.asarray(f["molecule_features"], dtype=np.float32) for f in datasets["train"].features])
                )
            )
        return built

    common = dict(
        train_dataset=datasets["train"],
        eval_dataset=datasets["valid"],
        group_by_size=args.group_by_size,
        data_collator=MoleBlendCollator(processor),
        compute_metrics=metrics_function(problem_type),
    )
    # a random encoder (no --model) has no features worth probing
    recipe_callbacks = (
        [FrozenEncoderEpochs(args.freeze_encoder_epochs)] if args.freeze_encoder_epochs and args.model else []
    )
    recipe_callbacks += [MovingAverageWeights(args.ema_decay)] if args.ema_decay else []
    if args.search_trials:  # the test split takes no part in the search
        search_args = training_arguments(args, str(output / "search"), metric, greater, search=True)
        args = run_search(
            args,
            lambda init, factory: MoleculeTrainer(
                model_init=init, optimizer_factory=factory, args=search_args, callbacks=recipe_callbacks, **common
            ),
            make_model,
            build_optimizer,
            metric,
            greater,
            output,
        )
        if (output / "search").is_dir() and not any((output / "search").iterdir()):
            (output / "search").rmdir()  # the trials save nothing; the Trainer made the directory
    model = make_model(args)
    trainer = MoleculeTrainer(
        model=model,
        args=training_arguments(args, str(output), metric, greater),
        optimizers=(build_optimizer(model, args), None),
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=args.patience),
            TrainerManifest(run),
            *recipe_callbacks,
        ],
        **common,
    )
    trainer.train()  # ends with the checkpoint that was best on the validation metric
    outputs = {
        name: trainer.predict(datasets[name], metric_key_prefix=name)
        for name in ("valid", "test")
        if datasets[name] is not None
    }
    raw = {name: (datasets[name].rows, datasets[name].labels, out.predictions) for name, out in outputs.items()}
    curves = learning_curves(trainer.state.log_history, metric)
    result = _run_metrics(args, prepared, outputs, failures, curves, output)
    _write_run_outputs(args, prepared, output, raw, result, curves, failures, num_labels)
    _save_model(args, output, trainer.model, processor, run)
    return result, raw


def _run_metrics(
    args: FinetuneArguments,
    prepared: dict,
    outputs: dict[str, Any],
    failures: dict[int, str],
    curves: pd.DataFrame,
    output: Path,
) -> dict:
    """What metrics.json holds for one model (the calibration is added when it is fitted): the task, split, chosen
    checkpoint's valid / test metrics, skipped rows, curves, arguments and wall time."""
    problem_type, split, (metric, greater) = prepared["problem_type"], prepared["split"], prepared["metric"]
    result = {
        "task": args.label_columns,
        "problem_type": problem_type,
        "data": str(args.data),
        "modality": args.modality,
        "split": {
            "method": args.split,
            "seed": args.seed,
            "sizes": args.split_sizes,
            **{k: len(v) for k, v in split.items()},
        },
        "selection_metric": metric,
        "greater_is_better": greater,
        **{name: _strip(out.metrics, name) for name, out in outputs.items()},
        "skipped_rows": len(failures),
        "duplicates": prepared["duplicates"],
        "curves": curves.to_dict(orient="list"),
        "arguments": {k: v for k, v in asdict(args).items() if k != "config_overrides"},
        "config_overrides": args.config_overrides,
        # featurization, training and evaluation; not the saving
        "wall_time_s": time.perf_counter() - prepared["started"],
    }
    result.setdefault("test", {})
    if args.search_trials:
        result["search"] = json.loads((output / "search_best.json").read_text())
    return result


def _datasets(
    args: FinetuneArguments, prepared: dict, processor: MoleBlendProcessor
) -> tuple[dict[str, FeatureDataset | None], dict[int, str]]:
    """The featurized train / valid / test datasets (test None when the split has no test rows) and the reason
    for every row left out."""
    labels, problem_type, split = prepared["labels"], prepared["problem_type"], prepared["split"]
    features, failures = featurize_rows(
        processor, prepared["molecules"], Path(args.cache_dir) if args.cache_dir else None
    )
    unlabeled = {r for r in range(len(labels)) if np.isnan(labels[r]).all()}
    for row in unlabeled - failures.keys():
        failures[row] = "no label"
    target = labels if problem_type != "single_label_classification" else labels[:, 0]
    datasets: dict[str, FeatureDataset | None] = {}
    for name in SPLIT_NAMES:
        rows = [r for r in split[name] if r not in failures]
        if not rows and name == "test" and not split["test"]:
            datasets[name] = None  # --split-sizes with no test fraction
            continue
        if not rows:
            raise ValueError(f"the {name} split has no usable molecule")
        values = (
            target[rows].astype(np.float32)
            if problem_type != "single_label_classification"
            else target[rows].astype(np.int64)
        )
        datasets[name] = FeatureDataset([features[r] for r in rows], values, rows)
    return datasets, failures


def finetune_ensemble(args: FinetuneArguments) -> dict:
    """One member per seed (`seeds`) or per fold of the train+valid rows (`kfold`), all tested on the same rows:
    members in `seed-<s>/` / `fold-<k>/`, `ensemble.json` naming them, metrics.json with every member's metrics
    and their mean and standard deviation."""
    prepared = _prepare(replace(args, seeds=[], kfold=None))
    with open_run(
        args.output_dir,
        "finetune-ensemble",
        asdict(args),
        overwrite=args.overwrite,
        inputs=_inputs(args),
        resume_hint="",
    ) as run:
        run.record(*RUN_FILES)
        result = _train_members(args, prepared, run)
        run.finish()
    return result


def _train_members(args: FinetuneArguments, prepared: dict, run: RunDirectory) -> dict:
    output = Path(args.output_dir)
    split = prepared["split"]
    (output / "split.json").write_text(json.dumps({"method": args.split, "seed": args.seed, **split}))
    members = _members(args, split)
    results, raws = {}, {}
    for name, member in members.items():
        split_file = output / f"split-{name}.json"
        run.record(split_file.name, name)
        split_file.write_text(json.dumps(member["split"]))
        results[name], raws[name] = _finetune_run(
            replace(
                args,
                seeds=[],
                kfold=None,
                seed=member["seed"],
                split="file",
                split_file=str(split_file),
                split_column=None,
                split_sizes=None,
                conformal_alpha=None,
                push_to_hub=None,
                output_dir=str(output / name),
                overwrite=False,
            )
        )
    problem_type = prepared["problem_type"]
    calibration = _calibrate_ensemble(args, prepared, raws, output)
    (output / ENSEMBLE_FILE).write_text(
        json.dumps(
            {
                "members": list(members),
                "kind": "seeds" if args.seeds else "kfold",
                "problem_type": problem_type,
                **({"calibration": calibration} if calibration else {}),
            },
            indent=2,
        )
    )
    result = _ensemble_metrics(args, prepared, results, raws, calibration)
    (output / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _members(args: FinetuneArguments, split: dict[str, list[int]]) -> dict[str, dict]:
    """The ensemble's members by name: each one's seed and split (`seed-<s>`: the shared split; `fold-<k>`: fold k
    of the train+valid rows as its validation rows, the others to train on, the shared test rows)."""
    members: dict[str, dict] = {}
    if args.seeds:
        for seed in args.seeds:
            members[f"seed-{seed}"] = {"seed": seed, "split": split}
    else:
        pool = np.random.default_rng(args.seed).permutation(split["train"] + split["valid"]).tolist()
        folds = [sorted(pool[k :: args.kfold]) for k in range(args.kfold)]
        for k, fold in enumerate(folds):
            train = sorted(r for j, other in enumerate(folds) if j != k for r in other)
            members[f"fold-{k}"] = {"seed": args.seed, "split": {"train": train, "valid": fold, "test": split["test"]}}
    return members


def _ensemble_metrics(
    args: FinetuneArguments,
    prepared: dict,
    results: dict[str, dict],
    raws: dict[str, dict[str, tuple]],
    calibration: dict | None,
) -> dict:
    """What an ensemble's metrics.json holds: every member's valid / test metrics, their mean and standard
    deviation, and the calibration's metrics on the rows every member predicted."""
    problem_type, split = prepared["problem_type"], prepared["split"]
    summary = {}
    for part in ("valid", "test"):
        names = sorted({k for r in results.values() for k in r[part] if isinstance(r[part][k], (int, float))})
        summary[part] = {
            k: {
                "mean": float(np.mean([r[part][k] for r in results.values()])),
                "std": float(np.std([r[part][k] for r in results.values()])),
            }
            for k in names
        }
    result = {
        "task": args.label_columns,
        "problem_type": problem_type,
        "data": str(args.data),
        "members": {name: {"valid": r["valid"], "test": r["test"]} for name, r in results.items()},
        "split": {
            "method": args.split,
            "seed": args.seed,
            "sizes": args.split_sizes,
            **{k: len(v) for k, v in split.items()},
        },
        "selection_metric": prepared["metric"][0],
        "greater_is_better": prepared["metric"][1],
        "skipped_rows": next(iter(results.values()))["skipped_rows"],
        **summary,
    }
    if calibration:
        result["calibration"] = {
            "fitted": calibration,
            **{
                part: calibration_metrics(problem_type, labels, outputs, calibration)
                for part, (_, labels, outputs) in ((p, _common_rows(raws, p)) for p in ("valid", "test"))
                if len(labels)
            },
        }
    return result
