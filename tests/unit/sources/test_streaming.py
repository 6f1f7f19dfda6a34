"""The pretraining stream's shards: ranks split the source's own shards, a resume reopens the stream at its
shard and row (earlier shards never opened), and reading from a row equals reading everything and dropping the
rows before it."""

from __future__ import annotations

import gzip
import itertools

import pandas as pd
import pytest
from rdkit import Chem

from moleblend_hf import MoleBlendProcessor
from moleblend_hf.sources import files as data_module
from moleblend_hf.sources import streaming
from moleblend_hf.sources.files import read_table
from moleblend_hf.sources.streaming import Position, PretrainingStream, StreamSettings, next_position
from tests.conftest import PACKAGE_DATA


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """Four parquet files of 30 QM9 molecules with DFT geometries, row groups of 8."""
    root = tmp_path_factory.mktemp("shards")
    frame = pd.read_parquet(PACKAGE_DATA / "qm9_small.parquet").head(120)
    paths = []
    for k in range(4):
        path = root / f"part-{k}.parquet"
        frame.iloc[k * 30 : (k + 1) * 30].to_parquet(path, row_group_size=8)
        paths.append(str(path))
    return paths


def _settings(shards: list[str], **overrides) -> StreamSettings:
    return StreamSettings(sources=tuple(shards), batch_size=4, window_size=8, shuffle_buffer=12, **overrides)


def _batches(stream: PretrainingStream, count: int) -> list[dict]:
    return [meta for _, meta in itertools.islice(iter(stream), count)]


@pytest.fixture()
def opened(monkeypatch) -> list[tuple[str, int]]:
    """(file name, first row) of every shard the stream opens."""
    calls: list[tuple[str, int]] = []
    real = streaming.read_table

    def spy(source, *args, start: int = 0, **kwargs):
        calls.append((source.rsplit("/", 1)[-1], start))
        return real(source, *args, start=start, **kwargs)

    monkeypatch.setattr(streaming, "read_table", spy)
    return calls


def test_ranks_read_only_their_own_shards(shards, opened):
    ids = {}
    for rank in (0, 1):
        opened.clear()
        stream = PretrainingStream(
            _settings(shards, rank=rank, world_size=2), MoleBlendProcessor(), log_molecule_ids=True
        )
        metas = _batches(stream, 15)  # one epoch: 60 molecules per rank
        ids[rank] = [i for meta in metas for i in meta["ids"]]
        files = {name for name, _ in opened}
        assert len(files) == 2, files  # its 2 shards of the epoch's order, nothing of the other rank's
        assert {i.split(":")[0] for i in ids[rank][:60]} == files
    assert not set(ids[0][:60]) & set(ids[1][:60]) and len(set(ids[0][:60]) | set(ids[1][:60])) == 120


def test_a_resumed_stream_reopens_at_its_shard_and_row(shards, opened):
    settings = _settings(shards)
    full = _batches(PretrainingStream(settings, MoleBlendProcessor(), log_molecule_ids=True), 24)
    # a stop inside the epoch's third shard, in a block that begins inside it
    stop = next(i for i, meta in enumerate(full) if meta["shard"] >= 2 and meta["offset"] > 0)
    position = next_position(full[stop])
    opened.clear()
    resumed = _batches(
        PretrainingStream(settings, MoleBlendProcessor(), {0: position}, log_molecule_ids=True), len(full) - stop - 1
    )
    assert [m["ids"] for m in resumed] == [m["ids"] for m in full[stop + 1 :]]
    order = [name for name, _ in opened]
    assert opened[0][1] == position.offset  # the first shard opened at the block's row
    first_shard_of_epoch = full[0]["ids"][0].split(":")[0]
    assert first_shard_of_epoch not in order  # shards before the position are never opened


def test_a_position_without_its_block_replays_the_epoch(shards):
    """Positions of checkpoints written before blocks were recorded: same batches, by replaying raw rows."""
    settings = _settings(shards)
    full = _batches(PretrainingStream(settings, MoleBlendProcessor(), log_molecule_ids=True), 12)
    old = Position(full[7]["epoch"], full[7]["window"], full[7]["batch"] + 1)
    resumed = _batches(PretrainingStream(settings, MoleBlendProcessor(), {0: old}, log_molecule_ids=True), 4)
    assert [m["ids"] for m in resumed] == [m["ids"] for m in full[8:12]]


