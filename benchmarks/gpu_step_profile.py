"""Where a pretraining step's time goes on a GPU, and what torch.compile gives (a diagnostic, printed as text).

Base model, bf16 autocast, fused AdamW, the MOSES batches of `pretraining_step.py` (cycled to the batch size):
1. eager at batch 64: host time (until the step's calls return) and step time (after synchronizing), medians of 15;
2. a torch.profiler trace of 3 eager steps: CUDA kernels per step, GPU time per step, the host-side operations by
   self time and by count, and any host synchronisations;
3. torch.compile (default mode) at batch 64 and 256, with the compile + warm-up time;
4. torch.compile(mode="reduce-overhead", dynamic=False) at batch 64: CUDA graphs replay the step's kernels without
   launching each from Python.

    python -m benchmarks.gpu_step_profile           # on a GPU machine (DEV=cpu PRESET=tiny to try it on a CPU)
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor

ROOT = Path(__file__).resolve().parent.parent

DEVICE = os.environ.get("DEV", "cuda")
PRESET = os.environ.get("PRESET", "base")
#: host synchronisations, and the operations that cause them
SYNC_EVENTS = (
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::is_nonzero",
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
)


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def make_batches(features: list[dict], processor: MoleBlendProcessor, batch_size: int, count: int = 3) -> list:
    """`count` batches of `batch_size`, cycling through the file's molecules, on the device."""
    cycled = [features[i % len(features)] for i in range(batch_size * count)]
    return [
        {k: v.to(DEVICE) for k, v in processor.pad(cycled[i : i + batch_size]).items()}
        for i in range(0, len(cycled), batch_size)
    ]


def make_step(compiled: bool = False, mode: str | None = None):
    """A training step (bf16 autocast, fused AdamW on CUDA) of a fresh model, optionally through torch.compile."""
    model = MoleBlendForPreTraining(MoleBlendConfig.from_preset(PRESET)).to(DEVICE).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=DEVICE == "cuda")
    forward = torch.compile(model, mode=mode, dynamic=False if mode else None) if compiled else model

    def step(batch: dict) -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = forward(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, batches: list, runs: int = 15) -> dict:
    """Medians of host time (until the step's calls return) and step time (after synchronizing)."""
    for batch in batches:  # warm-up (and compilation)
        step(batch)
    synchronize()
    host, total = [], []
    for run in range(runs):
        start = time.perf_counter()
        step(batches[run % len(batches)])
        launched = time.perf_counter()
        synchronize()
        host.append(launched - start)
        total.append(time.perf_counter() - start)
    size = int(batches[0]["attention_mask"].shape[0])
    return {
        "batch": size,
        "host_ms": 1000 * statistics.median(host),
        "step_ms": 1000 * statistics.median(total),
        "molecules_per_s": size / statistics.median(total),
    }


def main() -> None:
    torch.manual_seed(0)
    processor = MoleBlendProcessor()
    molblocks = pd.read_parquet(ROOT / "tests" / "data" / "moses_200_conformers.parquet")["molblock"]
    features = [processor.featurize(block) for block in molblocks]
    batches = {size: make_batches(features, processor, size) for size in (64, 256)}

    step = make_step()
    print(json.dumps(timed(step, batches[64])), flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        for batch in batches[64]:
            step(batch)
        synchronize()
    events = trace.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    print(
        "cuda kernels per step",
        kernels / 3,
        "gpu time per step ms",
        sum(e.self_device_time_total for e in events) / 3 / 1000,
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
    print(events.table(sort_by="count", row_limit=15, max_name_column_width=60))
    print("sync-like:", [(e.key, e.count) for e in events if e.key in SYNC_EVENTS], flush=True)

    for label, mode, sizes in (
        ("compiled", None, (64, 256)),
        ("compiled reduce-overhead (CUDA graphs)", "reduce-overhead", (64,)),
    ):
        started = time.perf_counter()
        step = make_step(compiled=True, mode=mode)
        for size in sizes:
            result = timed(step, batches[size])
            result["compile_and_warmup_s"] = time.perf_counter() - started
            print(label, json.dumps(result), flush=True)
            started = time.perf_counter()


if __name__ == "__main__":
    main()
