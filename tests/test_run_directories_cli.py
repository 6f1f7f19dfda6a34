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

from .conftest import DATA

SMALL = ["--batch-size", "4", "--window-size", "16", "--shuffle-buffer", "16", "--no-progress", "--report-to",
         "jsonl", "--preset", "tiny"]


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
    assert main(["pretrain", str(out / "corpus.smi"), "--output-dir", str(out), "--max-steps", "2", "--overwrite",
                 *SMALL]) == 0
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
        assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "2", "--overwrite",
                     *SMALL]) == 1
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


def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_temporary_directory(tmp_path, corpus, monkeypatch,
                                                                                capsys):
    out = tmp_path / "run"

    def full_disk(directory, *args, **kwargs):
        (directory / "model.safetensors").write_bytes(b"half")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr("moleblend_hf.training.pretrain.save_training_state", full_disk)
    assert main(["pretrain", str(corpus), "--output-dir", str(out), "--max-steps", "4", "--save-steps", "2",
                 *SMALL]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not write checkpoint-2" in err and "No space left" in err
    assert not list(out.glob(".tmp-checkpoint-*")) and not list(out.glob("checkpoint-*"))
