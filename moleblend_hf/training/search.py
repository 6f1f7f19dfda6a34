"""`moleblend finetune --search-trials N`: a hyperparameter search with `Trainer.hyperparameter_search` (optuna).

Every trial trains a fresh model on the training split and is scored on the validation split only (the best value
of the selection metric over its epochs); the test split is never seen. The trials go to `search_trials.json`, the
best settings to `search_best.json`, and the job then trains its model with them as usual.

Searched (`SEARCH_SPACE` in the arguments module, overridable with `--search-space`): the learning rate, the
encoder's learning-rate ratio, weight decay, the property head's dropout and the batch size. The learning-rate
ratio and the dropout are not `TrainingArguments` fields: the trial's values reach the optimizer (`optimizer_factory`)
and the model (`model_init`) through the trial itself, which optuna answers with the same value at every call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import Trainer

from .._optional import import_optional
from ..arguments import FinetuneArguments

logger = logging.getLogger(__name__)
#: search parameters that are TrainingArguments fields (set on the trainer's arguments by the Trainer itself)
TRAINER_FIELDS = {
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "batch_size": "per_device_train_batch_size",
}
STUDY_NAME = "moleblend-finetune"


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trial's value of every parameter (`choices`: categorical; `low`/`high` [`log`]: float; `value`: fixed)."""
    params = {}
    for name, spec in space.items():
        if "value" in spec:
            params[name] = spec["value"]
        elif "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log", False)))
    return params


def with_params(args: FinetuneArguments, params: dict[str, Any]) -> FinetuneArguments:
    """The job's arguments with a trial's (or the best) settings; dropout is the head's `classifier_dropout`."""
    overrides = dict(args.config_overrides)
    if "dropout" in params:
        overrides["classifier_dropout"] = float(params["dropout"])
    fields = {
        name: params[name]
        for name in ("learning_rate", "encoder_learning_rate_ratio", "weight_decay")
        if name in params
    }
    if "batch_size" in params:
        fields["batch_size"] = int(params["batch_size"])
    return replace(args, **fields, config_overrides=overrides)


def run_search(
    args: FinetuneArguments,
    make_trainer: Callable[..., Trainer],
    build_model: Callable[[FinetuneArguments], Any],
    build_optimizer: Callable[[Any, FinetuneArguments], Any],
    metric: str,
    greater_is_better: bool,
    output: Path,
) -> FinetuneArguments:
    """Run `args.search_trials` trials; write search_trials.json and search_best.json into `output`; return the
    arguments with the best trial's settings. `make_trainer(model_init, optimizer_factory)` gives a Trainer on the
    training and validation splits."""
    optuna = import_optional("optuna", "search", "finetune --search-trials")

    space = args.search_space
    best_of_trial: list[float] = []

    def model_init(trial=None):
        best_of_trial.clear()  # a new trial starts with a new model
        return build_model(with_params(args, suggest(trial, space)) if trial is not None else args)

    def optimizer_factory(model, trial=None):
        return build_optimizer(model, with_params(args, suggest(trial, space)) if trial is not None else args)

    def objective(metrics: dict[str, float]) -> float:
        """The trial's best validation value so far (the final model, too, is the best epoch's)."""
        value = metrics[f"eval_{metric}"]
        if not best_of_trial or (value > best_of_trial[0] if greater_is_better else value < best_of_trial[0]):
            best_of_trial[:] = [value]
        return best_of_trial[0]

    def hp_space(trial) -> dict[str, Any]:
        params = suggest(trial, space)
        return {TRAINER_FIELDS[k]: v for k, v in params.items() if k in TRAINER_FIELDS}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    trainer = make_trainer(model_init, optimizer_factory)
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=objective,
        n_trials=args.search_trials,
        backend="optuna",
        direction="maximize" if greater_is_better else "minimize",
        storage=storage,
        study_name=STUDY_NAME,
        sampler=optuna.samplers.TPESampler(seed=args.seed),
    )
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    fixed = {name: spec["value"] for name, spec in space.items() if "value" in spec}
    trials = [
        {"trial": t.number, "state": t.state.name, "params": {**fixed, **t.params}, f"valid_{metric}": t.value}
        for t in study.trials
    ]
    chosen = {**fixed, **best.hyperparameters}
    (output / "search_trials.json").write_text(json.dumps(trials, indent=2))
    (output / "search_best.json").write_text(
        json.dumps(
            {
                "trial": int(best.run_id),
                "params": chosen,
                f"valid_{metric}": best.objective,
                "metric": metric,
                "direction": "maximize" if greater_is_better else "minimize",
                "trials": len(trials),
                "space": space,
            },
            indent=2,
        )
    )
    logger.info("search: best trial %s of %d, %s %.4g, %s", best.run_id, len(trials), metric, best.objective, chosen)
    return with_params(args, chosen)
