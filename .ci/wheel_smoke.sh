#!/usr/bin/env bash
# The built wheel alone, in a fresh venv and away from the checkout: core dependencies only (no extras), then
# `moleblend pretrain` on the bundled corpus and `moleblend finetune` on a labelled file from the checkout.
# Needs `build` (a dev dependency) in the calling Python. Takes a few minutes (the dependencies are installed).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m build --wheel --outdir "$work/dist" "$repo"
python -m venv "$work/venv"
. "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet torch==2.13.0  # first: pip would otherwise pick torch for the wheel's ">=2.6"
python -m pip install --quiet "$work"/dist/moleblend_hf-*.whl

cd "$work"  # the installed package runs, not the checkout
python - <<'PY'
import importlib.util, sys
spec = importlib.util.find_spec("moleblend_hf")
assert "site-packages" in spec.origin, spec.origin
missing = [m for m in ("matplotlib", "tensorboard", "pytest") if importlib.util.find_spec(m)]
assert not missing, f"the core install pulled in {missing}"
PY
export OMP_NUM_THREADS=2
moleblend pretrain --max-steps 20 --output-dir pretrain --no-progress
moleblend finetune "$repo/tests/data/esol.csv" --label-columns "measured log solubility in mols per litre" \
    --model pretrain --epochs 1 --output-dir finetune
python - <<'PY'
import json
metrics = json.load(open("finetune/metrics.json"))
assert metrics["test"]["rmse"] > 0, metrics
print("wheel smoke test passed: test RMSE", round(metrics["test"]["rmse"], 3))
PY