def test_reading_from_a_row_equals_dropping_the_rows_before_it(tmp_path, shards, monkeypatch):
    frame = pd.read_parquet(PACKAGE_DATA / "qm9_small.parquet").head(30)
    smiles = [Chem.MolToSmiles(Chem.MolFromMolBlock(b)) for b in frame["molblock"]]
    (tmp_path / "a.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    pd.DataFrame({"smiles": smiles}).to_csv(tmp_path / "a.csv", index=False)
    with gzip.open(tmp_path / "a.sdf.gz", "wt") as handle:
        handle.write("".join(block + "$$$$\n" for block in frame["molblock"]))
    for path in (shards[0], tmp_path / "a.smi", tmp_path / "a.csv", tmp_path / "a.sdf.gz"):
        everything = list(read_table(path))
        for start in (0, 7, 8, 17, 29, 30):
            assert list(read_table(path, start=start)) == everything[start:], (path, start)
    read_groups = []
    real = data_module.pq.ParquetFile.iter_batches

    def spy(self, *args, row_groups=None, **kwargs):
        read_groups.append(list(row_groups))
        return real(self, *args, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(data_module.pq.ParquetFile, "iter_batches", spy)
    assert [r.row for r in read_table(shards[0], start=17)][:1] == [17]
    assert read_groups == [[2, 3]]  # rows 0-15 (row groups 0 and 1) not read
    with pytest.raises(ValueError, match="one shard"):
        list(read_table(shards[0], shard=1))


def test_workers_read_only_their_own_shards_when_there_are_enough(shards, opened, monkeypatch):
    """4 shards, 2 ranks x 2 DataLoader workers: each worker opens its one shard and yields all its molecules."""
    seen = {}
    for rank, worker in itertools.product((0, 1), (0, 1)):
        opened.clear()
        info = type("Info", (), {"id": worker, "num_workers": 2})
        monkeypatch.setattr(streaming, "get_worker_info", lambda info=info: info)
        stream = PretrainingStream(
            _settings(shards, rank=rank, world_size=2), MoleBlendProcessor(), log_molecule_ids=True
        )
        metas = _batches(stream, 8)  # its shard's 30 molecules (and the next epoch's first)
        assert len({name for name, _ in opened}) <= 2  # this epoch's shard, then the next epoch's
        seen[rank, worker] = [i for meta in metas if meta["epoch"] == 0 for i in meta["ids"]]
        assert len(seen[rank, worker]) == 30 and len({i.split(":")[0] for i in seen[rank, worker]}) == 1
    assert len(set().union(*seen.values())) == 120  # disjoint, and every molecule once


def test_job_with_dataloader_workers_on_shards_resumes_exactly(shards, tmp_path):
    """`moleblend pretrain` with 2 DataLoader worker processes, each reading its own shards: a stopped and resumed
    run trains on the same molecules in the same order and ends with the same weights as an uninterrupted one."""
    import json

    from moleblend_hf.cli import main

    common = [
        *shards,
        "--batch-size",
        "4",
        "--window-size",
        "8",
        "--shuffle-buffer",
        "12",
        "--num-workers",
        "2",
        "--max-steps",
        "12",
        "--save-steps",
        "5",
        "--no-progress",
        "--log-molecule-ids",
        "--report-to",
        "jsonl",
    ]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["pretrain", *common, "--output-dir", str(whole)]) == 0
    assert main(["pretrain", *common, "--output-dir", str(parts), "--stop-after-steps", "7"]) == 0
    assert main(["pretrain", *common, "--output-dir", str(parts), "--resume"]) == 0
    ids = [(d / "molecule_ids_rank0.txt").read_text().split() for d in (whole, parts)]
    # 24 molecules from each worker's first shard (4 shards >= 1 rank x 2 workers: a shard per worker)
    assert ids[0] == ids[1] and len(ids[0]) == 48 and len({i.split(":")[0] for i in ids[0]}) == 2
    summaries = [json.loads((d / "summary_rank0.json").read_text()) for d in (whole, parts)]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]


def test_job_with_workers_sharing_one_file_resumes_exactly(tmp_path):
    """Fewer shards than workers (one file, 2 workers taking windows in turn), stopped after an odd number of
    steps: the resumed run keeps the workers' turn and trains on the same molecules in the same order."""
    import json

    from moleblend_hf.cli import main
    from tests.conftest import DATA

    common = [
        str(DATA / "moses_200_conformers.parquet"),
        "--batch-size",
        "4",
        "--window-size",
        "8",
        "--shuffle-buffer",
        "16",
        "--num-workers",
        "2",
        "--max-steps",
        "10",
        "--save-steps",
        "5",
        "--no-progress",
        "--log-molecule-ids",
        "--report-to",
        "jsonl",
        "--preset",
        "tiny",
    ]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["pretrain", *common, "--output-dir", str(whole)]) == 0
    assert main(["pretrain", *common, "--output-dir", str(parts), "--stop-after-steps", "5"]) == 0
    assert main(["pretrain", *common, "--output-dir", str(parts), "--resume"]) == 0
    ids = [(d / "molecule_ids_rank0.txt").read_text().split() for d in (whole, parts)]
    assert ids[0] == ids[1] and len(ids[0]) == 40
    summaries = [json.loads((d / "summary_rank0.json").read_text()) for d in (whole, parts)]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]


def test_hub_sources_parse_print_back_and_refuse_what_they_do_not_know():
    from moleblend_hf.arguments import PretrainArguments
    from moleblend_hf.sources.remote import HubSource

    for text in (
        "hf://datasets/org/corpus",
        "hf://datasets/org/corpus@0123abc/data/train-*.parquet",
        "hf://datasets/org/corpus?config=zinc&split=validation",
    ):
        assert str(HubSource.parse(text)) == text
    assert HubSource.parse("hf://datasets/org/corpus?split=train") == HubSource("org/corpus")
    with pytest.raises(ValueError, match="unknown option 'name'"):
        HubSource.parse("hf://datasets/org/corpus?name=zinc")
    with pytest.raises(ValueError, match=r"hf://datasets/ORG/NAME\[@REVISION\]"):
        HubSource.parse("hf://datasets/org")
    args = PretrainArguments(dataset="org/corpus@v1", dataset_config="zinc")
    assert args.inputs == ["hf://datasets/org/corpus@v1?config=zinc"]
    with pytest.raises(ValueError, match="--dataset-config and --dataset-split"):
        PretrainArguments(dataset_split="test")
