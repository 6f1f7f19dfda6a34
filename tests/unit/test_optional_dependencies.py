"""The core install: the model, the processor and the jobs' modules import none of the extras (plots, tracking,
remote, search, benchmarks); a job that needs one says which, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moleblend_hf._optional import MissingExtraError
from moleblend_hf.cli import main
from moleblend_hf.sources.files import read_table

EXTRAS = ("matplotlib", "tensorboard", "aiohttp", "optuna", "chemprop", "mkdocs")


@pytest.mark.slow
def test_the_model_processor_and_jobs_import_no_extra():
    code = (
        "import sys\n"
        "import torch\n"
        "from moleblend_hf import MoleBlendConfig, MoleBlendModel, MoleBlendProcessor\n"
        "import moleblend_hf.training.finetune, moleblend_hf.training.pretrain, moleblend_hf.inference.predict\n"
        "import moleblend_hf.inference.embed, moleblend_hf.cli.parser\n"
        "model = MoleBlendModel(MoleBlendConfig.from_preset('tiny')).eval()\n"
        "with torch.no_grad():\n"
        "    model(**MoleBlendProcessor()(['CCO', 'c1ccccc1']))\n"
        f"print(sorted(m for m in {EXTRAS!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout


def test_a_missing_extra_is_named_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(
        MissingExtraError,
        match=r"^reading http://127\.0\.0\.1:9/x\.csv needs aiohttp, which is not "
        r'installed: pip install "moleblend-hf\[remote\]"$',
    ):
        list(read_table("http://127.0.0.1:9/x.csv"))
    model = tmp_path / "model"
    from ..conftest import saved_regression_model

    saved_regression_model(model)
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "http://127.0.0.1:9/x.csv",
                "--model",
                str(model),
                "--output",
                str(tmp_path / "p.csv"),
                "--no-progress",
            ]
        )
        == 1
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not progress bars
    assert len(errors) == 1 and errors[0].endswith('pip install "moleblend-hf[remote]"'), errors
