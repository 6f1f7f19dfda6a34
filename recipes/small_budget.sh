#!/usr/bin/env bash
# The small-budget MoleBLEND recipe behind the shipped checkpoint `moleblend-mini-qm9-moses` (README: "Pretraining
# that pays off"). About 45 minutes of pretraining per model on one CPU core (2 cores: both models at once), then
# the benchmark. Every step is resumable: rerun the script and finished steps are skipped, a pretraining run
# continues from its last checkpoint, finished fine-tuning runs are reused.
#
#   DATA=../shared/data bash recipes/small_budget.sh            # everything
#   STEPS_PER_CALL=500 bash recipes/small_budget.sh             # stop each pretraining call after 500 steps
set -euo pipefail
DATA=${DATA:-../shared/data}          # MoleculeNet CSVs + splits, qm9/qm9.parquet, pretrain/moses_200k.smi
OUT=${OUT:-outputs/recipe}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
BENCH=(--moleculenet-dir "$DATA/moleculenet" --qm9 "$DATA/qm9/qm9.parquet" --qm9-targets gap homo lumo
       --qm9-max-molecules 3000)

# 1. Every benchmark test molecule, to keep out of pretraining.
[ -f "$OUT/test_molecules.smi" ] || moleblend benchmark "${BENCH[@]}" --output-dir "$OUT/bench_export" \
    --export-test-molecules "$OUT/test_molecules.smi"

# 2. Conformers for 24,000 MOSES molecules, generated once (ETKDGv3 + MMFF94, seed 0): ~10 min on 2 cores.
[ -f "$OUT/moses_conformers.parquet" ] || moleblend corpus "$DATA/pretrain/moses_200k.smi" \
    --output "$OUT/moses_conformers.parquet" --max-molecules 24000 --exclude "$OUT/test_molecules.smi" --num-workers 2

# 3. Held-out molecules (1,000 QM9 + the last 1,000 of the MOSES corpus): losses logged, never trained on.
[ -f "$OUT/heldout.parquet" ] || python recipes/heldout.py "$DATA/qm9/qm9.parquet" "$OUT/moses_conformers.parquet" \
    "$OUT/test_molecules.smi" "$OUT/heldout.parquet"

# 4. Pretraining: the blended model and the paper's ablation without blending, same budget (4,000 steps).
pretrain() {  # $1 = run name, then extra flags
    local name=$1; shift
    local resume=(); [ -d "$OUT/$name" ] && resume=(--resume)
    [ -f "$OUT/$name/config.json" ] && return 0  # finished: the model sits at the root of the run directory
    moleblend pretrain "$DATA/qm9/qm9.parquet" "$OUT/moses_conformers.parquet" --output-dir "$OUT/$name" --preset mini \
        --max-steps 4000 --max-tokens 16384 --learning-rate 5e-4 --warmup-steps 400 --shuffle-buffer 160000 \
        --exclude "$OUT/test_molecules.smi" "$OUT/heldout.parquet" --eval-inputs "$OUT/heldout.parquet" \
        --eval-steps 500 --save-steps 250 --save-total-limit 16 --no-progress --report-to jsonl "${resume[@]}" \
        ${STEPS_PER_CALL:+--stop-after-steps "$STEPS_PER_CALL"} "$@"
}
pretrain pretrain_blend &
pretrain pretrain_noblend --set blend_relations=false &
wait
[ -f "$OUT/pretrain_blend/config.json" ] && [ -f "$OUT/pretrain_noblend/config.json" ] || {
    echo "pretraining stopped early (--stop-after-steps); run the script again to continue"; exit 0; }

# 5. The benchmark: scratch | pretrained (blended) | pretrained (no blending) | random forest, 3 seeds.
moleblend benchmark "${BENCH[@]}" --output-dir "$OUT/benchmark" --preset mini --seeds 0 1 2 \
    --pretrained "$OUT/pretrain_blend" --compare "no_blending=$OUT/pretrain_noblend" \
    --pretraining-corpus "$DATA/qm9/qm9.parquet" "$OUT/moses_conformers.parquet" \
    --pretraining-exclude "$OUT/test_molecules.smi" "$OUT/heldout.parquet" \
    --max-train-molecules 2000 --max-valid-molecules 500 --cache-dir "$OUT/cache"

# 6. Does more pretraining pay? The blended run's checkpoints at 500, 1,000 and 2,000 steps (and its final model at
#    4,000) fine-tuned on three validation tasks, seed 0, with scratch as step 0: validation metric against steps.
python -m recipes.pretraining_compute export "$OUT/pretrain_blend" "$OUT/compute_models" --steps 500 1000 2000
M=$OUT/compute_models
moleblend benchmark --moleculenet-dir "$DATA/moleculenet" --tasks bbbp bace freesolv --seeds 0 \
    --output-dir "$OUT/compute" --max-train-molecules 2000 --max-valid-molecules 500 --cache-dir "$OUT/cache" \
    --no-fingerprint-baseline --no-chemprop-baseline --pretrained "$OUT/pretrain_blend" \
    --compare step500="$M/step-500" step1000="$M/step-1000" step2000="$M/step-2000" no_blending="$OUT/pretrain_noblend"
python -m recipes.pretraining_compute plot "$OUT/compute/results.json" "$OUT/compute/pretraining_compute.json" \
    --points scratch=0 step500=500 step1000=1000 step2000=2000 pretrained=4000
