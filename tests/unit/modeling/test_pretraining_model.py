"""MoleBlendForPreTraining: bilinear heads, targets, blend masks, equivariant denoising, learning on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor
from moleblend_hf.modeling.modeling_moleblend_pretraining import (
    PairRelationHead,
    path_targets,
    relative_position_targets,
    spd_targets,
)

from .test_modeling import _random_rotation


def _tiny(**overrides) -> MoleBlendForPreTraining:
    torch.manual_seed(0)
    return MoleBlendForPreTraining(MoleBlendConfig.from_preset("tiny", **overrides))


@pytest.fixture(scope="module")
def qm9_features(qm9):
    processor = MoleBlendProcessor()
    return processor, [processor.featurize(b) for b in qm9["molblock"]]


@pytest.mark.parametrize("out,intermediate", [(11, None), (5 * 60, None), (3, 256)])
def test_bilinear_heads_equal_the_explicit_outer_product(out, intermediate):
    torch.manual_seed(0)
    bilinear = PairRelationHead(MoleBlendConfig.from_preset("tiny"), out, intermediate)
    explicit = PairRelationHead(
        MoleBlendConfig.from_preset("tiny", pair_head_implementation="outer_product"), out, intermediate
    )
    explicit.load_state_dict(bilinear.state_dict())
    hidden = torch.randn(3, 9, 64, dtype=torch.float64)
    bilinear.double(), explicit.double()
    upstream = torch.randn(3, 9, 9, out, dtype=torch.float64)
    values, grads = [], []
    for head in (bilinear, explicit):
        x = hidden.clone().requires_grad_(True)
        y = head(x)
        (y * upstream).sum().backward()
        values.append(y)
        grads.append([x.grad] + [p.grad for p in head.parameters()])
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_spd_targets_on_a_hand_checked_molecule():
    processor = MoleBlendProcessor()
    # hexane (a 5-bond chain) plus a lone water: distances 1..5, the diagonal, unreachable pairs
    batch = processor(["CCCCCC.O", "CC"])
    mask = batch["attention_mask"].bool()
    pair = mask[:, :, None] & mask[:, None, :]
    target = spd_targets(batch["shortest_path"], pair, num_classes=3, unreachable=510)
    assert target[0, 0].tolist() == [-100, 0, 1, 2, 2, 2, -100]  # d=1 -> 0, d=2 -> 1, d>=3 merged -> 2
    assert target[0, 6].tolist() == [-100] * 7  # water: unreachable from everything, itself the diagonal
    assert (target[1, :, 2:] == -100).all() and target[1, 0, 1] == 0  # padding ignored


def test_path_targets_per_hop():
    processor = MoleBlendProcessor()
    batch = processor(["C=CC#N"])  # C0=C1-C2#N3
    target = path_targets(batch["path_bonds"], [5, 6, 2])
    single, double, triple = (0 * 6 + 0) * 2 + 1, (1 * 6 + 0) * 2 + 1, (2 * 6 + 0) * 2 + 1  # all conjugated
    assert target[0, 0, 3].tolist() == [double, single, triple, -100, -100]
    assert target[0, 3, 0].tolist() == [triple, single, double, -100, -100]
    assert (target[0, 1, 1] == -100).all()
    # every (type, stereo, conjugated) value the processor emits has its own class: no overflow, no collision
    classes = {(t * 6 + s) * 2 + c for t in range(5) for s in range(6) for c in range(2)}
    assert classes == set(range(60))


def test_relative_position_targets():
    positions = torch.tensor(
        [[[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 2.0, 0.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 1.2], [0.0, 0.0, 0.0]]]
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    pair = mask[:, :, None] & mask[:, None, :]
    target, valid = relative_position_targets(positions, pair, torch.tensor([True, False]))
    torch.testing.assert_close(target[0, 0, 2], torch.tensor([1.5, 2.0, 0.0]))  # r_2 - r_0
    torch.testing.assert_close(target[0, 2, 1], torch.tensor([0.0, -2.0, 0.0]))  # r_1 - r_2
    assert valid[0].tolist() == [[False, True, True], [True, False, True], [True, True, False]]
    assert not valid[1].any()  # no conformer: nothing to predict
    target, valid = relative_position_targets(positions, pair, torch.tensor([True, True]))
    assert valid[1].tolist() == [[False, True, False], [True, False, False], [False, False, False]]  # padding


def test_blend_masks_follow_probabilities_and_symmetry(qm9_features):
    processor, features = qm9_features
    batch = processor.pad(features[:64])
    model = _tiny()
    relations = model.moleblend.compute_relations(
        **{
            k: batch[k]
            for k in ("atom_features", "attention_mask", "degree", "shortest_path", "path_bonds", "positions", "has_3d")
        }
    )
    generator = torch.Generator().manual_seed(0)
    pair_counts, atom_counts = torch.zeros(3), torch.zeros(2)
    for _ in range(20):
        pair, atom = model.sample_blend_masks(relations, generator)
        assert torch.equal(pair, pair.transpose(1, 2))  # symmetric by default
        valid = relations.pair_mask
        pair_counts += torch.bincount(pair[valid], minlength=3)
        atom_counts += torch.bincount(atom[relations.atom_mask], minlength=2)
    np.testing.assert_allclose((pair_counts / pair_counts.sum()).numpy(), [0.2, 0.2, 0.6], atol=0.01)
    np.testing.assert_allclose((atom_counts / atom_counts.sum()).numpy(), [0.4, 0.6], atol=0.01)

    official = _tiny(blend_mask_mode="shared_batch")
    pair, _ = official.sample_blend_masks(relations, generator)
    assert all(torch.equal(pair[0], pair[i]) for i in range(len(pair)))  # one mask for the batch
    assert not torch.equal(pair[0], pair[0].T)
    per_molecule, _ = _tiny(blend_mask_mode="per_molecule").sample_blend_masks(relations, generator)
    assert not torch.equal(per_molecule[0], per_molecule[0].T) and not torch.equal(per_molecule[0], per_molecule[1])

    flat = relations.__class__(**{**relations.__dict__, "has_3d": torch.zeros_like(relations.has_3d)})
    pair, atom = model.sample_blend_masks(flat, generator)
    assert (pair != 2).all() and (atom == 0).all()  # molecules without a conformer: 2D relations only


def _denoise_prediction(model, batch, positions, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return model(**dict(batch, positions=positions), generator=generator).noise_prediction


def test_denoising_output_rotates_with_the_input(qm9_features):
    processor, features = qm9_features
    batch = processor.pad(features[:8])
    model = _tiny(noise_std=0.0).eval()  # no noise: the prediction is a function of the given geometry
    rotation = _random_rotation(3)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    moved = (batch["positions"] @ rotation.T + torch.tensor([1.0, 2.0, -3.0])) * mask
    original = _denoise_prediction(model, batch, batch["positions"])
    rotated = _denoise_prediction(model, batch, moved)
    assert original.abs().max() > 1e-3
    torch.testing.assert_close(rotated, original @ rotation.T, rtol=0, atol=1e-4)
    # the official per-axis projections are not equivariant
    official = _tiny(noise_std=0.0, denoise_per_axis_projection=True).eval()
    difference = (
        _denoise_prediction(official, batch, moved)
        - _denoise_prediction(official, batch, batch["positions"]) @ rotation.T
    )
    assert difference.abs().max() > 1e-3


def test_molecules_without_conformers_train_on_2d_terms_only(qm9_features):
    processor, features = qm9_features
    batch = processor.pad(features[:8])
    flat = dict(batch, has_3d=torch.zeros_like(batch["has_3d"]))
    out = _tiny()(**flat)
    assert out.relative_position_loss == 0 and out.denoise_loss == 0
    assert out.spd_loss > 0 and out.path_loss > 0 and torch.isfinite(out.loss)
    out.loss.backward()


@pytest.mark.slow
def test_every_loss_decreases_on_the_bundled_corpus(qm9_features):
    processor, features = qm9_features
    model = _tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    names = ("loss", "relative_position_loss", "spd_loss", "path_loss", "denoise_loss")
    history = []
    for _ in range(250):
        batch = processor.pad([features[i] for i in rng.choice(len(features), 32, replace=False)])
        out = model(**batch)
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append([float(out[name].detach()) for name in names])
    history = np.asarray(history)
    first, last = history[:20].mean(0), history[-20:].mean(0)
    for name, a, b in zip(names, first, last):
        assert b < a, f"{name} did not decrease: first 20 steps {a:.4f}, last 20 {b:.4f}"


def test_without_blending_every_relation_enters_the_bias(qm9_features):
    """The paper's ablation: no blend mask; the encoder sees the summed relations (as at inference) and the same
    heads and losses are scored, denoising on every atom with a conformer."""
    processor, features = qm9_features
    batch = processor.pad(features[:6], return_tensors="pt")
    model = _tiny(blend_relations=False).eval()
    out = model(**batch)
    assert out.pair_relation_choice is None and out.atom_feature_choice is None
    for name in ("relative_position_loss", "spd_loss", "path_loss", "denoise_loss"):
        assert torch.isfinite(out[name]) and out[name] > 0
    # with the noise switched off, the encoder's hidden states are exactly the plain MoleBlendModel's
    model.config.noise_std = 0.0
    hidden = model(**batch).last_hidden_state
    encoder = model.moleblend(**batch).last_hidden_state
    torch.testing.assert_close(hidden, encoder)
    blended = _tiny().eval()
    blended.config.noise_std = 0.0
    blended.load_state_dict(model.state_dict())
    assert not torch.allclose(blended(**batch).last_hidden_state, encoder)  # blending hides relations


def test_blend_relations_is_saved_in_the_config(tmp_path):
    _tiny(blend_relations=False).save_pretrained(tmp_path)
    assert MoleBlendForPreTraining.from_pretrained(tmp_path).config.blend_relations is False
