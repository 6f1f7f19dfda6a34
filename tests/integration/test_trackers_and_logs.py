"""--report-to (every integration of the installed transformers / Accelerate; TensorBoard files checked offline)
and --log-level (our messages on stderr, the library quiet unless asked)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from moleblend_hf.arguments import BenchmarkArguments, FinetuneArguments, PretrainArguments
from moleblend_hf.cli import main
from moleblend_hf.cli.logs import StderrHandler

from ..conftest import DATA

LABEL = "measured log solubility in mols per litre"
PRETRAIN = ["--batch-size", "8", "--window-size", "32", "--shuffle-buffer", "64", "--no-progress"]


def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files under `directory`: tag -> [(step, value)]."""
    accumulator_module = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    found: dict[str, list[tuple[int, float]]] = {}
    for events in directory.rglob("events.out.tfevents.*"):
        accumulator = accumulator_module.EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


def test_report_to_takes_every_installed_integration_and_refuses_others_in_one_line(tmp_path):
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    installed = get_available_reporting_integrations()
    common = dict(data=str(DATA / "esol.csv"), label_columns=[LABEL])
    for names in (["all"], ["none"], installed, ["all", "tensorboard"]):
        assert FinetuneArguments(**common, report_to=names).report_to == ([] if names == ["none"] else names)
        BenchmarkArguments(moleculenet_dir=str(tmp_path), report_to=names)
    assert PretrainArguments(report_to=["jsonl", "all"]).report_to == ["jsonl", "all"]
    with pytest.raises(
        ValueError,
        match=r"^--report-to: unknown integration 'wandbx'; choose from all, none, .*"
        r"mlflow.*wandb",
    ):
        FinetuneArguments(**common, report_to=["wandbx"])
    missing = sorted(set(INTEGRATION_TO_CALLBACK) - set(installed))
    if missing:  # known to transformers, not installed here: named, with what to do
        with pytest.raises(ValueError, match=rf"^--report-to {missing[0]}: its package is not installed"):
            FinetuneArguments(**common, report_to=[missing[0]])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moleblend_hf.cli",
            "pretrain",
            "--report-to",
            "nosuch",
            "--output-dir",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unknown integration 'nosuch'" in result.stderr and "tensorboard" in result.stderr


def test_pretrain_logs_through_accelerate_trackers_and_keeps_its_jsonl(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                "--output-dir",
                str(out),
                "--max-steps",
                "4",
                "--logging-steps",
                "2",
                *PRETRAIN,
                "--report-to",
                "tensorboard",
            ]
        )
        == 0
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    losses = dict(_scalars(out)["train/loss"])
    assert sorted(losses) == [2, 4]
    assert losses[4] == pytest.approx((log[2]["loss"] + log[3]["loss"]) / 2, rel=1e-5)


def test_finetune_reports_to_tensorboard(tmp_path, esol):
    source = tmp_path / "esol.csv"
    esol.head(60).to_csv(source, index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(source),
                "--label-columns",
                LABEL,
                "--split",
                "random",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--report-to",
                "tensorboard",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    scalars = _scalars(out)
    assert "eval/loss" in scalars and all(value == value for _, value in scalars["eval/loss"])


def test_log_level_shows_our_info_messages_and_warning_hides_them(tmp_path, capsys):
    """The resume message is an info message: shown at the command's default level (info), not at warning."""
    for level, shown in (("warning", False), ("info", True)):
        common = ["pretrain", "--output-dir", str(tmp_path / level), "--max-steps", "2", "--save-steps", "1", *PRETRAIN]
        assert main([*common, "--stop-after-steps", "1"]) == 0
        capsys.readouterr()
        assert main([*common, "--resume", *(["--log-level", level] if level != "info" else [])]) == 0
        err = capsys.readouterr().err
        assert ("moleblend_hf.training.pretrain: resumed from" in err) == shown, err


@pytest.mark.slow
def test_the_library_adds_no_handler_and_stays_quiet_unless_asked():
    code = (
        "import logging, moleblend_hf\n"
        "from moleblend_hf.training import pretrain\n"
        "package = logging.getLogger('moleblend_hf')\n"
        "assert [type(h).__name__ for h in package.handlers] == ['NullHandler'], package.handlers\n"
        "logging.getLogger('moleblend_hf.training.pretrain').warning('should not be printed')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_configure_logging_is_idempotent_and_sets_the_libraries_verbosity():
    import datasets
    import transformers

    from moleblend_hf.cli.logs import configure_logging

    package = logging.getLogger("moleblend_hf")
    try:
        for level in ("info", "debug", "error"):
            configure_logging(level)
        assert sum(isinstance(h, StderrHandler) for h in package.handlers) == 1
        assert package.level == logging.ERROR
        assert transformers.logging.get_verbosity() == datasets.logging.get_verbosity() == logging.ERROR
        configure_logging("info")  # their info is a page per load: they stay at warning
        assert transformers.logging.get_verbosity() == logging.WARNING and package.level == logging.INFO
    finally:
        configure_logging("info")
