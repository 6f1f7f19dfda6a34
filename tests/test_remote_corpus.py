"""`moleblend pretrain` on corpora served over HTTP (a loopback server; streamed with `datasets`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoModel

from moleblend_hf.cli import main
from moleblend_hf.training.data import read_table

from .conftest import DATA
from .http_server import FileServer
from .test_pretrain_job import SMALL, _ids, _summary

QM9 = Path(__file__).resolve().parent.parent / "moleblend_hf" / "data" / "qm9_small.parquet"


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
    with FileServer(root) as server:
        yield server, root


@pytest.fixture()
def quick_retries(monkeypatch):
    """Two retries without waiting (the job's default waits 1 + 2 + 4 + 8 + 16 s before giving up)."""
    import datasets

    from moleblend_hf.training import remote

    monkeypatch.setattr(datasets.config, "STREAMING_READ_MAX_RETRIES", 1)
    monkeypatch.setattr(datasets.config, "STREAMING_READ_RETRY_INTERVAL", 0)
    monkeypatch.setattr(remote, "RETRY_DELAYS", (0, 0))


def test_remote_files_stream_in_order_like_local_ones(served):
    server, root = served
    for name in ("shard-0.parquet", "esol.smi", "esol.csv"):
        remote = [(r.row, r.molecule, r.identifier) for r in read_table(server.url(name))]
        local = [(r.row, r.molecule, r.identifier) for r in read_table(root / name)]
        assert remote == local and len(remote) >= 100, name


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


def test_a_failing_server_is_retried_then_named_and_the_checkpoint_resumes(served, tmp_path, capsys,
                                                                          quick_retries):
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
