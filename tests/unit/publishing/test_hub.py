"""Publishing to the Hub, loading back with the Auto classes (with and without this package), CLI push/convert.

Everything runs offline against the loopback Hub of `tests/fakes/hub_server.py`.
- Pushes run in this process, with an explicit `endpoint`, or for the CLI through
  `huggingface_hub.constants.ENDPOINT` (patched for this module; `HfApi` reads it when it is created).
- Every download runs in a fresh subprocess whose environment sets `HF_ENDPOINT` before `huggingface_hub` is
  imported there (download URLs come from a template built at import time, so patching the constant in this
  process would not redirect them), with its own empty `HF_HOME`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

import moleblend_hf.inference.pipelines
from moleblend_hf import (
    MoleBlendConfig,
    MoleBlendForPreTraining,
    MoleBlendForPropertyPrediction,
    MoleBlendModel,
    MoleBlendProcessor,
)
from moleblend_hf.cli import main as cli_main
from moleblend_hf.publishing.card import directory_metrics, load_metrics
from moleblend_hf.publishing.conversion import convert_state_dict
from moleblend_hf.publishing.push import HubPushError, push_to_hub
from moleblend_hf.publishing.remote_code import remote_code_files
from tests.fakes.hub_server import VALID_TOKEN, HubServer
from tests.parity.official_reference import OfficialMolnetEncoder, randomize_

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "N#Cc1ccccc1C(F)(F)F"]
ENCODER_REPO = "test-user/moleblend-tiny"
PRETRAINING_REPO = "test-user/moleblend-tiny-pretraining"
PROPERTY_REPO = "test-user/moleblend-tiny-esol"
METRICS = {
    "task": "regression",
    "dataset": "esol",
    "dataset_name": "ESOL",
    "split": "test",
    "metrics": {"rmse": 1.234, "mae": 0.987},
}
REMOTE_CODE = (
    "configuration_moleblend.py",
    "modeling_moleblend.py",
    "modeling_moleblend_pretraining.py",
    "processing_moleblend.py",
    "graph.py",
)


def tiny(seed: int, cls=MoleBlendModel):
    torch.manual_seed(seed)
    return cls(MoleBlendConfig.from_preset("tiny")).eval()


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under `directory` with the sha256 of its content: equal fingerprints = untouched directory."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def run_client(script: str, hub: HubServer, workdir: Path, timeout: int = 300) -> dict:
    """Run `script` in a fresh Python talking to `hub`; it prints one JSON line last, which is returned."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": VALID_TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(workdir / "hf_home"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_MODULES_CACHE", "HF_TOKEN_PATH"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server
        # every request the clients made was one this server implements (no LFS batch, no Xet token calls)
        assert server.unexpected_requests() == []


@pytest.fixture(scope="module", autouse=True)
def in_process_hub(hub, tmp_path_factory):
    """Point this process's huggingface_hub at the loopback server too, so that nothing here can reach the real
    Hub: `HfApi()` without an explicit endpoint (the CLI) and the once-per-process agent-registry request read
    these module attributes when they run. Offline mode is lifted: the only server is on 127.0.0.1."""
    import huggingface_hub.constants as constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", hub.url)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path_factory.mktemp("hf") / "agents.json"))
        yield


@pytest.fixture(scope="module")
def inputs(qm9) -> list[str]:
    """A few SMILES (2D only with the default processor) and two QM9 molblocks (with DFT geometry: 3D)."""
    return SMILES + qm9["molblock"].head(2).tolist()


@pytest.fixture(scope="module")
def published(hub, inputs, tmp_path_factory):
    """An encoder (+ metrics.json) and a pretraining model pushed to the loopback Hub; the local references."""
    work = tmp_path_factory.mktemp("published")
    encoder, processor = tiny(seed=0), MoleBlendProcessor()
    encoder_dir = work / "encoder"
    encoder.save_pretrained(encoder_dir)
    processor.save_pretrained(encoder_dir)
    (encoder_dir / "metrics.json").write_text(json.dumps(METRICS))
    before = fingerprint(encoder_dir)
    encoder_push = push_to_hub(
        encoder_dir,
        ENCODER_REPO,
        token=VALID_TOKEN,
        endpoint=hub.url,
        datasets=["test-user/qm9-subset"],
        base_model=PRETRAINING_REPO,
    )
    pretraining = tiny(seed=1, cls=MoleBlendForPreTraining)
    pretraining_push = push_to_hub(
        pretraining,
        PRETRAINING_REPO,
        processor=processor,
        token=VALID_TOKEN,
        endpoint=hub.url,
        pretraining={"inputs": ["qm9_small.parquet"], "steps": 10},
    )
    torch.manual_seed(2)
    regression = MoleBlendForPropertyPrediction(
        MoleBlendConfig.from_preset("tiny", num_labels=1, problem_type="regression", id2label={0: "solubility"})
    ).eval()
    push_to_hub(regression, PROPERTY_REPO, processor=processor, token=VALID_TOKEN, endpoint=hub.url)
    batch = processor(inputs)
    assert batch["has_3d"].tolist() == [False] * len(SMILES) + [True] * 2  # both relation paths are compared
    with torch.no_grad():
        torch.save(
            {
                "encoder": encoder(**batch).last_hidden_state,
                "pretraining": pretraining.moleblend(**batch).last_hidden_state,
                "property": regression(**batch).logits[:, 0],
            },
            work / "expected.pt",
        )
    (work / "inputs.json").write_text(json.dumps(inputs))
    return dict(
        work=work, encoder_dir=encoder_dir, before=before, encoder_push=encoder_push, pretraining_push=pretraining_push
    )


# ------------------------------------------------------------------------------------------- pushing
def test_push_is_one_commit_with_model_processor_code_and_card(hub, published):
    result = published["encoder_push"]
    assert result.repo_id == ENCODER_REPO and result.repo_url == f"{hub.url}/{ENCODER_REPO}"
    commits = hub.commits(ENCODER_REPO)
    assert [c.title for c in commits] == ["initial commit", "Upload MoleBLEND model"]
    assert result.commit_sha == commits[-1].sha and result.commit_url.endswith(commits[-1].sha)
    files = hub.files(ENCODER_REPO)
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        ".gitattributes",
        *REMOTE_CODE,
    ):
        assert name in files, name
    assert "metrics.json" not in files  # its results travel in the card's model-index, its local paths do not
    assert files["model.safetensors"] == (published["encoder_dir"] / "model.safetensors").read_bytes()
    # the card was generated for the upload only: the local directory is exactly as it was
    assert fingerprint(published["encoder_dir"]) == published["before"]
    # the pipelines travel with the model: pipelines.py and the config's custom_pipelines
    # the code is generated from the package at push time (a do-not-edit header), whatever the directory holds
    generated = remote_code_files(
        ["pipelines", "processing_moleblend", "modeling_moleblend_pretraining", "modeling_moleblend_property"]
    )
    assert files["pipelines.py"] == generated["pipelines.py"]
    assert generated["pipelines.py"].endswith(Path(moleblend_hf.inference.pipelines.__file__).read_bytes())
    for name in REMOTE_CODE:
        assert files[name] == generated[name], name
    assert set(json.loads(files["config.json"])["custom_pipelines"]) == {"molecule-feature-extraction"}
    assert set(json.loads(hub.files(PROPERTY_REPO)["config.json"])["custom_pipelines"]) == {
        "molecule-feature-extraction",
        "molecule-property-prediction",
    }
    # a model object is saved to a temporary directory; its processor comes along
    pretraining_files = hub.files(PRETRAINING_REPO)
    assert json.loads(pretraining_files["config.json"])["architectures"] == ["MoleBlendForPreTraining"]
    assert "preprocessor_config.json" in pretraining_files and "README.md" in pretraining_files


