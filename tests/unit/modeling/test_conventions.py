"""transformers conventions every head honours: return_dict, output_hidden_states, problem_type inference,
torch.export, both gradient-checkpointing modes, and no unused parameters on 2D-only batches (plain DDP)."""

from __future__ import annotations

import pytest
import torch

from moleblend_hf import (
    MoleBlendConfig,
    MoleBlendForPreTraining,
    MoleBlendForPropertyPrediction,
    MoleBlendModel,
    MoleBlendProcessor,
)

NO_DROPOUT = dict(attention_probs_dropout_prob=0.0, activation_dropout=0.0, drop_path_rate=0.0)
MOLECULES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]


@pytest.fixture(scope="module")
def batch_3d():
    return dict(MoleBlendProcessor(conformers="generate")(MOLECULES))


@pytest.fixture(scope="module")
def batch_2d():
    return dict(MoleBlendProcessor(conformers="none")(MOLECULES))


def _model(cls, **overrides):
    torch.manual_seed(0)
    return cls(MoleBlendConfig.from_preset("tiny", **NO_DROPOUT, **overrides)).eval()


def test_return_dict_false_on_the_property_head(batch_3d):
    model = _model(MoleBlendForPropertyPrediction, num_labels=1)
    labels = torch.tensor([[1.0], [2.0], [3.0]])
    output = model(**batch_3d, labels=labels)
    as_tuple = model(**batch_3d, labels=labels, return_dict=False, output_hidden_states=True)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], output.loss)
    torch.testing.assert_close(as_tuple[1], output.logits)
    assert len(as_tuple[2]) == model.config.num_hidden_layers + 1  # hidden states follow


def test_pretraining_model_honours_return_dict_and_output_hidden_states(batch_3d):
    model = _model(MoleBlendForPreTraining)
    output = model(**batch_3d, generator=torch.Generator().manual_seed(0), output_hidden_states=True)
    assert len(output.hidden_states) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(output.hidden_states[-1], output.last_hidden_state)
    as_tuple = model(**batch_3d, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], output.loss)
    eager = _model(MoleBlendForPreTraining, attn_implementation="eager")
    attentions = eager(**batch_3d, generator=torch.Generator().manual_seed(0), output_attentions=True).attentions
    tokens = batch_3d["attention_mask"].shape[1] + 1
    assert len(attentions) == 2 and attentions[0].shape == (3, 4, tokens, tokens)


def test_problem_type_is_inferred_the_transformers_way(batch_3d):
    assert _model(MoleBlendForPropertyPrediction, num_labels=1).config.problem_type == "regression"
    single = _model(MoleBlendForPropertyPrediction, num_labels=3)
    assert single.config.problem_type is None
    single(**batch_3d, labels=torch.tensor([0, 2, 1]))
    assert single.config.problem_type == "single_label_classification"
    multi = _model(MoleBlendForPropertyPrediction, num_labels=2)
    multi(**batch_3d, labels=torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    assert multi.config.problem_type == "multi_label_classification"
    with pytest.raises(ValueError, match="problem_type"):
        _model(MoleBlendForPropertyPrediction, problem_type="ranking")


def test_torch_export_equals_eager(batch_3d):
    model = _model(MoleBlendModel)
    names = ("atom_features", "attention_mask", "degree", "shortest_path", "path_bonds", "positions", "has_3d")
    arguments = tuple(batch_3d[name] for name in names)
    exported = torch.export.export(model, arguments)
    real = torch.nn.functional.pad(batch_3d["attention_mask"].bool(), (1, 0), value=True)
    with torch.no_grad():  # real tokens (padding rows are not outputs: eager on the CPU skips them)
        torch.testing.assert_close(
            exported.module()(*arguments).last_hidden_state[real], model(*arguments).last_hidden_state[real]
        )


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(batch_3d, use_reentrant):
    gradients = []
    for checkpointing in (False, True):
        model = _model(MoleBlendModel).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        model(**batch_3d).last_hidden_state.sum().backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[1][name], gradients[0][name])


def test_every_parameter_takes_part_on_2d_only_batches(batch_2d):
    """DDP without find_unused_parameters needs every parameter in the graph of every step: a 3D-capable model
    must still use its 3D parameters (with zero contribution) when no molecule of the batch has a conformer."""
    model = _model(MoleBlendModel).train()
    assert not batch_2d["has_3d"].any()
    model(**batch_2d).last_hidden_state.sum().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
    with torch.no_grad():  # and the 3D terms contribute exactly nothing
        two_d = _model(MoleBlendModel, use_3d_relations=False)
        two_d.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(
            two_d.eval()(**batch_2d).last_hidden_state, model.eval()(**batch_2d).last_hidden_state
        )


def test_skipping_padding_rows_gives_the_same_outputs_and_gradients(batch_3d):
    """On the CPU the linear layers run on the rows of real tokens only; real tokens' outputs and every gradient
    equal the computation over all padded rows."""
    from moleblend_hf.modeling.modeling_moleblend import sum_relations, token_mask

    model = _model(MoleBlendModel).train()  # no dropout configured: deterministic
    relations = model.compute_relations(
        **{
            k: batch_3d[k]
            for k in ("atom_features", "attention_mask", "degree", "shortest_path", "path_bonds", "positions", "has_3d")
        }
    )
    tokens, bias = model.assemble_inputs(relations, *sum_relations(relations))
    real = token_mask(relations.atom_mask)
    assert not real.all()  # the batch has padding
    outputs, gradients = [], []
    for mask in (real, None):
        model.zero_grad()
        hidden = model.run_layers(tokens, bias, mask)
        hidden[real].square().sum().backward(retain_graph=True)
        outputs.append(hidden)
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outputs[0][real], outputs[1][real], rtol=1e-5, atol=1e-5)
    assert (outputs[0][~real] == 0).all()
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("granularity", ["molecule", "position"])
def test_drop_path_on_token_rows_draws_the_masks_of_the_padded_layout(granularity):
    from moleblend_hf.modeling.modeling_moleblend import DropPath, TokenRows

    layer = DropPath(0.5, granularity).train()
    x = torch.randn(6, 9, 4)
    index = torch.tensor([0, 1, 2, 9, 10, 20, 27, 28, 29, 30, 45, 50])
    torch.manual_seed(1)
    padded = layer(x)
    torch.manual_seed(1)
    rows = layer(x.reshape(-1, 4).index_select(0, index), TokenRows(6, 9, index))
    torch.testing.assert_close(rows, padded.reshape(-1, 4).index_select(0, index))
    torch.manual_seed(1)
    every_row = layer(x.reshape(-1, 4), TokenRows(6, 9, None))  # the accelerator path: all rows
    torch.testing.assert_close(every_row, padded.reshape(-1, 4))
