"""Bad model directories, configs and output directories given to the CLI jobs (run in-process): each is one line
on stderr with exit code 1 or 2, never a traceback."""

from __future__ import annotations

import builtins
import io
import json
import shutil
from pathlib import Path

import pytest

from moleblend_hf.cli import main
from tests.conftest import saved_regression_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return saved_regression_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def data(tmp_path) -> Path:
    path = tmp_path / "x.csv"
    path.write_text("smiles\nCCO\nc1ccccc1O\n")
    return path


def _one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]  # progress bars and notes aside
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _model_variant(source: Path, target: Path, change) -> Path:
    shutil.copytree(source, target)
    change(target)
    return target


def _pickled_only(path: Path) -> None:
    (path / "model.safetensors").rename(path / "pytorch_model.bin")


def _killed_finetune(path: Path) -> None:
    (path / "checkpoint-4").mkdir()
    for name in ("config.json", "model.safetensors"):
        (path / name).rename(path / "checkpoint-4" / name)
    (path / "run.json").write_text("{}")


MODEL_CASES = {
    "missing directory": (None, ["no such directory"]),
    "pickled weights only": (
        _pickled_only,
        ["no safetensors weights; pickled weights are never loaded", "pytorch_model.bin"],
    ),
    "killed fine-tune": (_killed_finetune, ["did not finish", "checkpoint-4"]),
    "config not JSON": (lambda p: (p / "config.json").write_text("{not json"), ["config.json is not valid JSON"]),
    "max_text_length abc": (
        lambda p: (p / "preprocessor_config.json").write_text(
            json.dumps({**json.loads((p / "preprocessor_config.json").read_text()), "max_text_length": "abc"})
        ),
        ["preprocessor_config.json", "max_text_length must be an integer"],
    ),
    "no weights": (lambda p: (p / "model.safetensors").unlink(), ["no model weights"]),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
@pytest.mark.parametrize("command", ["predict", "embed"])
def test_bad_model_directories_are_one_line(case, command, tmp_path, model_dir, data, capsys):
    change, expected = MODEL_CASES[case]
    model = tmp_path / "m" if change is None else _model_variant(model_dir, tmp_path / "m", change)
    if command == "predict":
        argv = ["predict", str(data), "--model", str(model), "--output", str(tmp_path / "p.csv"), "--no-progress"]
    else:
        argv = [
            "embed",
            "--input",
            str(data),
            "--model",
            str(model),
            "--output-dir",
            str(tmp_path / "e"),
            "--no-progress",
        ]
    assert main(argv) == 1
    _one_line_error(capsys, *expected)


def test_a_model_name_found_nowhere_is_one_line(tmp_path, data, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests: fail at once
    assert (
        main(["predict", str(data), "--model", "DOES_NOT_EXIST", "--output", str(tmp_path / "p.csv"), "--no-progress"])
        == 1
    )
    _one_line_error(capsys, "DOES_NOT_EXIST", "could not be loaded from the Hub")


@pytest.fixture()
def read_only(tmp_path, monkeypatch) -> Path:
    """A directory nothing can be written into. Root ignores permission bits, so opening a file in it for
    writing is also refused the way the system refuses it."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    real_open = builtins.open

    def guarded(file, mode="r", *args, **kwargs):
        if (
            isinstance(file, (str, Path))
            and any(c in mode for c in "wax+")
            and Path(file).resolve().is_relative_to(directory.resolve())
        ):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
    yield directory
    directory.chmod(0o755)


@pytest.mark.parametrize("command", ["pretrain", "embed", "predict"])
def test_a_read_only_output_directory_is_one_line(command, read_only, model_dir, data, capsys):
    argv = {
        "pretrain": ["pretrain", str(data), "--output-dir", str(read_only), "--max-steps", "1"],
        "embed": ["embed", "--input", str(data), "--output-dir", str(read_only), "--no-progress"],
        "predict": [
            "predict",
            str(data),
            "--model",
            str(model_dir),
            "--output",
            str(read_only / "p.csv"),
            "--no-progress",
        ],
    }[command]
    assert main(argv) == 1
    _one_line_error(capsys, "Permission denied")


def test_a_damaged_sdf_record_is_named_as_one_in_predict(tmp_path, model_dir, capsys):
    from rdkit import Chem

    path = tmp_path / "x.sdf"
    path.write_text(Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")) + "$$$$\ngarbage\nmore garbage\n$$$$\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(path), "--model", str(model_dir), "--output", str(out), "--no-progress"]) == 0
    import pandas as pd

    reasons = pd.read_csv(out)["skipped_reason"].tolist()
    assert pd.isna(reasons[0]) and "molblock / SDF record" in reasons[1] and "SMILES" not in reasons[1]
