"""`--max-grad-norm`: gradient clipping of fine-tuning, from the command line (finetune and benchmark) to the
Trainer; runs stored before the option existed were clipped at 1.0 (the Trainer's default) and are reused as such."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from moleblend_hf.arguments import BenchmarkArguments, FinetuneArguments
from moleblend_hf.training.benchmark_tables import _finetune_arguments, trained_with
from moleblend_hf.training.property_trainer import training_arguments

COMMON = dict(data="esol.csv", label_columns=["y"])


def test_the_trainer_clips_at_the_norm_asked_for(tmp_path):
    assert FinetuneArguments(**COMMON).max_grad_norm == 1.0
    for norm in (0.0, 0.5):
        args = FinetuneArguments(**COMMON, max_grad_norm=norm)
        assert training_arguments(args, str(tmp_path), "rmse", False).max_grad_norm == norm
    with pytest.raises(ValueError, match=r"^--max-grad-norm must be >= 0, got -1"):
        FinetuneArguments(**COMMON, max_grad_norm=-1.0)
    with pytest.raises(ValueError, match=r"^--max-grad-norm must be >= 0"):
        BenchmarkArguments(moleculenet_dir=str(tmp_path), max_grad_norm=-1.0)


def test_the_benchmark_hands_its_clipping_to_every_run_and_reuses_runs_stored_before_the_option(tmp_path):
    task = {"name": "esol", "data": "esol.csv", "labels": ["y"], "column": "smiles", "modality": "2d"}
    split, run = tmp_path / "split.json", tmp_path / "run"
    clipped = _finetune_arguments(BenchmarkArguments(moleculenet_dir=str(tmp_path)), task, split, run, None, 0)
    unclipped = _finetune_arguments(
        BenchmarkArguments(moleculenet_dir=str(tmp_path), max_grad_norm=0.0), task, split, run, None, 0
    )
    assert (clipped.max_grad_norm, unclipped.max_grad_norm) == (1.0, 0.0)
    stored = json.loads(json.dumps(asdict(clipped), default=str))
    del stored["max_grad_norm"]  # a run stored before the option existed: the Trainer clipped it at 1.0
    stored = {"arguments": stored, "config_overrides": clipped.config_overrides}
    assert trained_with(stored, clipped)
    assert not trained_with(stored, unclipped)
