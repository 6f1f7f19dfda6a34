"""`moleblend pretrain` on corpora served over HTTP (a loopback server; streamed with `datasets`)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoModel

from moleblend_hf.cli import main
from moleblend_hf.sources.files import read_table
from tests.conftest import DATA, PACKAGE_DATA
from tests.fakes.http_server import FileServer

from .test_pretrain_job import SMALL, _ids, _summary

QM9 = PACKAGE_DATA / "qm9_small.parquet"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Real molecules as two parquet shards (QM9 molblocks with DFT geometries), one SMILES file and a CSV."""
    root = tmp_path_factory.mktemp("served")
    frame = pd.read_parquet(QM9).head(400)
    frame.iloc[:200].to_parquet(root / "shard-0.parquet", row_group_size=50)
    frame.iloc[200:].to_parquet(root / "shard-1.parquet", row_group_size=50)
    esol = pd.read_csv(DATA / "esol.csv").head(100)
    (root / "esol.smi").write_text("\n".join(f"{s} mol{i}" for i, s in enumerate(esol.smiles)) + "\n")
    esol.to_csv(root / "esol.csv", index=False)
    with gzip.open(root / "qm9.sdf.gz", "wt") as handle:
        handle.write(
            "".join(
                f"qm9-{i}" + block[block.index("\n") :] + "$$$$\n"
                for i, block in enumerate(frame["molblock"].head(120))
            )
        )
    with FileServer(root) as server:
        yield server, root


@pytest.fixture()
def quick_retries(monkeypatch):
    """Two retries without waiting (the job's default waits 1 + 2 + 4 + 8 + 16 s before giving up)."""
    import datasets

    from moleblend_hf.sources import remote

    monkeypatch.setattr(datasets.config, "STREAMING_READ_MAX_RETRIES", 1)
    monkeypatch.setattr(datasets.config, "STREAMING_READ_RETRY_INTERVAL", 0)
    monkeypatch.setattr(remote, "RETRY_DELAYS", (0, 0))


def test_remote_files_stream_in_order_like_local_ones(served):
    server, root = served
    for name in ("shard-0.parquet", "esol.smi", "esol.csv", "qm9.sdf.gz"):
        remote = [(r.row, r.molecule, r.identifier) for r in read_table(server.url(name))]
        local = [(r.row, r.molecule, r.identifier) for r in read_table(root / name)]
        assert remote == local and len(remote) >= 100, name
        assert list(read_table(server.url(name), start=57)) == list(read_table(root / name))[57:], name
    assert local[0][2] == "qm9-0"  # an SDF record's title is its identifier


def test_a_smiles_file_without_identifiers_streams_and_an_unparsable_file_is_not_retried(served, monkeypatch):
    """A .smi of SMILES alone has one column; a file that cannot be parsed fails the same way every time: it is
    named at once, never retried as if the network were down."""
    from moleblend_hf.sources import remote

    server, root = served
    (root / "plain.smi").write_text("CCO\nc1ccccc1\n\nCCN extra fields here\n")
    (root / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    waits = []

    def back_off(url, failures, error, what):
        waits.append(what)
        raise ConnectionError(f"{url}: retried")

    monkeypatch.setattr(remote, "_back_off", back_off)
    records = [(r.row, r.molecule, r.identifier) for r in read_table(server.url("plain.smi"))]
    assert records == [(0, "CCO", "0"), (1, "c1ccccc1", "1"), (2, None, "2"), (3, "CCN", "extra")]
    assert records == [(r.row, r.molecule, r.identifier) for r in read_table(root / "plain.smi")]
    with pytest.raises(ValueError, match="broken.parquet: cannot be read .*not retried"):
        list(read_table(server.url("broken.parquet")))
    assert waits == []


def test_pretrain_on_urls_saves_a_loadable_model_and_resumes_exactly(served, tmp_path):
    server, _ = served
    urls = [server.url("shard-0.parquet"), server.url("shard-1.parquet")]
    common = [*urls, "--max-steps", "8", "--save-steps", "2", *SMALL]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["pretrain", "--output-dir", str(whole), *common]) == 0
    assert isinstance(AutoModel.from_pretrained(whole), object)
    assert _summary(whole)["finished"] and _summary(whole)["molecules_seen"] == 8 * 8
    assert all(i.startswith(("shard-0.parquet:", "shard-1.parquet:")) for i in _ids(whole))
    assert main(["pretrain", "--output-dir", str(parts), *common, "--stop-after-steps", "3"]) == 0
    assert main(["pretrain", "--output-dir", str(parts), *common, "--resume"]) == 0
    assert _ids(parts) == _ids(whole)
    assert _summary(parts)["weights_sha256"] == _summary(whole)["weights_sha256"]
    settings = json.loads((whole / "run.json").read_text())["settings"]
    assert settings["inputs"] == urls


