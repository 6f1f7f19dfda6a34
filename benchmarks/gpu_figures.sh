#!/usr/bin/env bash
# The GPU figures of the README, in one run (a few minutes on one H100/H200): the pretraining step at bf16 against
# the explicit pair heads, the encoder against the official formulation, and the `moleblend pretrain` job's own
# throughput with DataLoader workers featurizing. Logs and JSON go to ${OUT:-benchmarks/results}.
#   bash benchmarks/gpu_figures.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out=${OUT:-benchmarks/results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, rdkit; print('torch', torch.__version__, 'transformers', transformers.__version__, 'rdkit', rdkit.__version__)" | tee -a "$out/gpu.txt"
timeout 240 python3 benchmarks/pretraining_step.py --device cuda --dtype bf16 --batch-sizes 64 256 1024 --runs 20 \
    --tiny-runs 20 2>&1 | tee "$out/pretraining_step_cuda.log"
cp benchmarks/results/pretraining_step_cuda_bf16.json "$out/" 2>/dev/null
timeout 90 python3 benchmarks/encoder_speed.py --device cuda --dtype bf16 --batch-size 64 --runs 20 2>&1 \
    | tee "$out/encoder_speed_cuda.log"
cp benchmarks/results/encoder_speed_cuda_bf16.json "$out/" 2>/dev/null
# The job: base model, bf16, ${WORKERS} DataLoader workers featurizing, batches of ${BATCH} (a window of as many
# molecules each), on ${CORPUS} (default: the 200 MOSES molecules with conformers of tests/data, read again epoch after
# epoch; a larger corpus allows more workers: windows >= workers).
corpus=${CORPUS:-tests/data/moses_200_conformers.parquet} batch=${BATCH:-64} workers=${WORKERS:-3}
rm -rf /tmp/moleblend-gpu-run
timeout 150 python3 -m moleblend_hf.cli pretrain "$corpus" --molblock-column molblock --preset base \
    --mixed-precision bf16 --batch-size "$batch" --window-size "$batch" --num-workers "$workers" --max-steps 100 \
    --logging-steps 20 --save-steps 1000 --report-to jsonl --no-progress --output-dir /tmp/moleblend-gpu-run 2>&1 \
    | tee "$out/pretrain_job_cuda.log"
cp /tmp/moleblend-gpu-run/train_log.jsonl "$out/pretrain_job_train_log.jsonl" 2>/dev/null
true
