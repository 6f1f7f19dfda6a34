"""`moleblend finetune` and `predict` read what `pretrain` reads: http(s) URLs (a loopback file server), Hub
datasets `hf://datasets/ORG/NAME[@REVISION]` (a loopback Hub; the revision resolved and recorded) and, in
Python, `datasets.Dataset` objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from datasets import Dataset

from moleblend_hf.arguments import FinetuneArguments, PredictArguments
from moleblend_hf.cli import main
from moleblend_hf.inference.predict import predict_file
from moleblend_hf.training.finetune import finetune

from ..conftest import DATA, saved_regression_model
from ..fakes.http_server import FileServer

LABEL = "measured log solubility in mols per litre"
QUICK = ["--split", "random", "--max-steps", "2", "--batch-size", "16"]


@pytest.fixture(scope="module")
def esol_small() -> pd.DataFrame:
    return pd.read_csv(DATA / "esol.csv").head(60)


def test_finetune_and_predict_read_urls_like_local_files(tmp_path, esol_small):
    esol_small.to_csv(tmp_path / "esol.csv", index=False)
    (tmp_path / "new.smi").write_text("CCO ethanol\nnot_a_smiles( bad\nc1ccccc1O phenol\n")
    with FileServer(tmp_path) as server:
        local, remote = tmp_path / "local", tmp_path / "remote"
        assert (
            main(["finetune", str(tmp_path / "esol.csv"), "--label-columns", LABEL, *QUICK, "--output-dir", str(local)])
            == 0
        )
        assert (
            main(["finetune", server.url("esol.csv"), "--label-columns", LABEL, *QUICK, "--output-dir", str(remote)])
            == 0
        )
        metrics = json.loads((remote / "metrics.json").read_text())
        assert metrics["data"] == server.url("esol.csv")
        # the same rows, split and trained alike
        assert json.loads((remote / "split.json").read_text()) == json.loads((local / "split.json").read_text())
        quality = ("loss", "rmse", "mae", "r2")
        assert {k: metrics["test"][k] for k in quality} == {
            k: json.loads((local / "metrics.json").read_text())["test"][k] for k in quality
        }
        out = tmp_path / "predictions.csv"
        assert (
            main(["predict", server.url("new.smi"), "--model", str(remote), "--output", str(out), "--no-progress"]) == 0
        )
    predictions = pd.read_csv(out)
    assert predictions["row"].tolist() == [0, 1, 2] and predictions["id"].tolist() == ["ethanol", "bad", "phenol"]
    assert predictions["skipped_reason"].notna().tolist() == [False, True, False]


def test_finetune_and_predict_take_datasets_objects(tmp_path, esol_small):
    dataset = Dataset.from_pandas(esol_small)
    args = FinetuneArguments(
        data="dataset:esol",
        label_columns=[LABEL],
        split="random",
        max_steps=2,
        batch_size=16,
        output_dir=str(tmp_path / "run"),
    )
    result = finetune(args, datasets={"esol": dataset})
    assert result["data"] == "dataset:esol" and result["split"]["train"] + result["split"]["valid"] + result["split"][
        "test"
    ] == len(esol_small)
    summary = predict_file(
        PredictArguments(
            data="dataset:esol", model=[str(tmp_path / "run")], progress=False, output=str(tmp_path / "p.csv")
        ),
        datasets={"esol": dataset},
    )
    assert summary["rows"] == summary["predicted"] == len(esol_small)


def test_an_unknown_source_is_one_line_naming_it(tmp_path, capsys):
    assert (
        main(
            ["finetune", str(tmp_path / "absent.csv"), "--label-columns", LABEL, "--output-dir", str(tmp_path / "run")]
        )
        == 1
    )
    assert "absent.csv" in capsys.readouterr().err
    model = saved_regression_model(tmp_path / "model")
    assert (
        main(
            ["predict", "dataset:nothing", "--model", str(model), "--output", str(tmp_path / "p.csv"), "--no-progress"]
        )
        == 1
    )
    assert "nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_and_predict_read_a_hub_dataset_and_record_its_revision(tmp_path, esol_small):
    """In fresh processes (huggingface_hub reads HF_ENDPOINT at import): a labelled CSV in a dataset repo on the
    loopback Hub, fine-tuned on and predicted from; metrics.json and run.json record the commit sha."""
    from huggingface_hub import HfApi

    from ..fakes.hub_server import VALID_TOKEN, HubServer

    with HubServer() as hub:
        api = HfApi(endpoint=hub.url, token=VALID_TOKEN)
        api.create_repo("test-user/esol", repo_type="dataset")
        api.upload_file(
            path_or_fileobj=esol_small.to_csv(index=False).encode(),
            path_in_repo="data/esol.csv",
            repo_id="test-user/esol",
            repo_type="dataset",
        )
        sha = api.dataset_info("test-user/esol").sha
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "OMP_NUM_THREADS": "1",
        }
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
            env.pop(name, None)

        def moleblend(*argv: str) -> None:
            result = subprocess.run(
                [sys.executable, "-m", "moleblend_hf.cli", *argv], capture_output=True, text=True, timeout=600, env=env
            )
            assert result.returncode == 0, result.stderr[-4000:]
            return result

        run = tmp_path / "run"
        moleblend(
            "finetune", "hf://datasets/test-user/esol", "--label-columns", LABEL, *QUICK, "--output-dir", str(run)
        )
        pinned = f"hf://datasets/test-user/esol@{sha}"
        assert json.loads((run / "metrics.json").read_text())["data"] == pinned
        assert json.loads((run / "run.json").read_text())["settings"]["data"] == pinned
        out = tmp_path / "predictions.csv"
        result = moleblend(
            "predict",
            "hf://datasets/test-user/esol/data/esol.csv",
            "--model",
            str(run),
            "--output",
            str(out),
            "--no-progress",
        )
        assert json.loads(result.stdout)["input"] == f"{pinned}/data/esol.csv"
        assert len(pd.read_csv(out)) == len(esol_small)
