"""The pretraining job's checkpoints: written atomically, verified by checksums, resumed exactly.

A checkpoint holds the training state (training_state.py: model, optimizer, scheduler, random states), every
rank's data position and log lengths (`data_state_rank<r>.json`), the job state (`trainer_state.json`) and a
checksum manifest. Loading one refuses a checkpoint of another run, other data settings, changed local corpus
files or another process layout.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from safetensors import SafetensorError

from ..sources.fingerprints import source_changes
from ..sources.remote import HUB_PREFIX, HubSource
from ..sources.streaming import Position
from .training_state import (
    STATE_FILE,
    CheckpointError,
    CheckpointWriteError,
    load_training_state,
    run_checkpoints,
    save_training_state,
    verify_checksums,
    write_checksums,
)

# the job's logger: its checkpoint messages keep the name they had in pretrain.py
logger = logging.getLogger(__name__.rpartition(".")[0] + ".pretrain")


class PretrainCheckpoints:
    """Checkpoint methods of `Pretrainer` (its model, optimizer, run, data position and log attributes)."""

    def _state(self) -> dict:
        return {
            "run_id": self.run.run_id if self.run else None,
            "step": self.step,
            "positions": {str(w): asdict(p) for w, p in self.positions.items()},
            "next_worker": self.next_worker,
            "skipped": dict(self.skipped),
            "molecules_seen": self.molecules_seen,
            "world_size": self.accelerator.num_processes,
            "num_workers": self.args.num_workers,
            "stream": asdict(self._stream_settings()),
            "source_fingerprints": self.fingerprints,
        }

    def save_checkpoint(self) -> Path:
        """Write checkpoint-<step> atomically (a temporary directory renamed once complete). A failed write (disk
        full, a read-only directory) removes the temporary directory and raises `CheckpointWriteError`."""
        target = self.output_dir / f"checkpoint-{self.step}"
        temporary = self.output_dir / f".tmp-checkpoint-{self.step}"
        accelerator = self.accelerator
        if accelerator.is_main_process:
            self.run_dir.record(temporary.name, target.name)
        try:
            self._write_checkpoint(temporary)
        except (OSError, SafetensorError) as error:
            shutil.rmtree(temporary, ignore_errors=True)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointWriteError(f"could not write {target.name} in {self.output_dir}: {reason}") from None
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if target.exists():
                shutil.rmtree(target)
            temporary.rename(target)
            self._rotate_checkpoints()
        accelerator.wait_for_everyone()
        return target

    def _write_checkpoint(self, temporary: Path) -> None:
        accelerator = self.accelerator
        if accelerator.is_main_process:
            if temporary.exists():
                shutil.rmtree(temporary)
            temporary.mkdir(parents=True)  # before any rank writes its random states into it
        accelerator.wait_for_everyone()
        save_training_state(
            temporary,
            accelerator.unwrap_model(self.model),
            self.optimizer.optimizer,
            self.scheduler,
            accelerator.scaler,
            accelerator.process_index,
            accelerator.is_main_process,
        )
        # every rank's data positions differ: each writes its own state file, with the length of its logs, to
        # which a resumed run cuts them back
        rank = accelerator.process_index
        for handle in self._logs.values():
            handle.flush()
        logs = {
            name: (self.output_dir / name).stat().st_size
            for name in self._log_names(rank)
            if (self.output_dir / name).exists()
        }
        (temporary / f"data_state_rank{rank}.json").write_text(json.dumps({**self._state(), "logs": logs}, indent=2))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (temporary / STATE_FILE).write_text(json.dumps(self._state(), indent=2))
            write_checksums(temporary)

    def _rotate_checkpoints(self) -> None:
        found = run_checkpoints(self.output_dir, self.run.run_id)  # never another run's checkpoints
        for old in found[: max(0, len(found) - self.args.save_total_limit)]:
            shutil.rmtree(old)

    @staticmethod
    def _log_names(rank: int) -> list[str]:
        names = [f"molecule_ids_rank{rank}.txt"]
        return names + (["train_log.jsonl", "eval_log.jsonl"] if rank == 0 else [f"train_log_rank{rank}.jsonl"])

    def load_checkpoint(self, path: Path) -> None:
        rank = self.accelerator.process_index
        state = json.loads((path / f"data_state_rank{rank}.json").read_text())
        if state["world_size"] != self.accelerator.num_processes or state["num_workers"] != self.args.num_workers:
            raise ValueError(
                f"{path} was written by {state['world_size']} processes x {state['num_workers']} data workers; "
                f"resume with the same (now {self.accelerator.num_processes} x {self.args.num_workers})"
            )
        now = json.loads(json.dumps(asdict(self._stream_settings())))
        hub = [
            (old, HubSource.parse(old), HubSource.parse(new))
            for old, new in zip(state["stream"]["sources"], now["sources"])
            if old.startswith(HUB_PREFIX) and new.startswith(HUB_PREFIX)
        ]
        moved = [
            (old, after.revision)
            for old, before, after in hub
            if before != after and replace(before, revision=None) == replace(after, revision=None)
        ]
        if moved:
            raise ValueError(
                f"{path}: the Hub dataset changed since the checkpoint ({moved[0][0]} -> "
                f"{moved[0][1]}); to continue on the checkpoint's data, name its "
                f"revision as the input, {moved[0][0]}, with --allow-changed-settings"
            )
        if state["stream"].get("stream_format", 1) != now["stream_format"]:
            raise ValueError(
                f"{path} was written by an older moleblend-hf whose data order differs (stream format "
                f"{state['stream'].get('stream_format', 1)}, now {now['stream_format']}): resume it with "
                "that version, or start a new run (--init-from its last checkpoint keeps the weights)"
            )
        self._check_sources(path, state.get("source_fingerprints", {}))
        if state["stream"] != now:
            raise ValueError(
                f"{path}: the data settings differ from the checkpoint's; resume with the same inputs, "
                f"seed, batch size, token budget, window and shuffle block\n"
                f"checkpoint: {state['stream']}\nnow: {now}"
            )
        if state.get("run_id") != self.run.run_id:
            raise ValueError(
                f"{path} belongs to run {state.get('run_id')}, not to the run in {self.output_dir} ({self.run.run_id})"
            )
        load_training_state(
            path,
            self.accelerator.unwrap_model(self.model),
            self.optimizer.optimizer,
            self.scheduler,
            self.accelerator.scaler,
            rank,
        )
        for name, size in state.get("logs", {}).items():  # steps logged after the checkpoint are run again
            log = self.output_dir / name
            if log.exists() and log.stat().st_size > size:
                with open(log, "r+b") as handle:
                    handle.truncate(size)
        self.step = state["step"]
        self.positions = {int(w): Position(**p) for w, p in state["positions"].items()}
        self.next_worker = state.get("next_worker", 0)
        self.skipped = Counter(state["skipped"])
        self.molecules_seen = state["molecules_seen"]

    def _check_sources(self, path: Path, recorded: dict[str, dict]) -> None:
        """A local corpus file edited since the checkpoint: its stream position points into other data."""
        changes = source_changes(recorded, self.fingerprints)
        if changes and not self.args.allow_changed_settings:
            raise ValueError(
                f"--resume: {changes[0]} since {path.name}; the checkpoint's data position no longer "
                "fits it. Restore the file, start a new run (--init-from keeps the weights), or pass "
                "--allow-changed-settings to continue on the new data"
            )
        for change in changes:
            logger.warning("resuming on changed data (--allow-changed-settings): %s", change)

    def _checkpoint_to_resume(self) -> Path:
        """The checkpoint `--resume` names, verified against its checksums; for `latest`, the newest complete one
        of this run (a damaged one is named and passed over)."""
        found = run_checkpoints(self.output_dir, self.run.run_id)
        if self.args.resume != "latest":
            path = Path(self.args.resume)
            try:
                verify_checksums(path)
            except CheckpointError as error:
                earlier = (
                    [p for p in found if int(p.name.split("-")[1]) < int(path.name.split("-")[-1])]
                    if path.name.startswith("checkpoint-")
                    else []
                )
                offer = f"; the previous checkpoint is {earlier[-1]} (--resume {earlier[-1]})" if earlier else ""
                raise CheckpointError(error.path, error.reason + offer) from None
            return path
        for path in reversed(found):
            try:
                verify_checksums(path)
                return path
            except CheckpointError as error:
                logger.warning("not resuming from %s: %s; trying the previous checkpoint", path, error)
        raise FileNotFoundError(
            f"--resume latest: no complete checkpoint of run {self.run.run_id} in "
            f"{self.output_dir}" + (f" ({len(found)} damaged)" if found else "")
        )
