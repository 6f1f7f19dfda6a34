"""The pretraining job's step log: one JSON record per optimizer step in `train_log.jsonl`, and the means of each
progress window for the progress bar and the trackers."""

from __future__ import annotations

import json
import time
from typing import IO

import torch

LOSS_NAMES = ("loss", "relative_position_loss", "spd_loss", "path_loss", "denoise_loss")


class TrainLog:
    """This rank's step records on their way to the log. Each step's losses stay on the device until a report or
    a checkpoint fetches all pending ones in one transfer: no host sync per step."""

    def __init__(self, num_processes: int):
        self.num_processes = num_processes
        self.window: list[dict] = []  # the logged steps since the last progress report
        self.pending: list[tuple[dict, torch.Tensor]] = []  # steps whose losses still sit on the device
        self.started, self.molecules_since = time.perf_counter(), 0

    def count(self, molecules: int) -> None:
        """Molecules this rank trained on since the last report (for the rate)."""
        self.molecules_since += molecules

    def add(self, record: dict, losses: torch.Tensor) -> None:
        self.pending.append((record, losses))

    def write_pending(self, log: IO[str], rate: bool = False) -> None:
        """Losses of the pending steps to the host in one transfer, then to the log; with `rate`, the last record
        gets the molecules/s since the last report (timed after that transfer, which waits for the device)."""
        if not self.pending:
            return
        values = torch.stack([losses for _, losses in self.pending]).tolist()
        if rate:
            elapsed = time.perf_counter() - self.started
            self.pending[-1][0]["molecules_per_s"] = round(
                self.molecules_since * self.num_processes / max(elapsed, 1e-9), 1
            )
        for (record, _), step_values in zip(self.pending, values):
            record.update({k: round(v, 6) for k, v in zip(LOSS_NAMES, step_values)})
            log.write(json.dumps(record) + "\n")
            self.window.append(record)
        self.pending.clear()

    def means(self) -> dict[str, float]:
        """Mean losses of the steps written since the last report."""
        return {k: sum(w[k] for w in self.window) / len(self.window) for k in LOSS_NAMES}

    def restart(self) -> None:
        """Begin the next progress window (and its rate measurement)."""
        self.window.clear()
        self.started, self.molecules_since = time.perf_counter(), 0
