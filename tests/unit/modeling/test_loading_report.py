"""Loading a pretraining checkpoint into the encoder or a property model: the pretraining heads are expected to
be left behind (not reported), while any other unexpected or missing weight still is."""

from __future__ import annotations

import logging

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.testing_utils import CaptureLogger

from moleblend_hf import DEFAULT_PRETRAINED, MoleBlendConfig, MoleBlendForPreTraining, resolve_model

TRANSFORMERS = logging.getLogger("transformers")  # every transformers logger propagates to it


def _load(auto_class, path, **kwargs):
    with CaptureLogger(TRANSFORMERS) as captured:
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kwargs)
    return model, info, captured.out


def test_the_shipped_checkpoint_loads_without_reporting_its_pretraining_heads():
    path = resolve_model(DEFAULT_PRETRAINED)
    _, info, log = _load(AutoModel, path)
    assert not info["unexpected_keys"] and not info["missing_keys"], info
    assert "UNEXPECTED" not in log and "head" not in log, log
    _, info, log = _load(AutoModelForSequenceClassification, path, num_labels=1)
    assert not info["unexpected_keys"], info
    # the new property head is newly initialised: that is reported, as it should be
    assert sorted(info["missing_keys"]) == ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]
    assert "UNEXPECTED" not in log


def test_a_weight_that_belongs_nowhere_or_is_missing_is_still_reported(tmp_path):
    torch.manual_seed(0)
    MoleBlendForPreTraining(MoleBlendConfig.from_preset("tiny")).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["spd_head_extra.weight"] = torch.zeros(2)  # an unrelated tensor, named like a head on purpose
    del weights[
        "moleblend.final_layer_norm.weight"
        if "moleblend.final_layer_norm.weight" in weights
        else next(k for k in weights if k.startswith("moleblend.") and k.endswith("norm.weight"))
    ]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    for auto_class, kwargs in ((AutoModel, {}), (AutoModelForSequenceClassification, {"num_labels": 1})):
        _, info, log = _load(auto_class, tmp_path, **kwargs)
        assert set(info["unexpected_keys"]) == {"spd_head_extra.weight"}, info
        assert any(k.endswith("norm.weight") for k in info["missing_keys"]), info
        assert "spd_head_extra.weight" in log and "UNEXPECTED" in log
