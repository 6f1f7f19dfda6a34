"""Inference options shared by `moleblend embed` and `moleblend predict`: int8 dynamic quantization,
torch.compile, CUDA graphs and autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

#: With CUDA graphs, batches are padded to a multiple of this many atoms, so that few shapes (graphs) occur.
GRAPH_ATOM_MULTIPLE = 8


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


class CUDAGraphInference(torch.nn.Module):
    """A model's inference through CUDA graphs: the same kernels, replayed instead of launched one by one.

    At the batch sizes of embedding and prediction a forward launches hundreds of small kernels and the GPU waits
    on Python. The first batch of each input shape is run once eagerly on a side stream (lazy initialisations
    happen there), then captured; every later batch of that shape is copied into the captured inputs and the
    graph replayed. Outputs are copies (the graph's own buffers are reused by the next replay) and equal eager
    outputs. A partial batch is padded to the next power of two with repeats of its first molecule (outputs of
    those rows dropped), so that it shares a graph. Graphs share one memory pool; at most `max_graphs` shapes (and
    autocast settings) are captured, others run eagerly and are counted in `eager_batches`. Pad atoms to a multiple
    of `GRAPH_ATOM_MULTIPLE` so that few shapes occur.

    Called with the model's keyword inputs, on CUDA tensors, always under `torch.inference_mode`.
    """

    def __init__(self, model: torch.nn.Module, max_graphs: int = 64):
        super().__init__()
        self.model = model.eval()
        self.max_graphs = max_graphs
        self.eager_batches = 0
        self._graphs: dict[tuple, tuple[dict[str, torch.Tensor], torch.cuda.CUDAGraph, Any]] = {}
        self._pool = None

    @property
    def config(self) -> Any:
        """The wrapped model's config (None for a module without one)."""
        return getattr(self.model, "config", None)

    @property
    def graphs(self) -> int:
        """How many shapes have been captured."""
        return len(self._graphs)

    def forward(self, **inputs: Any) -> Any:
        tensors = {name: value for name, value in inputs.items() if torch.is_tensor(value)}
        if not tensors or any(value.device.type != "cuda" for value in tensors.values()):
            raise ValueError("CUDA graphs need every input on a CUDA device (--device cuda)")
        others = {name: value for name, value in inputs.items() if name not in tensors}
        first = next(iter(tensors.values()))
        rows, graph_rows = first.shape[0], graph_batch_size(first.shape[0])
        # the capture stream and the graph belong to the current device: make it the inputs' one (e.g. cuda:1)
        with torch.inference_mode(), torch.cuda.device(first.device):
            has_3d = tensors.get("has_3d")
            if not getattr(self.config, "use_2d_relations", True) and has_3d is not None and not bool(has_3d.all()):
                return self.model(**inputs)  # a 3D-only model refuses molecules without conformers: eagerly, by name
            autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
            shapes = tuple(
                (name, (graph_rows, *value.shape[1:]), value.dtype) for name, value in sorted(tensors.items())
            )
            key = (shapes, repr(sorted(others.items())), autocast)
            entry = self._graphs.get(key)
            if entry is None:
                if len(self._graphs) >= self.max_graphs:
                    self.eager_batches += 1
                    return self.model(**inputs)
                entry = self._graphs[key] = self._capture(pad_batch(tensors, graph_rows), others)
            static_inputs, graph, static_output = entry
            for name, value in tensors.items():
                fill_rows(static_inputs[name], value)
            graph.replay()
            return copy_rows(static_output, rows)

    def _capture(self, tensors: dict[str, torch.Tensor], others: dict[str, Any]) -> tuple:
        static_inputs = {name: value.clone() for name, value in tensors.items()}
        # Under autocast, weights cast outside the graph (autocast's cache) would be freed when the caller's
        # autocast region ends while the graph still reads them: cast inside the graph instead, at every replay.
        no_cast_cache = torch.autocast(
            "cuda",
            dtype=torch.get_autocast_dtype("cuda"),
            enabled=torch.is_autocast_enabled("cuda"),
            cache_enabled=False,
        )
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), no_cast_cache:
            self.model(**static_inputs, **others)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), no_cast_cache:
            static_output = self.model(**static_inputs, **others)
        return static_inputs, graph, static_output


def graph_batch_size(rows: int) -> int:
    """The batch size a graph is captured for: the next power of two (partial batches, e.g. the last of a chunk or
    one with skipped molecules, then share a few graphs instead of capturing one each)."""
    return 1 << max(rows - 1, 0).bit_length()


def pad_batch(tensors: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    """Batch-first inputs with repeats of their first molecule appended up to `rows` (molecules do not interact
    in the encoder, so real rows' outputs are unchanged; the extra rows are dropped by `copy_rows`)."""
    return {name: fill_rows(value.new_empty(rows, *value.shape[1:]), value) for name, value in tensors.items()}


def fill_rows(target: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`target` [R, ...] <- `value` [n <= R, ...], its first row repeated in the R - n rows after it."""
    count = value.shape[0]
    target[:count].copy_(value)
    target[count:].copy_(value[:1].expand_as(target[count:]))
    return target


def copy_rows(output: Any, rows: int) -> Any:
    """A copy of the first `rows` molecules of a model output (ModelOutput, tuple or tensor, batch first)."""
    if torch.is_tensor(output):
        return output[:rows].clone()
    if isinstance(output, tuple):
        return type(output)(copy_rows(item, rows) for item in output)
    if isinstance(output, dict):  # ModelOutput
        return type(output)(**{name: copy_rows(value, rows) for name, value in output.items()})
    return output


def apply_inference_options(
    model: torch.nn.Module, quantize: str = "none", compile: bool = False, cuda_graphs: bool = False
) -> torch.nn.Module:
    """The model as `--quantize`, `--compile` and `--cuda-graphs` ask (checked against each other by the job's
    arguments)."""
    if quantize == "int8":
        model = quantize_int8(model)
    if compile:
        model = compile_for_inference(model)
    if cuda_graphs:
        model = CUDAGraphInference(model)
    return model


def atom_padding_multiple(model: torch.nn.Module) -> int | None:
    """`pad_to_multiple_of` for the batches of `model`: a multiple for CUDA graphs, else none (least padding)."""
    return GRAPH_ATOM_MULTIPLE if isinstance(model, CUDAGraphInference) else None


def inference_autocast(device: torch.device | str, mixed_precision: str = "no") -> contextlib.AbstractContextManager:
    """`torch.autocast` on `device` for `--mixed-precision` ("no", "fp16", "bf16"); a no-op context for "no"."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]
    return torch.autocast(torch.device(device).type, dtype=dtype)
