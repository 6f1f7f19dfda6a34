"""A resumable, sharded, streaming pretraining corpus.

Order of molecules (all deterministic from the seed, so a run can be replayed and resumed exactly):
1. the sources are split into shards: a local file or URL is one shard, a `datasets` source (a Hub dataset, a
   registered `IterableDataset`) has its own shards (`IterableDataset.n_shards`, usually one per data file);
2. epoch e reads the shards in a seeded order. With at least as many shards as ranks, rank r of R reads only the
   shards r, r + R, ... of that order (the source's own shards, as `datasets.distributed.split_dataset_by_node`
   does: nothing of the others' is opened); with fewer shards, every rank reads them all and takes rows r, r + R,
   ... (disjoint, balanced);
3. the rows read are shuffled in consecutive blocks of `shuffle_buffer` rows (each block permuted with its own
   seed), then the rank's rows are cut into windows of `window_size` molecules; window k goes to DataLoader
   worker k mod W. With at least R x W shards, the shards are shared out one level further: worker w of rank r
   reads only the shards r * W + w, r * W + w + R * W, ... and makes all windows of its rows (nothing is read
   twice);
4. a worker featurizes its window (conformers generated there if asked), sorts it by atom count, cuts it into
   batches (fixed size or an atoms^2 token budget) and yields them in a seeded order.

The DataLoader takes batches from workers round-robin (`first_worker` says which worker's batch comes first, so
that a resumed run keeps the turn), and each batch carries its position: (epoch, window,
batch), and where its window's block begins in the stream (block index, shard in the epoch's order, rows of that
shard before it). The trainer records each worker's position in every checkpoint; `start_positions` resumes each
worker right after its last consumed batch by reopening the stream at that block: shards before it are not
opened, rows before it in its shard are skipped (whole parquet row groups without reading them; other formats
and `datasets` streams by reading raw rows), and at most one block is read again (raw rows only: no
featurization). A position without a block (an older checkpoint) replays the epoch's raw rows from its start.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..processing import MoleBlendProcessor, MoleculeError
from .files import MoleculeRecord, canonical_set, canonical_smiles, read_table, shard_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Position:
    """Where a worker's next batch is: epoch, window index within the rank's epoch, batch index in the window;
    and where the stream can be reopened for that window (not part of the order): the shuffle block holding the
    window's first row, as its index, the shard it begins in (index in the epoch's reading order) and the rows of
    that shard before it. Without them (None), the epoch is replayed from its start."""

    epoch: int = 0
    window: int = 0
    batch: int = 0
    block: int | None = field(default=None, compare=False)
    shard: int | None = field(default=None, compare=False)
    offset: int | None = field(default=None, compare=False)

    @property
    def reopens(self) -> bool:
        return self.block is not None


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
    # the order of molecules these settings give; raised when it changes, so that a checkpoint of an older order is
    # refused on resume (2: shards and shuffle blocks; before: one shuffle buffer over all rows)
    stream_format: int = 2

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
        first_worker: int = 0,
        log_molecule_ids: bool = False,
    ):
        self.settings = settings
        self.processor = processor
        self.start_positions = dict(start_positions or {})
        self.first_worker = first_worker
        self.log_molecule_ids = log_molecule_ids
        self._excluded: set[str] | None = None
        self._shard_list: list[tuple[int, int, int]] | None = None
        self._worker, self._worker_shards = (0, 1), False  # set in each worker's __iter__

    def _is_excluded(self, molecule: str | None) -> bool:
        if not self.settings.exclude:
            return False
        if self._excluded is None:  # loaded once per worker process
            self._excluded = canonical_set(self.settings.exclude)
        return canonical_smiles(molecule) in self._excluded

    # -------------------------------------------------------------------------------------------- raw rows
    def _shards(self) -> list[tuple[int, int, int]]:
        """(source index, shard index, shards of that source) of every shard; counted once per process."""
        if self._shard_list is None:
            s = self.settings
            self._shard_list = [
                (i, k, n) for i, source in enumerate(s.sources) for n in [shard_count(source)] for k in range(n)
            ]
        return self._shard_list

    def _reading_order(self, epoch: int) -> tuple[list[tuple[int, int, int]], bool, list[int]]:
        """The shards this reader (this worker with `_worker_shards`, else this rank) reads in `epoch`, in order;
        whether they are its own (True: it takes all their rows) or shared by all ranks (False: it takes every
        R-th row); and the reader's part of its shuffle seeds (none for a stream that all ranks share)."""
        s = self.settings
        shards = self._shards()
        order = [shards[i] for i in np.random.default_rng([s.seed, epoch]).permutation(len(shards))]
        if self._worker_shards:
            worker, workers = self._worker
            return order[s.rank * workers + worker :: s.world_size * workers], True, [s.rank, worker]
        if s.world_size > 1 and len(order) >= s.world_size:
            return order[s.rank :: s.world_size], True, [s.rank]
        return order, s.world_size == 1, []

    def _shard_name(self, source: int, shard: int, shards: int) -> str:
        name = Path(self.settings.sources[source]).name
        return f"{name}#{shard}" if shards > 1 else name

    def _blocks(
        self, epoch: int, start: Position, order: list[tuple[int, int, int]], reader: list[int]
    ) -> Iterator[tuple[Position, list[tuple[str, MoleculeRecord]]]]:
        """The shuffle blocks of the shards `order` from `start`'s block on: (where the block begins, its rows
        permuted with seeds of the epoch, the block and the `reader`)."""
        s = self.settings
        first_shard, first_row = (start.shard, start.offset) if start.reopens else (0, 0)

        def rows() -> Iterator[tuple[int, int, tuple[str, MoleculeRecord]]]:
            for k in range(first_shard, len(order)):
                source, shard, shards = order[k]
                skip = first_row if k == first_shard else 0
                name = self._shard_name(source, shard, shards)
                for n, record in enumerate(
                    read_table(s.sources[source], s.smiles_column, s.molblock_column, shard=shard, start=skip), skip
                ):
                    yield k, n, (name, record)

        stream, size = rows(), max(1, s.shuffle_buffer)
        for block in itertools.count(start.block if start.reopens else 0):
            chunk = list(itertools.islice(stream, size))
            if not chunk:
                return
            items = [item for _, _, item in chunk]
            if size > 1:
                permutation = np.random.default_rng([s.seed, epoch, block, *reader]).permutation(len(items))
                items = [items[i] for i in permutation]
            yield Position(epoch, block=block, shard=chunk[0][0], offset=chunk[0][1]), items

    def _rank_windows(
        self, epoch: int, start: Position = Position()
    ) -> Iterator[tuple[int, Position, list[tuple[str, MoleculeRecord]]]]:
        """(window index, where its first row's block begins, its rows) of this rank's share of the epoch, from
        `start`'s block on (a window cut by that block's beginning comes first, incomplete)."""
        s = self.settings
        order, own, reader = self._reading_order(epoch)
        size = max(1, s.shuffle_buffer)
        first_block = start.block if start.reopens else 0
        # this rank's rows before the first block: all rows of its own shards, or those with index = rank mod R
        index = first_block * size if own else max(0, -(-(first_block * size - s.rank) // s.world_size))
        window, where, rows = None, None, []
        for block, items in self._blocks(epoch, start, order, reader):
            for p, item in enumerate(items):
                if not own and (block.block * size + p) % s.world_size != s.rank:
                    continue
                if window is not None and index // s.window_size != window:
                    yield window, where, rows
                    rows = []
                if not rows:
                    window, where = index // s.window_size, block
                rows.append(item)
                index += 1
        if rows:
            yield window, where, rows

    # -------------------------------------------------------------------------------------------- batches
    def _batches(self, features: list[dict], rng: np.random.Generator) -> list[list[int]]:
        order = sorted(range(len(features)), key=lambda i: features[i]["num_atoms"])
        s = self.settings
        if s.batch_size is not None:
            batches = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
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
        workers = info.num_workers if info else 1
        # The DataLoader takes batches from its worker processes 0, 1, ... in turn; on a resume, process 0 plays
        # the worker whose batch came next before the stop, so the order of batches continues unchanged.
        worker = ((info.id if info else 0) + self.first_worker) % workers
        self._worker = worker, workers
        # enough shards for every worker of every rank: each worker reads only its own shards and keeps all of
        # their windows (else workers read the rank's stream and take every W-th window)
        self._worker_shards = workers > 1 and len(self._shards()) >= self.settings.world_size * workers
        start = self.start_positions.get(worker, Position())
        pending: Counter = Counter()
        for epoch in itertools.count(start.epoch):
            # resumed inside this epoch at a block: its earlier windows were read before the stop
            assigned = usable = epoch == start.epoch and start.reopens
            windows = self._rank_windows(epoch, start if epoch == start.epoch else Position())
            for window_index, where, window in windows:
                if not self._worker_shards and window_index % workers != worker:
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
                # (workers reading their own shards count their windows from 0 each: the worker is in the seed)
                rng = np.random.default_rng(
                    [
                        self.settings.seed,
                        epoch,
                        window_index,
                        self.settings.rank,
                        *([worker] if self._worker_shards else []),
                    ]
                )
                for batch_index, members in enumerate(self._batches(features, rng)):
                    if Position(epoch, window_index, batch_index) < start:
                        continue
                    batch = dict(self.processor.pad([features[i] for i in members], return_tensors="pt"))
                    meta = {
                        "worker": worker,
                        "epoch": epoch,
                        "window": window_index,
                        "batch": batch_index,
                        "block": where.block,
                        "shard": where.shard,
                        "offset": where.offset,
                        "molecules": len(members),
                        "skipped": dict(pending),
                    }
                    if self.log_molecule_ids:
                        meta["ids"] = [ids[i] for i in members]
                    pending.clear()
                    yield batch, meta
            reader = f"rank {self.settings.rank} worker {worker}, epoch {epoch}"
            if not assigned and self._worker_shards:
                raise RuntimeError(f"{reader}: its shards hold no molecules")
            if not assigned:
                raise RuntimeError(
                    f"{reader}: the corpus has fewer windows of {self.settings.window_size} molecules "
                    "than ranks x workers; use fewer workers or a smaller window"
                )
            if not usable:
                raise RuntimeError(f"{reader}: no molecule could be featurized ({dict(pending)})")


def next_position(meta: dict) -> Position:
    """The position right after the batch described by `meta` (the worker's resume point)."""
    return Position(meta["epoch"], meta["window"], meta["batch"] + 1, meta["block"], meta["shard"], meta["offset"])
