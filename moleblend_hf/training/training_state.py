"""Checkpointed training state without pickle: tensors in safetensors, everything else in JSON.

Accelerate's `save_state` pickles the scheduler and the random states (`*.pkl`, read back with
`weights_only=False`), so a planted file in a checkpoint would run code on `--resume`. This module writes and reads
the same state with formats that cannot execute anything:

| file                              | content                                                        |
|-----------------------------------|----------------------------------------------------------------|
| `model.safetensors`               | model weights (main process)                                   |
| `optimizer.safetensors` / `.json` | optimizer tensors (per-parameter state) / hyperparameters      |
| `scheduler.json`                  | learning-rate scheduler state (its lambdas are rebuilt by code)|
| `scaler.json`                     | fp16 gradient scaler, when there is one                        |
| `rng_rank<r>.safetensors` / `.json` | torch (CPU and CUDA) / numpy / Python random states of rank r  |
| `checksums.json`                  | sha256 and size of every file above and of the data states     |

A checkpoint whose files do not match `checksums.json` (truncated, damaged, missing) is reported by file name
(`CheckpointError`) before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

CHECKSUM_FILE = "checksums.json"
#: the job's own state in a checkpoint directory (step, data positions, run id); its presence marks it complete
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: `path` names the damaged or missing file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, a read-only directory); nothing half-written is left."""


# ------------------------------------------------------------------------------------------------ checksums
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path) -> None:
    """Record every file of a complete checkpoint (called last, by the main process)."""
    files = {
        p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != CHECKSUM_FILE
    }
    (directory / CHECKSUM_FILE).write_text(json.dumps(files, indent=2))


def verify_checksums(directory: Path) -> None:
    """Raise `CheckpointError` naming the first file that is missing or differs from `checksums.json`."""
    manifest = directory / CHECKSUM_FILE
    if not manifest.exists():
        raise CheckpointError(manifest, "missing: the checkpoint is incomplete or was not written by this version")
    try:
        files = json.loads(manifest.read_text())
    except ValueError as error:
        raise CheckpointError(manifest, f"unreadable ({error})") from None
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(path, "missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(
                path, f"{size} bytes, the checkpoint recorded {expected['bytes']} (truncated or damaged)"
            )
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(path, "content differs from the checkpoint's checksum (damaged)")


# ------------------------------------------------------------------------------------------------ optimizer
def _save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    save_file(tensors, str(directory / "optimizer.safetensors"))
    (directory / "optimizer.json").write_text(
        json.dumps({"param_groups": state["param_groups"], "scalars": scalars}, indent=2)
    )


def _load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    meta = json.loads((directory / "optimizer.json").read_text())
    per_parameter: dict[int, dict[str, Any]] = {}
    for key, tensor in load_file(str(directory / "optimizer.safetensors")).items():
        index, name = key.split(".", 1)
        per_parameter.setdefault(int(index), {})[name] = tensor
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        per_parameter.setdefault(int(index), {})[name] = value
    groups = [
        {**group, "betas": tuple(group["betas"])} if "betas" in group else group for group in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})


# ------------------------------------------------------------------------------------------------ random states
def _save_rng(directory: Path, rank: int) -> None:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(numpy_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{device}"] = state
    save_file(tensors, str(directory / f"rng_rank{rank}.safetensors"))
    (directory / f"rng_rank{rank}.json").write_text(
        json.dumps(
            {
                "numpy": [numpy_state[0], int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
                "python": [python_state[0], list(python_state[1]), python_state[2]],
            }
        )
    )


def _load_rng(directory: Path, rank: int) -> None:
    tensors = load_file(str(directory / f"rng_rank{rank}.safetensors"))
    meta = json.loads((directory / f"rng_rank{rank}.json").read_text())
    torch.set_rng_state(tensors["torch"])
    kind, position, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    if torch.cuda.is_available():
        states = [tensors[f"cuda{d}"] for d in range(torch.cuda.device_count()) if f"cuda{d}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)


# ------------------------------------------------------------------------------------------------ all of it
def save_training_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: Any,
    rank: int,
    main_process: bool,
) -> None:
    """Write this rank's random states, and (main process) the model, optimizer, scheduler and scaler, which DDP
    keeps identical on every rank."""
    _save_rng(directory, rank)
    if not main_process:
        return
    save_model(model, str(directory / MODEL_FILE))
    _save_optimizer(optimizer, directory)
    schedule = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    (directory / "scheduler.json").write_text(json.dumps(schedule, indent=2))
    if scaler is not None:
        (directory / "scaler.json").write_text(json.dumps(scaler.state_dict(), indent=2))


def load_training_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: Any,
    rank: int,
) -> None:
    """Restore what `save_training_state` wrote (every rank reads the shared files). Verify the checksums first."""
    load_model(model, str(directory / MODEL_FILE), device=str(next(model.parameters()).device))
    _load_optimizer(optimizer, directory)
    schedule = json.loads((directory / "scheduler.json").read_text())
    scheduler.load_state_dict({**schedule, "lr_lambdas": [None] * len(optimizer.param_groups)})
    if scaler is not None and (directory / "scaler.json").exists():
        scaler.load_state_dict(json.loads((directory / "scaler.json").read_text()))
    _load_rng(directory, rank)


def run_checkpoints(output_dir: Path, run_id: str | None = None) -> list[Path]:
    """The complete checkpoints in `output_dir` (of run `run_id` only, when given), oldest first."""
    found = []
    for path in output_dir.glob("checkpoint-*"):
        state = path / STATE_FILE
        if state.exists() and (run_id is None or json.loads(state.read_text()).get("run_id") == run_id):
            found.append(path)
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def weights_checksum(model: torch.nn.Module) -> str:
    """sha256 of the weights in name order: a run summary's fingerprint of the model (a resumed run must match
    an uninterrupted one)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
