"""`moleblend finetune`: a CSV / parquet / SDF of molecules and labels -> a tuned, evaluated model.

Writes to the output directory, like the Trainer: the model, processor and card at its root (save_pretrained;
`AutoModelForSequenceClassification.from_pretrained(output_dir)` works), `checkpoint-N/` beside them, `run.json`
(the run's identity: a used directory is refused without `--overwrite`), `split.json` (row indices used),
`metrics.json` (validation and test metrics of the checkpoint chosen on the validation metric),
`test_predictions.csv` (one line per test row of the input, in input order; rows that could not be featurized
are there too, with an empty prediction and the reason), and `skipped_rows.csv` (every row that was left out).

With `seeds` (or `kfold`), one run per member in `seed-<s>/` (or `fold-<k>/`), all on the same test rows, and
`ensemble.json` naming them: `moleblend predict` and `moleblend_hf.pipeline` take the directory as one model whose
prediction is the members' mean with their standard deviation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from ..publishing.checkpoints import ENSEMBLE_FILE, resolve_model
from ..modeling import MoleBlendConfig, MoleBlendForPropertyPrediction
from ..processing import MoleBlendCollator, MoleBlendProcessor, MoleculeError
from ..arguments import FinetuneArguments
from .run_directory import open_run
from ..sources.files import MOLBLOCK_COLUMNS, SMILES_COLUMNS, pick_column, canonical_smiles
from .metrics import SELECTION_METRIC, compute_metrics
from ..sources.splits import SPLIT_NAMES, duplicate_groups, make_split

logger = logging.getLogger(__name__)
TASKS = ("auto", "regression", "classification", "multiclass")
MODALITIES = ("2d", "3d", "both")


def read_labeled_table(path: str | Path, smiles_column: str | None, molblock_column: str | None
                       ) -> tuple[pd.DataFrame, str]:
    """The table and the name of its molecule column (a molblock column for SDF input)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".sdf", ".sdf.gz")):
        from ..processing import read_sdf_records
        from rdkit import Chem

        rows = []
        for block in read_sdf_records(path):
            mol = Chem.MolFromMolBlock(block, sanitize=False) if block else None
            properties = mol.GetPropsAsDict() if mol is not None else {}
            rows.append({"molblock": block, **properties})
        return pd.DataFrame(rows), "molblock"
    frame = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
    column = (pick_column(frame, molblock_column, MOLBLOCK_COLUMNS, path) if molblock_column else None) or \
        pick_column(frame, smiles_column, SMILES_COLUMNS + MOLBLOCK_COLUMNS, path)
    if column is not None:
        return frame, column
    raise ValueError(f"{path}: no SMILES or molblock column found; pass --smiles-column or --molblock-column")


#: String values read as the positive class of a two-valued label column (compared case-insensitively).
POSITIVE_NAMES = ("1", "active", "yes", "true", "positive", "pos", "+", "bbb+", "toxic", "inhibitor", "binder")


def encode_labels(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, dict[int, str] | None]:
    """Labels [rows, columns] float (NaN = missing) and, for a column of words, the class names.

    Numbers stay numbers. One column of words (labels as users have them: "active"/"inactive", "BBB+"/"BBB-")
    becomes class indices: two values -> 0/1 (the value that reads as positive is 1, else the second in sorted
    order), more -> 0..K-1 in sorted order; the names go to `id2label`. A column mixing numbers and words is an
    error that lists the offending values and rows, never a silent NaN.
    """
    values = np.full((len(frame), len(columns)), np.nan)
    names = None
    for position, column in enumerate(columns):
        raw = frame[column]
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        numeric = pd.to_numeric(raw[present], errors="coerce")
        words = raw[present][numeric.isna()]
        if words.empty:
            values[present.to_numpy(), position] = numeric.to_numpy(dtype=np.float64)
            continue
        if len(words) < present.sum():
            numbers = raw[present][numeric.notna()]
            raise ValueError(
                f"label column {column!r} mixes numbers and words: numbers such as {numbers.head(3).tolist()} "
                f"(rows {numbers.index[:3].tolist()}) and words such as {words.head(3).tolist()} (rows "
                f"{words.index[:3].tolist()}); make the column all numbers or all class names")
        if len(columns) > 1:
            raise ValueError(f"label column {column!r} holds class names; class names are supported for a single "
                             "label column (one task), give numeric 0/1 columns for several tasks")
        classes = sorted({str(v).strip() for v in words})
        if len(classes) == 2:
            positive = [c for c in classes if c.lower() in POSITIVE_NAMES]
            if len(positive) == 1:
                classes = [c for c in classes if c != positive[0]] + positive
        index = {name: i for i, name in enumerate(classes)}
        values[present.to_numpy(), position] = [index[str(v).strip()] for v in words]
        names = dict(enumerate(classes))
    return values, names


