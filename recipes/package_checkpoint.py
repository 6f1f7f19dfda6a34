"""Copy a finished recipe run into the package as the shipped checkpoint, with a model card that states the data,
the budget, the command and the measured results.

    python recipes/package_checkpoint.py RUN_DIR BENCHMARK_DIR [NAME]

RUN_DIR is the `moleblend pretrain` output (its model at the root (`final/` in runs made before 0.2), `eval_log.jsonl`, `summary_rank0.json`);
BENCHMARK_DIR the `moleblend benchmark` output (`results.md`).
"""

import json
import sys
from pathlib import Path

from moleblend_hf import MoleBlendForPreTraining, MoleBlendProcessor
from moleblend_hf.publishing.remote_code import write_remote_code
from moleblend_hf.publishing.checkpoints import DEFAULT_PRETRAINED, SHIPPED
from moleblend_hf.publishing.card import write_model_card

COMMAND = """moleblend corpus moses_200k.smi --output moses_conformers.parquet --max-molecules 24000 \\
    --exclude test_molecules.smi --num-workers 2
moleblend pretrain qm9.parquet moses_conformers.parquet --output-dir pretrain_blend --preset mini \\
    --max-steps 4000 --max-tokens 16384 --learning-rate 5e-4 --warmup-steps 400 --shuffle-buffer 160000 \\
    --exclude test_molecules.smi heldout.parquet --eval-inputs heldout.parquet --eval-steps 500 --save-steps 250"""


def main(run: str, benchmark: str, name: str = DEFAULT_PRETRAINED) -> None:
    run_dir, target = Path(run), SHIPPED[name]
    model_dir = run_dir / "final" if (run_dir / "final" / "config.json").exists() else run_dir
    model = MoleBlendForPreTraining.from_pretrained(model_dir)
    processor = MoleBlendProcessor.from_pretrained(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    write_remote_code(target)  # generated from the package source, with a do-not-edit header
    summary = json.loads((run_dir / "summary_rank0.json").read_text())
    held_out = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    last = held_out[-1]
    write_model_card(target, model.config, repo_id=name, datasets=["QM9", "MOSES"], pretraining={
        "corpus": "QM9 (130,829 molecules with B3LYP/6-31G(2df,p) geometries, qm9pack 1.0.3) and 24,000 MOSES "
                  "molecules (molsets 0.3.1 train split, a seeded subset of 200k) with one ETKDGv3 + MMFF94 "
                  "conformer each, generated once by `moleblend corpus`; every test molecule of the benchmark "
                  "(MoleculeNet scaffold test splits, the QM9 benchmark test split) and 2,000 held-out molecules "
                  "excluded by canonical SMILES",
        "budget": f"{summary['step']} steps, {summary['molecules_seen']:,} molecules seen, about one CPU core "
                  "(61 minutes of wall time beside the ablation and other jobs on 2 cores), token budget 16,384 (atoms+1)^2 per batch",
        "objective": "MoleBLEND blending (SPD : path : 3D = 0.2 : 0.2 : 0.6 per atom pair, symmetric, per "
                     "molecule), coordinate noise 0.2 Å, losses 0.5·3D + 0.1·SPD + 0.1·path + 6·denoise",
        "optimizer": "AdamW, learning rate 5e-4, 400 warmup steps then cosine decay to 0, gradient clipping 1.0",
        "held-out losses (2,000 molecules, step "
        f"{last['step']})": {k: round(v, 4) for k, v in last.items() if k.endswith("loss")},
        "skipped": summary["skipped"],
    })
    card = (target / "README.md").read_text()
    results = (Path(benchmark) / "results.md").read_text()
    card += ("\n## Reproduce\n\n`bash recipes/small_budget.sh` in the moleblend-hf repository runs every step; the "
             "pretraining commands are\n\n```bash\n" + COMMAND + "\n```\n\n## Downstream results (fine-tuned, "
             "test splits, mean ± std over 3 seeds)\n\n" + results + "\n")
    (target / "README.md").write_text(card)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
