"""A pretraining checkpoint (`<run>/checkpoint-<step>`) as a model directory that `from_pretrained`, `moleblend
finetune --model` and the benchmark's `--compare` load: model, processor and card, like the run's final model.

A checkpoint holds the training state (weights, optimizer, random states), not a config: the model is rebuilt from
the settings the run recorded in its `run.json` (preset, `--set` overrides, `--init-from`), its weights read from
the checkpoint after the checkpoint's checksums are verified. This is how to fine-tune from points along one
pretraining run (does more pretraining pay?), or from a run that was stopped before its last step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_model

from ..modeling import MoleBlendConfig, MoleBlendForPreTraining
from ..processing import MoleBlendProcessor
from ..publishing.card import write_model_card
from ..publishing.checkpoints import resolve_model
from .run_directory import read_run
from .training_state import MODEL_FILE, STATE_FILE, CheckpointError, verify_checksums


def build_pretraining_model(
    preset: str, config_overrides: dict[str, Any] | None = None, init_from: str | None = None
) -> MoleBlendForPreTraining:
    """The model a pretraining run starts from: `init_from`'s weights, or a fresh `preset` model; `config_overrides`
    (`--set`) applied on top."""
    overrides = config_overrides or {}
    if init_from:
        return MoleBlendForPreTraining.from_pretrained(resolve_model(init_from), **overrides)
    return MoleBlendForPreTraining(MoleBlendConfig.from_preset(preset, **overrides))


def export_pretraining_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write the model of pretraining checkpoint `checkpoint` (a `checkpoint-<step>` directory inside its run) to
    `output_dir`, which must not exist or be empty: `model.safetensors` + `config.json`, the processor and a model
    card whose pretraining budget is the checkpoint's (steps, molecules seen).

    Raises `CheckpointError` for a directory that is not a checkpoint of a pretraining run, or whose files fail
    their checksums; `FileExistsError` when `output_dir` holds anything.
    """
    checkpoint, output = Path(checkpoint), Path(output_dir)
    if not (checkpoint / STATE_FILE).is_file() or not (checkpoint / MODEL_FILE).is_file():
        raise CheckpointError(checkpoint, f"not a pretraining checkpoint (no {STATE_FILE} and {MODEL_FILE})")
    run = read_run(checkpoint.parent)
    if run is None or run.job != "pretrain":
        raise CheckpointError(checkpoint.parent, "not the directory of a pretraining run (no run marker of `pretrain`)")
    state = json.loads((checkpoint / STATE_FILE).read_text())
    if state.get("run_id") != run.run_id:
        raise CheckpointError(checkpoint, f"a checkpoint of another run than the one in {checkpoint.parent}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"{output} exists and is not empty; choose a new directory")
    verify_checksums(checkpoint)
    settings = run.settings
    model = build_pretraining_model(settings["preset"], settings.get("config_overrides"), settings.get("init_from"))
    load_model(model, str(checkpoint / MODEL_FILE))
    processor = MoleBlendProcessor.from_config(
        model.config, conformers=settings.get("conformers", "given"), seed=settings.get("seed", 0)
    )
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    write_model_card(
        output,
        model.config,
        pretraining={
            "inputs": settings.get("inputs", []),
            "steps": state["step"],
            "molecules_seen": state.get("molecules_seen"),
            "skipped": state.get("skipped", {}),
            "batch_size": settings.get("batch_size"),
            "max_tokens": settings.get("max_tokens"),
            "learning_rate": settings.get("learning_rate"),
            "processes": state.get("world_size", 1),
        },
    )
    return output
