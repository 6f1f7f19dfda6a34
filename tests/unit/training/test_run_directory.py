"""Run directories: what --overwrite removes, the run marker, one process per directory, the atomic final save."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from moleblend_hf.training.run_directory import (
    MARKER_FILE,
    open_run,
    read_run,
    save_model_atomically,
)
from moleblend_hf.training.run_lock import LOCK_FILE, RunLock, RunLockedError


def _finished_run(directory, **kwargs):
    """A run that wrote a log and a checkpoint directory, then finished and released its directory."""
    with open_run(directory, "finetune", {"seed": 0}, **kwargs) as run:
        run.record("train_log.jsonl", "checkpoint-2")
        (directory / "train_log.jsonl").write_text("{}\n")
        (directory / "checkpoint-2").mkdir()
        (directory / "checkpoint-2" / "state.json").write_text("{}")
        run.finish()
    return run


def test_overwrite_removes_exactly_what_the_previous_run_wrote(tmp_path):
    out = tmp_path / "runx"
    first = _finished_run(out)
    (out / "notes.txt").write_text("mine")  # the user's files, put there after the run
    (out / "data.csv").write_text("smiles,y\nCCO,1\n")
    (out / "notes").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        open_run(out, "finetune", {"seed": 1})
    with open_run(out, "finetune", {"seed": 1}, overwrite=True, inputs=[out / "data.csv"]) as second:
        assert second.run.run_id != first.run.run_id
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER_FILE, "run.json", "notes.txt", "data.csv", "notes"])
    assert (out / "notes.txt").read_text() == "mine" and read_run(out).settings == {"seed": 1}


def test_overwrite_refuses_to_remove_an_input_of_the_command(tmp_path):
    out = tmp_path / "runx"
    _finished_run(out)
    inside = out / "checkpoint-2" / "state.json"
    linked = tmp_path / "elsewhere.jsonl"
    os.link(out / "train_log.jsonl", linked)  # the same file under another name
    for given in (inside, out / "checkpoint-2", linked):
        with pytest.raises(ValueError, match="an input of this command"):
            open_run(out, "finetune", {"seed": 1}, overwrite=True, inputs=[given])
        assert inside.exists() and (out / "train_log.jsonl").exists()  # nothing was removed
    assert not (out / LOCK_FILE).exists()  # a refusal releases the directory


@pytest.mark.parametrize("content", ['{"run_id": "x", "job": "notes", "started": "today", "settings": {}}', "not json"])
def test_a_run_json_is_not_a_run_without_the_marker(tmp_path, content):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "run.json").write_text(content)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not from a moleblend run|holds no moleblend run"):
            open_run(out, "finetune", {}, overwrite=overwrite)
    with pytest.raises(FileNotFoundError, match="no run to continue"):
        open_run(out, "finetune", {}, resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["run.json"] and (out / "run.json").read_text() == content


def test_a_nested_run_keeps_the_users_files_in_it(tmp_path):
    out = tmp_path / "ensemble"
    with open_run(out, "finetune-ensemble", {}) as ensemble:
        ensemble.record("seed-0")
        _finished_run(out / "seed-0")
    (out / "seed-0" / "notes.txt").write_text("mine")
    open_run(out, "finetune-ensemble", {}, overwrite=True).close()
    assert sorted(p.name for p in (out / "seed-0").iterdir()) == ["notes.txt"]


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_second_process_is_refused_while_the_first_holds_the_directory(tmp_path):
    out = tmp_path / "run"
    script = (
        f"import sys, time; from moleblend_hf.training.run_directory import open_run\n"
        f"run = open_run({str(out)!r}, 'pretrain', {{}}); print('open', flush=True); time.sleep(60)"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    try:
        assert first.stdout.readline().strip() == "open"
        for overwrite in (False, True):
            with pytest.raises(RunLockedError, match=f"in use by another moleblend job \\(process {first.pid}"):
                open_run(out, "pretrain", {}, overwrite=overwrite)
        assert read_run(out).job == "pretrain"  # the first run's files are untouched
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING), open_run(out, "pretrain", {}) as run:
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of process {int(gone.stdout)}" in caplog.text
    assert not (out / LOCK_FILE).exists()  # released when the job ended
    assert run.run.job == "pretrain"


def test_a_live_lock_is_refused_and_not_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = _sleeper()
    try:
        held = json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "since": "now"})
        (out / LOCK_FILE).write_text(held)
        with pytest.raises(RunLockedError, match=str(sleeper.pid)):
            RunLock.acquire(out)
        assert (out / LOCK_FILE).read_text() == held
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_final_save_is_all_or_nothing(tmp_path):
    out = tmp_path / "run"
    run = open_run(out, "pretrain", {})

    def crashing(directory):
        (directory / "config.json").write_text("{}")
        (directory / "model.safetensors").write_bytes(b"weights")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_model_atomically(run, out, crashing)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER_FILE, "run.json", LOCK_FILE])

    def complete(directory):
        for name in ("config.json", "model.safetensors", "README.md"):
            (directory / name).write_text(name)

    assert save_model_atomically(run, out, complete) == ["README.md", "model.safetensors", "config.json"]
    assert (out / "config.json").read_text() == "config.json" and not (out / ".tmp-final").exists()
    run.close()


def test_the_final_save_never_replaces_a_users_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    run = open_run(out, "pretrain", {})
    (out / "README.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="README.md was not written by this run"):
        save_model_atomically(run, out, lambda d: (d / "README.md").write_text("card"))
    assert (out / "README.md").read_text() == "my notes" and not (out / ".tmp-final").exists()
    run.close()


def test_a_run_never_claims_or_writes_over_a_users_file(tmp_path):
    out = tmp_path / "runx"
    _finished_run(out)
    (out / "metrics.json").write_text("my metrics")
    with open_run(out, "finetune", {"seed": 1}, overwrite=True) as run:
        with pytest.raises(FileExistsError, match="metrics.json is not from this run"):
            run.record("split.json", "metrics.json")
        run.record("split.json", "never-written.csv")
        (out / "split.json").write_text("{}")
        run.finish()
    marker = json.loads((out / MARKER_FILE).read_text())
    assert "split.json" in marker["written"] and not {"metrics.json", "never-written.csv"} & set(marker["written"])
    assert (out / "metrics.json").read_text() == "my metrics"
