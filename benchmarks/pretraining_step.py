"""Pretraining step benchmark: bilinear pair heads vs the explicit outer-product heads.

A full step (forward, backward, AdamW) of MoleBlendForPreTraining on batches of real drug-like molecules (MOSES,
with their RDKit conformers, so every loss is active). Each configuration runs in its own processes: one times
the steps (default allocator), one measures memory. On CPU, peak step memory is the highest resident set size
seen by a 1 ms sampler during a step, minus the resident size before it (model, gradients, optimizer state); for
that process only, glibc is told to return freed blocks >= 64 KiB to the OS (MALLOC_MMAP_THRESHOLD_), so the
resident size follows live tensors. Both the sampler thread (it competes for the cores) and that allocator setting
slow the steps, so the timing process runs neither. On CUDA memory is torch's peak allocation.

The timing process also times the three pair heads alone (forward + backward on the encoder's atom states): the
only part of a step the head implementation changes. `step_time_ratio_with_free_bilinear_heads` is the ratio the
step would have if the bilinear heads cost nothing, i.e. the floor set by everything both versions share.

    python -m benchmarks.pretraining_step [--preset base] [--batch-sizes 32 64] [--runs 5] [--device cpu]
        [--dtype fp32|bf16] [--gradient-checkpointing]   # adds the bilinear model with activation checkpointing

On a GPU: `--device cuda --dtype bf16 --batch-sizes 64 256 1024` (bf16 autocast; batches larger than the 200
molecules of the file cycle through them).

Prints JSON (medians) and writes benchmarks/results/pretraining_step_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "moses_200_conformers.parquet"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(
    preset: str,
    implementation: str,
    batch_size: int,
    runs: int,
    device: str,
    dtype: str,
    measure_memory: bool,
    checkpointing: bool = False,
) -> dict:
    """Times `runs` steps; with `measure_memory` on CPU, samples the resident size instead (the sampler thread
    competes for the cores, so the timing process never runs it)."""
    import pandas as pd
    import torch

    from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor

    torch.manual_seed(0)
    frame = pd.read_parquet(DATA)
    processor = MoleBlendProcessor()
    features = [processor.featurize(block) for block in frame["molblock"]]
    batches = _batches(features, batch_size, processor)
    model = MoleBlendForPreTraining(MoleBlendConfig.from_preset(preset, pair_head_implementation=implementation))
    model.to(device).train()
    if checkpointing:  # as `moleblend pretrain --gradient-checkpointing`
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda") or None)  # as the job
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

    cpu_memory = measure_memory and not device.startswith("cuda")
    sampler = threading.Thread(target=sample, daemon=True)
    if cpu_memory:
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
    if cpu_memory:
        sampling.set()
        sampler.join()
    result = {
        "implementation": implementation,
        "batch_size": batch_size,
        "step_seconds": times,
        "median_step_seconds": statistics.median(times),
        "molecules_per_s": batch_size / statistics.median(times),
        "padded_atoms": [int(b["atom_features"].shape[1]) for b in batches],
    }
    if not cpu_memory:
        result["pair_heads_seconds"] = statistics.median(_pair_head_times(model, batches[1], runs, device, synchronize))
    if device.startswith("cuda"):
        result["peak_step_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20 - baseline_cuda
    elif cpu_memory:
        result["peak_step_memory_mb"] = peak[0] - baseline
    return result


def _batches(features: list, batch_size: int, processor, count: int = 3) -> list:
    """Batches in file order; batches larger than the file (GPU sizes) cycle through its molecules, so they have
    the same molecules, and the same padding, as the file."""
    if batch_size * count <= len(features):
        count = len(features) // batch_size
    cycled = [features[i % len(features)] for i in range(batch_size * count)]
    return [processor.pad(cycled[i : i + batch_size]) for i in range(0, len(cycled), batch_size)]


def _pair_head_times(model, batch, runs: int, device: str, synchronize) -> list[float]:
    """Forward + backward of the three pair heads alone, on the encoder's atom states of `batch`: the part of a
    step that the head implementation changes (everything else is shared by both implementations)."""
    import torch

    with torch.no_grad():
        atoms = model.moleblend(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state[:, 1:]
    atoms.requires_grad_(True)
    heads = [model.spd_head, model.path_head, model.relative_position_head]
    times = []
    for _ in range(runs + 1):  # the first run warms up
        synchronize()
        start = time.perf_counter()
        sum(head(atoms).sum() for head in heads).backward()
        synchronize()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        atoms.grad = None
    return times[1:]


def _child(
    args,
    implementation: str,
    batch_size: int,
    runs: int,
    preset: str,
    env: dict,
    measure_memory: bool = False,
    checkpointing: bool = False,
) -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.pretraining_step",
        "--child",
        implementation,
        "--batch-size",
        str(batch_size),
        "--runs",
        str(runs),
        "--preset",
        preset,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
    ]
    command += ["--measure-memory"] if measure_memory else []
    command += ["--gradient-checkpointing"] if checkpointing else []
    completed = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=HERE.parent)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_child(args, implementation: str, batch_size: int, runs: int, preset: str, checkpointing: bool = False) -> dict:
    """Step times from a process with the default allocator; peak memory from one that returns memory eagerly."""
    timed = _child(args, implementation, batch_size, runs, preset, dict(os.environ), checkpointing=checkpointing)
    if not args.device.startswith("cuda"):
        eager = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        timed["peak_step_memory_mb"] = _child(args, implementation, batch_size, 1, preset, eager, True, checkpointing)[
            "peak_step_memory_mb"
        ]
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--tiny-runs", type=int, default=5, help="runs of the tiny-preset throughput figure")
    parser.add_argument("--child", choices=["bilinear", "outer_product"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--measure-memory", action="store_true")
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="also measure the bilinear model with activation checkpointing",
    )
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                child(
                    args.preset,
                    args.child,
                    args.batch_size,
                    args.runs,
                    args.device,
                    args.dtype,
                    args.measure_memory,
                    args.gradient_checkpointing,
                )
            )
        )
        return

    result = {
        "benchmark": "pretraining_step",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "runs": args.runs,
        "data": "MOSES molecules with RDKit conformers (tests/data)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "batches": {},
    }
    for batch_size in args.batch_sizes:
        bilinear = run_child(args, "bilinear", batch_size, args.runs, args.preset)
        explicit = run_child(args, "outer_product", batch_size, args.runs, args.preset)
        result["batches"][str(batch_size)] = {
            "bilinear": bilinear,
            "outer_product": explicit,
            "step_time_ratio": bilinear["median_step_seconds"] / explicit["median_step_seconds"],
            # What the ratio would be if the bilinear heads cost nothing: the floor set by the shared encoder.
            "step_time_ratio_with_free_bilinear_heads": (
                bilinear["median_step_seconds"] - bilinear["pair_heads_seconds"]
            )
            / explicit["median_step_seconds"],
            "peak_memory_ratio": bilinear["peak_step_memory_mb"] / explicit["peak_step_memory_mb"],
        }
        if args.gradient_checkpointing:
            checkpointed = run_child(args, "bilinear", batch_size, args.runs, args.preset, checkpointing=True)
            result["batches"][str(batch_size)] |= {
                "bilinear_gradient_checkpointing": checkpointed,
                "checkpointed_step_time_ratio": checkpointed["median_step_seconds"] / explicit["median_step_seconds"],
                "checkpointed_peak_memory_ratio": checkpointed["peak_step_memory_mb"] / explicit["peak_step_memory_mb"],
            }
    tiny = run_child(args, "bilinear", 64, args.tiny_runs, "tiny")
    result["tiny_molecules_per_s_batch64"] = tiny["molecules_per_s"]
    output = HERE / "results" / f"pretraining_step_{args.device.split(':')[0]}_{args.dtype}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
