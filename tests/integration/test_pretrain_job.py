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
from moleblend_hf.sources.streaming import Position, PretrainingStream, StreamSettings
from tests.conftest import DATA

SMALL = [
    "--batch-size",
    "8",
    "--window-size",
    "32",
    "--shuffle-buffer",
    "64",
    "--no-progress",
    "--log-molecule-ids",
    "--report-to",
    "jsonl",
]


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
    # throughput at each logging step (default every 10) and at the last step
    assert [r["step"] for r in log if "molecules_per_s" in r] == [10, 12]
    assert all(r["molecules_per_s"] > 0 for r in log if "molecules_per_s" in r)
    final = out  # like Trainer.save_model: the model at the root of the output directory
    assert (final / "README.md").exists() and (final / "preprocessor_config.json").exists()
    pretraining = AutoModelForPreTraining.from_pretrained(final)
    assert isinstance(pretraining, MoleBlendForPreTraining)
    encoder = AutoModel.from_pretrained(final).eval()
    assert isinstance(encoder, MoleBlendModel)
    batch = MoleBlendProcessor.from_pretrained(final)(["CCO", "c1ccccc1"])
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(**batch).last_hidden_state, pretraining.eval().moleblend(**batch).last_hidden_state
        )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-6"]


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    common = ["--max-steps", "14", "--save-steps", "4", *SMALL]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(["pretrain", "--output", str(whole), *common])
    main(["pretrain", "--output", str(parts), *common, "--stop-after-steps", "6"])
    assert not _summary(parts)["finished"] and _summary(parts)["step"] == 6
    assert not (parts / "config.json").exists()
    main(["pretrain", "--output", str(parts), *common, "--resume"])
    assert _summary(parts)["finished"]
    assert _ids(parts) == _ids(whole)  # same molecules in the same order, none twice, none skipped
    assert len(set(_ids(whole))) == len(_ids(whole)) == 14 * 8
    assert _summary(parts)["weights_sha256"] == _summary(whole)["weights_sha256"]


def test_resume_refuses_different_data_settings(tmp_path, capsys):
    out = tmp_path / "run"
    main(["pretrain", "--output", str(out), "--max-steps", "4", "--save-steps", "2", *SMALL, "--stop-after-steps", "2"])
    assert (
        main(
            [
                "pretrain",
                "--output",
                str(out),
                "--max-steps",
                "4",
                *SMALL[:-6],
                "--batch-size",
                "4",
                "--window-size",
                "32",
                "--shuffle-buffer",
                "64",
                "--resume",
            ]
        )
        == 1
    )
    assert "batch_size: 8 -> 4" in capsys.readouterr().err
    # told to accept changed settings, the data settings are still checked: the stream would not be the same;
    # the refused resume leaves the run's record as it was
    record = (out / "run.json").read_text()
    assert (
        main(
            [
                "pretrain",
                "--output",
                str(out),
                "--max-steps",
                "4",
                *SMALL[:-6],
                "--batch-size",
                "4",
                "--window-size",
                "32",
                "--shuffle-buffer",
                "64",
                "--resume",
                "--allow-changed-settings",
            ]
        )
        == 1
    )
    assert "data settings differ" in capsys.readouterr().err
    assert (out / "run.json").read_text() == record
    # a checkpoint of an older data order (written before the stream format was recorded) is refused by name
    from moleblend_hf.training.training_state import write_checksums

    checkpoint = out / "checkpoint-2"
    state = json.loads((checkpoint / "data_state_rank0.json").read_text())
    del state["stream"]["stream_format"]
    (checkpoint / "data_state_rank0.json").write_text(json.dumps(state))
    write_checksums(checkpoint)
    assert main(["pretrain", "--output", str(out), "--max-steps", "4", "--save-steps", "2", *SMALL, "--resume"]) == 1
    assert "older moleblend-hf whose data order differs" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_read_disjoint_molecules_and_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
            "--output",
            str(out),
            "--max-steps",
            "6",
            "--save-steps",
            "3",
            *SMALL,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
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
    settings = StreamSettings(
        sources=(str(corpus),), batch_size=None, max_tokens=2500, window_size=60, shuffle_buffer=16
    )
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
    settings = StreamSettings(
        sources=(str(DATA / "moses_200_conformers.parquet"),), batch_size=8, window_size=40, shuffle_buffer=32
    )
    full = [
        meta["ids"] for _, meta in _take(PretrainingStream(settings, MoleBlendProcessor(), log_molecule_ids=True), 12)
    ]
    resumed = [
        meta["ids"]
        for _, meta in _take(
            PretrainingStream(
                settings, MoleBlendProcessor(), start_positions={0: Position(0, 1, 2)}, log_molecule_ids=True
            ),
            5,
        )
    ]
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


