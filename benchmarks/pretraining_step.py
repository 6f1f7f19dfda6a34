"""Pretraining step benchmark: bilinear pair heads vs the explicit outer-product heads.

A full step (forward, backward, AdamW) of MoleBlendForPreTraining on batches of real drug-like molecules (MOSES,
with their RDKit conformers, so every loss is active). Each configuration runs in its own processes: one times
the steps (default allocator), one measures memory. On CPU, peak step memory is the highest resident set size
seen by a 1 ms sampler during a step, minus the resident size before it (model, gradients, optimizer state); for
that process only, glibc is told to return freed blocks >= 64 KiB to the OS (MALLOC_MMAP_THRESHOLD_), so the
resident size follows live tensors (this slows allocation, hence the separate timing process). On CUDA it is
torch's peak allocation.

    python benchmarks/pretraining_step.py [--preset base] [--batch-sizes 32 64] [--runs 3] [--device cpu]

Prints JSON (medians) and writes benchmarks/results/pretraining_step_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "moses_200_conformers.parquet"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(preset: str, implementation: str, batch_size: int, runs: int, device: str, dtype: str) -> dict:
    import pandas as pd
    import torch

    from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor

    torch.manual_seed(0)
    frame = pd.read_parquet(DATA)
    processor = MoleBlendProcessor()
    features = [processor.featurize(block) for block in frame["molblock"]]
    batches = [processor.pad(features[i: i + batch_size]) for i in range(0, len(features) - batch_size + 1, 
                                                                           batch_size)]
    model = MoleBlendForPreTraining(MoleBlendConfig.from_preset(preset, pair_head_implementation=implementation))
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=dtype == "bf16")

    def step(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step(batches[0])  # warm-up: allocates optimizer state
    synchronize()
    baseline = _rss_mb()
    peak = [baseline]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        baseline_cuda = torch.cuda.memory_allocated() / 2**20
    times = []
    for run in range(runs):
        batch = batches[(run + 1) % len(batches)]
        synchronize()
        start = time.perf_counter()
        step(batch)
        synchronize()
        times.append(time.perf_counter() - start)
    sampling.set()
    sampler.join()
    result = {
        "implementation": implementation, "batch_size": batch_size, "step_seconds": times,
        "median_step_seconds": statistics.median(times),
        "molecules_per_s": batch_size / statistics.median(times),
        "padded_atoms": [int(b["atom_features"].shape[1]) for b in batches],
    }
    if device.startswith("cuda"):
        result["peak_step_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20 - baseline_cuda
    else:
        result["peak_step_memory_mb"] = peak[0] - baseline
    return result


def _child(args, implementation: str, batch_size: int, runs: int, preset: str, env: dict) -> dict:
    command = [sys.executable, __file__, "--child", implementation, "--batch-size", str(batch_size), "--runs",
               str(runs), "--preset", preset, "--device", args.device, "--dtype", args.dtype]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_child(args, implementation: str, batch_size: int, runs: int, preset: str) -> dict:
    """Step times from a process with the default allocator; peak memory from one that returns memory eagerly."""
    timed = _child(args, implementation, batch_size, runs, preset, dict(os.environ))
    if not args.device.startswith("cuda"):
        eager = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        timed["peak_step_memory_mb"] = _child(args, implementation, batch_size, 1, preset, eager)[
            "peak_step_memory_mb"]
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--tiny-runs", type=int, default=5, help="runs of the tiny-preset throughput figure")
    parser.add_argument("--child", choices=["bilinear", "outer_product"])
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.preset, args.child, args.batch_size, args.runs, args.device, args.dtype)))
        return

    result = {"benchmark": "pretraining_step", "preset": args.preset, "device": args.device, "dtype": args.dtype,
              "runs": args.runs, "data": "MOSES molecules with RDKit conformers (tests/data)",
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
              "batches": {}}
    for batch_size in args.batch_sizes:
        bilinear = run_child(args, "bilinear", batch_size, args.runs, args.preset)
        explicit = run_child(args, "outer_product", batch_size, args.runs, args.preset)
        result["batches"][str(batch_size)] = {
            "bilinear": bilinear, "outer_product": explicit,
            "step_time_ratio": bilinear["median_step_seconds"] / explicit["median_step_seconds"],
            "peak_memory_ratio": bilinear["peak_step_memory_mb"] / explicit["peak_step_memory_mb"],
        }
    tiny = run_child(args, "bilinear", 64, args.tiny_runs, "tiny")
    result["tiny_molecules_per_s_batch64"] = tiny["molecules_per_s"]
    output = HERE / "results" / f"pretraining_step_{args.device.split(':')[0]}_{args.dtype}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
