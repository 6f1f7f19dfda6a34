from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import moleblend_hf
from moleblend_hf import MoleBlendConfig, MoleBlendModel, MoleBlendProcessor

DATA = Path(__file__).parent / "data"
PACKAGE_DATA = Path(moleblend_hf.__file__).parent / "data"


@pytest.fixture(autouse=True)
def _logging_as_before():
    """A command run in-process configures logging (--log-level); the next test starts as a fresh process would."""
    yield
    from moleblend_hf.cli.logs import reset_logging

    reset_logging()


@pytest.fixture(scope="session")
def esol() -> pd.DataFrame:
    return pd.read_csv(DATA / "esol.csv")


@pytest.fixture(scope="session")
def bbbp() -> pd.DataFrame:
    return pd.read_csv(DATA / "bbbp.csv")


@pytest.fixture(scope="session")
def qm9() -> pd.DataFrame:
    return pd.read_parquet(PACKAGE_DATA / "qm9_small.parquet")


@pytest.fixture(scope="session")
def moses_conformers() -> pd.DataFrame:
    return pd.read_parquet(DATA / "moses_200_conformers.parquet")


@pytest.fixture()
def processor() -> MoleBlendProcessor:
    return MoleBlendProcessor()


def tiny_model(seed: int = 0, **overrides) -> MoleBlendModel:
    torch.manual_seed(seed)
    return MoleBlendModel(MoleBlendConfig.from_preset("tiny", **overrides)).eval()


@pytest.fixture()
def model() -> MoleBlendModel:
    return tiny_model()


def saved_regression_model(directory: Path) -> Path:
    """A seeded tiny regression model with its processor (no conformers), saved like a fine-tuned one."""
    from moleblend_hf import MoleBlendForPropertyPrediction

    torch.manual_seed(0)
    MoleBlendForPropertyPrediction(
        MoleBlendConfig.from_preset("tiny", num_labels=1, problem_type="regression")
    ).save_pretrained(directory)
    MoleBlendProcessor(conformers="none").save_pretrained(directory)
    return directory
