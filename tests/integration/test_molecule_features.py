"""Molecule-level descriptors in the property head: computed by the processor, standardised with training-row
statistics stored with the weights, and the same numbers through save/load, `moleblend predict` and the pipeline;
a model without them is unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

import moleblend_hf
from moleblend_hf import MoleBlendConfig, MoleBlendForPropertyPrediction, MoleBlendProcessor
from moleblend_hf.arguments import MOLECULE_FEATURE_SETS as ARGUMENT_SETS
from moleblend_hf.cli import main
from moleblend_hf.processing.molecule_features import (
    MOLECULE_FEATURE_SETS,
    compute_molecule_features,
    molecule_feature_size,
    rdkit2d_names,
)
from tests.conftest import DATA

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> tuple:
    """A tiny model fine-tuned on 60 ESOL rows with both descriptor sets."""
    out = tmp_path_factory.mktemp("features") / "run"
    data = out.parent / "esol.csv"
    pd.read_csv(DATA / "esol.csv").head(60).to_csv(data, index=False)
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "measured log solubility in mols per litre",
                "--output-dir",
                str(out),
                "--epochs",
                "1",
                "--split",
                "random",
                "--molecule-features",
                "rdkit2d",
                "morgan_count",
            ]
        )
        == 0
    )
    return out, data


def test_the_argument_choices_are_the_processor_sets():
    assert tuple(ARGUMENT_SETS) == MOLECULE_FEATURE_SETS


def test_features_are_finite_where_rdkit_computes_them_and_ordered_by_stored_names():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    names = rdkit2d_names()
    values = compute_molecule_features(mol, ["rdkit2d", "morgan_count"], names)
    assert values.dtype == np.float32 and values.shape == (molecule_feature_size(["rdkit2d", "morgan_count"]),)
    assert np.isfinite(values[: len(names)]).mean() > 0.95 and (values[len(names) :] >= 0).all()
    # the stored descriptor list decides the order, whatever the installed RDKit lists
    reordered = compute_molecule_features(mol, ["rdkit2d"], names[::-1])
    np.testing.assert_array_equal(reordered, values[: len(names)][::-1])
    with pytest.raises(ValueError, match="lacks the descriptors"):
        compute_molecule_features(mol, ["rdkit2d"], ["NotARealDescriptor"])


def test_statistics_are_fitted_on_training_rows_and_saved_with_the_weights(finetuned):
    out, _ = finetuned
    model = MoleBlendForPropertyPrediction.from_pretrained(out).eval()
    processor = MoleBlendProcessor.from_pretrained(out)
    split = json.loads((out / "split.json").read_text())
    assert processor.molecule_features == ["rdkit2d", "morgan_count"]
    assert model.config.molecule_feature_size == len(processor.descriptor_names) + 2048
    frame = pd.read_csv(out.parent / "esol.csv")
    train = np.stack([processor.featurize(frame.smiles[r])["molecule_features"] for r in split["train"]])
    np.testing.assert_allclose(model.head.feature_mean.numpy(), np.nanmean(train, 0), rtol=1e-4, atol=1e-4)
    assert model.head.feature_mean.abs().sum() > 0


def test_predict_and_the_pipeline_give_the_models_own_outputs(finetuned, tmp_path):
    out, _ = finetuned
    model = MoleBlendForPropertyPrediction.from_pretrained(out).eval()
    processor = MoleBlendProcessor.from_pretrained(out)
    with torch.no_grad():
        expected = model(**processor(SMILES)).logits[:, 0].numpy()
    source = tmp_path / "new.csv"
    pd.DataFrame({"smiles": SMILES}).to_csv(source, index=False)
    assert (
        main(["predict", str(source), "--model", str(out), "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    )
    written = pd.read_csv(tmp_path / "p.csv").filter(like="prediction_").to_numpy()[:, 0]
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-5)
    pipe = moleblend_hf.pipeline("molecule-property-prediction", model=str(out))
    values = [result[0]["value"] for result in pipe(SMILES)]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_a_model_with_features_names_the_missing_input():
    config = MoleBlendConfig.from_preset(
        "tiny", num_labels=1, molecule_features=["morgan_count"], molecule_feature_size=2048
    )
    model = MoleBlendForPropertyPrediction(config).eval()
    batch = MoleBlendProcessor()(SMILES)  # a processor without the features
    with pytest.raises(ValueError, match="reads 2048 molecule features"):
        model(**batch)
    with pytest.raises(ValueError, match="molecule_feature_size"):
        MoleBlendConfig.from_preset("tiny", molecule_features=["morgan_count"])


def test_a_model_without_features_is_unchanged():
    """No features: the head reads the graph token exactly as before (same weights, same outputs), and the
    processor adds no key."""
    torch.manual_seed(0)
    model = MoleBlendForPropertyPrediction(MoleBlendConfig.from_preset("tiny", num_labels=1)).eval()
    batch = MoleBlendProcessor()(SMILES)
    assert "molecule_features" not in batch
    assert {n for n, _ in model.head.named_parameters()} == {"dense.weight", "dense.bias", "out.weight", "out.bias"}
    with torch.no_grad():
        pooled = model.moleblend(**batch).pooler_output
        reference = model.head.out(model.head.activation(model.head.dense(pooled)))
        torch.testing.assert_close(model(**batch).logits, reference)


def test_remote_code_computes_the_same_features_and_outputs(finetuned, tmp_path):
    """The generated remote code (package hidden) featurizes with the stored descriptor list and gives the
    package's outputs."""
    import shutil
    import subprocess
    import sys
    import textwrap

    from moleblend_hf.publishing.remote_code import write_remote_code

    out, _ = finetuned
    copy = tmp_path / "model"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    write_remote_code(copy)
    model = MoleBlendForPropertyPrediction.from_pretrained(out).eval()
    with torch.no_grad():
        expected = model(**MoleBlendProcessor.from_pretrained(out)(SMILES)).logits[:, 0].tolist()
    script = textwrap.dedent(f"""
        import sys
        sys.modules["moleblend_hf"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModelForSequenceClassification, AutoProcessor
        model = AutoModelForSequenceClassification.from_pretrained({str(copy)!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({str(copy)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(model).__module__
        with torch.no_grad():
            print("VALUES", model(**processor({SMILES!r})).logits[:, 0].tolist())
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("VALUES")]
    assert line, result.stderr[-3000:]
    np.testing.assert_allclose(json.loads(line[0].split(" ", 1)[1]), expected, rtol=1e-5, atol=1e-5)
