"""Fine-tuning: the property model with the Trainer, splits, metrics, the finetune job end to end."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem
from transformers import AutoConfig, AutoModelForSequenceClassification, Trainer, TrainingArguments

from moleblend_hf import MoleBlendCollator, MoleBlendConfig, MoleBlendForPropertyPrediction, MoleBlendProcessor
from moleblend_hf.cli import main
from moleblend_hf.sources.splits import balanced_scaffold_split, scaffold_of, scaffold_split
from moleblend_hf.training.metrics import binary_metrics
from tests.conftest import DATA

ESOL_LABEL = "measured log solubility in mols per litre"


def _model(problem_type="regression", num_labels=1, seed=0, **overrides) -> MoleBlendForPropertyPrediction:
    torch.manual_seed(seed)
    return MoleBlendForPropertyPrediction(
        MoleBlendConfig.from_preset(
            "tiny", problem_type=problem_type, num_labels=num_labels, use_3d_relations=False, **overrides
        )
    )


@pytest.fixture(scope="module")
def esol_features(esol):
    processor = MoleBlendProcessor(conformers="none")
    split = json.loads((DATA / "esol_split.json").read_text())
    labels = esol[ESOL_LABEL].to_numpy(np.float32)
    data = {
        name: [{**processor.featurize(esol.smiles[r]), "labels": labels[r : r + 1]} for r in rows]
        for name, rows in split.items()
    }
    return processor, data


def _trainer(model, processor, data, tmp_path, accumulation=1, batch=32, steps=60):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=5e-4,
        logging_steps=5,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_drop_last=True,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["valid"],
        data_collator=MoleBlendCollator(processor),
    )


def test_trainer_finetuning_lowers_the_validation_loss_on_esol(esol_features, tmp_path):
    processor, data = esol_features
    model = _model()
    model.set_label_statistics(torch.tensor(np.stack([d["labels"] for d in data["train"]])))
    trainer = _trainer(model, processor, data, tmp_path, steps=80)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < 0.8 * before, (before, after)


def test_trainer_with_default_arguments_on_featurized_and_raw_rows(esol_features, esol, tmp_path):
    """Featurized rows train with the Trainer's default `remove_unused_columns=True`; raw rows, whose SMILES column
    the Trainer drops, fail with a message that names the column and the fix, and train once it is applied."""
    processor, data = esol_features
    defaults = dict(max_steps=2, per_device_train_batch_size=8, report_to=[], use_cpu=True, save_strategy="no")
    model = _model()
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path / "a"), **defaults),
        train_dataset=data["train"][:32],
        data_collator=MoleBlendCollator(processor),
    )
    assert np.isfinite(trainer.train().training_loss)
    raw = [
        {"smiles": smiles, "labels": np.float32([label])}
        for smiles, label in zip(esol.smiles.head(32), esol[ESOL_LABEL].head(32))
    ]
    trainer = Trainer(
        model=_model(),
        args=TrainingArguments(output_dir=str(tmp_path / "b"), **defaults),
        train_dataset=raw,
        data_collator=MoleBlendCollator(processor),
    )
    with pytest.raises(KeyError, match="'smiles' column.*remove_unused_columns=False"):
        trainer.train()
    trainer = Trainer(
        model=_model(),
        train_dataset=raw,
        data_collator=MoleBlendCollator(processor),
        args=TrainingArguments(output_dir=str(tmp_path / "c"), remove_unused_columns=False, **defaults),
    )
    assert np.isfinite(trainer.train().training_loss)


def test_gradient_accumulation_keeps_the_loss_scale(esol_features, tmp_path):
    processor, data = esol_features
    logged = {}
    for accumulation, batch in ((1, 32), (4, 8)):
        model = _model(seed=1)
        model.set_label_statistics(torch.tensor(np.stack([d["labels"] for d in data["train"]])))
        trainer = _trainer(model, processor, data, tmp_path / str(accumulation), accumulation, batch, steps=10)
        trainer.train()
        logged[accumulation] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    ratio = np.mean(logged[4]) / np.mean(logged[1])
    assert 0.7 < ratio < 1.4, logged  # an inflated loss would be about 4x


def test_missing_labels_are_left_out_of_the_loss():
    processor = MoleBlendProcessor()
    batch = processor(["CCO", "c1ccccc1", "CC(=O)O"])
    model = _model("multi_label_classification", num_labels=3).eval()
    labels = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), 1.0, 1.0], [0.0, 0.0, float("nan")]])
    with torch.no_grad():
        out = model(**batch, labels=labels)
    present = ~torch.isnan(labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[present], labels[present])
    torch.testing.assert_close(out.loss, expected)
    regression = _model("regression", num_labels=3).eval()
    regression.config.label_mean, regression.config.label_std = [1.0, 2.0, 3.0], [2.0, 1.0, 4.0]
    values = torch.tensor([[1.0, float("nan"), 0.5], [float("nan"), 2.5, 7.0], [3.0, 0.0, float("nan")]])
    with torch.no_grad():
        out = regression(**batch, labels=values)
    standardized = (out.logits - torch.tensor([1.0, 2.0, 3.0])) / torch.tensor([2.0, 1.0, 4.0])
    target = (values - torch.tensor([1.0, 2.0, 3.0])) / torch.tensor([2.0, 1.0, 4.0])
    torch.testing.assert_close(out.loss, ((standardized - target)[~torch.isnan(values)] ** 2).mean())


def test_roc_auc_skips_tasks_with_one_class():
    labels = np.array([[1, 0, np.nan], [0, 0, 1], [1, 0, 1], [0, 0, np.nan]], dtype=float)
    logits = np.array([[2.0, 0.1, 0.3], [-1.0, 0.2, 0.1], [1.0, -0.3, 0.5], [-2.0, 0.0, 0.0]])
    metrics = binary_metrics(labels, logits)
    assert metrics["tasks_scored"] == 1 and metrics["roc_auc"] == 1.0  # task 2 all 0, task 3 all 1 (NaN dropped)


def test_regression_outputs_original_units_after_save_and_load(tmp_path):
    processor = MoleBlendProcessor()
    batch = processor(["CCO", "c1ccccc1O"])
    model = _model().eval()
    model.set_label_statistics(torch.tensor([[-3.0], [-1.0], [2.0], [0.5]]))
    mean, std = model.config.label_mean[0], model.config.label_std[0]
    with torch.no_grad():
        raw = model.head(model.moleblend(**batch).pooler_output)
        logits = model(**batch).logits
    torch.testing.assert_close(logits, raw * std + mean)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.label_mean == [mean] and loaded.config.label_std == [std]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, logits)


def test_loading_a_pretraining_checkpoint_replaces_the_heads(tmp_path):
    from moleblend_hf import MoleBlendForPreTraining

    torch.manual_seed(0)
    pretrained = MoleBlendForPreTraining(MoleBlendConfig.from_preset("tiny"))
    pretrained.save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=2, problem_type="multi_label_classification"
    )
    assert isinstance(model, MoleBlendForPropertyPrediction)
    for name, tensor in pretrained.moleblend.state_dict().items():
        torch.testing.assert_close(model.moleblend.state_dict()[name], tensor)


def test_a_head_is_untrained_until_trained_or_loaded_with_its_weights(tmp_path):
    from moleblend_hf import MoleBlendForPreTraining

    torch.manual_seed(0)
    MoleBlendForPreTraining(MoleBlendConfig.from_preset("tiny")).save_pretrained(tmp_path / "pretrained")
    model = MoleBlendForPropertyPrediction.from_pretrained(
        tmp_path / "pretrained", num_labels=1, problem_type="regression"
    )
    assert model.has_trained_head is False  # the checkpoint had no head: transformers initialised it at random
    batch = MoleBlendProcessor()(["CCO", "c1ccccc1O"])
    loss = model(**batch, labels=torch.tensor([[0.5], [1.5]])).loss
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert model.has_trained_head is True
    model.save_pretrained(tmp_path / "tuned")
    assert MoleBlendForPropertyPrediction.from_pretrained(tmp_path / "tuned").has_trained_head is True
    reloaded, info = MoleBlendForPropertyPrediction.from_pretrained(
        tmp_path / "pretrained", num_labels=1, output_loading_info=True
    )
    assert reloaded.has_trained_head is False and "head.out.weight" in info["missing_keys"]
    assert MoleBlendForPropertyPrediction(MoleBlendConfig.from_preset("tiny", num_labels=1)).has_trained_head


def test_scaffold_split_is_deterministic_scaffold_disjoint_and_matches_moleculenet(esol):
    smiles = esol["smiles"].tolist()
    split = scaffold_split(smiles)
    assert split == scaffold_split(smiles)
    shipped = json.loads((DATA / "esol_split.json").read_text())  # computed by the data build (DeepChem order)
    assert split == {name: sorted(rows) for name, rows in shipped.items()}
    scaffolds = {name: {scaffold_of(smiles[r], r) for r in rows} for name, rows in split.items()}
    assert not (scaffolds["train"] & scaffolds["valid"]) and not (scaffolds["train"] & scaffolds["test"])
    assert not (scaffolds["valid"] & scaffolds["test"])
    balanced = [balanced_scaffold_split(smiles, seed) for seed in (0, 1)]
    assert balanced[0] == balanced_scaffold_split(smiles, 0) and balanced[0] != balanced[1]
    sets = {name: {scaffold_of(smiles[r], r) for r in rows} for name, rows in balanced[1].items()}
    assert not (sets["train"] & sets["test"])


def test_finetune_cli_keeps_predictions_aligned_with_input_rows(tmp_path, bbbp):
    frame = bbbp.head(120).copy()
    frame.loc[[7, 60], "smiles"] = ["not_a_smiles(", "[*]C"]
    source = tmp_path / "bbbp_small.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(source),
                "--label-columns",
                "p_np",
                "--split",
                "random",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problem_type"] == "multi_label_classification" and metrics["skipped_rows"] == 2
    assert 0.0 <= metrics["test"]["roc_auc"] <= 1.0
    split = json.loads((out / "split.json").read_text())
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert predictions["row"].tolist() == split["test"]
    assert (predictions["molecule"] == frame["smiles"].iloc[split["test"]].to_numpy()).all()
    assert (predictions["p_np"] == frame["p_np"].iloc[split["test"]].to_numpy()).all()
    skipped = pd.read_csv(out / "skipped_rows.csv")
    assert skipped["row"].tolist() == [7, 60]
    for row in (7, 60):
        if row in split["test"]:
            line = predictions.set_index("row").loc[row]
            assert np.isnan(line["probability_p_np"]) and isinstance(line["skipped_reason"], str)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert reloaded.config.problem_type == "multi_label_classification"
    assert not (out / "training_args.bin").exists()


def test_pipelines_predict_and_embed_smiles(tmp_path):
    from transformers import pipeline

    model = _model("multi_label_classification", num_labels=2, seed=3).eval()
    model.save_pretrained(tmp_path)
    processor = MoleBlendProcessor(conformers="none")
    processor.save_pretrained(tmp_path)
    predict = pipeline("molecule-property-prediction", model=str(tmp_path))
    result = predict(["CCO", "c1ccccc1O"])
    with torch.no_grad():
        expected = torch.sigmoid(model(**processor(["CCO", "c1ccccc1O"])).logits)
    assert [[round(r["score"], 5) for r in row] for row in result] == [
        [round(float(p), 5) for p in row] for row in expected
    ]
    embed = pipeline("molecule-feature-extraction", model=str(tmp_path))
    with torch.no_grad():
        graph = model.moleblend(**processor(["CCO"])).pooler_output[0]
    np.testing.assert_allclose(embed("CCO"), graph.numpy(), atol=1e-5)
    assert len(embed("CCO", atoms=True)["atoms"]) == 3


def test_pipelines_batch_skip_bad_rows_and_name_the_right_index(tmp_path, esol):
    from transformers import pipeline

    from moleblend_hf import MoleculeError

    model = _model("regression", num_labels=1, seed=4).eval()
    model.save_pretrained(tmp_path)
    MoleBlendProcessor(conformers="none").save_pretrained(tmp_path)
    molecules = esol.smiles.head(19).tolist()
    molecules[5], molecules[12] = "not_a_smiles(", "[*]CC"
    predict = pipeline("molecule-property-prediction", model=str(tmp_path))
    batched = predict(molecules, batch_size=8, errors="skip")
    assert [s.index for s in predict.skipped] == [5, 12]
    assert batched[5] is None and batched[12] is None and len(batched) == 19
    one_by_one = [predict(m, errors="skip") for m in molecules]
    for a, b in zip(batched, one_by_one):
        assert (a is None and b is None) or a[0]["value"] == pytest.approx(b[0]["value"], abs=1e-5)
    clean = [m for i, m in enumerate(molecules) if i not in (5, 12)]
    with pytest.raises(MoleculeError, match="13") as raised:
        predict(clean[:13] + ["not_a_smiles("], batch_size=4)  # the bad molecule is the 14th input
    assert raised.value.index == 13
    # batches hold molecules of similar atom counts: less padding than batches in input order
    padded = []
    real_forward = predict.forward
    predict.forward = lambda inputs, **kw: (
        padded.append(max(f["num_atoms"] for f in inputs["features"]) * len(inputs["features"]))
        or real_forward(inputs, **kw)
    )
    predict(esol.smiles.head(64).tolist(), batch_size=8)
    in_order = sum(
        max(MoleBlendProcessor().featurize(m)["num_atoms"] for m in esol.smiles[i : i + 8]) * 8 for i in range(0, 64, 8)
    )
    assert len(padded) == 8 and sum(padded) < 0.8 * in_order
    embed = pipeline("molecule-feature-extraction", model=str(tmp_path))
    vectors = embed(molecules[:6], batch_size=4, errors="skip")
    assert vectors[5] is None
    np.testing.assert_allclose(vectors[2], embed(molecules[2]), atol=1e-5)


def test_string_labels_train_and_the_config_carries_the_class_names(tmp_path, bbbp):
    frame = bbbp.head(120).copy()
    frame["barrier"] = np.where(frame["p_np"] == 1, "BBB+", "BBB-")
    data = tmp_path / "words.csv"
    frame.drop(columns=["p_np"]).to_csv(data, index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "barrier",
                "--split",
                "random",
                "--max-steps",
                "3",
                "--batch-size",
                "16",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    config = AutoConfig.from_pretrained(out)
    assert config.problem_type == "multi_label_classification"
    assert config.id2label == {0: "barrier=BBB+"}  # the value that reads as positive is class 1
    three = frame.assign(barrier=np.where(frame.index % 3 == 0, "low", np.where(frame.index % 3 == 1, "mid", "high")))
    three.to_csv(data, index=False)
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "barrier",
                "--split",
                "random",
                "--max-steps",
                "2",
                "--batch-size",
                "16",
                "--output",
                str(tmp_path / "three"),
            ]
        )
        == 0
    )
    config = AutoConfig.from_pretrained(tmp_path / "three")
    assert config.problem_type == "single_label_classification"
    assert config.id2label == {0: "high", 1: "low", 2: "mid"} and config.label2id["mid"] == 2
    predictions = pd.read_csv(tmp_path / "three" / "test_predictions.csv")
    assert {"probability_high", "probability_low", "probability_mid"} <= set(predictions.columns)


def test_random_split_keeps_duplicate_molecules_in_one_split_and_finetune_reports_them(tmp_path, esol):
    from moleblend_hf.sources.files import canonical_smiles
    from moleblend_hf.sources.splits import random_split

    smiles = esol.smiles.head(200).tolist()
    # the same molecules again, written differently: rooted at their last atom, not canonical
    mols = [Chem.MolFromSmiles(s) for s in smiles[:60]]
    again = [Chem.MolToSmiles(m, rootedAtAtom=m.GetNumAtoms() - 1, canonical=False) for m in mols]
    rows = smiles + again + ["not a smiles(", "not a smiles("]
    for seed in range(5):
        split = random_split(rows, seed)
        where = {}
        for name, members in split.items():
            for row in members:
                key = canonical_smiles(rows[row]) or f"row {row}"
                assert where.setdefault(key, name) == name, (seed, rows[row])
        assert sorted(sum(split.values(), [])) == list(range(len(rows)))
        assert abs(len(split["test"]) - 0.1 * len(rows)) <= 3
    frame = esol.head(200).copy()
    frame = pd.concat([frame, frame.head(60).assign(smiles=again)], ignore_index=True)
    frame.to_csv(tmp_path / "dups.csv", index=False)
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "dups.csv"),
                "--label-columns",
                ESOL_LABEL,
                "--split",
                "random",
                "--max-steps",
                "1",
                "--output-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())["duplicates"]
    assert report == {"molecules": 60, "rows": 120, "across_splits": 0}


def test_mixed_and_one_class_label_columns_are_refused_before_training(tmp_path, bbbp, capsys):
    frame = bbbp.head(60).copy()
    frame["mixed"] = frame["p_np"].astype(object)
    frame.loc[[4, 9], "mixed"] = "active"
    frame["single"] = 1
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    assert main(["finetune", str(data), "--label-columns", "mixed", "--output", str(tmp_path / "a")]) == 1
    assert re.search(r"mixes numbers and words.*'active'.*rows \[4, 9\]", capsys.readouterr().err)
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "single",
                "--task",
                "classification",
                "--output",
                str(tmp_path / "b"),
            ]
        )
        == 1
    )
    assert "single class" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before touching the output


@pytest.mark.parametrize("bad", ["inf", "-inf", "1e300"])
def test_labels_beyond_float32_are_refused_with_their_rows_before_anything_is_written(tmp_path, esol, capsys, bad):
    """inf or 1e300 (beyond float32) would train with a NaN loss; NaN (an empty cell) stays a missing label."""
    lines = esol.head(40)[["smiles", "measured log solubility in mols per litre"]].to_csv(index=False).splitlines()
    lines[1 + 7] = lines[1 + 7].rsplit(",", 1)[0] + f",{bad}"
    lines[1 + 12] = lines[1 + 12].rsplit(",", 1)[0] + ","  # missing: allowed
    data = tmp_path / "labels.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(data),
                "--label-columns",
                "measured log solubility in mols per litre",
                "--split",
                "random",
                "--max-steps",
                "1",
                "--output-dir",
                str(out),
            ]
        )
        == 1
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "(row 7)" in error and "float32" in error
    assert repr(float(bad)) in error
    assert not out.exists()  # no run.json, no split.json


def test_finetune_into_a_used_directory_is_refused(tmp_path, bbbp, capsys):
    source = tmp_path / "bbbp.csv"
    bbbp.head(80).to_csv(source, index=False)
    out = tmp_path / "run"
    common = [
        "finetune",
        str(source),
        "--label-columns",
        "p_np",
        "--split",
        "random",
        "--max-steps",
        "2",
        "--output-dir",
        str(out),
    ]
    assert main(common) == 0
    before = (out / "metrics.json").read_bytes(), (out / "split.json").read_bytes()
    assert main([*common, "--seed", "1"]) == 1 and "--overwrite" in capsys.readouterr().err
    assert ((out / "metrics.json").read_bytes(), (out / "split.json").read_bytes()) == before
    assert main([*common, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "split.json").read_text())["seed"] == 1


def test_seed_ensemble_predicts_with_mean_and_std_and_keeps_bad_rows_aligned(tmp_path, esol):
    """`finetune --seeds` writes an ensemble; `predict` on a CSV with bad rows keeps one row per input row in order,
    with the members' mean and standard deviation; equal to predicting with the member directories listed."""
    source = tmp_path / "esol.csv"
    esol.head(120).to_csv(source, index=False)
    ensemble = tmp_path / "ensemble"
    label = "measured log solubility in mols per litre"
    assert (
        main(
            [
                "finetune",
                str(source),
                "--label-columns",
                label,
                "--split",
                "random",
                "--max-steps",
                "4",
                "--seeds",
                "0",
                "1",
                "--output-dir",
                str(ensemble),
            ]
        )
        == 0
    )
    manifest = json.loads((ensemble / "ensemble.json").read_text())
    assert manifest["members"] == ["seed-0", "seed-1"]
    splits = [json.loads((ensemble / m / "split.json").read_text()) for m in manifest["members"]]
    assert all(s[part] == splits[0][part] for s in splits for part in ("train", "valid", "test"))  # one shared split
    metrics = json.loads((ensemble / "metrics.json").read_text())
    assert set(metrics["members"]) == {"seed-0", "seed-1"} and "rmse" in metrics["test"]
    new = pd.DataFrame({"smiles": ["CCO", "not_a_smiles(", "c1ccccc1O", None, "CC(=O)O"], "name": list("abcde")})
    data = tmp_path / "new.csv"
    new.to_csv(data, index=False)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(data), "--model", str(ensemble), "--output", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert table["row"].tolist() == [0, 1, 2, 3, 4]
    column = f"prediction_{label}"
    assert table[column].isna().tolist() == [False, True, False, True, False]
    assert table["skipped_reason"].notna().tolist() == [False, True, False, True, False]
    assert (table[f"std_{label}"].dropna() > 0).all()
    listed = tmp_path / "listed.csv"
    assert (
        main(
            [
                "predict",
                str(data),
                "--model",
                str(ensemble / "seed-0"),
                str(ensemble / "seed-1"),
                "--output",
                str(listed),
                "--no-progress",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    # listed members carry no calibration: the same columns less the calibrated ones
    pd.testing.assert_frame_equal(
        pd.read_csv(listed), table[[c for c in table.columns if not c.startswith(("calibrated_", "lower_", "upper_"))]]
    )
    assert f"calibrated_std_{label}" in table.columns
    assert main(["predict", str(data), "--model", str(ensemble), "--output", str(out), "--no-progress"]) == 1
    # members are the models finetune saved: the mean is the mean of the members' own predictions
    from moleblend_hf import MoleBlendProcessor

    members = [AutoModelForSequenceClassification.from_pretrained(ensemble / m).eval() for m in manifest["members"]]
    batch = MoleBlendProcessor.from_pretrained(ensemble / "seed-0")(["CCO"])
    with torch.no_grad():
        expected = float(torch.stack([m(**batch).logits for m in members]).mean())
    assert table[column][0] == pytest.approx(expected, abs=1e-5)
    # the pipeline takes the ensemble directory too: same mean and standard deviation as predict
    import moleblend_hf

    pipe = moleblend_hf.pipeline("molecule-property-prediction", model=str(ensemble))
    rows = pipe(new["smiles"].tolist(), batch_size=2, errors="skip")
    assert [row is None for row in rows] == [False, True, False, True, False]
    assert [row[0]["value"] for row in rows if row] == pytest.approx(table[column].dropna().tolist(), abs=1e-5)
    assert [row[0]["std"] for row in rows if row] == pytest.approx(table[f"std_{label}"].dropna().tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="ensemble of 2 fine-tuned models"):
        moleblend_hf.pipeline("molecule-feature-extraction", model=str(ensemble))


def test_kfold_ensemble_members_share_the_test_rows(tmp_path, bbbp):
    source = tmp_path / "bbbp.csv"
    frame = bbbp.head(90).copy()
    frame["p_np"] = frame["p_np"].map({1: "BBB+", 0: "BBB-"})
    frame.to_csv(source, index=False)
    out = tmp_path / "kfold"
    assert (
        main(
            [
                "finetune",
                str(source),
                "--label-columns",
                "p_np",
                "--split",
                "random",
                "--max-steps",
                "2",
                "--kfold",
                "3",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    splits = [json.loads((out / f"fold-{k}" / "split.json").read_text()) for k in range(3)]
    assert len({tuple(s["test"]) for s in splits}) == 1
    valids = [set(s["valid"]) for s in splits]
    assert not valids[0] & valids[1] and not valids[1] & valids[2]
    predictions = tmp_path / "p.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1N"]}).to_csv(tmp_path / "x.csv", index=False)
    assert (
        main(["predict", str(tmp_path / "x.csv"), "--model", str(out), "--output", str(predictions), "--no-progress"])
        == 0
    )
    table = pd.read_csv(predictions)
    assert {"probability_p_np=BBB+", "std_p_np=BBB+"} <= set(table.columns)


def test_group_by_size_batches_similar_molecules_and_keeps_test_predictions_aligned(tmp_path, esol):
    """`--group-by-size`: training batches with less padding than the shuffle, every molecule once per epoch; the
    written test predictions are still those of each row's own molecule (evaluation keeps the input order)."""
    from moleblend_hf.training.finetune import FeatureDataset, MoleculeTrainer

    processor = MoleBlendProcessor(conformers="none")
    features = [processor.featurize(s) for s in esol.smiles[:256]]
    dataset = FeatureDataset(features, np.zeros((256, 1), np.float32), list(range(256)))
    sizes = np.array(dataset.sizes())
    padding = {}
    for grouped in (False, True):
        args = TrainingArguments(
            output_dir=str(tmp_path / "t"),
            per_device_train_batch_size=16,
            report_to=[],
            use_cpu=True,
            remove_unused_columns=False,
            seed=0,
        )
        trainer = MoleculeTrainer(
            model=_model(),
            args=args,
            train_dataset=dataset,
            group_by_size=grouped,
            data_collator=MoleBlendCollator(processor),
        )
        order = list(trainer._get_train_sampler())
        assert sorted(order) == list(range(256))
        batches = [sizes[order[i : i + 16]] for i in range(0, 256, 16)]
        padding[grouped] = sum(int(b.max()) * len(b) - int(b.sum()) for b in batches)
    assert padding[True] < 0.5 * padding[False]

    source = tmp_path / "esol.csv"
    esol.head(120).to_csv(source, index=False)
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                str(source),
                "--label-columns",
                ESOL_LABEL,
                "--split",
                "random",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--group-by-size",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    predictions = pd.read_csv(out / "test_predictions.csv")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    saved = MoleBlendProcessor.from_pretrained(out)
    with torch.no_grad():
        expected = model(**saved(predictions["molecule"].tolist())).logits[:, 0].numpy()
    np.testing.assert_allclose(predictions[f"prediction_{ESOL_LABEL}"].to_numpy(), expected, atol=1e-4)
