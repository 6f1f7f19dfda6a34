"""Our encoder equals the official formulation, through the converter of official parameter names."""

from __future__ import annotations

import argparse

import pytest
import torch

from moleblend_hf import MoleBlendConfig, MoleBlendModel, MoleBlendProcessor
from moleblend_hf.publishing.conversion import ConversionError, convert_checkpoint, convert_state_dict
from tests.parity.official_reference import OfficialMolnetEncoder, randomize_

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    num_gaussian_kernels=16,
    attention_probs_dropout_prob=0.0,
    activation_dropout=0.0,
    drop_path_rate=0.0,
)


def _official_state(seed=0):
    reference = OfficialMolnetEncoder(dim=64, layers=2, heads=4, ffn=64, kernels=16)
    randomize_(reference, seed)
    state = {f"encoder.molecule_encoder.{k}": v for k, v in reference.state_dict().items()}
    return reference.eval(), state


@pytest.fixture(scope="module")
def real_batch(qm9, esol):
    processor = MoleBlendProcessor(conformers="generate")
    return processor(qm9["molblock"].head(6).tolist() + esol["smiles"].head(4).tolist())


def test_converted_model_equals_official_formulation(real_batch):
    reference, state = _official_state()
    config = MoleBlendConfig(**TINY)
    converted, dropped = convert_state_dict(state, config)
    assert dropped == []
    model = MoleBlendModel(config).eval()
    model.load_state_dict(converted, strict=True)
    assert real_batch["has_3d"].all()
    with torch.no_grad():
        ours = model(**real_batch).last_hidden_state
        theirs = reference(OfficialMolnetEncoder.official_batch(real_batch)).transpose(0, 1)
    mask = torch.nn.functional.pad(real_batch["attention_mask"], (1, 0), value=1).bool()
    # float32 rounding only (observed ~3e-7); padded rows are excluded: both implementations leave them unused
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-5, atol=1e-5)
    assert ours[mask].abs().mean() > 0.1  # a real signal, not a trivially equal zero


def test_unknown_missing_and_misshaped_keys_are_errors():
    _, state = _official_state()
    config = MoleBlendConfig(**TINY)
    with pytest.raises(ConversionError, match="not part of the official"):
        convert_state_dict({**state, "encoder.molecule_encoder.surprise.weight": torch.zeros(1)}, config)
    incomplete = {k: v for k, v in state.items() if "fc1.weight" not in k}
    with pytest.raises(ConversionError, match="lacks parameters"):
        convert_state_dict(incomplete, config)
    with pytest.raises(ConversionError, match="shape"):
        convert_state_dict(state, MoleBlendConfig(**{**TINY, "intermediate_size": 32}))
    heads = {
        **state,
        "encoder.molecule_encoder.atom_proc.q_proj.weight": torch.zeros(64, 64),
        "encoder.lm_output_learned_bias": torch.zeros(1),
    }
    _, dropped = convert_state_dict(heads, config)
    assert sorted(dropped) == ["encoder.lm_output_learned_bias", "encoder.molecule_encoder.atom_proc.q_proj.weight"]


def test_convert_checkpoint_file_reads_safely_and_saves(tmp_path, real_batch):
    reference, state = _official_state(seed=1)
    args = argparse.Namespace(
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        num_3d_bias_kernel=16,
        multi_hop_max_dist=5,
        add_3d=True,
        activation_fn="gelu",
        droppath_prob=0.0,
        attention_dropout=0.0,
        act_dropout=0.0,
    )
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"model": state, "args": args}, path)
    model, _ = convert_checkpoint(path, tmp_path / "converted")
    loaded = MoleBlendModel.from_pretrained(tmp_path / "converted").eval()
    with torch.no_grad():
        theirs = reference(OfficialMolnetEncoder.official_batch(real_batch)).transpose(0, 1)
        ours = loaded(**real_batch).last_hidden_state
    torch.testing.assert_close(ours[:, 0], theirs[:, 0], rtol=1e-4, atol=1e-4)


def test_converted_directory_has_the_official_path_tie_break(tmp_path):
    _, state = _official_state(seed=2)
    args = argparse.Namespace(
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        num_3d_bias_kernel=16,
        multi_hop_max_dist=5,
        add_3d=True,
    )
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"model": state, "args": args}, path)
    convert_checkpoint(path, tmp_path / "converted")
    assert MoleBlendProcessor.from_pretrained(tmp_path / "converted").path_tie_break == "official"
    assert MoleBlendProcessor().path_tie_break == "canonical"  # new models keep the order-independent choice


@pytest.mark.parametrize("granularity", ["molecule", "position"])
def test_drop_path_granularity(granularity):
    from moleblend_hf.modeling.modeling_moleblend import DropPath

    torch.manual_seed(0)
    layer = DropPath(0.5, granularity).train()
    out = layer(torch.ones(64, 30, 8))
    dropped = out[..., 0] == 0  # [B, T]
    assert torch.allclose(out[~dropped], torch.full_like(out[~dropped], 2.0))  # kept branches are rescaled
    if granularity == "molecule":  # whole molecules, independently
        assert (dropped.all(1) | (~dropped).all(1)).all() and 0 < dropped[:, 0].sum() < 64
    else:  # whole positions across the batch (the official T x B x D mask of shape (T, 1, 1))
        assert (dropped.all(0) | (~dropped).all(0)).all() and 0 < dropped[0].sum() < 30
    with pytest.raises(ValueError, match="drop_path_granularity"):
        MoleBlendConfig(drop_path_granularity="atom")


def test_a_fairseq_checkpoint_with_numpy_scalars_converts(tmp_path):
    """Real fairseq checkpoints carry numpy scalars (e.g. the best metric in extra_state): still weights_only."""
    import numpy as np

    _, state = _official_state(seed=3)
    args = argparse.Namespace(
        encoder_layers=2,
        encoder_embed_dim=64,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=64,
        num_3d_bias_kernel=16,
        multi_hop_max_dist=5,
        add_3d=True,
    )
    path = tmp_path / "checkpoint_best.pt"
    torch.save(
        {
            "model": state,
            "args": args,
            "optimizer_history": [{"num_updates": np.int64(1000)}],
            "extra_state": {
                "best": np.float64(0.123),
                "val_loss": np.float32(1.5),
                "dtype": np.dtype("int64"),
                "train_iterator": {"epoch": 3},
            },
        },
        path,
    )
    model, _ = convert_checkpoint(path, tmp_path / "converted")
    assert (tmp_path / "converted" / "model.safetensors").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_convert_refuses_other_objects_and_non_checkpoints_with_its_own_message(tmp_path, capsys):
    from moleblend_hf.cli import main
    from moleblend_hf.publishing.conversion import ConversionError, load_official_checkpoint

    planted = tmp_path / "planted.pt"
    torch.save({"model": {}, "args": _Payload()}, planted)
    with pytest.raises(ConversionError, match="holds a .*print object.*not loaded") as raised:
        load_official_checkpoint(planted)
    assert "weights_only=False" not in str(raised.value)
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not a checkpoint\n")
    assert main(["convert", str(text), str(tmp_path / "out")]) == 1
    error = capsys.readouterr()
    assert "not a PyTorch checkpoint" in error.err and "weights_only" not in error.err
    assert "executed" not in error.out and not (tmp_path / "out").exists()