def test_model_card_metadata_and_body(hub, published):
    card = ModelCard(hub.files(ENCODER_REPO)["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "mit"
    assert data["pipeline_tag"] == "feature-extraction"
    assert {"chemistry", "molecules", "moleblend"} <= set(data["tags"])
    assert data["datasets"] == ["test-user/qm9-subset"] and data["base_model"] == PRETRAINING_REPO
    [index] = data["model-index"]
    [result] = index["results"]
    assert result["task"]["type"] == "regression" and result["dataset"]["type"] == "esol"
    assert {m["type"]: m["value"] for m in result["metrics"]} == METRICS["metrics"]
    text = card.text
    for needle in (
        "## Architecture",
        "2 post-LN Transformer layers",
        "M parameters",
        "## Evaluation",
        "## Intended use",
        "## Limitations",
        "at most 512 atoms",
        "`given`",
        "dummy/query atoms",
        "## Usage",
        f'AutoModel.from_pretrained("{ENCODER_REPO}", trust_remote_code=True)',
    ):
        assert needle in text, needle
    pretraining_card = ModelCard(hub.files(PRETRAINING_REPO)["README.md"].decode())
    assert "## Pretraining" in pretraining_card.text and "**steps**: 10" in pretraining_card.text
    assert "model-index" not in pretraining_card.data.to_dict()  # no metrics.json there


def test_metrics_json_formats(tmp_path, caplog):
    with pytest.raises(ValueError, match="must be a number"):
        load_metrics({"task": "regression", "dataset": "esol", "metrics": {"rmse": "low"}})
    assert directory_metrics(tmp_path) == []
    (tmp_path / "metrics.json").write_text(json.dumps([METRICS, {**METRICS, "split": "valid"}]))
    assert directory_metrics(tmp_path) == [METRICS, {**METRICS, "split": "valid"}]
    # the result file of `moleblend finetune` is understood too
    finetune = {
        "task": ["logSolubility"],
        "problem_type": "regression",
        "data": "/data/esol.csv",
        "test": {"rmse": 1.1, "mae": 0.8, "loss": 1.2, "runtime": 0.5, "samples_per_second": 90.0},
        "valid": {"rmse": 1.0},
        "arguments": {},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(finetune))
    assert directory_metrics(tmp_path) == [
        {"task": "regression", "dataset": "esol", "split": "test", "metrics": {"rmse": 1.1, "mae": 0.8, "loss": 1.2}}
    ]
    # anything else: no model-index, a warning, and the card is still written
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    assert directory_metrics(tmp_path) == [] and "no model-index" in caplog.text


# ------------------------------------------------------------------------------------------- loading
def test_auto_classes_load_the_pushed_model(hub, published):
    """A fresh process with this package: AutoModel/AutoProcessor from the repo id reproduce the local model."""
    work = published["work"]
    out = run_client(
        f"""
        import json, torch
        import moleblend_hf  # registers the Auto classes: no remote code needed
        from huggingface_hub import HfApi, ModelCard
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({ENCODER_REPO!r}).eval()
        processor = AutoProcessor.from_pretrained({ENCODER_REPO!r})
        inputs = json.load(open({str(work / "inputs.json")!r}))
        with torch.no_grad():
            hidden = model(**processor(inputs)).last_hidden_state
        expected = torch.load({str(work / "expected.pt")!r})["encoder"]
        torch.testing.assert_close(hidden, expected, rtol=0, atol=1e-6)
        card = ModelCard.load({ENCODER_REPO!r})
        print(json.dumps({{"model": type(model).__module__, "processor": type(processor).__name__,
                          "card": card.data.to_dict()}}))
    """,
        hub,
        work,
    )
    assert out["model"].startswith("moleblend_hf.") and out["processor"] == "MoleBlendProcessor"
    assert out["card"]["model-index"][0]["results"][0]["metrics"][0]["value"] == METRICS["metrics"]["rmse"]


@pytest.mark.slow
def test_remote_code_loads_from_the_hub_without_the_package(hub, published):
    """`trust_remote_code=True` where moleblend_hf cannot be imported: AutoModel, AutoModelForPreTraining,
    AutoProcessor and both pipelines come from the repos' code and match the local models; the card's usage
    snippet runs."""
    work = published["work"]
    out = run_client(
        f"""
        import json, re, sys
        sys.modules["moleblend_hf"] = None  # any import of the package now fails
        import torch
        from huggingface_hub import hf_hub_download
        from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
        inputs = json.load(open({str(work / "inputs.json")!r}))
        expected = torch.load({str(work / "expected.pt")!r})
        processor = AutoProcessor.from_pretrained({ENCODER_REPO!r}, trust_remote_code=True)
        assert "transformers_modules" in type(processor).__module__, type(processor).__module__
        batch = processor(inputs)
        model = AutoModel.from_pretrained({ENCODER_REPO!r}, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        full = AutoModelForPreTraining.from_pretrained({PRETRAINING_REPO!r}, trust_remote_code=True).eval()
        encoder_of_full = AutoModel.from_pretrained({PRETRAINING_REPO!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).last_hidden_state, expected["encoder"], rtol=0, atol=1e-6)
            for pretrained_encoder in (full.moleblend, encoder_of_full):
                torch.testing.assert_close(pretrained_encoder(**batch).last_hidden_state, expected["pretraining"],
                                           rtol=0, atol=1e-6)
        # the pipelines come from each repo's pipelines.py (config custom_pipelines)
        from transformers import pipeline
        embed = pipeline(model={ENCODER_REPO!r}, trust_remote_code=True)  # the encoder repo's one task
        assert "transformers_modules" in type(embed).__module__, type(embed).__module__
        torch.testing.assert_close(torch.tensor(embed(inputs, batch_size=4)), expected["encoder"][:, 0],
                                   rtol=0, atol=1e-5)
        predict = pipeline("molecule-property-prediction", model={PROPERTY_REPO!r}, trust_remote_code=True)
        rows = predict(inputs[:2] + ["not a molecule("] + inputs[2:], batch_size=3, errors="skip")
        assert rows[2] is None and predict.skipped[0].index == 2, (rows, predict.skipped)
        values = [row[0]["value"] for row in rows if row is not None]
        assert {{row[0]["label"] for row in rows if row}} == {{"solubility"}}
        torch.testing.assert_close(torch.tensor(values), expected["property"], rtol=0, atol=1e-5)
        card = open(hf_hub_download({ENCODER_REPO!r}, "README.md")).read()
        snippet = re.search(r"```python\\n(.*?)```", card, flags=re.DOTALL).group(1)
        namespace = {{}}
        exec(snippet, namespace)
        print(json.dumps({{"full": type(full).__name__, "encoder_of_full": type(encoder_of_full).__name__,
                          "snippet_embeddings": list(namespace["embeddings"].shape)}}))
    """,
        hub,
        work,
    )
    assert out == {
        "full": "MoleBlendForPreTraining",
        "encoder_of_full": "MoleBlendModel",
        "snippet_embeddings": [2, 64],
    }


# -------------------------------------------------------------------------------------------- updates
def test_second_push_updates_the_repo(hub, tmp_path):
    repo_id = "test-user/updated"
    directory = tmp_path / "model"
    tiny(seed=3).save_pretrained(directory)
    MoleBlendProcessor().save_pretrained(directory)
    (directory / "generation_config.json").write_text("{}\n")  # a model file only in the first version
    first = push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url)
    old_weights = (directory / "model.safetensors").read_bytes()

    def downloaded(*revisions: str) -> list[str]:
        """sha256 of model.safetensors as a client downloads it, through one HF_HOME cache for all calls."""
        return run_client(
            f"""
            import hashlib, json
            from huggingface_hub import hf_hub_download
            paths = [hf_hub_download({repo_id!r}, "model.safetensors", revision=r) for r in {list(revisions)!r}]
            print(json.dumps({{"sha256": [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]}}))
        """,
            hub,
            tmp_path,
        )["sha256"]

    assert downloaded("main") == [hashlib.sha256(old_weights).hexdigest()]
    tiny(seed=4).save_pretrained(directory)  # new weights, same files
    (directory / "generation_config.json").unlink()
    second = push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url, commit_message="New weights")
    assert second.commit_sha != first.commit_sha and second.deleted == ["generation_config.json"]
    assert [c.title for c in hub.commits(repo_id)] == ["initial commit", "Upload MoleBLEND model", "New weights"]
    new_weights = (directory / "model.safetensors").read_bytes()
    assert new_weights != old_weights
    # the cached "main" is not reused: the new commit is resolved and its weights downloaded; history is kept
    assert downloaded("main", first.commit_sha) == [
        hashlib.sha256(new_weights).hexdigest(),
        hashlib.sha256(old_weights).hexdigest(),
    ]
    assert "generation_config.json" not in hub.files(repo_id)
    assert "generation_config.json" in hub.files(repo_id, first.commit_sha)