def detect_problem_type(task: str, labels: np.ndarray) -> str:
    """auto: all present labels 0/1 -> binary (multi-label) classification; otherwise regression."""
    if task == "regression":
        return "regression"
    if task == "multiclass":
        return "single_label_classification"
    present = labels[~np.isnan(labels)]
    binary = present.size > 0 and np.isin(present, (0.0, 1.0)).all()
    if task == "classification" and not binary:
        raise ValueError("--task classification needs 0/1 labels (NaN = missing); use --task multiclass for "
                         "class indices")
    return "multi_label_classification" if binary else "regression"


class FeatureDataset(Dataset):
    """Featurized rows (compact arrays) with their labels, for the Trainer."""

    def __init__(self, features: list[dict], labels: np.ndarray, rows: list[int]):
        self.features, self.labels, self.rows = features, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return {**self.features[index], "labels": self.labels[index]}

    def sizes(self) -> list[int]:
        """Atoms of every molecule, in dataset order."""
        return [len(f["atom_features"]) for f in self.features]


class MoleculeTrainer(Trainer):
    """The `Trainer`, with training batches optionally grouped by atom count (`group_by_size`).

    transformers' own `train_sampling_strategy="group_by_length"` also reorders evaluation and `predict` batches
    (randomly), which would misalign the test predictions written per row; here only training batches are grouped,
    with transformers' `LengthGroupedSampler` (random megabatches, each sorted by size) on the molecules' atom
    counts, and evaluation keeps the dataset order.
    """

    def __init__(self, *args, group_by_size: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_size = group_by_size

    def _get_train_sampler(self, train_dataset: Dataset | None = None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_size or not isinstance(dataset, FeatureDataset):
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=dataset.sizes())


def featurize_rows(processor: MoleBlendProcessor, molecules: list, cache: Path | None
                   ) -> tuple[dict[int, dict], dict[int, str]]:
    """Features of every row that can be featurized, and the reason for every row that cannot.

    With `cache`, features (conformers included, the slow part) are stored with `datasets.save_to_disk` under a
    key of the inputs and the processor settings, and reused by later runs.
    """
    key = hashlib.sha256(json.dumps([processor.to_dict(), [str(m) for m in molecules]], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    target = cache / f"features-{key}" if cache else None
    if target is not None and (target / "dataset_info.json").exists():
        from datasets import load_from_disk

        stored = load_from_disk(str(target))
        features = {int(r["row"]): {k: v for k, v in r.items() if k not in ("row", "error")}
                    for r in stored if r["error"] is None}
        failures = {int(r["row"]): r["error"] for r in stored if r["error"] is not None}
        return features, failures
    features, failures = {}, {}
    for row, molecule in enumerate(molecules):
        try:
            features[row] = processor.featurize(molecule, row)
        except MoleculeError as error:
            failures[row] = error.reason
    if target is not None:
        from datasets import Dataset as HFDataset

        records = [{"row": r, "error": None, **{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                                 for k, v in f.items()}} for r, f in features.items()]
        template = records[0] if records else {}
        records += [{**{k: None for k in template}, "row": r, "error": reason} for r, reason in failures.items()]
        HFDataset.from_list(records).save_to_disk(str(target))
    return features, failures


def build_model(args: FinetuneArguments, problem_type: str, num_labels: int,
                label_names: dict[int, str] | None = None) -> MoleBlendForPropertyPrediction:
    relations = {"use_2d_relations": args.modality in ("2d", "both"),
                 "use_3d_relations": args.modality in ("3d", "both")}
    overrides = {**relations, **args.config_overrides, "num_labels": num_labels, "problem_type": problem_type}
    if label_names:
        overrides |= {"id2label": label_names, "label2id": {name: i for i, name in label_names.items()}}
    torch.manual_seed(args.seed)  # the new head's initialisation depends on the seed only, not on earlier runs
    if args.model:
        return MoleBlendForPropertyPrediction.from_pretrained(resolve_model(args.model), **overrides)
    return MoleBlendForPropertyPrediction(MoleBlendConfig.from_preset(args.preset, **overrides))


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
    _check_classes(problem_type, labels, args.label_columns)

    # The split is made on every input row (unusable ones included), so it does not depend on featurization.
    is_smiles = molecule_column not in MOLBLOCK_COLUMNS
    split_smiles = molecules if is_smiles else [canonical_smiles(m) for m in molecules]
    groups = duplicate_groups(split_smiles)  # once: the random split and the report both use them
    split = make_split(args.split, split_smiles, seed=args.seed,
                       column_values=frame[args.split_column].tolist() if args.split_column else None,
                       path=args.split_file, duplicates=groups)
    return dict(frame=frame, molecule_column=molecule_column, molecules=molecules, labels=labels,
                class_names=class_names, problem_type=problem_type, split=split, is_smiles=is_smiles,
                duplicates=_duplicates_report(groups, split))


def _duplicates_report(groups: list[list[int]], split: dict[str, list[int]]) -> dict[str, int]:
    """How many molecules occur in several rows (`groups`, see `duplicate_groups`), and in how many of them the
    rows sit in different splits (only possible with a given split: random and scaffold splits keep them
    together)."""
    where = {row: name for name, rows in split.items() for row in rows}
    across = sum(1 for rows in groups if len({where[r] for r in rows}) > 1)
    if groups:
        logger.warning("%d molecules occur in more than one row (%d rows)%s", len(groups),
                       sum(len(rows) for rows in groups),
                       f"; {across} of them in more than one split (a leak: check the split)" if across else
                       "; each one's rows stay in one split")
    return {"molecules": len(groups), "rows": sum(len(rows) for rows in groups), "across_splits": across}


def finetune(args: FinetuneArguments) -> dict:
    """Run one fine-tuning job (or an ensemble, with `seeds` / `kfold`); returns what metrics.json holds."""
    if args.seeds or args.kfold:
        return finetune_ensemble(args)
    prepared = _prepare(args)
    frame, molecule_column, molecules, labels, class_names, problem_type, split, is_smiles = (
        prepared[k] for k in ("frame", "molecule_column", "molecules", "labels", "class_names", "problem_type",
                              "split", "is_smiles"))
    output = Path(args.output_dir)
    open_run(output, "finetune", asdict(args), overwrite=args.overwrite)
    (output / "split.json").write_text(json.dumps({"method": args.split, "seed": args.seed, **split}))

    conformers = "none" if args.modality == "2d" else ("generate" if is_smiles else "given")
    names = _label_names(problem_type, class_names, args.label_columns)
    model = build_model(args, problem_type, num_labels=_num_labels(problem_type, labels), label_names=names)
    processor = MoleBlendProcessor.from_config(model.config, conformers=conformers, seed=args.seed)
    features, failures = featurize_rows(processor, molecules, Path(args.cache_dir) if args.cache_dir else None)
    unlabeled = {r for r in range(len(frame)) if np.isnan(labels[r]).all()}
    for row in unlabeled - failures.keys():
        failures[row] = "no label"
    target = labels if problem_type != "single_label_classification" else labels[:, 0]

    datasets = {}
    for name in SPLIT_NAMES:
        rows = [r for r in split[name] if r not in failures]
        if not rows:
            raise ValueError(f"the {name} split has no usable molecule")
        values = target[rows].astype(np.float32) if problem_type != "single_label_classification" else \
            target[rows].astype(np.int64)
        datasets[name] = FeatureDataset([features[r] for r in rows], values, rows)
    if problem_type == "regression":
        model.set_label_statistics(torch.as_tensor(datasets["train"].labels))

    metric, greater = SELECTION_METRIC[problem_type]
    training_args = TrainingArguments(
        output_dir=str(output), num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, warmup_steps=args.warmup_ratio,
        gradient_accumulation_steps=args.gradient_accumulation_steps, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model=metric, greater_is_better=greater, save_total_limit=2,
        logging_strategy="epoch", seed=args.seed, report_to=args.report_to, remove_unused_columns=False,
        label_names=["labels"], dataloader_num_workers=args.num_workers, use_cpu=not torch.cuda.is_available(),
    )
    trainer = MoleculeTrainer(
        model=model, args=training_args, optimizers=(_optimizer(model, args), None), train_dataset=datasets["train"],
        eval_dataset=datasets["valid"], group_by_size=args.group_by_size,
        data_collator=MoleBlendCollator(processor), compute_metrics=_metrics_function(problem_type),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=args.patience)],
    )
    trainer.train()  # ends with the checkpoint that was best on the validation metric
    test_output = trainer.predict(datasets["test"], metric_key_prefix="test")
    result = {
        "task": args.label_columns, "problem_type": problem_type, "data": str(args.data), "modality": args.modality,
        "split": {"method": args.split, "seed": args.seed, **{k: len(v) for k, v in split.items()}},
        "selection_metric": metric,
        "valid": _strip(trainer.predict(datasets["valid"], metric_key_prefix="valid").metrics, "valid"),
        "test": _strip(test_output.metrics, "test"),
        "skipped_rows": len(failures),
        "duplicates": prepared["duplicates"],
        "arguments": {k: v for k, v in asdict(args).items() if k != "config_overrides"},
        "config_overrides": args.config_overrides,
    }
    (output / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    _write_predictions(output, test_output.predictions, datasets["test"], split["test"], frame, molecule_column,
                       args.label_columns, failures, problem_type, class_names)
    _write_skipped(output, split, failures, molecules)
    model_dir = output
    trainer.model.save_pretrained(model_dir)  # not trainer.save_model: it adds a pickled training_args.bin
    processor.save_pretrained(model_dir)
    from ..publishing.push import write_model_card
    base_model = args.model if args.model and resolve_model(args.model) == args.model and \
        not Path(args.model).exists() else None  # Hub ids only
    write_model_card(model_dir, model.config, base_model=base_model, repo_id=args.push_to_hub)
    if args.push_to_hub:
        from ..publishing.push import push_directory

        push_directory(model_dir, args.push_to_hub)
    return result


def _optimizer(model: MoleBlendForPropertyPrediction, args: FinetuneArguments) -> torch.optim.Optimizer:
    """AdamW with the encoder at `learning_rate x encoder_learning_rate_ratio` and the new head at
    `learning_rate`; no weight decay on biases, norms and embeddings (the Trainer's default grouping). The
    Trainer builds its warmup + linear decay schedule on top of these groups."""
    if args.encoder_learning_rate_ratio <= 0:
        raise ValueError(f"encoder_learning_rate_ratio must be > 0, got {args.encoder_learning_rate_ratio}")
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        encoder = name.startswith("moleblend.")
        decay = parameter.ndim >= 2 and "norm" not in name and "embedding" not in name
        groups.setdefault((encoder, decay), []).append(parameter)
    return torch.optim.AdamW([
        {"params": params, "weight_decay": args.weight_decay if decay else 0.0,
         "lr": args.learning_rate * (args.encoder_learning_rate_ratio if encoder else 1.0)}
        for (encoder, decay), params in groups.items()], lr=args.learning_rate)


def _label_names(problem_type: str, class_names: dict[int, str] | None, columns: list[str]
                 ) -> dict[int, str] | None:
    """id2label: the class names of a single-label task; one task name per column otherwise (a binary task of
    class names keeps the positive class's name)."""
    if problem_type == "single_label_classification" and class_names:
        return class_names
    if problem_type == "multi_label_classification" and class_names:
        return {0: f"{columns[0]}={class_names[1]}"}
    if problem_type == "single_label_classification":
        return None  # class indices without names: transformers' LABEL_k
    return dict(enumerate(columns))


def _check_classes(problem_type: str, labels: np.ndarray, columns: list[str]) -> None:
    """A classification task whose labels hold one class cannot be learned: refuse before any training."""
    if problem_type == "regression":
        return
    for position, column in enumerate(columns):
        present = labels[~np.isnan(labels[:, position]), position]
        if len(np.unique(present)) < 2:
            raise ValueError(f"label column {column!r} has a single class ({np.unique(present).tolist()}); a "
                             "classifier cannot be trained on it")


def _num_labels(problem_type: str, labels: np.ndarray) -> int:
    if problem_type == "single_label_classification":
        present = labels[~np.isnan(labels[:, 0]), 0]
        if not np.equal(np.mod(present, 1), 0).all() or present.min() < 0:
            raise ValueError("multiclass labels must be non-negative class indices")
        return int(present.max()) + 1
    return labels.shape[1]


def _metrics_function(problem_type: str):
    def metrics(prediction) -> dict[str, float]:
        return compute_metrics(problem_type, prediction.label_ids, prediction.predictions)

    return metrics


def _strip(metrics: dict, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: v for k, v in metrics.items() if k.startswith(prefix + "_")}


def _write_predictions(output: Path, logits: np.ndarray, test: FeatureDataset, test_rows: list[int],
                       frame: pd.DataFrame, molecule_column: str, label_columns: list[str],
                       failures: dict[int, str], problem_type: str,
                       class_names: dict[int, str] | None = None) -> None:
    if problem_type == "multi_label_classification":
        values = 1.0 / (1.0 + np.exp(-logits))
        names = [f"probability_{c}" for c in label_columns]
    elif problem_type == "single_label_classification":
        values = np.exp(logits - logits.max(1, keepdims=True))
        values /= values.sum(1, keepdims=True)
        names = [f"probability_{class_names[k]}" if class_names else f"probability_class_{k}"
                 for k in range(values.shape[1])]
    else:
        values = logits
        names = [f"prediction_{c}" for c in label_columns]
    by_row = dict(zip(test.rows, values))
    records = []
    for row in test_rows:  # input order; unusable rows stay, with the reason
        record = {"row": row, "molecule": frame[molecule_column].iloc[row] if molecule_column not in
                  MOLBLOCK_COLUMNS else f"molblock row {row}"}
        record.update({c: frame[c].iloc[row] for c in label_columns})
        predicted = by_row.get(row)
        record.update({n: (float(predicted[i]) if predicted is not None else None) for i, n in enumerate(names)})
        record["skipped_reason"] = failures.get(row)
        records.append(record)
    pd.DataFrame(records).to_csv(output / "test_predictions.csv", index=False)


def _write_skipped(output: Path, split: dict, failures: dict[int, str], molecules: list) -> None:
    where = {row: name for name, rows in split.items() for row in rows}
    pd.DataFrame([{"row": r, "split": where[r], "input": str(molecules[r])[:200], "reason": reason}
                  for r, reason in sorted(failures.items())],
                 columns=["row", "split", "input", "reason"]).to_csv(output / "skipped_rows.csv", index=False)


def finetune_ensemble(args: FinetuneArguments) -> dict:
    """One member per seed (`seeds`) or per fold of the train+valid rows (`kfold`), all tested on the same rows:
    members in `seed-<s>/` / `fold-<k>/`, `ensemble.json` naming them, metrics.json with every member's metrics
    and their mean and standard deviation."""
    prepared = _prepare(replace(args, seeds=[], kfold=None))
    output = Path(args.output_dir)
    open_run(output, "finetune-ensemble", asdict(args), overwrite=args.overwrite)
    split = prepared["split"]
    (output / "split.json").write_text(json.dumps({"method": args.split, "seed": args.seed, **split}))
    members: dict[str, dict] = {}
    if args.seeds:
        for seed in args.seeds:
            members[f"seed-{seed}"] = {"seed": seed, "split": split}
    else:
        pool = np.random.default_rng(args.seed).permutation(split["train"] + split["valid"]).tolist()
        folds = [sorted(pool[k::args.kfold]) for k in range(args.kfold)]
        for k, fold in enumerate(folds):
            train = sorted(r for j, other in enumerate(folds) if j != k for r in other)
            members[f"fold-{k}"] = {"seed": args.seed, "split": {"train": train, "valid": fold,
                                                                  "test": split["test"]}}
    results = {}
    for name, member in members.items():
        split_file = output / f"split-{name}.json"
        split_file.write_text(json.dumps(member["split"]))
        results[name] = finetune(replace(args, seeds=[], kfold=None, seed=member["seed"], split="file",
                                         split_file=str(split_file), split_column=None, push_to_hub=None,
                                         output_dir=str(output / name), overwrite=False))
    (output / ENSEMBLE_FILE).write_text(json.dumps({"members": list(members), "kind": "seeds" if args.seeds else
                                                    "kfold", "problem_type": prepared["problem_type"]}, indent=2))
    summary = {}
    for part in ("valid", "test"):
        names = sorted({k for r in results.values() for k in r[part] if isinstance(r[part][k], (int, float))})
        summary[part] = {k: {"mean": float(np.mean([r[part][k] for r in results.values()])),
                             "std": float(np.std([r[part][k] for r in results.values()]))} for k in names}
    result = {"task": args.label_columns, "problem_type": prepared["problem_type"], "data": str(args.data),
              "members": {name: {"valid": r["valid"], "test": r["test"]} for name, r in results.items()},
              "split": {"method": args.split, "seed": args.seed, **{k: len(v) for k, v in split.items()}},
              "skipped_rows": next(iter(results.values()))["skipped_rows"], **summary}
    (output / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    return result
