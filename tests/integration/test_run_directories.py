"""The jobs' run directories end to end: --overwrite keeps the user's files and inputs, one process per directory,
a resumed run refuses an edited corpus, the final save is whole or absent, a failed checkpoint write is one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from safetensors import SafetensorError

from moleblend_hf.cli import main
from moleblend_hf.processing import MoleBlendProcessor
from moleblend_hf.training.run_directory import MARKER_FILE
from moleblend_hf.training.run_lock import LOCK_FILE
from tests.conftest import saved_regression_model

SMALL = [
    "--batch-size",
    "4",
    "--window-size",
    "16",
    "--shuffle-buffer",
    "16",
    "--no-progress",
    "--report-to",
    "jsonl",
    "--preset",
    "tiny",
]


@pytest.fixture()
def corpus(tmp_path, esol):
    path = tmp_path / "corpus.smi"
    path.write_text("\n".join(esol["smiles"].head(60)) + "\n")
    return path


def _marker(directory):
    return json.loads((directory / MARKER_FILE).read_text())


def test_pretrain_overwrite_keeps_the_corpus_and_notes_in_the_directory(tmp_path, corpus):
    out = tmp_path / "pr"
    assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "2", *SMALL]) == 0
    assert _marker(out)["finished"] is True and {"config.json", "checkpoint-2"} <= set(_marker(out)["written"])
    shutil.copy(corpus, out / "corpus.smi")
    (out / "notes.txt").write_text("mine")
    assert (
        main(["pretrain", str(out / "corpus.smi"), "--output-dir", str(out), "--max-steps", "2", "--overwrite", *SMALL])
        == 0
    )
    assert (out / "corpus.smi").read_bytes() == corpus.read_bytes() and (out / "notes.txt").read_text() == "mine"
    assert (out / "config.json").exists() and not (out / LOCK_FILE).exists()


def test_pretrain_refuses_a_directory_locked_by_a_live_process(tmp_path, corpus, capsys):
    out = tmp_path / "ow"
    assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "2", *SMALL]) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "since": "now"}))
        assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "2", "--overwrite", *SMALL]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"in use by another moleblend job (process {other.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == sorted([*before, LOCK_FILE])  # nothing removed
    finally:
        other.kill()
        other.wait()


def test_resume_refuses_an_edited_corpus(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    common = ["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "6", "--save-steps", "2", *SMALL]
    assert main([*common, "--stop-after-steps", "2"]) == 0
    capsys.readouterr()
    original = corpus.read_bytes()
    lines = original.decode().splitlines()
    corpus.write_text("\n".join(reversed(lines)) + "\n")  # reordered: same size
    assert main([*common, "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{corpus} changed" in err and "content hash differs" in err and "checkpoint-2" in err
    corpus.write_text("\n".join(lines[:-1]) + "\n")  # a row removed: the size changes too
    assert main([*common, "--resume"]) == 1 and "bytes" in capsys.readouterr().err
    corpus.write_bytes(original)  # the checkpoint's data again (a new modification time, the same content)
    assert main([*common, "--resume"]) == 0
    assert json.loads((out / "summary_rank0.json").read_text())["finished"] is True


def test_a_failed_final_save_leaves_no_half_model_and_no_finished_claim(tmp_path, corpus, monkeypatch, capsys):
    out = tmp_path / "run"

    def full_disk(self, directory, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MoleBlendProcessor, "save_pretrained", full_disk)
    assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "2", *SMALL]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' progress bars
    assert err == f"moleblend pretrain: error: could not save the final model in {out}: No space left on device"
    assert not {"config.json", "model.safetensors", "README.md", ".tmp-final"} & {p.name for p in out.iterdir()}
    assert json.loads((out / "summary_rank0.json").read_text())["finished"] is False
    assert _marker(out)["finished"] is False and not (out / LOCK_FILE).exists()


def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_temporary_directory(tmp_path, corpus, monkeypatch, capsys):
    out = tmp_path / "run"

    def full_disk(directory, *args, **kwargs):
        (directory / "model.safetensors").write_bytes(b"half")
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr("moleblend_hf.training.pretrain_checkpoints.save_training_state", full_disk)
    assert (
        main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "4", "--save-steps", "2", *SMALL]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not write checkpoint-2" in err and "No space left" in err
    assert not list(out.glob(".tmp-checkpoint-*")) and not list(out.glob("checkpoint-*"))


def test_predict_never_writes_over_its_input(tmp_path, esol, capsys):
    model = saved_regression_model(tmp_path / "model")
    data = tmp_path / "x.csv"
    esol.head(5).to_csv(data, index=False)
    original = data.read_bytes()
    capsys.readouterr()
    os.link(data, tmp_path / "linked.csv")
    os.symlink(data, tmp_path / "alias.csv")
    for output in (data, tmp_path / "linked.csv", tmp_path / "alias.csv", tmp_path / "." / "x.csv"):
        assert (
            main(["predict", str(data), "--model", str(model), "--output", str(output), "--overwrite", "--no-progress"])
            == 1
        )
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is the input file" in err
    assert data.read_bytes() == original


FINETUNE = [
    "--label-columns",
    "measured log solubility in mols per litre",
    "--split",
    "random",
    "--max-steps",
    "2",
    "--batch-size",
    "8",
]


def test_finetune_overwrite_keeps_its_input_and_the_users_notes(tmp_path, esol, capsys):
    out = tmp_path / "runx"
    source = tmp_path / "data.csv"
    esol.head(40).to_csv(source, index=False)
    assert main(["finetune", str(source), "--output-dir", str(out), *FINETUNE]) == 0
    assert _marker(out)["finished"] is True and "model.safetensors" in _marker(out)["written"]
    shutil.copy(source, out / "data.csv")
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    # the previous run's split as the input of the new one: --overwrite would remove it
    assert (
        main(
            [
                "finetune",
                str(out / "data.csv"),
                "--output-dir",
                str(out),
                *FINETUNE,
                "--split",
                "file",
                "--split-file",
                str(out / "split.json"),
                "--overwrite",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "an input of this command" in err and "--resume" not in err
    assert (out / "model.safetensors").exists()  # refused before anything was removed
    assert (
        main(["finetune", str(out / "data.csv"), "--output-dir", str(out), *FINETUNE, "--seed", "1", "--overwrite"])
        == 0
    )
    assert (out / "data.csv").read_bytes() == source.read_bytes() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["settings"]["seed"] == 1


def test_embed_overwrite_keeps_the_users_files(tmp_path, esol):
    source = tmp_path / "mols.csv"
    esol.head(10).to_csv(source, index=False)
    out = tmp_path / "emb"
    common = ["embed", "--input", str(source), "--output-dir", str(out), "--chunk-size", "4", "--no-progress"]
    assert main(common) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*common, "--per-atom", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.glob("part-*.parquet"))) == 3
