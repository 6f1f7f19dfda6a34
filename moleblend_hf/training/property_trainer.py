"""The pieces of property fine-tuning that the job (`finetune.py`) and the hyperparameter search (`search.py`)
share: the featurized dataset, the Trainer subclass, the model, its optimizer, the Trainer's arguments and metrics."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..arguments import FinetuneArguments
from ..modeling import MoleBlendConfig, MoleBlendForPropertyPrediction
from ..processing import MoleBlendProcessor, MoleculeError
from ..processing.molecule_features import molecule_feature_size, rdkit2d_names
from ..publishing.checkpoints import load_model
from .metrics import compute_metrics

logger = logging.getLogger(__name__)


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
    """The `Trainer`, with training batches optionally grouped by atom count (`group_by_size`) and an optimizer
    built by `optimizer_factory`.

    transformers' own `train_sampling_strategy="group_by_length"` also reorders evaluation and `predict` batches
    (randomly), which would misalign the test predictions written per row; here only training batches are grouped,
    with transformers' `LengthGroupedSampler` (random megabatches, each sorted by size) on the molecules' atom
    counts, and evaluation keeps the dataset order.
    """

    def __init__(
        self,
        *args,
        group_by_size: bool = False,
        optimizer_factory: Callable[[torch.nn.Module, Any], torch.optim.Optimizer] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.group_by_size = group_by_size
        self.optimizer_factory = optimizer_factory

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """With `optimizer_factory(model, trial)`: its optimizer (a hyperparameter search builds one per trial, which
        the Trainer's `optimizers` argument cannot do)."""
        if self.optimizer is None and self.optimizer_factory is not None:
            self.optimizer = self.optimizer_factory(
                model if model is not None else self.model, getattr(self, "_trial", None)
            )
        return super().create_optimizer(model)

    def _get_train_sampler(self, train_dataset: Dataset | None = None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_size or not isinstance(dataset, FeatureDataset):
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        return LengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=dataset.sizes()
        )


class FrozenEncoderEpochs(TrainerCallback):
    """Linear probing, then fine-tuning (LP-FT, Kumar et al., ICLR 2022): the encoder is frozen for the first
    `epochs` epochs, so that the gradients of a randomly initialised head do not distort the pretrained features
    before the head fits them. The optimizer keeps every parameter; AdamW skips those without a gradient, so a
    frozen encoder is neither updated nor decayed, and its schedule continues unchanged once it thaws."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.epochs >= args.num_train_epochs and args.max_steps <= 0:
            logger.warning(
                "the encoder stays frozen for all %d epochs (--freeze-encoder-epochs %d): a linear probe; train "
                "more epochs than that to fine-tune it",
                args.num_train_epochs,
                self.epochs,
            )
        self._freeze_or_thaw(model, state.epoch or 0.0)  # a resumed run starts in the phase it stopped in

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        self._freeze_or_thaw(model, state.epoch or 0.0)

    def _freeze_or_thaw(self, model: torch.nn.Module, epochs_done: float) -> None:
        trainable = round(epochs_done) >= self.epochs
        for name, parameter in model.named_parameters():
            if name.startswith("moleblend."):
                parameter.requires_grad_(trainable)


class MovingAverageWeights(TrainerCallback):
    """Polyak averaging: an exponential moving average of the weights is what gets evaluated, chosen and saved.

    After every optimizer step, `average <- d * average + (1 - d) * weights` with `d = min(decay, (1 + t) / (10 + t))`
    at step t (the warm-up keeps the first steps from being dominated by the initial, e.g. random head, weights).
    At the end of every epoch the model is given the average, so the evaluation that follows (the validation
    metric, early stopping, the best-checkpoint choice) and the checkpoint saved after it are the average's; the
    trained weights are put back after the save (or before the next step, whichever comes first). The parameters
    keep their identity (values are swapped in place), so the optimizer's state stays attached to them.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.average: list[torch.Tensor] = []
        self.holds_average = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.average = [p.detach().clone() for p in model.parameters()]
        self.holds_average = False

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        # the trained weights are in the model: on_step_begin put them back
        decay = min(self.decay, (1 + state.global_step) / (10 + state.global_step))
        torch._foreach_lerp_(self.average, [p.detach() for p in model.parameters()], 1.0 - decay)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not self.holds_average:
            self._swap(model)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._put_back(model)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._put_back(model)

    def _put_back(self, model: torch.nn.Module) -> None:
        if self.holds_average:
            self._swap(model)

    @torch.no_grad()
    def _swap(self, model: torch.nn.Module) -> None:
        for parameter, average in zip(model.parameters(), self.average, strict=True):
            trained = parameter.detach().clone()
            parameter.copy_(average)
            average.copy_(trained)
        self.holds_average = not self.holds_average


def featurize_rows(
    processor: MoleBlendProcessor, molecules: list, cache: Path | None
) -> tuple[dict[int, dict], dict[int, str]]:
    """Features of every row that can be featurized, and the reason for every row that cannot.

    With `cache`, features (conformers included, the slow part) are stored with `datasets.save_to_disk` under a
    key of the inputs and the processor settings, and reused by later runs.
    """
    key = hashlib.sha256(
        json.dumps([processor.to_dict(), [str(m) for m in molecules]], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    target = cache / f"features-{key}" if cache else None
    if target is not None and (target / "dataset_info.json").exists():
        from datasets import load_from_disk

        stored = load_from_disk(str(target))
        features = {
            int(r["row"]): {k: v for k, v in r.items() if k not in ("row", "error")}
            for r in stored
            if r["error"] is None
        }
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

        records = [
            {"row": r, "error": None, **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.items()}}
            for r, f in features.items()
        ]
        template = records[0] if records else {}
        records += [{**{k: None for k in template}, "row": r, "error": reason} for r, reason in failures.items()]
        # written beside the cache entry, then renamed into place: a run sharing the cache (a benchmark column beside
        # another) never reads a half-written entry, and of two runs writing the same entry one rename wins
        temporary = target.with_name(f".tmp-{target.name}-{os.getpid()}")
        HFDataset.from_list(records).save_to_disk(str(temporary))
        _move_into_place(temporary, target)
    return features, failures


def _move_into_place(temporary: Path, target: Path) -> None:
    """Rename the complete directory `temporary` to `target`. Where another process got there first, its entry (the
    same features: the same key) stays and `temporary` is removed; an incomplete entry (a write interrupted before
    entries were renamed into place) is replaced."""
    if target.exists() and not (target / "dataset_info.json").exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        temporary.rename(target)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (target / "dataset_info.json").exists():
            raise


def build_model(
    args: FinetuneArguments, problem_type: str, num_labels: int, label_names: dict[int, str] | None = None
) -> MoleBlendForPropertyPrediction:
    relations = {
        "use_2d_relations": args.modality in ("2d", "both"),
        "use_3d_relations": args.modality in ("3d", "both"),
    }
    overrides = {
        **relations,
        **args.config_overrides,
        "num_labels": num_labels,
        "problem_type": problem_type,
        "classifier_pooling": args.pooling,
        "classifier_num_layers": args.head_layers,
    }
    if args.molecule_features:
        names = rdkit2d_names() if "rdkit2d" in args.molecule_features else None
        overrides |= {
            "molecule_features": list(args.molecule_features),
            "descriptor_names": names,
            "molecule_feature_size": molecule_feature_size(args.molecule_features, names),
        }
    if label_names:
        overrides |= {"id2label": label_names, "label2id": {name: i for i, name in label_names.items()}}
    torch.manual_seed(args.seed)  # the new head's initialisation depends on the seed only, not on earlier runs
    if args.model:
        return load_model(MoleBlendForPropertyPrediction, args.model, **overrides)
    return MoleBlendForPropertyPrediction(MoleBlendConfig.from_preset(args.preset, **overrides))


def build_optimizer(model: MoleBlendForPropertyPrediction, args: FinetuneArguments) -> torch.optim.Optimizer:
    """AdamW with the encoder at `learning_rate x encoder_learning_rate_ratio` and the new head at
    `learning_rate`; with `layerwise_lr_decay` d < 1, encoder layer l of L at that rate x d^(L-1-l) and the
    embeddings at x d^L (lower layers hold the more general pretrained features); no weight decay on biases, norms
    and embeddings (the Trainer's default grouping). The Trainer builds its warmup + linear decay schedule on top
    of these groups."""
    if args.encoder_learning_rate_ratio <= 0:
        raise ValueError(f"encoder_learning_rate_ratio must be > 0, got {args.encoder_learning_rate_ratio}")
    layers = model.config.num_hidden_layers
    groups: dict[tuple[float, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        scale = 1.0
        if name.startswith("moleblend."):
            layer = re.match(r"moleblend\.layers\.(\d+)\.", name)
            depth = int(layer.group(1)) if layer else -1
            scale = args.encoder_learning_rate_ratio * args.layerwise_lr_decay ** (layers - 1 - depth)
        decay = parameter.ndim >= 2 and "norm" not in name and "embedding" not in name
        groups.setdefault((scale, decay), []).append(parameter)
    return torch.optim.AdamW(
        [
            {"params": params, "weight_decay": args.weight_decay if decay else 0.0, "lr": args.learning_rate * scale}
            for (scale, decay), params in groups.items()
        ],
        lr=args.learning_rate,
    )


def training_arguments(
    args: FinetuneArguments, output_dir: str, metric: str, greater_is_better: bool, search: bool = False
) -> TrainingArguments:
    """The Trainer's arguments of a fine-tuning run: evaluated every epoch, the best checkpoint on the validation
    `metric` loaded at the end. `search`: a hyperparameter-search trial, which saves no checkpoint (its score is
    its best validation value, see search.py)."""
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        warmup_steps=args.warmup_ratio,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_strategy="epoch",
        save_strategy="no" if search else "epoch",
        load_best_model_at_end=not search,
        metric_for_best_model=metric,
        greater_is_better=greater_is_better,
        save_total_limit=2,
        logging_strategy="epoch",
        seed=args.seed,
        report_to=[] if search else args.report_to,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=args.num_workers,
        use_cpu=not torch.cuda.is_available(),
    )


def metrics_function(problem_type: str):
    def metrics(prediction) -> dict[str, float]:
        return compute_metrics(problem_type, prediction.label_ids, prediction.predictions)

    return metrics
