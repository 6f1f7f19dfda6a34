"""Where a pretraining step's time goes on a GPU, and what torch.compile gives (a diagnostic, printed as text).

Base model, bf16 autocast, fused AdamW, the MOSES batches of `pretraining_step.py` (cycled to the batch size):
1. eager at batch 64: host time (until the step's calls return) and step time (after synchronizing), medians of 15;
2. a torch.profiler trace of 3 eager steps: CUDA kernels per step, GPU time per step, the host-side operations by
   self time and by count, and any host synchronisations;
3. torch.compile (default mode) at batch 64 and 256, with the compile + warm-up time;
4. torch.compile(mode="reduce-overhead", dynamic=False) at batch 64: CUDA graphs replay the step's kernels without
   launching each from Python.

    python3 benchmarks/gpu_step_profile.py           # on a GPU machine (DEV=cpu PRESET=tiny to try it on a CPU)
"""
import json, os, statistics, sys, time
from pathlib import Path
import pandas as pd, torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package from this checkout
from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor
from torch.profiler import profile, ProfilerActivity

torch.manual_seed(0)
DEV = os.environ.get("DEV", "cuda"); PRESET = os.environ.get("PRESET", "base")
if DEV == "cpu":
    torch.cuda.synchronize = lambda: None
proc = MoleBlendProcessor()
feats = [proc.featurize(b) for b in pd.read_parquet(Path(__file__).resolve().parent.parent / "tests" / "data" / "moses_200_conformers.parquet")["molblock"]]
def batches(bs, n=3):
    cyc = [feats[i % len(feats)] for i in range(bs * n)]
    return [{k: v.to(DEV) for k, v in proc.pad(cyc[i:i + bs]).items()} for i in range(0, len(cyc), bs)]

def make(compiled=False, mode=None):
    m = MoleBlendForPreTraining(MoleBlendConfig.from_preset(PRESET)).to(DEV).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=DEV == "cuda")
    fwd = torch.compile(m, mode=mode, dynamic=False if mode else None) if compiled else m
    def step(b):
        with torch.autocast(DEV, dtype=torch.bfloat16):
            out = fwd(**b)
        out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return m, step

def timed(step, bs, runs=15):
    bb = batches(bs)
    for i in range(3): step(bb[i % 3])
    torch.cuda.synchronize(); host, total = [], []
    for i in range(runs):
        t0 = time.perf_counter(); step(bb[i % 3]); t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
        host.append(t1 - t0); total.append(t2 - t0)
    return {"batch": bs, "host_ms": 1000 * statistics.median(host), "step_ms": 1000 * statistics.median(total),
            "molecules_per_s": bs / statistics.median(total)}

m, step = make()
print(json.dumps(timed(step, 64)), flush=True)
bb = batches(64)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for i in range(3): step(bb[i])
    torch.cuda.synchronize()
ev = prof.key_averages()
kernels = sum(e.count for e in ev if e.device_type == torch.autograd.DeviceType.CUDA)
print("cuda kernels per step", kernels / 3, "gpu time per step ms", sum(e.self_device_time_total for e in ev) / 3 / 1000)
print(ev.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
print(ev.table(sort_by="count", row_limit=15, max_name_column_width=60))
syncs = [e for e in ev if e.key in ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::is_nonzero")]
print("sync-like:", [(e.key, e.count) for e in syncs], flush=True)
del m, step
torch.cuda.empty_cache() if DEV == "cuda" else None
t0 = time.perf_counter()
m, step = make(compiled=True)
for bs in (64, 256):
    r = timed(step, bs)
    r["compile_and_warmup_s"] = time.perf_counter() - t0
    print("compiled", json.dumps(r), flush=True)
    t0 = time.perf_counter()

del m, step
t0 = time.perf_counter()
m, step = make(compiled=True, mode="reduce-overhead")
r = timed(step, 64)
r["compile_and_warmup_s"] = time.perf_counter() - t0
print("compiled reduce-overhead (CUDA graphs)", json.dumps(r), flush=True)
