"""Corpora beyond local files: URLs streamed with `datasets` (never downloaded whole), and `datasets` objects
handed to the job in Python.

`moleblend pretrain hf://datasets/ORG/NAME[@REVISION][/PATH]` streams a Hub dataset (its data files, or those
under PATH, a file or a glob) through `datasets.load_dataset(ORG/NAME, revision=..., streaming=True)`; the
revision is resolved to a commit sha when the run starts and recorded with the run's data settings, so `--resume`
refuses a repo that has moved on (name the sha to continue on the old data).

`moleblend pretrain https://host/shard-0001.parquet ...` streams each file through
`datasets.load_dataset(<builder>, data_files=url, streaming=True)`: parquet and CSV by row groups / chunks, `.smi`
/ `.txt` line by line (an optional second field is the identifier). The rows then go through the same stream as
local files (seeded shuffle buffer, disjoint shares per rank, windows per DataLoader worker), so a resumed run
replays the stream to its checkpoint and continues exactly as an uninterrupted run would.

Network faults are retried: reads by `datasets` itself (`datasets.config.STREAMING_READ_MAX_RETRIES`), and any
failure to open or to continue a file here, up to 5 more times with backoff (1, 2, 4, 8, 16 s), reopening the
file and skipping the rows already read; a failure that persists ends the job with an error naming the source and
the row reached, and the last checkpoint stays valid for `--resume`.

In Python, `register_dataset("my-corpus", dataset)` makes a `datasets.Dataset` or `IterableDataset` (e.g. from
`load_dataset(..., streaming=True)`) a source named `dataset:my-corpus`; `pretrain(args)` then reads it like a
file (`args.inputs = ["dataset:my-corpus"]`, or `pretrain(args, datasets={"my-corpus": dataset})`). The name
identifies the source in checkpoints: resume with the same name and the same data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pandas as pd

logger = logging.getLogger(__name__)

REMOTE_PREFIXES = ("http://", "https://")
HUB_PREFIX = "hf://datasets/"
#: file suffix -> the `datasets` builder that streams it
BUILDERS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".smi": "smi", ".smiles": "smi", ".txt": "smi"}
#: SMILES files are read by the csv builder as whitespace-separated "SMILES [identifier]" lines (the text builder
#: passes `encoding` on to aiohttp, which refuses it); blank lines stay rows, reported as empty input
SMI_OPTIONS = dict(sep=r"\s+", header=None, names=["smiles", "id"], usecols=[0, 1], skip_blank_lines=False,
                   engine="python")


DATASET_PREFIX = "dataset:"
#: name -> a `datasets.Dataset` / `IterableDataset` given in Python (DataLoader workers inherit it when forked)
_REGISTERED: dict[str, Any] = {}


def is_remote(source: Any) -> bool:
    """A source that is not a local path: an http(s) URL or a registered `datasets` object."""
    return isinstance(source, str) and source.startswith((*REMOTE_PREFIXES, HUB_PREFIX, DATASET_PREFIX))


def parse_hub_source(source: str) -> tuple[str, str | None, str | None]:
    """`hf://datasets/ORG/NAME[@REVISION][/PATH]` -> (repo id, revision or None, path in the repo or None)."""
    parts = source[len(HUB_PREFIX):].split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{source}: a Hub dataset is hf://datasets/ORG/NAME[@REVISION][/PATH]")
    name, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]) or None


def pin_revision(source: str) -> str:
    """A Hub dataset source with its revision resolved to a commit sha (other sources unchanged): what a run
    records, so that a resume on another revision is refused."""
    if not source.startswith(HUB_PREFIX):
        return source
    from huggingface_hub import HfApi

    repo_id, revision, path = parse_hub_source(source)
    try:
        sha = HfApi().dataset_info(repo_id, revision=revision or "main").sha
    except Exception as error:  # noqa: BLE001 - network and Hub errors alike
        raise ConnectionError(f"{source}: cannot resolve the dataset revision ({type(error).__name__}: "
                              f"{error})") from None
    return f"{HUB_PREFIX}{repo_id}@{sha}" + (f"/{path}" if path else "")


def register_dataset(name: str, dataset: Any) -> str:
    """Make `dataset` (a `datasets.Dataset` or `IterableDataset` with a SMILES or molblock column) readable as the
    source `dataset:<name>`; returns that source name."""
    from datasets import Dataset, IterableDataset

    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise TypeError(f"register_dataset takes a datasets.Dataset or IterableDataset, got {type(dataset).__name__}")
    _REGISTERED[name] = dataset
    return DATASET_PREFIX + name


def _builder(url: str) -> str:
    if url.startswith(HUB_PREFIX):
        return "hub"
    path = urlparse(url).path.lower()
    for suffix, builder in sorted(BUILDERS.items(), key=lambda item: -len(item[0])):
        if path.endswith(suffix):
            return builder
    raise ValueError(f"{url}: unsupported remote file; stream .parquet, .csv, .csv.gz, .smi or .txt files "
                     f"(SDF: convert it with `moleblend corpus`, or download it)")


#: seconds to wait before each further attempt after a failure to open or read a remote file
RETRY_DELAYS = (1, 2, 4, 8, 16)


def _examples(url: str, builder: str) -> Iterator[dict]:
    from datasets import load_dataset

    if builder == "hub":  # the repo's data files (or those under PATH), at the pinned revision
        repo_id, revision, path = parse_hub_source(url)
        return iter(load_dataset(repo_id, revision=revision, data_files=path, split="train", streaming=True))
    options = SMI_OPTIONS if builder == "smi" else {}
    return iter(load_dataset("csv" if builder == "smi" else builder, data_files=url, split="train", streaming=True,
                             **options))


def _with_retries(url: str, builder: str) -> Iterator[dict]:
    """The examples of `url`; after a failure (opening, or mid-stream beyond `datasets`' own read retries) the
    file is opened again and the rows already given are skipped, so the sequence is unchanged."""
    given, failures = 0, 0
    while True:
        try:
            rows = _examples(url, builder)
            for _ in range(given):
                next(rows)
            for example in rows:
                yield example
                given += 1
            return
        except Exception as error:  # noqa: BLE001 - fsspec / aiohttp / datasets raise many types for one failure
            if failures == len(RETRY_DELAYS):
                raise ConnectionError(f"{url}: reading failed at row {given} after {failures} retries "
                                      f"({type(error).__name__}: {error}); a pretraining checkpoint already written "
                                      "is intact: rerun with --resume once the source is back") from None
            logger.warning("%s: %s at row %d; retrying in %s s", url, type(error).__name__, given,
                           RETRY_DELAYS[failures])
            time.sleep(RETRY_DELAYS[failures])
            failures += 1


def read_remote(url: str, smiles_column: str | None, molblock_column: str | None,
                id_column: str | None) -> Iterator:
    """The molecules of a URL or a registered dataset in row order, as `MoleculeRecord`s (see `data.read_table`)."""
    from .data import MoleculeRecord, _columns

    if url.startswith(DATASET_PREFIX):
        name = url[len(DATASET_PREFIX):]
        if name not in _REGISTERED:
            raise FileNotFoundError(f"{url}: no dataset registered under {name!r}; call "
                                    f"moleblend_hf.training.remote.register_dataset({name!r}, dataset) first")
        builder, examples = "dataset", iter(_REGISTERED[name])
    else:
        builder = _builder(url)
        examples = _with_retries(url, builder)
    column = id_name = None
    for row, example in enumerate(examples):
        if column is None:
            column, id_name = ("smiles", "id") if builder == "smi" else _columns(
                pd.DataFrame(columns=list(example)), smiles_column, molblock_column, id_column, url)
        value, identifier = example[column], example[id_name] if id_name else None
        yield MoleculeRecord(row, value if isinstance(value, str) else None,
                             str(identifier) if identifier is not None and identifier == identifier else str(row))
