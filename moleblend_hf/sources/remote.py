"""Corpora beyond local files: URLs streamed with `datasets` (never downloaded whole), and `datasets` objects
handed to the job in Python.

`moleblend pretrain hf://datasets/ORG/NAME[@REVISION][/PATH][?config=CONFIG&split=SPLIT]` streams a Hub dataset
(its data files, or those under PATH, a file or a glob; a configuration and split of the repo's card, default
`train`) through `datasets.load_dataset(ORG/NAME, CONFIG, revision=..., split=SPLIT, streaming=True)`; `--dataset
ORG/NAME --dataset-config CONFIG --dataset-split SPLIT` is the same source. The revision is resolved to a commit
sha when the run starts and recorded with the run's data settings, so `--resume` refuses a repo that has moved on
(name the sha to continue on the old data). Its shards (`IterableDataset.n_shards`, one per data file) are the
units that ranks share out and that a resume skips without reading (see streaming.py).

`moleblend pretrain https://host/shard-0001.parquet ...` streams each file through
`datasets.load_dataset(<builder>, data_files=url, streaming=True)`: parquet and CSV by row groups / chunks, `.smi`
/ `.txt` line by line (an optional second field is the identifier); `.sdf` / `.sdf.gz` / `.mol`, for which
`datasets` has no builder, through fsspec's HTTP file system as `datasets` would (record by record, the first
line of a record its identifier). The rows then go through the same stream as
local files (shards shared out to ranks, seeded shuffle blocks, windows per DataLoader worker), so a resumed run
reopens the stream at its checkpoint's shard and row and continues exactly as an uninterrupted run would.

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

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

from .._optional import import_optional
from .records import MoleculeRecord, table_columns

logger = logging.getLogger(__name__)

REMOTE_PREFIXES = ("http://", "https://")
HUB_PREFIX = "hf://datasets/"
#: file suffix -> the `datasets` builder that streams it
BUILDERS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".smi": "smi",
    ".smiles": "smi",
    ".txt": "smi",
    ".sdf": "sdf",
    ".sdf.gz": "sdf",
    ".mol": "sdf",
}
#: SMILES files are read by the csv builder as whitespace-separated "SMILES [identifier]" lines (the text builder
#: passes `encoding` on to aiohttp, which refuses it); blank lines stay rows, reported as empty input
#: (columns chosen by name with index_col=False: a file of SMILES alone, without identifiers, has one column)
SMI_OPTIONS = dict(
    sep=r"\s+",
    header=None,
    names=["smiles", "id"],
    usecols=["smiles", "id"],
    index_col=False,
    skip_blank_lines=False,
    engine="python",
)


#: the columns of formats without a header: (molecule, identifier)
FIXED_COLUMNS = {"smi": ("smiles", "id"), "sdf": ("molblock", "id")}

DATASET_PREFIX = "dataset:"
#: name -> a `datasets.Dataset` / `IterableDataset` given in Python (DataLoader workers inherit it when forked)
_REGISTERED: dict[str, Any] = {}


def is_remote(source: Any) -> bool:
    """A source that is not a local path: an http(s) URL, a Hub dataset or a registered `datasets` object."""
    return isinstance(source, str) and source.startswith((*REMOTE_PREFIXES, HUB_PREFIX, DATASET_PREFIX))


@dataclass(frozen=True)
class HubSource:
    """`hf://datasets/ORG/NAME[@REVISION][/PATH][?config=CONFIG&split=SPLIT]`, parsed."""

    repo_id: str
    revision: str | None = None
    path: str | None = None
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, source: str) -> HubSource:
        location, _, query = source[len(HUB_PREFIX) :].partition("?")
        parts = location.split("/")
        options = dict(parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(options) - {"config", "split"})
        if len(parts) < 2 or not parts[0] or not parts[1] or unknown:
            raise ValueError(
                f"{source}: a Hub dataset is hf://datasets/ORG/NAME[@REVISION][/PATH]"
                f"[?config=CONFIG&split=SPLIT]" + (f" (unknown option {unknown[0]!r})" if unknown else "")
            )
        name, _, revision = parts[1].partition("@")
        return cls(
            f"{parts[0]}/{name}",
            revision or None,
            "/".join(parts[2:]) or None,
            options.get("config") or None,
            options.get("split") or "train",
        )

    def __str__(self) -> str:
        options = {"config": self.config} if self.config else {}
        if self.split != "train":  # the default is left out, so that both spellings are one source
            options["split"] = self.split
        return (
            f"{HUB_PREFIX}{self.repo_id}"
            + (f"@{self.revision}" if self.revision else "")
            + (f"/{self.path}" if self.path else "")
            + (f"?{urlencode(options)}" if options else "")
        )


def pin_revision(source: str) -> str:
    """A Hub dataset source with its revision resolved to a commit sha (other sources unchanged): what a run
    records, so that a resume on another revision is refused."""
    if not source.startswith(HUB_PREFIX):
        return source
    from huggingface_hub import HfApi

    hub = HubSource.parse(source)
    try:
        sha = HfApi().dataset_info(hub.repo_id, revision=hub.revision or "main").sha
    except Exception as error:  # noqa: BLE001 - network and Hub errors alike
        raise ConnectionError(
            f"{source}: cannot resolve the dataset revision ({type(error).__name__}: {error})"
        ) from None
    return str(replace(hub, revision=sha))


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
    if url.startswith(DATASET_PREFIX):
        return "dataset"
    # fsspec reads http(s) with aiohttp, an extra: named now, not retried as a network failure
    import_optional("aiohttp", "remote", f"reading {url}")
    path = urlparse(url).path.lower()
    for suffix, builder in sorted(BUILDERS.items(), key=lambda item: -len(item[0])):
        if path.endswith(suffix):
            return builder
    raise ValueError(
        f"{url}: unsupported remote file; stream .parquet, .csv, .csv.gz, .smi, .txt, .sdf, .sdf.gz or .mol files"
    )


#: seconds to wait before each further attempt after a failure to open or read a remote file
RETRY_DELAYS = (1, 2, 4, 8, 16)


#: url -> its streaming `IterableDataset`, opened once per process (opening resolves the data files over the
#: network; the object itself opens a fresh read at every iteration)
_OPENED: dict[str, Any] = {}


def _open(url: str, builder: str) -> Any:
    """The source as a `datasets` object: a registered one, or a streaming `IterableDataset` of the URL / repo."""
    if builder == "dataset":
        name = url[len(DATASET_PREFIX) :]
        if name not in _REGISTERED:
            raise FileNotFoundError(
                f"{url}: no dataset registered under {name!r}; call "
                f"moleblend_hf.sources.remote.register_dataset({name!r}, dataset) first"
            )
        return _REGISTERED[name]
    if url not in _OPENED:
        from datasets import load_dataset

        if builder == "hub":  # the repo's data files (or those under PATH), at the pinned revision
            hub = HubSource.parse(url)
            _OPENED[url] = load_dataset(
                hub.repo_id, hub.config, revision=hub.revision, data_files=hub.path, split=hub.split, streaming=True
            )
        else:
            options = SMI_OPTIONS if builder == "smi" else {}
            _OPENED[url] = load_dataset(
                "csv" if builder == "smi" else builder, data_files=url, split="train", streaming=True, **options
            )
    return _OPENED[url]


def remote_shard_count(source: str) -> int:
    """The source's own shards: those of a `datasets.IterableDataset` (a Hub dataset: one per data file), else 1."""
    from datasets import IterableDataset

    builder = _builder(source)
    if builder not in ("hub", "dataset"):
        return 1
    dataset = _retried(source, lambda: _open(source, builder))
    return dataset.n_shards if isinstance(dataset, IterableDataset) else 1


