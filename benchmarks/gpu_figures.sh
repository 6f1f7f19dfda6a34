#!/usr/bin/env bash
# The GPU figures of the README, in one run on one H100/H200 (each stage has its own time limit):
#   tests    the faster inference paths' tests that need a GPU (tests/unit/inference/test_inference_paths.py)
#   encoder  the encoder against the official formulation, fp32 and bf16, with CUDA graphs (about a minute)
#   profile  the encoder's GPU kernels, ours against the official formulation (benchmarks/gpu_encoder_profile.py)
#   compile  forward + backward through torch.compile, both formulations (bf16; compiling takes minutes)
#   step     the pretraining step at bf16 against the explicit pair heads, batch 64/256/1024
#   job      the `moleblend pretrain` job's own throughput with DataLoader workers featurizing
# Logs and JSON go to ${OUT:-benchmarks/results}.
#   bash benchmarks/gpu_figures.sh                       # every stage
#   STAGES="tests encoder" bash benchmarks/gpu_figures.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out=${OUT:-benchmarks/results}
stages=" ${STAGES:-tests encoder profile compile step job} "
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, rdkit; print('torch', torch.__version__, 'transformers', transformers.__version__, 'rdkit', rdkit.__version__)" | tee -a "$out/gpu.txt"
if [[ $stages == *" tests "* ]]; then
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/inference/test_inference_paths.py 2>&1 \
        | tee "$out/test_inference_paths_cuda.log"
fi
if [[ $stages == *" encoder "* ]]; then
    for dtype in fp32 bf16; do
        timeout 120 python3 -m benchmarks.encoder_speed --device cuda --dtype "$dtype" --batch-size 64 --runs 20 \
            --cuda-graphs 2>&1 | tee "$out/encoder_speed_cuda_$dtype.log"
    done
    cp benchmarks/results/encoder_speed_cuda.json benchmarks/results/encoder_speed_cuda_bf16.json "$out/" 2>/dev/null
fi
if [[ $stages == *" profile "* ]]; then
    timeout 120 python3 -m benchmarks.gpu_encoder_profile 2>&1 | tee "$out/gpu_encoder_profile.log"
fi
if [[ $stages == *" compile "* ]]; then
    timeout 330 python3 -m benchmarks.encoder_speed --device cuda --dtype bf16 --batch-size 64 --runs 20 --compile \
        --pad-to-multiple-of 8 --output benchmarks/results/encoder_speed_cuda_bf16_compiled.json 2>&1 \
        | tee "$out/encoder_speed_compiled.log"
    cp benchmarks/results/encoder_speed_cuda_bf16_compiled.json "$out/" 2>/dev/null
fi
if [[ $stages == *" step "* ]]; then
    timeout 240 python3 -m benchmarks.pretraining_step --device cuda --dtype bf16 --batch-sizes 64 256 1024 \
        --runs 20 --tiny-runs 20 2>&1 | tee "$out/pretraining_step_cuda.log"
    cp benchmarks/results/pretraining_step_cuda_bf16.json "$out/" 2>/dev/null
fi
if [[ $stages == *" job "* ]]; then
    # base model, bf16, ${WORKERS} DataLoader workers featurizing, batches of ${BATCH} (a window of as many
    # molecules each), on ${CORPUS} (default: the 200 MOSES molecules with conformers of tests/data, read again
    # epoch after epoch; a larger corpus allows more workers: windows >= workers).
    corpus=${CORPUS:-tests/data/moses_200_conformers.parquet} batch=${BATCH:-64} workers=${WORKERS:-3}
    rm -rf /tmp/moleblend-gpu-run
    timeout 150 python3 -m moleblend_hf.cli pretrain "$corpus" --molblock-column molblock --preset base \
        --mixed-precision bf16 --batch-size "$batch" --window-size "$batch" --num-workers "$workers" \
        --max-steps 100 --logging-steps 20 --save-steps 1000 --report-to jsonl --no-progress \
        --output-dir /tmp/moleblend-gpu-run 2>&1 | tee "$out/pretrain_job_cuda.log"
    cp /tmp/moleblend-gpu-run/train_log.jsonl "$out/pretrain_job_train_log.jsonl" 2>/dev/null
fi
true