def test_a_failing_server_is_retried_then_named_and_the_checkpoint_resumes(served, tmp_path, capsys, quick_retries):
    server, _ = served
    url = server.url("shard-1.parquet")
    common = [url, "--max-steps", "6", "--save-steps", "2", *SMALL]
    out = tmp_path / "run"
    server.fail_next(1)  # one transient failure: retried, the run completes
    assert main(["pretrain", "--output-dir", str(tmp_path / "transient"), *common]) == 0
    assert main(["pretrain", "--output-dir", str(out), *common, "--stop-after-steps", "2"]) == 0
    server.fail_next(1000)  # the server is down
    assert main(["pretrain", "--output-dir", str(out), *common, "--resume"]) == 1
    error = capsys.readouterr().err
    assert url in error and "--resume" in error
    server.fail_next(0)
    assert main(["pretrain", "--output-dir", str(out), *common, "--resume"]) == 0
    assert _summary(out)["finished"]
    assert _summary(out)["weights_sha256"] == _summary(tmp_path / "transient")["weights_sha256"]


def test_pretrain_takes_datasets_objects_and_resumes_exactly(tmp_path):
    """In Python: a `datasets.IterableDataset` (here made from a table; `load_dataset(..., streaming=True)` gives
    the same type) is a source like a file."""
    from datasets import Dataset

    from moleblend_hf.arguments import PretrainArguments
    from moleblend_hf.training.pretrain import pretrain

    stream = Dataset.from_pandas(pd.read_parquet(QM9).head(300)).to_iterable_dataset(num_shards=3)
    common = dict(
        max_steps=6,
        save_steps=2,
        batch_size=8,
        window_size=32,
        shuffle_buffer=64,
        progress=False,
        log_molecule_ids=True,
        report_to=["jsonl"],
    )
    whole = pretrain(PretrainArguments(output_dir=str(tmp_path / "whole"), **common), datasets={"qm9": stream})
    assert whole["finished"] and whole["molecules_seen"] == 48
    # its own 3 shards are the units of the stream: ids name the shard and the row in it
    assert all(re.fullmatch(r"dataset:qm9#[0-2]:\d+", i) for i in _ids(tmp_path / "whole"))
    parts = tmp_path / "parts"
    pretrain(PretrainArguments(output_dir=str(parts), stop_after_steps=3, **common), datasets={"qm9": stream})
    resumed = pretrain(PretrainArguments(output_dir=str(parts), resume="latest", **common), datasets={"qm9": stream})
    assert resumed["weights_sha256"] == whole["weights_sha256"] and _ids(parts) == _ids(tmp_path / "whole")


def test_trainer_recipe_pretrains_on_a_streamed_source(served, tmp_path):
    """The README's `Trainer` recipe: a streamed `datasets` source, featurized by `IterableDataset.map` (bad rows
    dropped there, counted), padded by `MoleBlendCollator`."""
    from datasets import load_dataset
    from transformers import Trainer, TrainingArguments

    from moleblend_hf import (
        MoleBlendCollator,
        MoleBlendConfig,
        MoleBlendForPreTraining,
        MoleBlendProcessor,
        MoleculeError,
    )

    server, _ = served
    stream = load_dataset(
        "parquet",
        data_files=[server.url("shard-0.parquet"), server.url("shard-1.parquet")],
        split="train",
        streaming=True,
    )
    model = MoleBlendForPreTraining(MoleBlendConfig.from_preset("tiny"))
    processor = MoleBlendProcessor.from_config(model.config)
    skipped = []

    def featurize(batch: dict) -> dict:
        out: dict[str, list] = {key: [] for key in processor.model_input_names if key != "attention_mask"}
        for molecule in batch["molblock"]:
            try:
                features = processor.featurize(molecule)
            except MoleculeError as error:
                skipped.append(error.reason)
                continue
            for key in out:
                out[key].append(features[key])
        return out

    features = stream.map(featurize, batched=True, batch_size=64, remove_columns=stream.column_names)
    trainer = Trainer(
        model=model,
        train_dataset=features,
        data_collator=MoleBlendCollator(processor),
        args=TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=4,
            per_device_train_batch_size=8,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            logging_steps=1,
        ),
    )
    result = trainer.train()
    assert result.global_step == 4 and result.training_loss == result.training_loss  # finite, not NaN
    trainer.save_model(str(tmp_path / "model"))
    assert isinstance(AutoModel.from_pretrained(tmp_path / "model"), object)


@pytest.mark.slow
def test_two_processes_stream_disjoint_molecules_from_urls(served, tmp_path):
    import os
    import subprocess
    import sys

    server, _ = served
    out = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "moleblend_hf.cli",
            "pretrain",
            server.url("shard-0.parquet"),
            server.url("shard-1.parquet"),
            "--output-dir",
            str(out),
            "--max-steps",
            "4",
            "--save-steps",
            "4",
            *SMALL,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = _ids(out, 0), _ids(out, 1)
    assert len(first) == len(second) == 4 * 8 and not set(first) & set(second)
    assert _summary(out, 0)["weights_sha256"] == _summary(out, 1)["weights_sha256"]


CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
- config_name: small
  data_files:
  - split: train
    path: data/train-0.parquet
  - split: validation
    path: data/train-1.parquet
