"""`moleblend pretrain`: end to end, exact resume, several processes, token budgets, skip counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining

from moleblend_hf import MoleBlendForPreTraining, MoleBlendModel, MoleBlendProcessor
from moleblend_hf.cli import main
from moleblend_hf.training.streaming import PretrainingStream, Position, StreamSettings

from .conftest import DATA

SMALL = ["--batch-size", "8", "--window-size", "32", "--shuffle-buffer", "64", "--no-progress", "--log-molecule-ids",
         "--report-to", "jsonl"]


def _summary(directory: Path, rank: int = 0) -> dict:
    return json.loads((directory / f"summary_rank{rank}.json").read_text())


def _ids(directory: Path, rank: int = 0) -> list[str]:
    return (directory / f"molecule_ids_rank{rank}.txt").read_text().split()


def test_default_job_trains_and_saves_a_loadable_model(tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", "--output", str(out), "--max-steps", "12", "--save-steps", "6", *SMALL]) == 0
    summary = _summary(out)
    assert summary["finished"] and summary["molecules_seen"] == 12 * 8
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert all(k in log[0] for k in ("loss", "spd_loss", "path_loss", "relative_position_loss", "denoise_loss"))
    final = out / "final"
    assert (final / "README.md").exists() and (final / "preprocessor_config.json").exists()
    pretraining = AutoModelForPreTraining.from_pretrained(final)
    assert isinstance(pretraining, MoleBlendForPreTraining)
    encoder = AutoModel.from_pretrained(final).eval()
    assert isinstance(encoder, MoleBlendModel)
    batch = MoleBlendProcessor.from_pretrained(final)(["CCO", "c1ccccc1"])
    with torch.no_grad():
        torch.testing.assert_close(encoder(**batch).last_hidden_state,
                                   pretraining.eval().moleblend(**batch).last_hidden_state)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    common = ["--max-steps", "14", "--save-steps", "4", *SMALL]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(["pretrain", "--output", str(whole), *common])
    main(["pretrain", "--output", str(parts), *common, "--stop-after-steps", "6"])
    assert not _summary(parts)["finished"] and _summary(parts)["step"] == 6
    assert not (parts / "final").exists()
    main(["pretrain", "--output", str(parts), *common, "--resume"])
    assert _summary(parts)["finished"]
    assert _ids(parts) == _ids(whole)  # same molecules in the same order, none twice, none skipped
    assert len(set(_ids(whole))) == len(_ids(whole)) == 14 * 8
    assert _summary(parts)["weights_sha256"] == _summary(whole)["weights_sha256"]


def test_resume_refuses_different_data_settings(tmp_path):
    out = tmp_path / "run"
    main(["pretrain", "--output", str(out), "--max-steps", "4", "--save-steps", "2", *SMALL, "--stop-after-steps",
          "2"])
    with pytest.raises(ValueError, match="data settings differ"):
        main(["pretrain", "--output", str(out), "--max-steps", "4", *SMALL[:-6], "--batch-size", "4",
              "--window-size", "32", "--shuffle-buffer", "64", "--resume"])


@pytest.mark.slow
def test_two_processes_read_disjoint_molecules_and_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "moleblend_hf.cli", "pretrain", "--output", str(out), "--max-steps", "6", "--save-steps", "3", *SMALL],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = _ids(out, 0), _ids(out, 1)
    assert len(first) == len(second) == 6 * 8
    assert not set(first) & set(second)
    assert _summary(out, 0)["weights_sha256"] == _summary(out, 1)["weights_sha256"]
    assert (out / "checkpoint-6" / "data_state_rank1.json").exists()


def test_token_budget_batches_and_skip_counts(tmp_path):
    corpus = tmp_path / "corpus.smi"
    lines = (DATA.parent.parent / "benchmarks" / "data" / "moses_5k.smi").read_text().splitlines()[:120]
    lines[5], lines[40], lines[77] = "not_a_smiles(", "[*]CC", "c1cccc1"
    corpus.write_text("\n".join(lines) + "\n")
    settings = StreamSettings(sources=(str(corpus),), batch_size=None, max_tokens=2500, window_size=60,
                              shuffle_buffer=16)
    stream = PretrainingStream(settings, MoleBlendProcessor(), log_molecule_ids=True)
    seen, skipped = [], {}
    for batch, meta in stream:
        if meta["epoch"] > 0:
            break
        n = batch["atom_features"].shape[1] + 1
        assert n * n * len(batch["has_3d"]) <= 2500 or len(batch["has_3d"]) == 1
        seen += meta["ids"]
        for key, count in meta["skipped"].items():
            skipped[key] = skipped.get(key, 0) + count
    assert len(seen) == len(set(seen)) == 117
    assert skipped == {"not a valid SMILES": 2, "unsupported element": 1}


def test_stream_resumes_inside_a_window(tmp_path):
    settings = StreamSettings(sources=(str(DATA / "moses_200_conformers.parquet"),), batch_size=8, window_size=40,
                              shuffle_buffer=32)
    full = [meta["ids"] for _, meta in _take(PretrainingStream(settings, MoleBlendProcessor(),
                                                                log_molecule_ids=True), 12)]
    resumed = [meta["ids"] for _, meta in _take(PretrainingStream(
        settings, MoleBlendProcessor(), start_positions={0: Position(0, 1, 2)}, log_molecule_ids=True), 5)]
    assert resumed == full[7:12]  # window 0 has 5 batches; window 1 batch 2 is the 8th


def _take(stream, count):
    iterator = iter(stream)
    return [next(iterator) for _ in range(count)]


def test_held_out_losses_are_logged_and_do_not_change_training(tmp_path):
    """--eval-inputs: deterministic held-out losses at every --eval-steps; the training run itself (weights,
    molecule order) is the same as without evaluation, so evaluating never breaks exact resume."""
    heldout = tmp_path / "heldout.smi"
    heldout.write_text("\n".join(["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CC", "CCN(CC)CC"]) + "\n")
    common = ["--max-steps", "6", "--save-steps", "6", *SMALL]
    plain, evaluated = tmp_path / "plain", tmp_path / "evaluated"
    main(["pretrain", "--output", str(plain), *common])
    main(["pretrain", "--output", str(evaluated), *common, "--eval-inputs", str(heldout), "--eval-steps", "3"])
    log = [json.loads(line) for line in (evaluated / "eval_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]
    assert all(r["molecules"] == 4 and r["loss"] > 0 for r in log)  # the invalid "C1CC" is left out
    assert _summary(plain)["weights_sha256"] == _summary(evaluated)["weights_sha256"]
    assert _ids(plain) == _ids(evaluated)
