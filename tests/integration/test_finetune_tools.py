"""finetune's split sizes and selection metric, figures and their CSVs, hyperparameter search, calibrated ensemble
uncertainty and conformal intervals, end to end through the CLI; pretraining's loss curves."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import auc

from moleblend_hf.cli import main
from tests.conftest import DATA

ESOL_LABEL = "measured log solubility in mols per litre"
TASK = ESOL_LABEL  # column suffix of prediction_/lower_/upper_


@pytest.fixture()
def esol_small(tmp_path, esol):
    path = tmp_path / "esol.csv"
    esol.head(60).to_csv(path, index=False)
    return path


def _finetune(data, out, *flags, label=ESOL_LABEL):
    return main(
        [
            "finetune",
            str(data),
            "--label-columns",
            label,
            "--split",
            "random",
            "--batch-size",
            "16",
            "--output-dir",
            str(out),
            *flags,
        ]
    )


def test_split_sizes_metric_curves_parity_and_conformal_intervals(tmp_path, esol_small):
    out = tmp_path / "run"
    assert (
        _finetune(
            esol_small,
            out,
            "--split-sizes",
            "0.5",
            "0.25",
            "0.25",
            "--metric",
            "mae",
            "--epochs",
            "3",
            "--conformal-alpha",
            "0.2",
        )
        == 0
    )
    split = json.loads((out / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "valid", "test")] == [30, 15, 15]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"]["sizes"] == [0.5, 0.25, 0.25]
    assert (metrics["selection_metric"], metrics["greater_is_better"]) == ("mae", False)
    # learning curves: the CSV is metrics.json's "curves"; the chosen checkpoint is the epoch of least validation MAE
    curves = pd.read_csv(out / "learning_curves.csv")
    assert list(curves.columns) == ["epoch", "train_loss", "valid_loss", "valid_mae"] and len(curves) == 3
    np.testing.assert_allclose(curves["valid_mae"], metrics["curves"]["valid_mae"])
    np.testing.assert_allclose(curves["train_loss"], metrics["curves"]["train_loss"])
    assert metrics["valid"]["mae"] == pytest.approx(curves["valid_mae"].min(), rel=1e-5)
    # parity: the plotted points are the test predictions, and their RMSE / MAE the reported ones
    parity = pd.read_csv(out / "test_parity.csv")
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert parity["row"].tolist() == predictions["row"].tolist()
    np.testing.assert_allclose(parity["prediction"], predictions[f"prediction_{TASK}"], rtol=1e-6)
    errors = parity["prediction"] - parity["label"]
    assert np.sqrt(np.mean(errors**2)) == pytest.approx(metrics["test"]["rmse"], rel=1e-5)
    assert np.mean(np.abs(errors)) == pytest.approx(metrics["test"]["mae"], rel=1e-5)
    for figure in ("learning_curves.png", "test_parity.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    # conformal: mean ± q, q from the validation residuals; coverage reported on both splits
    calibration = json.loads((out / "calibration.json").read_text())
    (q,) = calibration["conformal"]["quantiles"]
    np.testing.assert_allclose(predictions[f"upper_{TASK}"] - predictions[f"prediction_{TASK}"], q, rtol=1e-5)
    np.testing.assert_allclose(predictions[f"prediction_{TASK}"] - predictions[f"lower_{TASK}"], q, rtol=1e-5)
    inside = (predictions[TASK] >= predictions[f"lower_{TASK}"]) & (predictions[TASK] <= predictions[f"upper_{TASK}"])
    assert metrics["calibration"]["test"]["conformal"]["coverage"] == pytest.approx(inside.mean())
    assert metrics["calibration"]["valid"]["conformal"]["coverage"] >= 0.8
    # predict reads the calibration beside the model
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O"]}).to_csv(new, index=False)
    assert main(["predict", str(new), "--model", str(out), "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(table[f"upper_{TASK}"] - table[f"lower_{TASK}"], 2 * q, rtol=1e-5)


def test_split_sizes_without_a_test_fraction_train_and_validate_only(tmp_path, esol_small):
    out = tmp_path / "run"
    assert _finetune(esol_small, out, "--split-sizes", "0.75", "0.25", "0", "--epochs", "1") == 0
    split = json.loads((out / "split.json").read_text())
    assert [len(split[k]) for k in ("train", "valid", "test")] == [45, 15, 0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] == {} and "rmse" in metrics["valid"]
    assert pd.read_csv(out / "test_predictions.csv").empty and not (out / "test_parity.csv").exists()


def test_classification_metric_choice_and_roc_pr_curves(tmp_path, bbbp):
    data = tmp_path / "bbbp.csv"
    bbbp.head(100).to_csv(data, index=False)
    out = tmp_path / "run"
    assert _finetune(data, out, "--metric", "pr_auc", "--epochs", "2", label="p_np") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["selection_metric"], metrics["greater_is_better"]) == ("pr_auc", True)
    assert "valid_pr_auc" in pd.read_csv(out / "learning_curves.csv").columns
    curves = pd.read_csv(out / "test_roc_pr.csv")
    roc = curves[curves.curve == "roc"]
    assert auc(roc["x"], roc["y"]) == pytest.approx(metrics["test"]["roc_auc"], abs=1e-6)
    assert set(curves.curve) == {"roc", "pr"} and (out / "test_roc_pr.png").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--split-sizes", "0.5", "0.5", "0.5"], "summing to 1"),
        (["--split-sizes", "0.9", "0", "0.1"], "train and valid > 0"),
        (["--split-sizes", "0.9", "0.1"], "three fractions"),
        (["--split", "file", "--split-file", "s.json", "--split-sizes", "0.8", "0.1", "0.1"], "not --split file"),
        (["--metric", "f1"], "invalid choice"),
        (["--search-space", "{}"], "only with --search-trials"),
        (["--search-trials", "2", "--search-space", '{"depth": {"value": 3}}'], "'depth'"),
        (["--conformal-alpha", "1.5"], "between 0 and 1"),
        (["--freeze-encoder-epochs", "-1"], "must be >= 0"),
        (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    ],
)
def test_bad_split_sizes_metric_and_search_flags_exit_2(tmp_path, esol_small, capsys, flags, message):
    with pytest.raises(SystemExit) as raised:
        _finetune(esol_small, tmp_path / "run", *flags)
    assert raised.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_metric_not_reported_for_the_task_is_refused_before_training(tmp_path, esol_small, capsys, monkeypatch):
    assert _finetune(esol_small, tmp_path / "run", "--metric", "roc_auc") == 1
    assert "choose one of rmse, mae, r2, loss" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(SystemExit) as raised:
        _finetune(esol_small, tmp_path / "run", "--search-trials", "2")
    assert raised.value.code == 2
    assert "pip install 'moleblend-hf[search]'" in capsys.readouterr().err


def _encoder_weights(directory) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    weights = load_file(str(directory / "model.safetensors"))
    return {k.removeprefix("moleblend."): v for k, v in weights.items() if not k.startswith("head.")}


@pytest.mark.parametrize("frozen_epochs", [1, 3])
def test_frozen_encoder_epochs_train_the_head_alone_first(tmp_path, esol_small, frozen_epochs, caplog):
    import torch

    from moleblend_hf import MoleBlendConfig, MoleBlendModel

    torch.manual_seed(0)
    MoleBlendModel(MoleBlendConfig.from_preset("tiny")).save_pretrained(tmp_path / "pretrained")
    pretrained = _encoder_weights(tmp_path / "pretrained")
    out = tmp_path / "run"
    flags = ("--model", str(tmp_path / "pretrained"), "--epochs", "2", "--patience", "5")
    with caplog.at_level("WARNING", logger="moleblend_hf.training.property_trainer"):
        assert _finetune(esol_small, out, *flags, "--freeze-encoder-epochs", str(frozen_epochs)) == 0
    assert ("a linear probe" in caplog.text) == (frozen_epochs >= 2)  # said when the encoder never trains
    first, last = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    heads = [_head_weights(c) for c in (first, last)]
    assert not np.array_equal(*heads)  # the head trains in every epoch
    after_first, after_last = _encoder_weights(first), _encoder_weights(last)
    assert len(after_first) > 20 and set(after_first) <= set(pretrained)  # (2D relations: no 3D encoder)
    for name, value in after_first.items():
        np.testing.assert_array_equal(value, pretrained[name])  # epoch 1: the encoder is frozen
    changed = [not np.array_equal(v, pretrained[n]) for n, v in after_last.items()]
    if frozen_epochs >= 2:  # frozen for the whole run: a linear probe on the pretrained features
        assert not any(changed)
    else:  # thawed for epoch 2
        assert sum(changed) > len(changed) // 2


def test_a_moving_average_of_the_weights_is_what_is_chosen_saved_and_scored(tmp_path, esol_small):
    out = tmp_path / "run"
    assert _finetune(esol_small, out, "--epochs", "3", "--patience", "5", "--ema-decay", "0.9") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arguments"]["ema_decay"] == 0.9
    # the final model scores on validation what the best epoch's evaluation logged: the checkpoint kept is the
    # average that was evaluated, not the weights being trained
    assert metrics["valid"]["rmse"] == pytest.approx(min(metrics["curves"]["valid_rmse"]), rel=1e-5)
    plain = tmp_path / "plain"
    assert _finetune(esol_small, plain, "--epochs", "3", "--patience", "5") == 0
    assert json.loads((plain / "metrics.json").read_text())["curves"]["valid_rmse"] != metrics["curves"]["valid_rmse"]


def test_a_model_from_scratch_trains_whole_from_the_start(tmp_path, esol_small, caplog):
    with caplog.at_level("WARNING", logger="moleblend_hf.training.property_trainer"):
        assert _finetune(esol_small, tmp_path / "run", "--epochs", "1", "--freeze-encoder-epochs", "3") == 0
    assert "linear probe" not in caplog.text  # no pretrained features to probe: the option does not apply


def _head_weights(directory) -> np.ndarray:
    from safetensors.numpy import load_file

    weights = load_file(str(directory / "model.safetensors"))
    return np.concatenate([weights[k].ravel() for k in sorted(weights) if k.startswith("head.")])


def test_hyperparameter_search_writes_trials_and_trains_with_the_best(tmp_path, esol):
    data = tmp_path / "esol.csv"
    esol.head(40).to_csv(data, index=False)
    out = tmp_path / "run"
    space = json.dumps({"batch_size": {"value": 8}, "learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}})
    assert _finetune(data, out, "--epochs", "1", "--search-trials", "2", "--search-space", space) == 0
    trials = json.loads((out / "search_trials.json").read_text())
    assert [t["trial"] for t in trials] == [0, 1]
    for trial in trials:
        assert set(trial["params"]) == {
            "learning_rate",
            "encoder_learning_rate_ratio",
            "weight_decay",
            "dropout",
            "batch_size",
        }
        assert trial["params"]["batch_size"] == 8 and 1e-4 <= trial["params"]["learning_rate"] <= 1e-3
    best = json.loads((out / "search_best.json").read_text())
    winner = min(trials, key=lambda t: t["valid_rmse"])
    assert best["params"] == winner["params"] and best["valid_rmse"] == winner["valid_rmse"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["arguments"]["learning_rate"] == best["params"]["learning_rate"]
    assert metrics["arguments"]["batch_size"] == 8
    config = json.loads((out / "config.json").read_text())
    assert config["classifier_dropout"] == pytest.approx(best["params"]["dropout"])
    assert not (out / "search").exists()  # trials save no checkpoints


def test_seed_ensemble_calibrates_on_validation_and_predict_and_pipeline_apply_it(tmp_path, esol):
    data = tmp_path / "esol.csv"
    esol.head(80).to_csv(data, index=False)
    out = tmp_path / "ensemble"
    assert _finetune(data, out, "--epochs", "2", "--seeds", "0", "1", "--conformal-alpha", "0.2") == 0
    calibration = json.loads((out / "ensemble.json").read_text())["calibration"]
    (scale,), (q,) = calibration["std_scale"], calibration["conformal"]["quantiles"]
    metrics = json.loads((out / "metrics.json").read_text())["calibration"]
    for part in ("valid", "test"):
        assert set(metrics[part]["miscalibration_area"]) == {"before", "after"}
        assert 0 <= metrics[part]["miscalibration_area"]["after"] <= 0.5
    assert metrics["valid"]["conformal"]["coverage"] >= 0.8
    # the scale makes the validation z-scores unit variance: recompute it from the members' own predictions
    split = json.loads((out / "split.json").read_text())
    members = [pd.read_csv(out / m / "test_predictions.csv") for m in ("seed-0", "seed-1")]
    test = pd.read_csv(out / "test_predictions.csv")
    assert test["row"].tolist() == split["test"]
    values = np.stack([m[f"prediction_{TASK}"] for m in members])
    np.testing.assert_allclose(test[f"std_{TASK}"], values.std(0), rtol=1e-5)
    np.testing.assert_allclose(test[f"calibrated_std_{TASK}"], scale * values.std(0), rtol=1e-5)
    np.testing.assert_allclose(test[f"upper_{TASK}"], values.mean(0) + q * values.std(0), rtol=1e-5, atol=1e-6)
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CC(=O)Nc1ccccc1"]}).to_csv(new, index=False)
    assert main(["predict", str(new), "--model", str(out), "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(table[f"calibrated_std_{TASK}"], scale * table[f"std_{TASK}"], rtol=1e-5)
    np.testing.assert_allclose(
        table[f"lower_{TASK}"], table[f"prediction_{TASK}"] - q * table[f"std_{TASK}"], rtol=1e-5, atol=1e-6
    )
    import moleblend_hf

    rows = moleblend_hf.pipeline("molecule-property-prediction", model=str(out))(
        ["CCO", "c1ccccc1O", "CC(=O)Nc1ccccc1"]
    )
    assert [r[0]["calibrated_std"] for r in rows] == pytest.approx(table[f"calibrated_std_{TASK}"].tolist(), rel=1e-4)
    assert [r[0]["upper"] for r in rows] == pytest.approx(table[f"upper_{TASK}"].tolist(), rel=1e-4, abs=1e-5)


def test_classification_ensemble_temperature_and_calibrated_probabilities(tmp_path, bbbp):
    data = tmp_path / "bbbp.csv"
    bbbp.head(80).to_csv(data, index=False)
    out = tmp_path / "ensemble"
    assert _finetune(data, out, "--epochs", "1", "--seeds", "0", "1", label="p_np") == 0
    (temperature,) = json.loads((out / "ensemble.json").read_text())["calibration"]["temperature"]
    assert 0.05 <= temperature <= 20
    ece = json.loads((out / "metrics.json").read_text())["calibration"]["valid"]["expected_calibration_error"]
    assert set(ece) == {"before", "after"} and 0 <= ece["after"] <= 1
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O"]}).to_csv(new, index=False)
    assert main(["predict", str(new), "--model", str(out), "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    from transformers import AutoModelForSequenceClassification

    from moleblend_hf import MoleBlendProcessor

    batch = MoleBlendProcessor.from_pretrained(out / "seed-0")(["CCO", "c1ccccc1O"])
    import torch

    with torch.no_grad():
        logits = (
            torch.stack(
                [
                    AutoModelForSequenceClassification.from_pretrained(out / m).eval()(**batch).logits
                    for m in ("seed-0", "seed-1")
                ]
            )
            .mean(0)[:, 0]
            .numpy()
        )
    np.testing.assert_allclose(table["calibrated_probability_p_np"], expit(logits / temperature), rtol=1e-4)


def test_pretrain_writes_loss_curves_from_its_logs(tmp_path):
    out = tmp_path / "pretrain"
    assert (
        main(
            [
                "pretrain",
                "--max-steps",
                "4",
                "--batch-size",
                "8",
                "--logging-steps",
                "2",
                "--eval-inputs",
                str(DATA / "esol.csv"),
                "--eval-max-molecules",
                "8",
                "--report-to",
                "jsonl",
                "--no-progress",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    curves = pd.read_csv(out / "loss_curves.csv")
    train = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evaluation = [json.loads(line) for line in (out / "eval_log.jsonl").read_text().splitlines()]
    assert curves[curves.split == "train"]["loss"].tolist() == [r["loss"] for r in train]
    assert curves[curves.split == "eval"]["step"].tolist() == [r["step"] for r in evaluation]
    assert (out / "loss_curves.png").exists()
