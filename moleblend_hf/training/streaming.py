"""A resumable, sharded, streaming pretraining corpus.

Order of molecules (all deterministic from the seed, so a run can be replayed and resumed exactly):
1. epoch e reads the sources in a seeded order and passes their rows through a seeded shuffle buffer;
2. rank r of R takes rows r, r + R, r + 2R, ... of that stream (disjoint, balanced);
3. the rank's rows are cut into windows of `window_size` molecules; window k goes to DataLoader worker k mod W;
4. a worker featurizes its window (conformers generated there if asked), sorts it by atom count, cuts it into
   batches (fixed size or an atoms^2 token budget) and yields them in a seeded order.

The DataLoader takes batches from workers round-robin, and each batch carries its (epoch, window, batch)
position, so the trainer can record where every worker stands; `start_positions` resumes each worker right
after its last consumed batch: windows before it are skipped by reading raw rows only (no featurization).
The shuffle buffer's content is never stored: it is rebuilt by replaying the raw rows of the epoch.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..processing import MoleBlendProcessor, MoleculeError
from .data import MoleculeRecord, canonical_set, canonical_smiles, read_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Position:
    """Where a worker's next batch is: epoch, window index within the rank's epoch, batch index in the window."""

    epoch: int = 0
    window: int = 0
    batch: int = 0


@dataclass(frozen=True)
class StreamSettings:
    sources: tuple[str, ...]
    seed: int = 0
    shuffle_buffer: int = 10_000
    batch_size: int | None = 32
    max_tokens: int | None = None  # atoms^2 per batch (graph token included); replaces batch_size when set
    window_size: int = 1024
    rank: int = 0
    world_size: int = 1
    smiles_column: str | None = None
    molblock_column: str | None = None
    exclude: tuple[str, ...] = ()  # files of molecules never to train on (e.g. benchmark test sets)

    def __post_init__(self):
        if (self.batch_size is None) == (self.max_tokens is None):
            raise ValueError("give exactly one of batch_size and max_tokens")
        if not self.sources:
            raise ValueError("no input sources")


def reason_key(reason: str) -> str:
    """A short category of a skip reason (for counting)."""
    return reason.split(" (")[0].split(":")[0][:80]


class PretrainingStream(IterableDataset):
    """Yields `(batch, meta)`: batch = the processor's padded tensors; meta = position, worker, molecule ids and
    the skip counts of molecules that could not be featurized (attached to the first batch after them)."""

    def __init__(
        self,
        settings: StreamSettings,
        processor: MoleBlendProcessor,
        start_positions: dict[int, Position] | None = None,
        log_molecule_ids: bool = False,
    ):
        self.settings = settings
        self.processor = processor
        self.start_positions = dict(start_positions or {})
        self.log_molecule_ids = log_molecule_ids
        self._excluded: set[str] | None = None

    def _is_excluded(self, molecule: str | None) -> bool:
        if not self.settings.exclude:
            return False
        if self._excluded is None:  # loaded once per worker process
            self._excluded = canonical_set(self.settings.exclude)
        return canonical_smiles(molecule) in self._excluded

    # -------------------------------------------------------------------------------------------- raw rows
    def _epoch_rows(self, epoch: int) -> Iterator[tuple[str, MoleculeRecord]]:
        s = self.settings
        rng = np.random.default_rng([s.seed, epoch])
        order = rng.permutation(len(s.sources))
        rows = ((Path(s.sources[i]).name, record) for i in order
                for record in read_table(s.sources[i], s.smiles_column, s.molblock_column))
        yield from _buffer_shuffle(rows, s.shuffle_buffer, rng)

    def _rank_windows(self, epoch: int) -> Iterator[list[tuple[str, MoleculeRecord]]]:
        s = self.settings
        mine = itertools.islice(self._epoch_rows(epoch), s.rank, None, s.world_size)
        while True:
            window = list(itertools.islice(mine, s.window_size))
            if not window:
                return
            yield window

    # -------------------------------------------------------------------------------------------- batches
    def _batches(self, features: list[dict], rng: np.random.Generator) -> list[list[int]]:
        order = sorted(range(len(features)), key=lambda i: features[i]["num_atoms"])
        s = self.settings
        if s.batch_size is not None:
            batches = [order[i: i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        else:
            batches, current, largest = [], [], 0
            for i in order:
                size = features[i]["num_atoms"] + 1
                if current and max(largest, size) ** 2 * (len(current) + 1) > s.max_tokens:
                    batches.append(current)
                    current, largest = [], 0
                current.append(i)
                largest = max(largest, size)
            if current:
                batches.append(current)
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], dict]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        start = self.start_positions.get(worker, Position())
        pending: Counter = Counter()
        for epoch in itertools.count(start.epoch):
            assigned = usable = False
            for window_index, window in enumerate(self._rank_windows(epoch)):
                if window_index % workers != worker:
                    continue
                assigned = True
                if (epoch, window_index) < (start.epoch, start.window):
                    usable = True  # consumed before the stop; replayed as raw rows only
                    continue
                features, ids = [], []
                window_skips: Counter = Counter()
                for source, record in window:
                    if self._is_excluded(record.molecule):
                        window_skips["excluded (--exclude)"] += 1
                        continue
                    try:
                        features.append(self.processor.featurize(record.molecule, record.row))
                        ids.append(f"{source}:{record.row}")
                    except MoleculeError as error:
                        window_skips[reason_key(error.reason)] += 1
                usable = usable or bool(features)
                resumed_inside = (epoch, window_index) == (start.epoch, start.window) and start.batch > 0
                if not resumed_inside:  # counts of a window we resume inside were recorded before the stop
                    pending.update(window_skips)
                rng = np.random.default_rng([self.settings.seed, epoch, window_index, self.settings.rank])
                for batch_index, members in enumerate(self._batches(features, rng)):
                    if Position(epoch, window_index, batch_index) < start:
                        continue
                    batch = dict(self.processor.pad([features[i] for i in members], return_tensors="pt"))
                    meta = {"worker": worker, "epoch": epoch, "window": window_index, "batch": batch_index,
                            "molecules": len(members), "skipped": dict(pending)}
                    if self.log_molecule_ids:
                        meta["ids"] = [ids[i] for i in members]
                    pending.clear()
                    yield batch, meta
            where = f"rank {self.settings.rank} worker {worker}, epoch {epoch}"
            if not assigned:
                raise RuntimeError(f"{where}: the corpus has fewer windows of {self.settings.window_size} molecules "
                                   "than ranks x workers; use fewer workers or a smaller window")
            if not usable:
                raise RuntimeError(f"{where}: no molecule could be featurized ({dict(pending)})")


def _buffer_shuffle(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """Seeded streaming shuffle: a buffer of `size` items, each new item replaces a random one that is yielded."""
    if size <= 1:
        yield from items
        return
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = int(rng.integers(size))
        yield buffer[slot]
        buffer[slot] = item
    for i in rng.permutation(len(buffer)):
        yield buffer[i]


def next_position(meta: dict) -> Position:
    """The position right after the batch described by `meta` (the worker's resume point)."""
    return Position(meta["epoch"], meta["window"], meta["batch"] + 1)