---
A QM9 corpus for tests.
"""


@pytest.mark.slow
def test_pretrain_streams_a_hub_dataset_by_shards_resumes_without_rereading_and_refuses_a_moved_one(tmp_path):
    """A dataset repo of 4 parquet shards (and a card with two configurations) on the loopback Hub, read in fresh
    processes (huggingface_hub reads HF_ENDPOINT at import): as hf://datasets/ORG/NAME and with --dataset flags;
    the revision is pinned; a resume reopens the stream at its shard (the shards before it are not requested) and
    ends as the uninterrupted run; a moved repo is refused."""
    import os
    import subprocess
    import sys

    from huggingface_hub import HfApi

    from tests.fakes.hub_server import VALID_TOKEN, HubServer

    frame = pd.read_parquet(QM9).head(160)
    with HubServer() as hub:
        api = HfApi(endpoint=hub.url, token=VALID_TOKEN)
        api.create_repo("test-user/qm9-corpus", repo_type="dataset")
        for k in range(4):
            shard = tmp_path / f"train-{k}.parquet"
            frame.iloc[k * 40 : (k + 1) * 40].to_parquet(shard)
            api.upload_file(
                path_or_fileobj=str(shard),
                path_in_repo=f"data/train-{k}.parquet",
                repo_id="test-user/qm9-corpus",
                repo_type="dataset",
            )
        api.upload_file(
            path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id="test-user/qm9-corpus", repo_type="dataset"
        )
        sha = api.dataset_info("test-user/qm9-corpus").sha
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "OMP_NUM_THREADS": "1",
        }
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
            env.pop(name, None)
        # blocks of 16 rows, windows of 16: 8 steps of 8 molecules cross shards of 40 rows
        small = [
            "--batch-size",
            "8",
            "--window-size",
            "16",
            "--shuffle-buffer",
            "16",
            "--no-progress",
            "--log-molecule-ids",
            "--report-to",
            "jsonl",
            "--max-steps",
            "10",
            "--save-steps",
            "8",
        ]

        def pretrain(out: Path, *extra: str) -> subprocess.CompletedProcess:
            result = subprocess.run(
                [sys.executable, "-m", "moleblend_hf.cli", "pretrain", "--output-dir", str(out), *small, *extra],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
            )
            assert result.returncode == 0 or "--resume" in extra, result.stderr[-4000:]
            return result

        def shard_files_requested(since: int) -> set[str]:
            return {
                path.rsplit("/", 1)[1]
                for _, path, _ in hub.requests[since:]
                if "/resolve/" in path and path.endswith(".parquet")
            }

        pretrain(tmp_path / "whole", "hf://datasets/test-user/qm9-corpus")
        parts = tmp_path / "parts"
        pretrain(parts, "--dataset", "test-user/qm9-corpus", "--stop-after-steps", "8")
        state = json.loads((parts / "checkpoint-8" / "data_state_rank0.json").read_text())
        assert state["stream"]["sources"] == [f"hf://datasets/test-user/qm9-corpus@{sha}"]
        assert all(re.fullmatch(rf"qm9-corpus@{sha}#[0-3]:\d+", i) for i in _ids(parts))
        position = state["positions"]["0"]
        assert position["shard"] >= 1  # 64 molecules read: the stream is past its first shard
        before = len(hub.requests)
        pretrain(parts, "--dataset", "test-user/qm9-corpus", "--resume")
        assert len(shard_files_requested(before)) <= 4 - position["shard"]  # earlier shards never requested
        assert _summary(parts)["weights_sha256"] == _summary(tmp_path / "whole")["weights_sha256"]
        assert _ids(parts) == _ids(tmp_path / "whole")

        # a configuration and split of the card
        config = tmp_path / "config"
        before = len(hub.requests)
        pretrain(
            config,
            "--dataset",
            "test-user/qm9-corpus",
            "--dataset-config",
            "small",
            "--dataset-split",
            "validation",
            "--max-steps",
            "2",
        )
        state = json.loads((config / "checkpoint-2" / "data_state_rank0.json").read_text())
        source = f"hf://datasets/test-user/qm9-corpus@{sha}?config=small&split=validation"
        assert state["stream"]["sources"] == [source] and _summary(config)["finished"]
        rows = {int(i.rsplit(":", 1)[1]) for i in _ids(config)}  # one shard: data/train-1.parquet's 40 rows
        assert all(i.startswith(f"qm9-corpus@{sha}?") for i in _ids(config)) and rows <= set(range(40))
        # the validation file is read (datasets may also probe the config's first file for its features)
        assert "train-1.parquet" in shard_files_requested(before) <= {"train-0.parquet", "train-1.parquet"}

        api.upload_file(
            path_or_fileobj=b"smiles\nCCO\n",
            path_in_repo="data/extra.csv",
            repo_id="test-user/qm9-corpus",
            repo_type="dataset",
        )  # the repo moves on
        result = pretrain(parts, "--dataset", "test-user/qm9-corpus", "--resume")
        assert result.returncode == 1 and "the Hub dataset changed since the checkpoint" in result.stderr, (
            result.stderr[-2000:]
        )
        assert f"hf://datasets/test-user/qm9-corpus@{sha}" in result.stderr
