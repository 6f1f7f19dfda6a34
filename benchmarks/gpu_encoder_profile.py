"""Where the encoder's GPU time goes, ours against the official formulation (a diagnostic, printed as text).

Inference at batch 64 (the batches of `encoder_speed.py`), fp32 and bf16 autocast: for each formulation the CUDA
kernels per forward, GPU time per forward, and the kernels by total GPU time (torch.profiler, 5 forwards).

    python -m benchmarks.gpu_encoder_profile        # on a GPU machine
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.encoder_speed import DATA, _models
from moleblend_hf import MoleBlendProcessor
from tests.parity.official_reference import OfficialMolnetEncoder

FORWARDS = 5


def main() -> None:
    processor = MoleBlendProcessor()
    features = [processor.featurize(block) for block in pd.read_parquet(DATA)["molblock"].head(64)]
    batch = {k: v.cuda() for k, v in processor.pad(features).items()}
    official_batch = {
        k: v.cuda() if torch.is_tensor(v) else v
        for k, v in OfficialMolnetEncoder.official_batch(dict(processor.pad(features))).items()
    }
    official, ours = (model.cuda() for model in _models("base"))
    runs = {"official": lambda: official(official_batch), "ours": lambda: ours(**batch)}
    for dtype in ("fp32", "bf16"):
        for name, run in runs.items():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                for _ in range(3):
                    run()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as trace:
                    for _ in range(FORWARDS):
                        run()
                    torch.cuda.synchronize()
            kernels = [e for e in trace.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            total_ms = sum(e.device_time for e in kernels) / 1000 / FORWARDS
            print(f"\n== {name} {dtype}: {len(kernels) / FORWARDS:.0f} kernels, {total_ms:.2f} ms GPU per forward")
            by_name: dict[str, list[float]] = {}
            for event in kernels:
                by_name.setdefault(event.name[:90], []).append(event.device_time)
            ranked = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:14]
            for kernel, times in ranked:
                print(f"{sum(times) / 1000 / FORWARDS:8.3f} ms {len(times) / FORWARDS:6.1f}x  {kernel}")


if __name__ == "__main__":
    main()
