"""The pretrained checkpoint shipped in the package: loadable by every Auto class and by its short name, small,
described truthfully by its card, and a working starting point for fine-tuning and embedding."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification, AutoProcessor

import moleblend_hf
from moleblend_hf import (
    DEFAULT_PRETRAINED,
    MoleBlendForPreTraining,
    MoleBlendForPropertyPrediction,
    MoleBlendModel,
    resolve_model,
)
from moleblend_hf.cli import main
from moleblend_hf.publishing.checkpoints import SHIPPED

DIRECTORY = SHIPPED[DEFAULT_PRETRAINED]


def test_the_checkpoint_is_small_safetensors_with_config_processor_and_card():
    weights = DIRECTORY / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    for name in ("config.json", "preprocessor_config.json", "README.md"):
        assert (DIRECTORY / name).exists(), name
    assert not list(DIRECTORY.glob("*.bin")) and not list(DIRECTORY.glob("*.pt"))  # nothing to unpickle
    with safe_open(weights, "pt") as handle:
        assert any(key.startswith("spd_head.") for key in handle.keys())  # the pretraining heads are included


def test_short_name_and_path_resolve_to_the_same_directory():
    assert resolve_model(DEFAULT_PRETRAINED) == str(DIRECTORY)
    assert resolve_model(str(DIRECTORY)) == str(DIRECTORY)
    assert resolve_model("someone/some-hub-model") == "someone/some-hub-model"


def test_loads_with_every_auto_class_and_the_encoders_agree():
    path = resolve_model(DEFAULT_PRETRAINED)
    encoder = AutoModel.from_pretrained(path).eval()
    pretraining = AutoModelForPreTraining.from_pretrained(path).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, problem_type="multi_label_classification"
    ).eval()
    assert isinstance(encoder, MoleBlendModel) and isinstance(pretraining, MoleBlendForPreTraining)
    assert isinstance(classifier, MoleBlendForPropertyPrediction)
    assert pretraining.config.blend_relations is True
    batch = AutoProcessor.from_pretrained(path)(["CC(=O)Nc1ccc(O)cc1", "c1ccc2[nH]ccc2c1"])
    with torch.no_grad():
        reference = encoder(**batch).last_hidden_state
        torch.testing.assert_close(pretraining.moleblend(**batch).last_hidden_state, reference)
        torch.testing.assert_close(classifier.moleblend(**batch).last_hidden_state, reference)
    assert torch.isfinite(reference).all()


def test_the_card_agrees_with_the_config():
    config = json.loads((DIRECTORY / "config.json").read_text())
    card = (DIRECTORY / "README.md").read_text()
    architecture = re.search(
        r"(\d+) post-LN Transformer layers, hidden size (\d+), (\d+) attention heads, "
        r"feed-forward (\d+)",
        card,
    )
    assert architecture is not None
    assert [int(v) for v in architecture.groups()] == [
        config["num_hidden_layers"],
        config["hidden_size"],
        config["num_attention_heads"],
        config["intermediate_size"],
    ]
    assert f"{config['num_gaussian_kernels']} Gaussian kernels" in card
    assert "moleblend pretrain" in card and "--preset mini" in card  # the command that reproduces it
    assert "| bbbp |" in card  # measured downstream results


def test_the_card_is_generated_from_the_stored_results():
    from recipes.package_checkpoint import shipped_card

    assert (DIRECTORY / "README.md").read_text() == shipped_card(), (
        "the card differs from its generation: python -m recipes.package_checkpoint"
    )


def test_the_cards_table_equals_results_json():
    from recipes.package_checkpoint import BENCHMARK

    stored = json.loads(BENCHMARK.read_text())
    lines = (DIRECTORY / "README.md").read_text().splitlines()
    columns = stored["columns"]

    def cells(label: str) -> list[str]:
        line = next(line for line in lines if line.startswith(f"| {label} |"))
        return [cell.strip() for cell in line.strip("|").split("|")][2 : 2 + len(columns)]

    assert len(stored["table"]) >= 10
    for task, row in stored["table"].items():
        for column, cell in zip(columns, cells(task), strict=True):
            value = row[column]
            assert cell == "—" if value is None else cell.startswith(f"{value['mean']:.3f} ± {value['std']:.3f}"), (
                task,
                column,
                cell,
            )
    assert cells("**mean rank** (1 = best)") == [f"{stored['mean_rank'][c]:.2f}" for c in columns]


def test_a_few_finetuning_steps_from_the_short_name(tmp_path, esol):
    data = tmp_path / "esol.csv"
    esol.head(80).to_csv(data, index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "measured log solubility in mols per litre",
                "--model",
                DEFAULT_PRETRAINED,
                "--split",
                "random",
                "--max-steps",
                "4",
                "--freeze-encoder-epochs",
                "0",  # all 4 steps fall in the first epoch, which by default trains the head alone
                "--batch-size",
                "16",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["rmse"] > 0 and metrics["arguments"]["model"] == DEFAULT_PRETRAINED
    tuned = MoleBlendForPropertyPrediction.from_pretrained(out)
    shipped = MoleBlendModel.from_pretrained(DIRECTORY)
    name = "layers.0.self_attn.out_proj.weight"
    start, now = shipped.state_dict(), tuned.moleblend.state_dict()
    assert set(now) <= set(start) and not torch.equal(now[name], start[name])  # trained from it, not replaced


def test_embed_and_pipeline_take_the_short_name(tmp_path):
    source = tmp_path / "mols.smi"
    source.write_text("CCO\nc1ccccc1O\n")
    assert (
        main(
            [
                "embed",
                "--input",
                str(source),
                "--model",
                DEFAULT_PRETRAINED,
                "--output",
                str(tmp_path / "e"),
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_parquet(tmp_path / "e").sort_values("row")
    embed = moleblend_hf.pipeline("molecule-feature-extraction", model=DEFAULT_PRETRAINED)
    assert embed("CCO") == pytest.approx(list(table.iloc[0]["embedding"]), abs=1e-5)


def test_predict_and_the_property_pipeline_refuse_the_pretraining_checkpoint_by_name(tmp_path, capsys):
    """It has no trained head: its 'predictions' would be a randomly initialised head's (negative
    probabilities, different at every run)."""
    data = tmp_path / "x.csv"
    data.write_text("smiles\nCCO\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(data), "--model", DEFAULT_PRETRAINED, "--output", str(out), "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{DEFAULT_PRETRAINED}: no trained property head" in error
    assert not out.exists()
    with pytest.raises(ValueError, match="no trained property head"):
        moleblend_hf.pipeline("molecule-property-prediction", model=DEFAULT_PRETRAINED)


def test_the_shipped_remote_code_is_a_fresh_generation_from_the_package():
    """Fails when the package's modeling/processing code changed and the shipped copy was not regenerated:
    python -c "from moleblend_hf.publishing.remote_code import write_remote_code as w; from moleblend_hf.publishing.checkpoints import SHIPPED; [w(d) for d in SHIPPED.values()]"
    """  # noqa: E501 - the regeneration command stays on one line, to be copied whole
    from moleblend_hf.publishing.remote_code import needed_modules, remote_code_files

    expected = remote_code_files(needed_modules(DIRECTORY))
    assert sorted(path.name for path in DIRECTORY.glob("*.py")) == sorted(expected)
    for name, content in expected.items():
        assert (DIRECTORY / name).read_bytes() == content, f"{name} differs from the package source: regenerate"
        assert content.startswith(b"# Generated by moleblend_hf from moleblend_hf/") and b"do not edit" in content


@pytest.mark.slow
def test_the_shipped_checkpoint_loads_without_the_package_with_todays_behaviour(tmp_path):
    """trust_remote_code=True from a copy, the package hidden: padding rows of last_hidden_state are zeros, and the
    processor refuses an over-long SMILES before parsing it (max_text_length)."""
    import shutil
    import subprocess
    import sys
    import textwrap

    copy = tmp_path / "shipped"
    shutil.copytree(DIRECTORY, copy)
    script = textwrap.dedent(f"""
        import sys, time
        sys.modules["moleblend_hf"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({str(copy)!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({str(copy)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(model).__module__
        batch = processor(["CCO", "CC(=O)Nc1ccc(O)cc1"])
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        padding = batch["attention_mask"][0] == 0
        assert padding.any() and hidden[0, 1:][padding].abs().max().item() == 0.0, hidden[0, 1:][padding].abs().max()
        module = sys.modules[type(processor).__module__]
        start = time.perf_counter()
        try:
            processor("C" * 2_000_000)
        except module.MoleculeError as error:
            assert "max_text_length" in str(error), error
        else:
            raise AssertionError("an over-long SMILES was accepted")
        print("REMOTE_OK", time.perf_counter() - start)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]
