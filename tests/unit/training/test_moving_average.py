"""Polyak averaging of fine-tuning weights: the average follows its formula, is what an epoch's evaluation and save
see, and the trained weights (with the optimizer's state attached) come back before training goes on."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from moleblend_hf.training.property_trainer import MovingAverageWeights


def _step(model: torch.nn.Module, callback: MovingAverageWeights, state, value: float) -> None:
    callback.on_step_begin(None, state, None, model=model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(value)  # what an optimizer step would leave
    state.global_step += 1
    callback.on_step_end(None, state, None, model=model)


def test_the_average_is_evaluated_and_saved_then_the_trained_weights_come_back():
    model = torch.nn.Linear(3, 2)
    parameters = list(model.parameters())
    with torch.no_grad():
        for parameter in parameters:
            parameter.fill_(0.0)
    callback, state = MovingAverageWeights(decay=0.5), SimpleNamespace(global_step=0)
    callback.on_train_begin(None, state, None, model=model)
    expected = 0.0
    for value in (1.0, 2.0, 4.0, 8.0):
        _step(model, callback, state, value)
        decay = min(0.5, (1 + state.global_step) / (10 + state.global_step))  # warm-up: 2/11, 3/12, then 0.5
        expected = decay * expected + (1 - decay) * value
    callback.on_epoch_end(None, state, None, model=model)  # the evaluation and the save that follow see the average
    for parameter in model.parameters():
        torch.testing.assert_close(parameter, torch.full_like(parameter, expected))
    callback.on_epoch_end(None, state, None, model=model)  # a second call does not swap back
    assert torch.allclose(model.weight, torch.full_like(model.weight, expected))
    callback.on_save(None, state, None, model=model)
    assert all(torch.equal(p, torch.full_like(p, 8.0)) for p in model.parameters())  # the trained weights
    assert [id(p) for p in model.parameters()] == [id(p) for p in parameters]  # the optimizer's tensors
    callback.on_epoch_end(None, state, None, model=model)  # no save this time: the next step puts them back
    _step(model, callback, state, 8.0)
    decay = min(0.5, (1 + state.global_step) / (10 + state.global_step))
    assert torch.allclose(callback.average[0], torch.full_like(model.weight, decay * expected + (1 - decay) * 8.0))