# ------------------------------------------------------------------------------------------- run directories
RUN = ["--max-steps", "6", "--save-steps", "2", "--save-total-limit", "2", *SMALL]


def test_a_used_output_directory_is_refused_and_overwrite_starts_clean(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--output-dir", str(out), *RUN, "--stop-after-steps", "4"]) == 0
    first = json.loads((out / "run.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("checkpoint-*")}
    assert main(["pretrain", "--output-dir", str(out), *RUN]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("checkpoint-*")} == before  # nothing touched
    assert main(["pretrain", "--output-dir", str(out), *RUN, "--overwrite", "--learning-rate", "1e-4"]) == 0
    second = json.loads((out / "run.json").read_text())
    assert second["run_id"] != first["run_id"] and second["settings"]["learning_rate"] == 1e-4
    states = [json.loads((p / "trainer_state.json").read_text()) for p in out.glob("checkpoint-*")]
    assert {s["run_id"] for s in states} == {second["run_id"]}  # no checkpoint of the first run survives
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))  # one run's log, not two mixed


def test_resume_refuses_a_changed_learning_rate_unless_allowed(tmp_path, capsys):
    out = tmp_path / "run"
    main(["pretrain", "--output-dir", str(out), *RUN, "--stop-after-steps", "2"])
    assert main(["pretrain", "--output-dir", str(out), *RUN, "--learning-rate", "1e-3", "--resume"]) == 1
    assert "learning_rate: 0.0005 -> 0.001" in capsys.readouterr().err
    assert (
        main(
            [
                "pretrain",
                "--output-dir",
                str(out),
                *RUN,
                "--learning-rate",
                "1e-3",
                "--resume",
                "--allow-changed-settings",
                "--stop-after-steps",
                "1",
            ]
        )
        == 0
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    from moleblend_hf.training.pretrain import cosine_schedule

    assert log[-1]["step"] == 3
    assert log[-1]["lr"] == pytest.approx(1e-3 * cosine_schedule(3, 30, 6, 0.0))  # the new rate applies
    assert json.loads((out / "run.json").read_text())["resumed"][-1]["changed"]["learning_rate"]["now"] == 1e-3


def test_resume_cuts_the_logs_back_to_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    main(["pretrain", "--output-dir", str(out), *RUN, "--stop-after-steps", "4"])
    with open(out / "train_log.jsonl", "a") as log:  # steps logged after checkpoint-4 by a run that was killed
        log.write(json.dumps({"step": 5, "loss": 0.0}) + "\n")
    with open(out / "molecule_ids_rank0.txt", "a") as ids:
        ids.write("stale\n")
    assert main(["pretrain", "--output-dir", str(out), *RUN, "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    assert "stale" not in _ids(out) and len(_ids(out)) == 6 * 8


@pytest.mark.slow
def test_bad_arguments_exit_2_with_one_line(tmp_path):
    for argv in (
        ["--max-steps", "0"],
        ["--batch-size", "0"],
        ["--save-steps", "0"],
        ["--preset", "huge"],
        ["--learning-rate", "abc"],
        ["--resume", "--overwrite"],
        ["--no-such-flag"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "moleblend_hf.cli", "pretrain", "--output-dir", str(tmp_path / "x"), *argv],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr, (argv, result.stderr)
        assert not (tmp_path / "x").exists()


def test_help_does_not_import_torch():
    code = (
        "import sys; from moleblend_hf.cli import main\n"
        "for argv in (['--help'], ['pretrain', '--help'], ['predict', '--help']):\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--output-dir" in result.stdout and "predict" in result.stdout


@pytest.mark.parametrize(
    "setting, message",
    [
        ("hiden_size=64", "'hiden_size' is not a MoleBlendConfig field (did you mean 'hidden_size'?)"),
        ("hidden_size=abc", "config field 'hidden_size' takes an integer, got 'abc'"),
        ("num_attention_heads=0", "num_attention_heads must be a positive integer, got 0"),
        ("hidden_size=65", "hidden_size (65) must be a multiple of num_attention_heads (4)"),
        ("attention_probs_dropout_prob=1.5", "attention_probs_dropout_prob must be a number in [0, 1), got 1.5"),
    ],
)
def test_bad_config_settings_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["pretrain", "--output-dir", str(out), "--max-steps", "1", "--set", setting]) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert not out.exists()


def test_the_preset_choices_are_the_config_presets():
    import typing

    from moleblend_hf.arguments import Preset
    from moleblend_hf.modeling.configuration_moleblend import PRESETS

    assert set(typing.get_args(Preset)) == set(PRESETS)


class _Planted:
    """Unpickling this creates the file `marker`: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_never_unpickles_files_planted_in_a_checkpoint(tmp_path):
    import pickle

    out, marker = tmp_path / "run", tmp_path / "executed"
    whole = tmp_path / "whole"
    main(["pretrain", "--output-dir", str(whole), *RUN])
    main(["pretrain", "--output-dir", str(out), *RUN, "--stop-after-steps", "4"])
    checkpoint = out / "checkpoint-4"
    assert not list(checkpoint.glob("*.pkl")) and not list(checkpoint.glob("*.bin"))  # nothing pickled is written
    for name in (
        "custom_checkpoint_0.pkl",
        "random_states_0.pkl",
        "optimizer.bin",
        "scheduler.bin",
        "pytorch_model.bin",
    ):  # what Accelerate's load_state would read
        (checkpoint / name).write_bytes(pickle.dumps(_Planted(marker)))
    assert main(["pretrain", "--output-dir", str(out), *RUN, "--resume"]) == 0
    assert not marker.exists()
    assert _summary(out)["weights_sha256"] == _summary(whole)["weights_sha256"]  # and the resume is still exact


def test_a_damaged_checkpoint_is_named_and_the_previous_one_resumes(tmp_path, capsys, caplog):
    common = ["--max-steps", "6", "--save-steps", "1", "--save-total-limit", "3", *SMALL]
    whole, out = tmp_path / "whole", tmp_path / "run"
    main(["pretrain", "--output-dir", str(whole), *common])
    main(["pretrain", "--output-dir", str(out), *common, "--stop-after-steps", "4"])
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a write cut short
    assert main(["pretrain", "--output-dir", str(out), *common, "--resume", str(out / "checkpoint-4")]) == 1
    error = capsys.readouterr().err
    assert str(weights) in error and "truncated" in error and "--resume " + str(out / "checkpoint-3") in error
    with caplog.at_level("WARNING"):
        assert main(["pretrain", "--output-dir", str(out), *common, "--resume"]) == 0
    assert str(weights) in caplog.text
    assert _summary(out)["weights_sha256"] == _summary(whole)["weights_sha256"]
    assert _ids(out) == _ids(whole)


def test_gradient_checkpointing_trains_the_same_model(tmp_path):
    common = ["--max-steps", "3", "--save-steps", "3", *SMALL]
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    assert main(["pretrain", "--output-dir", str(plain), *common]) == 0
    assert main(["pretrain", "--output-dir", str(checkpointed), *common, "--gradient-checkpointing"]) == 0
    losses = [
        [json.loads(line)["loss"] for line in (d / "train_log.jsonl").read_text().splitlines()]
        for d in (plain, checkpointed)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    a, b = (MoleBlendForPreTraining.from_pretrained(d).state_dict() for d in (plain, checkpointed))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_exports_as_a_model_like_the_final_one(tmp_path):
    from moleblend_hf.training.checkpoint_export import export_pretraining_checkpoint
    from moleblend_hf.training.training_state import CheckpointError

    run = tmp_path / "run"
    overrides = ["--set", "num_hidden_layers=1"]
    args = ["--max-steps", "4", "--save-steps", "2", "--save-total-limit", "5", *overrides, *SMALL]
    assert main(["pretrain", "--output", str(run), *args]) == 0
    last = export_pretraining_checkpoint(run / "checkpoint-4", tmp_path / "step-4")
    final, exported = (AutoModelForPreTraining.from_pretrained(d) for d in (run, last))
    assert exported.config.num_hidden_layers == 1  # rebuilt from the run's recorded settings
    assert final.state_dict().keys() == exported.state_dict().keys()
    for name, tensor in final.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert MoleBlendProcessor.from_pretrained(last).to_dict() == MoleBlendProcessor.from_pretrained(run).to_dict()
    assert json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["molecules_seen"] == 4 * 8
    assert "32" in (last / "README.md").read_text()  # the checkpoint's molecules seen, in the card
    earlier = AutoModel.from_pretrained(export_pretraining_checkpoint(run / "checkpoint-2", tmp_path / "step-2"))
    trained = final.moleblend.state_dict()
    assert any(not torch.equal(tensor, trained[name]) for name, tensor in earlier.state_dict().items())

    with pytest.raises(FileExistsError, match="not empty"):  # never written over
        export_pretraining_checkpoint(run / "checkpoint-4", last)
    with pytest.raises(CheckpointError, match="not a pretraining checkpoint"):
        export_pretraining_checkpoint(run, tmp_path / "x")
    (run / "checkpoint-2" / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(CheckpointError):
        export_pretraining_checkpoint(run / "checkpoint-2", tmp_path / "y")
    assert not (tmp_path / "y").exists()