def _shard_rows(url: str, builder: str, shard: int, start: int) -> Iterator[dict]:
    """The examples of one shard from row `start`: a map-style dataset seeks there; streams read past the rows
    before it."""
    from datasets import Dataset

    if builder == "sdf":  # no `datasets` builder reads SDF: the file is streamed by fsspec, as `datasets` does
        from ..processing import read_sdf_records

        records = (
            {"molblock": block, "id": block.split("\n", 1)[0].strip() or None} for block in read_sdf_records(url)
        )
        return itertools.islice(records, start, None)
    dataset = _open(url, builder)
    if isinstance(dataset, Dataset):
        return iter(dataset.skip(start))
    if dataset.n_shards > 1:
        dataset = dataset.shard(num_shards=dataset.n_shards, index=shard)
    return itertools.islice(iter(dataset), start, None)


def _back_off(url: str, failures: int, error: Exception, what: str) -> None:
    """After the `failures`-th failure (0-based) of `what`: wait the next retry delay, or, with none left, raise a
    ConnectionError naming the source."""
    if failures == len(RETRY_DELAYS):
        raise ConnectionError(
            f"{url}: {what} failed after {failures} retries ({type(error).__name__}: {error}); a "
            "pretraining checkpoint already written is intact: rerun with --resume once the source "
            "is back"
        ) from None
    logger.warning("%s: %s (%s); retrying in %s s", url, what, type(error).__name__, RETRY_DELAYS[failures])
    time.sleep(RETRY_DELAYS[failures])


