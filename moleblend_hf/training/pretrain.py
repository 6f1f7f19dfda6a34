"""`moleblend pretrain`: the MoleBLEND pretraining job (Accelerate).

One process or many (`torchrun` / `accelerate launch`): each rank reads its own share of the streamed corpus
(see `streaming.py`) and gradients are synchronised by DDP. Checkpoints (`checkpoint-<step>/`) hold model,
optimizer, scheduler and RNG states (safetensors + JSON, never pickle: `training_state.py`), `trainer_state.json`
(step, every worker's data position, skip counts) and a checksum manifest; `--resume` continues exactly where a
run stopped (logs are cut back to the checkpoint's step), and `--resume latest` passes over a damaged checkpoint
to the previous complete one, naming the damaged file. The run ends
with `save_pretrained` of model + processor + model card at the root of the output directory, as after
`Trainer.save_model`, so `AutoModel.from_pretrained(output_dir)` works.

The output directory has an identity (`run.json`, see `run_directory.py`): a used directory is refused without
`--resume` or `--overwrite`, checkpoints carry the run id (rotation and `--resume` see only this run's), and
`--resume` refuses changed settings (learning rate and schedule included) unless `--allow-changed-settings`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..arguments import BUNDLED_QM9, PretrainArguments
from ..modeling import MoleBlendConfig, MoleBlendForPreTraining
from ..processing import MoleBlendProcessor, MoleculeError
from ..publishing.card import write_model_card
from ..publishing.push import push_directory
from ..sources.files import expand_sources, read_table
from ..sources.fingerprints import fingerprint_sources
from ..sources.remote import pin_revision, register_dataset
from ..sources.streaming import Position, PretrainingStream, StreamSettings, next_position
from .checkpoint_export import build_pretraining_model
from .plots import write_pretraining_curves
from .pretrain_checkpoints import PretrainCheckpoints
from .run_directory import Run, RunDirectory, open_run, read_run, save_model_atomically
from .train_log import LOSS_NAMES, TrainLog

# STATE_FILE and run_checkpoints: importable from here as before they moved to training_state.py
from .training_state import STATE_FILE, run_checkpoints, weights_checksum  # noqa: F401

logger = logging.getLogger(__name__)


def cosine_schedule(step: int, warmup: int, total: int, floor: float) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to `floor`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


#: settings that may change between a run and its --resume (they do not change what is trained)
RESUMABLE_CHANGES = (
    "resume",
    "overwrite",
    "allow_changed_settings",
    "stop_after_steps",
    "progress",
    "push_to_hub",
    "report_to",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "cpu",
    "gradient_checkpointing",
    "log_level",
)


class Pretrainer(PretrainCheckpoints):
    """The pretraining job of one rank (checkpoints: pretrain_checkpoints.py)."""

    def __init__(self, args: PretrainArguments):
        self.args = args
        self.output_dir = Path(args.output_dir)
        # the trackers log beside train_log.jsonl, which is always written (resume cuts it back to a checkpoint)
        trackers = [name for name in args.report_to if name != "jsonl"] or None
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            log_with=trackers,
            project_dir=str(self.output_dir),
            # Accelerate only sets up multi-process CPU (gloo) when told to use the CPU
            cpu=args.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()),
            # molecules without a conformer leave the 3D parameters unused in some batches
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(args.seed, device_specific=True)  # ranks draw different noise and blend masks
        # Hub datasets pinned to a commit: the stream settings (and so every checkpoint) record the data's revision
        self.sources = [pin_revision(str(p)) for p in expand_sources(args.inputs)]
        self.model = self._build_model()
        if args.gradient_checkpointing:
            # non-reentrant: works with DDP and with inputs that need no gradient; same values, less memory
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.processor = MoleBlendProcessor.from_config(self.model.config, conformers=args.conformers, seed=args.seed)
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            (no_decay if param.ndim < 2 or "norm" in name or "embedding" in name else decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_eps,
            fused=self.accelerator.device.type == "cuda" or None,
        )  # one kernel per step on a GPU, same math
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: cosine_schedule(step, args.warmup_steps, args.max_steps, args.min_learning_rate_ratio),
        )
        # The schedule counts optimizer steps, so the scheduler is stepped here (not by Accelerate, which would
        # step it once per process) and checkpointed alongside.
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.step = 0
        self.positions: dict[int, Position] = {}
        self.next_worker = 0  # the DataLoader worker whose batch comes next (they take turns)
        self.skipped: Counter = Counter()
        self.molecules_seen = 0
        self._eval_cache: list[dict[str, torch.Tensor]] | None = None  # held-out batches, built on first use
        self.run: Run | None = None
        self.run_dir: RunDirectory | None = None  # rank 0: the manifest and the directory's lock
        # local corpus files as they are now; every checkpoint records them, --resume compares
        self.fingerprints = fingerprint_sources([*self.sources, *self._stream_settings().exclude])
        self._logs: dict[str, Any] = {}  # log file name -> open handle, flushed and measured at each checkpoint

    def _build_model(self) -> MoleBlendForPreTraining:
        return build_pretraining_model(self.args.preset, self.args.config_overrides, self.args.init_from)

    # ---------------------------------------------------------------------------------------- data
    def _stream_settings(self) -> StreamSettings:
        args = self.args
        return StreamSettings(
            sources=tuple(self.sources),
            seed=args.seed,
            shuffle_buffer=args.shuffle_buffer,
            batch_size=None if args.max_tokens else args.batch_size,
            max_tokens=args.max_tokens,
            window_size=args.window_size,
            rank=self.accelerator.process_index,
            world_size=self.accelerator.num_processes,
            smiles_column=args.smiles_column,
            molblock_column=args.molblock_column,
            exclude=tuple(str(p) for p in expand_sources(args.exclude)),
        )

    def _loader(self) -> DataLoader:
        stream = PretrainingStream(
            self._stream_settings(),
            self.processor,
            self.positions,
            self.next_worker,
            log_molecule_ids=self.args.log_molecule_ids,
        )
        # Its own generator: creating the iterator must not draw from the global RNG that the model's noise and
        # blend masks use, or a resumed run would diverge from an uninterrupted one.
        return DataLoader(
            stream,
            batch_size=None,
            num_workers=self.args.num_workers,
            persistent_workers=self.args.num_workers > 0,
            pin_memory=self.accelerator.device.type == "cuda",  # for non-blocking copies
            generator=torch.Generator().manual_seed(self.args.seed),
        )

    # ---------------------------------------------------------------------------------------- evaluation
    def _eval_batches(self) -> list[dict[str, torch.Tensor]]:
        """The held-out molecules, featurized once, grouped by atom count into padded batches."""
        if self._eval_cache is None:
            features, skipped = [], Counter()
            for source in expand_sources(self.args.eval_inputs):
                for record in read_table(source, self.args.smiles_column, self.args.molblock_column):
                    if len(features) >= self.args.eval_max_molecules:
                        break
                    try:
                        features.append(self.processor.featurize(record.molecule, record.row))
                    except MoleculeError as error:
                        skipped[error.reason] += 1
            if not features:
                raise ValueError(
                    f"no held-out molecule could be featurized from {self.args.eval_inputs}: {dict(skipped)}"
                )
            features.sort(key=lambda f: f["num_atoms"])
            size = self.args.batch_size or 64
            self._eval_cache = [
                dict(self.processor.pad(features[i : i + size], return_tensors="pt"))
                for i in range(0, len(features), size)
            ]
        return self._eval_cache

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean pretraining losses on the held-out molecules (weighted by molecules), with noise and blend masks
        drawn from a generator seeded the same way at every evaluation, so values are comparable across steps and
        runs; the global RNG (training noise, dropout) is not touched, so resumed runs stay exact."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        generator = torch.Generator(device=self.accelerator.device).manual_seed(self.args.seed)
        totals, count = Counter(), 0
        for batch in self._eval_batches():
            batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
            with self.accelerator.autocast():
                out = model(**batch, generator=generator)
            molecules = int(batch["attention_mask"].shape[0])
            for name in LOSS_NAMES:
                totals[name] += float(out[name]) * molecules
            count += molecules
        model.train()
        return {name: totals[name] / count for name in LOSS_NAMES} | {"molecules": count}

    def _log_evaluation(self) -> None:
        if not (self.args.eval_inputs and self.accelerator.is_main_process):
            return
        result = self.evaluate()
        record = {"step": self.step, **{k: round(v, 6) for k, v in result.items()}}
        with open(self.output_dir / "eval_log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.accelerator.log({f"eval/{k}": v for k, v in result.items() if k in LOSS_NAMES}, step=self.step)
        logger.info("step %d held-out loss %.4f", self.step, result["loss"])

    # ---------------------------------------------------------------------------------------- training
    def train(self) -> dict:
        self._open_run()
        try:
            return self._train()
        finally:
            if self.run_dir is not None:
                self.run_dir.close()

    def _train(self) -> dict:
        args, accelerator = self.args, self.accelerator
        if args.resume:
            self._resume()
        accelerator.init_trackers("moleblend-pretrain", config={k: str(v) for k, v in asdict(args).items()})
        rank = accelerator.process_index
        log_path = self.output_dir / ("train_log.jsonl" if rank == 0 else f"train_log_rank{rank}.jsonl")
        ids_path = self.output_dir / f"molecule_ids_rank{rank}.txt"
        stop_at = (
            args.max_steps if args.stop_after_steps is None else min(args.max_steps, self.step + args.stop_after_steps)
        )
        batches = iter(self._loader())
        bar = tqdm(
            total=args.max_steps,
            initial=self.step,
            desc="pretraining",
            unit="step",
            disable=not (args.progress and accelerator.is_main_process),
        )
        train_log = TrainLog(accelerator.num_processes)
        self.model.train()
        with open(log_path, "a") as log, open(ids_path, "a") if args.log_molecule_ids else _Null() as ids_log:
            self._logs = {log_path.name: log, ids_path.name: ids_log}
            while self.step < stop_at:
                losses = self._optimizer_step(batches, ids_log, train_log)
                self._after_step(losses, log, train_log, bar, stop_at)
        bar.close()
        return self._finish()

    def _resume(self) -> None:
        """Load the checkpoint `--resume` names, once the run's settings are accepted."""
        path = self._checkpoint_to_resume()
        self.load_checkpoint(path)
        if self.accelerator.is_main_process:  # the resume and any changed settings, now that they are accepted
            self.run.save(self.output_dir)
        if self.args.allow_changed_settings:
            self._apply_optimizer_settings()
        logger.info("resumed from %s at step %d", path, self.step)

    def _next_batch(self, batches: Iterator, ids_log: IO[str], train_log: TrainLog) -> dict[str, torch.Tensor]:
        """The next batch, its data position and counts recorded (so that a checkpoint resumes after it)."""
        batch, meta = next(batches)
        self.positions[meta["worker"]] = next_position(meta)
        self.next_worker = (meta["worker"] + 1) % max(1, self.args.num_workers)
        self.skipped.update(meta["skipped"])
        self.molecules_seen += meta["molecules"]
        train_log.count(meta["molecules"])
        if self.args.log_molecule_ids:
            ids_log.write("\n".join(meta["ids"]) + "\n")
        non_blocking = self.accelerator.device.type == "cuda"  # the DataLoader pins memory there
        return {k: v.to(self.accelerator.device, non_blocking=non_blocking) for k, v in batch.items()}

    def _optimizer_step(self, batches: Iterator, ids_log: IO[str], train_log: TrainLog) -> torch.Tensor:
        """One optimizer step over `gradient_accumulation_steps` batches; their mean losses, still on the device."""
        args, accelerator = self.args, self.accelerator
        losses = None
        for _ in range(args.gradient_accumulation_steps):
            batch = self._next_batch(batches, ids_log, train_log)
            with accelerator.accumulate(self.model):
                out = self.model(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                self.optimizer.step()
                if accelerator.sync_gradients:
                    self.scheduler.step()
                self.optimizer.zero_grad()
            step_losses = torch.stack([out[name].detach().float() for name in LOSS_NAMES])
            step_losses = step_losses / args.gradient_accumulation_steps
            losses = step_losses if losses is None else losses + step_losses
        return losses

    def _after_step(self, losses: torch.Tensor, log: IO[str], train_log: TrainLog, bar: tqdm, stop_at: int) -> None:
        """Count the step, then log, report, evaluate and checkpoint as their intervals say."""
        args = self.args
        self.step += 1
        train_log.add(
            {
                "step": self.step,
                "lr": self.scheduler.get_last_lr()[0],
                "molecules_seen": self.molecules_seen,
                "skipped": sum(self.skipped.values()),
            },
            losses,
        )
        report = self.step % args.logging_steps == 0 or self.step == stop_at
        if report or self.step % args.save_steps == 0:
            train_log.write_pending(log, rate=report)
        if report:
            self._report(train_log, bar)
            log.flush()
            train_log.restart()
        bar.update(1)
        if args.eval_steps and self.step % args.eval_steps == 0 or self.step == args.max_steps:
            self._log_evaluation()
        if self.step % args.save_steps == 0 or self.step == stop_at:
            self.save_checkpoint()

    def _report(self, train_log: TrainLog, bar: tqdm) -> None:
        """The window's mean losses and rate to the trackers and the progress bar."""
        mean = train_log.means()
        rate = train_log.window[-1]["molecules_per_s"]
        self.accelerator.log(
            {
                **{f"train/{k}": v for k, v in mean.items()},
                "train/molecules_per_s": rate,
                "train/lr": train_log.window[-1]["lr"],
            },
            step=self.step,
        )
        bar.set_postfix(
            loss=f"{mean['loss']:.3f}",
            spd=f"{mean['spd_loss']:.3f}",
            path=f"{mean['path_loss']:.3f}",
            pos=f"{mean['relative_position_loss']:.3f}",
            noise=f"{mean['denoise_loss']:.3f}",
            mol_s=f"{rate:.0f}",
            skipped=sum(self.skipped.values()),
        )

    def _finish(self) -> dict:
        """This rank's summary (written beside the logs); once every step is done, the final model, then the summary
        and the run marked finished."""
        args, accelerator = self.args, self.accelerator
        summary = {
            "step": self.step,
            "max_steps": args.max_steps,
            "molecules_seen": self.molecules_seen,
            "skipped": dict(self.skipped),
            "finished": False,
            "weights_sha256": weights_checksum(accelerator.unwrap_model(self.model)),
        }
        summary_path = self.output_dir / f"summary_rank{accelerator.process_index}.json"
        summary_path.write_text(json.dumps(summary, indent=2))
        if self.step >= args.max_steps:  # finished only once the final model is in place
            self.save_final()
        if accelerator.is_main_process:
            write_pretraining_curves(self.output_dir)  # loss_curves.csv / .png from the logs, this run's steps
        if self.step >= args.max_steps:
            summary["finished"] = True
            summary_path.write_text(json.dumps(summary, indent=2))
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                self.run_dir.finish()
        accelerator.end_training()
        return summary

    def _open_run(self) -> None:
        """Claim the output directory (rank 0), then every rank reads the run's identity."""
        args, accelerator = self.args, self.accelerator
        if accelerator.is_main_process:
            settings = asdict(args)
            compared = tuple(k for k in settings if k not in RESUMABLE_CHANGES)
            inputs = [
                *self.sources,
                *self._stream_settings().exclude,
                *expand_sources(args.eval_inputs),
                args.init_from,
            ]
            self.run_dir = open_run(
                self.output_dir,
                "pretrain",
                settings,
                resume=bool(args.resume),
                overwrite=args.overwrite,
                compared=compared,
                allow_changes=args.allow_changed_settings,
                inputs=inputs,
                record_resume=False,
            )  # recorded once the checkpoint is accepted (train)
            self.run = self.run_dir.run
            ranks = range(accelerator.num_processes)
            self.run_dir.record(
                *(name for r in ranks for name in self._log_names(r)),
                *(f"summary_rank{r}.json" for r in ranks),
                "loss_curves.csv",
                "loss_curves.png",
                "moleblend-pretrain",  # tensorboard
            )
        accelerator.wait_for_everyone()
        if self.run is None:
            self.run = read_run(self.output_dir)

    def _apply_optimizer_settings(self) -> None:
        """After --resume --allow-changed-settings: the optimizer and schedule take the new settings (a checkpoint
        restores the old learning rate, betas and weight decay with the optimizer state)."""
        args = self.args
        for index, group in enumerate(self.optimizer.param_groups):  # group 0 decays, group 1 does not
            group["initial_lr"] = args.learning_rate
            group["betas"], group["eps"] = (args.adam_beta1, args.adam_beta2), args.adam_eps
            group["weight_decay"] = args.weight_decay if index == 0 else 0.0
        self.scheduler.base_lrs = [args.learning_rate] * len(self.optimizer.param_groups)
        factor = cosine_schedule(self.step, args.warmup_steps, args.max_steps, args.min_learning_rate_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = args.learning_rate * factor

    def save_final(self) -> Path:
        """Model, processor and card at the root of the output directory, as one whole (`save_model_atomically`)."""
        final = self.output_dir
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(self.model)

            def write(directory: Path) -> None:
                model.save_pretrained(directory)
                self.processor.save_pretrained(directory)
                write_model_card(
                    directory,
                    model.config,
                    repo_id=self.args.push_to_hub,
                    pretraining={
                        "inputs": self.sources,
                        "steps": self.step,
                        "molecules_seen": self.molecules_seen,
                        "skipped": dict(self.skipped),
                        "batch_size": self.args.batch_size,
                        "max_tokens": self.args.max_tokens,
                        "learning_rate": self.args.learning_rate,
                        "processes": accelerator.num_processes,
                    },
                )

            save_model_atomically(self.run_dir, final, write)
            if self.args.push_to_hub:
                push_directory(final, self.args.push_to_hub)
        accelerator.wait_for_everyone()
        return final


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, *_):
        pass

    def flush(self):
        pass


def pretrain(args: PretrainArguments, datasets: dict[str, Any] | None = None) -> dict:
    """Run (or resume) a pretraining job; returns this rank's summary.

    `datasets`: `datasets.Dataset` / `IterableDataset` objects to train on, by name; each is read as the source
    `dataset:<name>` (added to `args.inputs`), like a file: shards, shuffle blocks, ranks, windows, exact resume.
    """
    MoleBlendConfig.check_overrides(args.config_overrides)  # before the run directory is touched
    if datasets:
        names = [register_dataset(name, dataset) for name, dataset in datasets.items()]
        given = [] if args.inputs == [str(BUNDLED_QM9)] else args.inputs  # they replace the default corpus
        args = replace(args, inputs=[*given, *(n for n in names if n not in given)])
    return Pretrainer(args).train()
