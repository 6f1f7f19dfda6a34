"""Encoder speed against the official formulation, in one process, interleaved, on real molecules.

The official formulation is the test-only re-statement of the official MoleBLEND encoder in
`tests/parity/official_reference.py` (T x B x C layers, fairseq-style attention, the official bias construction; the
parity tests hold it to our model within 1e-5). Its randomized weights are converted into a `MoleBlendModel` with the
converter, so both compute the same function (the maximum output difference is reported). Batches: real MOSES molecules
with their RDKit conformers (`tests/data/moses_200_conformers.parquet`), `--batch-size` per batch in file order (padded
to the largest molecule of each batch), the same batches for both. Measured, alternating the two models run by run
(every variant once per run) and reporting medians:

- `forward_backward`: forward and backward of the encoder (eval mode, so that dropout does not differ);
- `inference`: forward under `torch.inference_mode`, as molecules per second;

each for the official formulation, ours (SDPA attention, the default), and:

- `ours_eager_attention`: ours with `attn_implementation="eager"` (matmul + softmax) instead of SDPA (default);
- `ours_int8` (inference): ours after dynamic int8 quantization of the linear layers (`--quantize int8`),
  with its accuracy cost: the deviation of the graph embeddings from fp32 (max and mean absolute, and the lowest
  cosine similarity);
- with `--cuda-graphs` (inference, CUDA): `ours_cuda_graphs`, ours through `CUDAGraphInference` (`embed` /
  `predict --cuda-graphs`), and `official_cuda_graphs`, the official formulation through the same wrapper: the
  comparison of what each formulation's kernels cost once launches no longer count;
- with `--compile` (forward + backward): `ours_compiled` and `official_compiled`, each through `torch.compile`
  (default mode; with `--pad-to-multiple-of 8` every batch has one shape, compiled once), the compile time
  reported as `warmup_seconds`.

Every variant first runs each batch once (warm-up: compilation, graph capture), outside the timings.

    python -m benchmarks.encoder_speed [--preset base] [--batch-size 64] [--runs 5] [--threads 2]
        [--device cuda --dtype bf16] [--cuda-graphs] [--compile]   # on a GPU (bf16: autocast for all; no int8)

Prints JSON and writes benchmarks/results/encoder_speed_<device>[_bf16].json (or `--output`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from moleblend_hf import MoleBlendConfig, MoleBlendModel, MoleBlendProcessor
from moleblend_hf.inference.speed import CUDAGraphInference, quantize_int8
from moleblend_hf.publishing.conversion import convert_state_dict
from tests.parity.official_reference import OfficialMolnetEncoder, randomize_

HERE = Path(__file__).resolve().parent

DATA = HERE.parent / "tests" / "data" / "moses_200_conformers.parquet"


def _models(preset: str) -> tuple[OfficialMolnetEncoder, MoleBlendModel]:
    config = MoleBlendConfig.from_preset(
        preset, attention_probs_dropout_prob=0.0, activation_dropout=0.0, drop_path_rate=0.0
    )
    official = OfficialMolnetEncoder(
        dim=config.hidden_size,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        ffn=config.intermediate_size,
        kernels=config.num_gaussian_kernels,
        hops=config.max_path_hops,
    )
    randomize_(official, seed=0)
    state = {f"encoder.molecule_encoder.{k}": v for k, v in official.state_dict().items()}
    converted, _ = convert_state_dict(state, config)
    ours = MoleBlendModel(config)
    ours.load_state_dict(converted)
    return official.eval(), ours.eval()


class _KeywordInputs(torch.nn.Module):
    """The official formulation called with keyword inputs (as `CUDAGraphInference` calls a model)."""

    def __init__(self, official: OfficialMolnetEncoder):
        super().__init__()
        self.official = official

    def forward(self, **batch):
        return self.official(batch)


def _timed(function, *arguments) -> float:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function(*arguments)
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast for both")
    parser.add_argument("--cuda-graphs", action="store_true", help="inference through CUDA graphs too (CUDA)")
    parser.add_argument("--compile", action="store_true", help="forward + backward through torch.compile too")
    parser.add_argument(
        "--pad-to-multiple-of",
        type=int,
        default=None,
        help="pad every batch's atoms to a multiple (e.g. 8: one shape for all, for --compile)",
    )
    parser.add_argument(
        "--output", default=None, help="the JSON file (default: benchmarks/results/encoder_speed_<device>[_bf16].json)"
    )
    args = parser.parse_args()
    if args.cuda_graphs and not args.device.startswith("cuda"):
        parser.error("--cuda-graphs needs --device cuda")
    on_gpu = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    processor = MoleBlendProcessor()
    features = [processor.featurize(block) for block in pd.read_parquet(DATA)["molblock"]]
    batches = [
        processor.pad(features[i : i + args.batch_size], pad_to_multiple_of=args.pad_to_multiple_of)
        for i in range(0, len(features) - args.batch_size + 1, args.batch_size)
    ]
    official_batches = [
        {
            k: v.to(args.device) if torch.is_tensor(v) else v
            for k, v in OfficialMolnetEncoder.official_batch(dict(b)).items()
        }
        for b in batches
    ]
    batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
    official, ours = (model.to(args.device) for model in _models(args.preset))
    # dynamic int8 kernels are fp32 CPU kernels
    int8 = None if on_gpu or args.dtype == "bf16" else quantize_int8(_models(args.preset)[1])
    eager = _models(args.preset)[1].to(args.device)
    eager.set_attn_implementation("eager")  # the same model with matmul + softmax attention instead of SDPA
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    with torch.no_grad():  # same function: outputs of every real token
        deviation = 0.0
        for batch, official_batch in zip(batches, official_batches):
            theirs = official(official_batch).transpose(0, 1)
            mine = ours(**batch).last_hidden_state
            real = torch.cat([torch.ones_like(batch["attention_mask"][:, :1]), batch["attention_mask"]], 1).bool()
            deviation = max(deviation, float((theirs - mine)[real].abs().max()))
        fp32 = torch.cat([ours(**b).pooler_output for b in batches])
        quantized = fp32 if int8 is None else torch.cat([int8(**b).pooler_output for b in batches])
    cosine = torch.nn.functional.cosine_similarity(fp32, quantized, dim=-1)

    def forward_backward(model, inputs, official_layout: bool):
        for parameter in model.parameters():
            parameter.grad = None
        with autocast:
            out = model(inputs) if official_layout else model(**inputs).last_hidden_state
        out.float().square().mean().backward()

    def inference(model, inputs, official_layout: bool):
        with torch.inference_mode(), autocast:
            model(inputs) if official_layout else model(**inputs)

    measures = {
        "forward_backward": {
            "official": lambda b, o: forward_backward(official, o, True),
            "ours": lambda b, o: forward_backward(ours, b, False),
            "ours_eager_attention": lambda b, o: forward_backward(eager, b, False),
        },
        "inference": {
            "official": lambda b, o: inference(official, o, True),
            "ours": lambda b, o: inference(ours, b, False),
            "ours_eager_attention": lambda b, o: inference(eager, b, False),
            "ours_int8": lambda b, o: inference(int8, b, False),
        },
    }
    if int8 is None:
        del measures["inference"]["ours_int8"]
    if args.cuda_graphs:
        graphed = {
            "ours_cuda_graphs": CUDAGraphInference(ours),
            "official_cuda_graphs": CUDAGraphInference(_KeywordInputs(official)),
        }
        measures["inference"]["ours_cuda_graphs"] = lambda b, o: inference(graphed["ours_cuda_graphs"], b, False)
        measures["inference"]["official_cuda_graphs"] = lambda b, o: inference(
            graphed["official_cuda_graphs"], o, False
        )
    if args.compile:
        # static shapes (give --pad-to-multiple-of 8 for one shape: one compilation each)
        compiled = {"ours": torch.compile(ours), "official": torch.compile(official)}
        measures["forward_backward"]["ours_compiled"] = lambda b, o: forward_backward(compiled["ours"], b, False)
        measures["forward_backward"]["official_compiled"] = lambda b, o: forward_backward(compiled["official"], o, True)
    molecules = sum(int(b["attention_mask"].shape[0]) for b in batches)
    results: dict = {}
    for name, variants in measures.items():
        warmup = {}
        for label, function in variants.items():  # warm-up on every batch shape: compilation, graph capture
            warmup[label] = _timed(lambda f=function: [f(b, o) for b, o in zip(batches, official_batches)])
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.runs):
            for label, function in variants.items():  # interleaved: every run times each variant once
                times[label].append(sum(_timed(function, b, o) for b, o in zip(batches, official_batches)))
        medians = {label: statistics.median(values) for label, values in times.items()}
        results[name] = {
            "median_seconds_per_batch": {k: v / len(batches) for k, v in medians.items()},
            "molecules_per_second": {k: molecules / v for k, v in medians.items()},
            "time_ratio_vs_official": {k: v / medians["official"] for k, v in medians.items() if k != "official"},
            "warmup_seconds": warmup,
        }
    report = {
        "preset": args.preset,
        "batch_size": args.batch_size,
        "batches": len(batches),
        "runs": args.runs,
        "padded_atoms": [int(b["attention_mask"].shape[1]) for b in batches],
        "pad_to_multiple_of": args.pad_to_multiple_of,
        "mean_atoms": round(sum(f["num_atoms"] for f in features[:molecules]) / molecules, 2),
        "max_abs_difference_vs_official": deviation,
        "device": args.device,
        "dtype": args.dtype,
        "int8_accuracy": None
        if int8 is None
        else {
            "max_abs_deviation": float((fp32 - quantized).abs().max()),
            "mean_abs_deviation": float((fp32 - quantized).abs().mean()),
            "embedding_scale_mean_abs": float(fp32.abs().mean()),
            "min_cosine_similarity": float(cosine.min()),
        },
        **results,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if on_gpu else None,
        },
    }
    print(json.dumps(report, indent=2))
    suffix = "_bf16" if args.dtype == "bf16" else ""
    default = HERE / "results" / f"encoder_speed_{args.device.split(':')[0]}{suffix}.json"
    out = Path(args.output) if args.output else default
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