#: modules whose exceptions are network failures (transport, connection, payload), whatever their type
_NETWORK_MODULES = ("aiohttp", "httpx", "httpcore", "requests", "urllib3")


def transient(error: BaseException) -> bool:
    """A failure worth retrying: the network or the server (HTTP 5xx, 429). A missing file (404), a refused one
    (401/403) and a file that cannot be parsed fail the same way every time."""
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    status = getattr(error, "status", None)
    status = status if isinstance(status, int) else getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    return isinstance(error, (OSError, TimeoutError)) or type(error).__module__.split(".")[0] in _NETWORK_MODULES


def _unreadable(url: str, error: Exception, where: str) -> ValueError:
    text = str(error).strip().splitlines()
    return ValueError(
        f"{url}: cannot be read {where} ({type(error).__name__}: {text[0] if text else 'no detail'}); "
        "not a network failure, so not retried"
    )


def _retried(url: str, action) -> Any:
    """`action()` (opening a Hub dataset to count its shards), retried after network failures."""
    for failures in itertools.count():
        try:
            return action()
        except (FileNotFoundError, ValueError, TypeError):
            raise
        except Exception as error:  # noqa: BLE001 - fsspec / aiohttp / datasets raise many types for one failure
            if not transient(error):
                raise _unreadable(url, error, "when opened") from None
            _back_off(url, failures, error, "opening")


def _rows_with_retries(url: str, builder: str, shard: int, start: int) -> Iterator[dict]:
    """The examples of a shard from row `start`; after a failure (opening, or mid-stream beyond `datasets`' own
    read retries) the shard is opened again and the rows already given are skipped, so the sequence is
    unchanged."""
    given = 0
    for failures in itertools.count():
        try:
            for example in _shard_rows(url, builder, shard, start + given):
                yield example
                given += 1
            return
        except Exception as error:  # noqa: BLE001 - fsspec / aiohttp / datasets raise many types for one failure
            # `datasets` reports a file it could not reach (e.g. HTTP 503 while resolving it) as not found
            if not isinstance(error, FileNotFoundError) and not transient(error):
                raise _unreadable(url, error, f"at row {start + given}") from None
            _back_off(url, failures, error, f"reading at row {start + given}")


def read_remote_table(source: str) -> Any:
    """Every row of a URL (csv, parquet, smi), a Hub dataset (all its data files, in order) or a registered dataset,
    as one `pandas.DataFrame` with all its columns (labelled data for `finetune`); network failures are retried as
    for streaming."""
    import pandas as pd
    from datasets import Dataset

    builder = _builder(source)
    if builder == "dataset":
        dataset = _open(source, builder)
        return dataset.to_pandas() if isinstance(dataset, Dataset) else pd.DataFrame(list(dataset))
    return pd.DataFrame(
        [row for shard in range(remote_shard_count(source)) for row in _rows_with_retries(source, builder, shard, 0)]
    )


def read_remote(
    url: str,
    smiles_column: str | None,
    molblock_column: str | None,
    id_column: str | None,
    shard: int = 0,
    start: int = 0,
) -> Iterator:
    """The molecules of a URL, a Hub dataset or a registered dataset in row order, as `MoleculeRecord`s (see
    `files.read_table`): those of shard `shard` (see `remote_shard_count`) from row `start` on."""
    import pandas as pd

    builder = _builder(url)
    # in memory: no network to retry (and an unregistered name is named at once)
    examples = (
        _shard_rows(url, builder, shard, start)
        if builder == "dataset"
        else _rows_with_retries(url, builder, shard, start)
    )
    column, id_name = FIXED_COLUMNS.get(builder, (None, None))
    for row, example in enumerate(examples, start):
        if column is None:
            column, id_name = table_columns(
                pd.DataFrame(columns=list(example)), smiles_column, molblock_column, id_column, url
            )
        value, identifier = example[column], example[id_name] if id_name else None
        yield MoleculeRecord(
            row,
            value if isinstance(value, str) else None,
            str(identifier) if identifier is not None and identifier == identifier else str(row),
        )
