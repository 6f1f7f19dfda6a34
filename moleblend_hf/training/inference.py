"""Inference options shared by `moleblend embed` and `moleblend predict`: int8 dynamic quantization and
torch.compile."""

from __future__ import annotations

import torch


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every linear layer (weights int8, activations quantized per batch), for CPU
    inference: the Transformer's matrix products are most of the cost. Outputs deviate slightly from fp32
    (measured in benchmarks/encoder_speed.py)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch deprecates the quantized tensor types in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """`torch.compile` with dynamic shapes (batches differ in size and atom count: one graph for all of them). On
    the CPU the padding-row path is off inside the compiled graph (a data-dependent shape)."""
    return torch.compile(model.eval(), dynamic=True)