def test_push_uploads_the_model_files_only(hub, tmp_path):
    """A run directory holds the user's data (predictions, splits, checkpoints, logs): only the model repo's files
    are uploaded, and never a symbolic link (its target may be any file the user can read)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    directory = tmp_path / "run"
    tiny(seed=3).save_pretrained(directory)
    MoleBlendProcessor().save_pretrained(directory)
    (directory / "test_predictions.csv").write_text("row,prediction\n0,1.0\n")
    (directory / "checkpoint-4").mkdir()
    (directory / "checkpoint-4" / "optimizer.pt").write_bytes(b"x")
    (directory / "modeling_moleblend_property.py").unlink()
    (directory / "modeling_moleblend_property.py").symlink_to(secret)  # a remote-code name, but a link
    (directory / "my_keys.py").write_text("TOKEN = 'hf_secret'\n")  # a user's code is not the model's
    (directory / "metrics.json").write_text(json.dumps({"arguments": {"data": "/home/me/private.csv"}}))
    result = push_to_hub(directory, "test-user/run", token=VALID_TOKEN, endpoint=hub.url)
    files = set(hub.files("test-user/run"))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert files - {".gitattributes"} == set(result.files)
    code = {name for name in result.files if name.endswith(".py")}
    assert set(result.files) - code == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"}
    assert code == set(remote_code_files(name[:-3] for name in code))  # generated from the package, no more
    assert b"private" not in hub.files("test-user/run")["modeling_moleblend_property.py"]  # not the link's target
    assert not files & {"test_predictions.csv", "checkpoint-4/optimizer.pt", "my_keys.py", "metrics.json"}


def test_push_refuses_a_repo_of_another_model_unless_forced(hub, tmp_path):
    repo_id = "test-user/someone-elses-bert"
    api = HfApi(endpoint=hub.url, token=VALID_TOKEN)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b'{"model_type": "bert"}', path_in_repo="config.json", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="pytorch_model.bin", repo_id=repo_id)
    before = hub.files(repo_id)
    directory = tmp_path / "model"
    tiny(seed=7).save_pretrained(directory)
    with pytest.raises(HubPushError, match="'bert' model, not MoleBLEND.*--force"):
        push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url)
    assert hub.files(repo_id) == before
    push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url, force=True)
    assert json.loads(hub.files(repo_id)["config.json"])["model_type"] == "moleblend"
    assert "pytorch_model.bin" not in hub.files(repo_id)
    broken = "test-user/broken-config"
    api.create_repo(broken)
    api.upload_file(path_or_fileobj=b"{not json", path_in_repo="config.json", repo_id=broken)
    with pytest.raises(HubPushError, match="config.json is not a model config the Hub can read") as info:
        push_to_hub(directory, broken, token=VALID_TOKEN, endpoint=hub.url)
    assert "None" not in str(info.value)


def test_push_refuses_a_repo_of_other_files_without_a_config_unless_forced(hub, tmp_path):
    repo_id = "test-user/their-weights"
    api = HfApi(endpoint=hub.url, token=VALID_TOKEN)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"their weights", path_in_repo="model.safetensors", repo_id=repo_id)
    before = hub.files(repo_id)
    directory = tmp_path / "model"
    tiny(seed=7).save_pretrained(directory)
    with pytest.raises(HubPushError, match="not a MoleBLEND model \\(model.safetensors\\) and no config.json.*--force"):
        push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url)
    assert hub.files(repo_id) == before
    push_to_hub(directory, repo_id, token=VALID_TOKEN, endpoint=hub.url, force=True)
    assert hub.files(repo_id)["model.safetensors"] == (directory / "model.safetensors").read_bytes()


# --------------------------------------------------------------------------------------------- errors
@pytest.fixture()
def saved_dir(tmp_path) -> Path:
    directory = tmp_path / "model"
    tiny(seed=5).save_pretrained(directory)
    MoleBlendProcessor().save_pretrained(directory)
    return directory


@pytest.fixture()
def backoff(monkeypatch) -> list[float]:
    """The delays a push waited before its retries (not actually waited)."""
    delays: list[float] = []
    monkeypatch.setattr("moleblend_hf.publishing.push.time.sleep", delays.append)
    return delays


def test_transient_server_errors_are_retried_with_backoff(hub, saved_dir, backoff):
    hub.fail_next("commit", 503, times=2)
    push_to_hub(saved_dir, "test-user/retried", token=VALID_TOKEN, endpoint=hub.url)
    assert backoff == [1, 2]
    assert hub.files("test-user/retried")["model.safetensors"] == (saved_dir / "model.safetensors").read_bytes()


def test_server_error_raises_hub_push_error_and_keeps_local_files(hub, saved_dir, backoff):
    push_to_hub(saved_dir, "test-user/flaky", token=VALID_TOKEN, endpoint=hub.url)
    commits = len(hub.commits("test-user/flaky"))
    tiny(seed=6).save_pretrained(saved_dir)  # an update that will fail
    before = fingerprint(saved_dir)
    hub.fail_next("commit", 500, times=3)  # more failures than the two retries
    with pytest.raises(HubPushError) as caught:
        push_to_hub(saved_dir, "test-user/flaky", token=VALID_TOKEN, endpoint=hub.url, retries=2)
    assert backoff == [1, 2]
    error = caught.value
    assert isinstance(error, RuntimeError) and error.status == 500 and error.repo_id == "test-user/flaky"
    assert "'test-user/flaky'" in str(error) and "server error (HTTP 500)" in str(error)
    assert str(saved_dir) in str(error) and "unchanged" in str(error)
    assert fingerprint(saved_dir) == before and len(hub.commits("test-user/flaky")) == commits
    # the failure is transient: pushing again works
    push_to_hub(saved_dir, "test-user/flaky", token=VALID_TOKEN, endpoint=hub.url)
    assert hub.files("test-user/flaky")["model.safetensors"] == (saved_dir / "model.safetensors").read_bytes()


@pytest.mark.parametrize("how", ["bad token", "commit refused"])
def test_auth_error_raises_hub_push_error_and_keeps_local_files(hub, saved_dir, how):
    before = fingerprint(saved_dir)
    repo_id = f"test-user/auth-{how.replace(' ', '-')}"
    if how == "bad token":
        token = "not-a-valid-token"
    else:  # a valid token that may read but not write: the Hub refuses the commit itself
        token = VALID_TOKEN
        hub.fail_next("commit", 401, "Invalid credentials in Authorization header")
    with pytest.raises(HubPushError, match="authentication failed \\(HTTP 401\\)") as caught:
        push_to_hub(saved_dir, repo_id, token=token, endpoint=hub.url)
    assert caught.value.status == 401 and repo_id in str(caught.value) and "HF_TOKEN" in str(caught.value)
    assert fingerprint(saved_dir) == before
    assert repo_id not in hub.repos or len(hub.commits(repo_id)) == 1  # nothing committed


def test_network_error_raises_hub_push_error(saved_dir):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = fingerprint(saved_dir)
    with pytest.raises(HubPushError, match="network error while contacting http://127.0.0.1") as caught:
        push_to_hub(saved_dir, "test-user/offline", token=VALID_TOKEN, endpoint=f"http://127.0.0.1:{port}")
    assert caught.value.status is None and fingerprint(saved_dir) == before


def test_push_rejects_a_directory_that_is_not_a_model(tmp_path, hub):
    with pytest.raises(FileNotFoundError, match="config.json"):
        push_to_hub(tmp_path, "test-user/empty", token=VALID_TOKEN, endpoint=hub.url)
    assert "test-user/empty" not in hub.repos


# ------------------------------------------------------------------------------------------------ CLI
def cli(*argv: str) -> int:
    return cli_main(list(argv))


def official_checkpoint(path: Path) -> tuple[dict, list[str]]:
    """An official-style fairseq checkpoint (tiny, random) with two head keys the converter must drop."""
    reference = OfficialMolnetEncoder(dim=64, layers=2, heads=4, ffn=64, kernels=16)
    randomize_(reference, 7)
    state = {f"encoder.molecule_encoder.{k}": v for k, v in reference.state_dict().items()}
    heads = {
        "encoder.molecule_encoder.atom_proc.q_proj.weight": torch.zeros(64, 64),
        "encoder.lm_output_learned_bias": torch.zeros(1),
    }
    args = argparse.Namespace(
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        num_3d_bias_kernel=16,
        multi_hop_max_dist=5,
        add_3d=True,
        activation_fn="gelu",
        droppath_prob=0.0,
        attention_dropout=0.0,
        act_dropout=0.0,
    )
    torch.save({"model": {**state, **heads}, "args": args}, path)
    return state, sorted(heads)


def test_cli_convert_then_push(hub, tmp_path, capsys, monkeypatch):
    state, dropped = official_checkpoint(tmp_path / "checkpoint_best.pt")
    out_dir = tmp_path / "converted"
    assert (
        cli(
            "convert",
            str(tmp_path / "checkpoint_best.pt"),
            str(out_dir),
            "--set",
            "max_atoms=128",
            "--set",
            "hidden_dropout_prob=0.0",
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "dropped 2 official keys" in printed and all(f"  {key}\n" in printed for key in dropped)
    model = MoleBlendModel.from_pretrained(out_dir)
    assert model.config.max_atoms == 128 and model.config.num_hidden_layers == 2
    expected, _ = convert_state_dict(state, model.config)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    assert MoleBlendProcessor.from_pretrained(out_dir).max_atoms == 128
    assert "at most 128 atoms" in (out_dir / "README.md").read_text()
    assert cli("convert", str(tmp_path / "missing.pt"), str(tmp_path / "nowhere")) == 1
    assert "cannot convert" in capsys.readouterr().err

    # `push` uses the ambient Hub settings: the endpoint (patched by `in_process_hub`) and HF_TOKEN
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    before = fingerprint(out_dir)
    assert cli("push", str(out_dir), "test-user/converted", "--private", "--commit-message", "Converted") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["repo_id"] == "test-user/converted" and "model.safetensors" in report["files"]
    assert hub.repos["test-user/converted"].private
    assert hub.commits("test-user/converted")[-1].title == "Converted"
    assert hub.files("test-user/converted")["model.safetensors"] == (out_dir / "model.safetensors").read_bytes()
    assert hub.files("test-user/converted")["README.md"] == (out_dir / "README.md").read_bytes()
    assert cli("push", str(out_dir), "test-user/converted") == 0  # nothing changed: no empty commit
    assert hub.commits("test-user/converted")[-1].title == "Converted"
    capsys.readouterr()
    (out_dir / "README.md").write_text("edited card\n")  # a change to push, which will fail
    before = fingerprint(out_dir)
    hub.fail_next("commit", 503)
    assert cli("push", str(out_dir), "test-user/converted", "--retries", "0") == 1
    error = capsys.readouterr().err
    assert "test-user/converted" in error and "HTTP 503" in error
    assert fingerprint(out_dir) == before
