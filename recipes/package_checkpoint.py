"""The shipped checkpoint and its model card.

    python -m recipes.package_checkpoint --run RUN_DIR     # copy a finished pretraining run into the package
    python -m recipes.package_checkpoint                   # regenerate the card from the stored results

`--run` copies the model, the processor and the generated remote code of a `moleblend pretrain` run directory
into the package and stores the run's records (`summary_rank0.json`, `eval_log.jsonl`) under
`benchmarks/results/pretraining_payoff/`. The card is always generated from stored files only: those records
and the benchmark's `results.json` (`--results`), so the card's table is the stored table
(tests/unit/publishing/test_shipped_checkpoint.py regenerates it and compares).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from moleblend_hf import MoleBlendConfig, MoleBlendForPreTraining, MoleBlendProcessor
from moleblend_hf.publishing.card import card_for_directory
from moleblend_hf.publishing.checkpoints import DEFAULT_PRETRAINED, SHIPPED
from moleblend_hf.publishing.remote_code import write_remote_code
from moleblend_hf.training.benchmark_tables import results_markdown

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: the pretraining run's records, stored when it was packaged
RECORDS = RESULTS / "pretraining_payoff"
SUMMARY, HELD_OUT = RECORDS / "pretrain_blend_summary.json", RECORDS / "pretrain_blend_eval_log.jsonl"
#: the benchmark whose table the card shows
BENCHMARK = RESULTS / "moleculenet_benchmark" / "results.json"

COMMAND = """moleblend corpus moses_200k.smi --output moses_conformers.parquet --max-molecules 24000 \\
    --exclude test_molecules.smi --num-workers 2
moleblend pretrain qm9.parquet moses_conformers.parquet --output-dir pretrain_blend --preset mini \\
    --max-steps 4000 --max-tokens 16384 --learning-rate 5e-4 --warmup-steps 400 --shuffle-buffer 160000 \\
    --exclude test_molecules.smi heldout.parquet --eval-inputs heldout.parquet --eval-steps 500 --save-steps 250"""

CORPUS = (
    "QM9 (130,829 molecules with B3LYP/6-31G(2df,p) geometries, qm9pack 1.0.3) and 24,000 MOSES molecules "
    "(molsets 0.3.1 train split, a seeded subset of 200k) with one ETKDGv3 + MMFF94 conformer each, generated "
    "once by `moleblend corpus`; every test molecule of the benchmark (MoleculeNet scaffold test splits, the "
    "QM9 benchmark test split) and 2,000 held-out molecules excluded by canonical SMILES"
)


def package_run(run: str | Path, name: str = DEFAULT_PRETRAINED) -> Path:
    """Copy the model, processor and generated remote code of pretraining run `run` into the package as `name`,
    and store the run's summary and held-out losses next to the benchmark results."""
    run_dir, target = Path(run), SHIPPED[name]
    model_dir = run_dir / "final" if (run_dir / "final" / "config.json").exists() else run_dir
    target.mkdir(parents=True, exist_ok=True)
    MoleBlendForPreTraining.from_pretrained(model_dir).save_pretrained(target)
    MoleBlendProcessor.from_pretrained(model_dir).save_pretrained(target)
    write_remote_code(target)  # generated from the package source, with a do-not-edit header
    shutil.copyfile(run_dir / "summary_rank0.json", SUMMARY)
    shutil.copyfile(run_dir / "eval_log.jsonl", HELD_OUT)
    return target


def shipped_card(name: str = DEFAULT_PRETRAINED, results: str | Path = BENCHMARK) -> str:
    """The model card of shipped checkpoint `name`, from its config and the stored records and results only."""
    directory = SHIPPED[name]
    summary = json.loads(SUMMARY.read_text())
    last = [json.loads(line) for line in HELD_OUT.read_text().splitlines() if line.strip()][-1]
    stored = json.loads(Path(results).read_text())
    seeds = len(stored["budget"]["seeds"])
    card = card_for_directory(
        directory,
        MoleBlendConfig.from_pretrained(directory),
        repo_id=name,
        datasets=["QM9", "MOSES"],
        pretraining={
            "corpus": CORPUS,
            "budget": f"{summary['step']} steps, {summary['molecules_seen']:,} molecules seen, one CPU thread, "
            "token budget 16,384 (atoms+1)^2 per batch",
            "objective": "MoleBLEND blending (SPD : path : 3D = 0.2 : 0.2 : 0.6 per atom pair, symmetric, per "
            "molecule), coordinate noise 0.2 Å, losses 0.5·3D + 0.1·SPD + 0.1·path + 6·denoise",
            "optimizer": "AdamW, learning rate 5e-4, 400 warmup steps then cosine decay to 0, gradient clipping 1.0",
            f"held-out losses (2,000 molecules, step {last['step']})": {
                k: round(v, 4) for k, v in last.items() if k.endswith("loss")
            },
            "skipped": summary["skipped"],
        },
    )
    return (
        str(card).rstrip() + "\n\n## Reproduce\n\n`bash recipes/small_budget.sh` in the moleblend-hf repository runs "
        "every step; the pretraining commands are\n\n```bash\n" + COMMAND + "\n```\n\n"
        f"## Downstream results (fine-tuned, test splits, mean ± std over {seeds} seeds)\n\n"
        "Generated from the benchmark's stored `results.json` (`moleblend benchmark`); the `pretrained` columns "
        "fine-tune this checkpoint.\n\n" + results_markdown(stored)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a finished `moleblend pretrain` run directory to package")
    parser.add_argument("--results", default=str(BENCHMARK), help="the benchmark's results.json the card shows")
    parser.add_argument("--name", default=DEFAULT_PRETRAINED, choices=list(SHIPPED))
    args = parser.parse_args()
    if args.run:
        package_run(args.run, args.name)
    path = SHIPPED[args.name] / "README.md"
    path.write_text(shipped_card(args.name, args.results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
