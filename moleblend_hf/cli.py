"""The `moleblend` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .cli_hub import add_hub_commands
from .modeling.configuration_moleblend import PRESETS


def _add_embed(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help="molecules (SMILES/SDF/CSV/parquet) -> parquet of graph embeddings",
        description="Embed molecules with a MoleBLEND model. Without --input, embeds the bundled QM9 subset "
                    "(2,000 molecules with DFT geometries).")
    parser.add_argument("--input", help="a .smi, .csv, .parquet, .sdf, .sdf.gz or .mol file (default: bundled QM9)")
    parser.add_argument("--output", default="outputs/embeddings", help="output directory of parquet parts")
    parser.add_argument("--model", help="a save_pretrained directory; default: a freshly initialised --preset model")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=2048, help="rows per output part (the resume unit)")
    parser.add_argument("--per-atom", action="store_true", help="also write per-atom embeddings")
    parser.add_argument("--conformers", choices=["given", "generate", "none"],
                        help="conformer policy (default: the saved processor's, else 'given')")
    parser.add_argument("--smiles-column")
    parser.add_argument("--molblock-column")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from .training.data import BUNDLED_QM9
    from .training.embed import embed_file, load_model_and_processor

    model, processor = load_model_and_processor(args.model, args.preset, args.seed, args.conformers)
    if args.model is None:
        print(f"note: no --model given; embedding with a randomly initialised '{args.preset}' model (a demo of "
              "the pipeline; pass a trained model for meaningful embeddings)", file=sys.stderr)
    summary = embed_file(
        args.input or BUNDLED_QM9, args.output, model, processor, batch_size=args.batch_size,
        chunk_size=args.chunk_size, per_atom=args.per_atom, device=args.device, smiles_column=args.smiles_column,
        molblock_column=args.molblock_column, progress=not args.no_progress,
    )
    print(json.dumps(summary.__dict__, indent=2))
    return 0


def _parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects FIELD=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_pretrain(subparsers) -> None:
    from .training.pretrain import PretrainArguments

    d = PretrainArguments()
    parser = subparsers.add_parser(
        "pretrain", help="pretrain MoleBLEND (blend relations, predict them back)",
        description="Pretrain MoleBLEND with Accelerate. Without inputs, pretrains the tiny preset on the bundled "
                    "QM9 subset (2,000 molecules with DFT geometries). Several processes: launch with torchrun or "
                    "accelerate launch.")
    parser.add_argument("inputs", nargs="*", help="files or globs: .smi, .csv, .parquet, .sdf, .sdf.gz, or datasets "
                                                  "directories (default: the bundled QM9 subset)")
    parser.add_argument("--output", default=d.output_dir, help="run directory (checkpoints, logs, final model)")
    parser.add_argument("--preset", default=d.preset, choices=sorted(PRESETS))
    parser.add_argument("--set", dest="overrides", action="append", type=_parse_override, default=[],
                        metavar="FIELD=VALUE", help="override any MoleBlendConfig field (JSON value), repeatable")
    parser.add_argument("--init-from", help="start from a saved MoleBlendForPreTraining / MoleBlendModel directory")
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="molecules per batch and process")
    parser.add_argument("--max-tokens", type=int, help="instead of --batch-size: budget of (atoms+1)^2 x molecules")
    parser.add_argument("--window-size", type=int, default=d.window_size,
                        help="molecules grouped by atom count before batching")
    parser.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=d.gradient_accumulation_steps)
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--min-lr-ratio", type=float, default=d.min_learning_rate_ratio)
    parser.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=d.mixed_precision)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--num-workers", type=int, default=d.num_workers,
                        help="DataLoader workers (featurization and conformer generation happen there)")
    parser.add_argument("--conformers", choices=["given", "generate", "none"], default=d.conformers)
    parser.add_argument("--smiles-column")
    parser.add_argument("--molblock-column")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="FILE",
                        help="never train on these molecules (matched by canonical SMILES), e.g. the test sets "
                             "written by `moleblend benchmark --export-test-molecules`")
    parser.add_argument("--eval-inputs", nargs="+", default=[], metavar="FILE",
                        help="held-out molecules (keep them out of training with --exclude); their pretraining "
                             "losses go to eval_log.jsonl and TensorBoard")
    parser.add_argument("--eval-steps", type=int, default=d.eval_steps,
                        help="evaluate every N steps (default: at the end only)")
    parser.add_argument("--eval-max-molecules", type=int, default=d.eval_max_molecules)
    parser.add_argument("--save-steps", type=int, default=d.save_steps)
    parser.add_argument("--save-total-limit", type=int, default=d.save_total_limit)
    parser.add_argument("--logging-steps", type=int, default=d.logging_steps)
    parser.add_argument("--report-to", nargs="*", default=d.report_to, choices=["jsonl", "tensorboard"])
    parser.add_argument("--resume", nargs="?", const="latest",
                        help="continue from the latest checkpoint in --output (or the given checkpoint dir)")
    parser.add_argument("--stop-after-steps", type=int,
                        help="end this invocation after N more steps (checkpointed; resume later)")
    parser.add_argument("--log-molecule-ids", action="store_true",
                        help="write the id of every molecule trained on, in order, per rank")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the final model to the Hub")
    parser.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from .training.data import BUNDLED_QM9
    from .training.pretrain import PretrainArguments, pretrain

    summary = pretrain(PretrainArguments(
        inputs=args.inputs or [str(BUNDLED_QM9)], output_dir=args.output, preset=args.preset,
        config_overrides=dict(args.overrides), init_from=args.init_from, max_steps=args.max_steps,
        batch_size=args.batch_size, max_tokens=args.max_tokens, window_size=args.window_size,
        shuffle_buffer=args.shuffle_buffer, gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        min_learning_rate_ratio=args.min_lr_ratio, max_grad_norm=args.max_grad_norm,
        mixed_precision=args.mixed_precision, seed=args.seed, num_workers=args.num_workers,
        conformers=args.conformers, smiles_column=args.smiles_column, molblock_column=args.molblock_column,
        exclude=args.exclude, eval_inputs=args.eval_inputs, eval_steps=args.eval_steps,
        eval_max_molecules=args.eval_max_molecules, save_steps=args.save_steps, save_total_limit=args.save_total_limit, logging_steps=args.logging_steps,
        report_to=args.report_to, resume=args.resume, stop_after_steps=args.stop_after_steps,
        log_molecule_ids=args.log_molecule_ids, push_to_hub=args.push_to_hub, progress=not args.no_progress,
        cpu=args.cpu,
    ))
    print(json.dumps(summary, indent=2))
    return 0


def _add_finetune(subparsers) -> None:
    from .training.finetune import MODALITIES, TASKS, FinetuneArguments

    d = FinetuneArguments(data="", label_columns=[])
    parser = subparsers.add_parser(
        "finetune", help="fine-tune on a CSV / parquet / SDF of molecules and labels",
        description="Fine-tune MoleBLEND with the transformers Trainer; early stopping and checkpoint choice on the "
                    "validation metric; writes model/, metrics.json, split.json, test_predictions.csv, "
                    "skipped_rows.csv.")
    parser.add_argument("data", help=".csv, .parquet, .sdf or .sdf.gz")
    parser.add_argument("--label-columns", nargs="+", required=True)
    parser.add_argument("--smiles-column")
    parser.add_argument("--molblock-column")
    parser.add_argument("--task", choices=TASKS, default=d.task,
                        help="auto: 0/1 labels -> classification (one task per column), else regression")
    parser.add_argument("--split", choices=["scaffold", "balanced_scaffold", "random", "column", "file"],
                        default=d.split)
    parser.add_argument("--split-column", help="with --split column: a column of train/valid/test")
    parser.add_argument("--split-file", help='with --split file: JSON {"train": [rows], "valid": [...], "test": [...]}')
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--model", help="pretrained directory (pretraining or encoder checkpoint)")
    parser.add_argument("--preset", default=d.preset, choices=sorted(PRESETS))
    parser.add_argument("--set", dest="overrides", action="append", type=_parse_override, default=[],
                        metavar="FIELD=VALUE")
    parser.add_argument("--modality", choices=MODALITIES, default=d.modality,
                        help="relations used: 2d (the released recipe), 3d, or both (conformers generated)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--max-steps", type=int, default=d.max_steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--encoder-lr-ratio", type=float, default=d.encoder_learning_rate_ratio,
                        help="the encoder trains at learning rate x this, the new head at the full rate")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=d.gradient_accumulation_steps)
    parser.add_argument("--patience", type=int, default=d.patience, help="early stopping, in epochs")
    parser.add_argument("--cache-dir", help="cache featurized molecules (and conformers) here")
    parser.add_argument("--num-workers", type=int, default=d.num_workers)
    parser.add_argument("--output", default=d.output_dir)
    parser.add_argument("--push-to-hub", metavar="REPO_ID")
    parser.set_defaults(func=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from .training.finetune import FinetuneArguments, finetune

    result = finetune(FinetuneArguments(
        data=args.data, label_columns=args.label_columns, output_dir=args.output, smiles_column=args.smiles_column,
        molblock_column=args.molblock_column, task=args.task, split=args.split, split_column=args.split_column,
        split_file=args.split_file, seed=args.seed, model=args.model, preset=args.preset,
        config_overrides=dict(args.overrides), modality=args.modality, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        encoder_learning_rate_ratio=args.encoder_lr_ratio, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio, gradient_accumulation_steps=args.gradient_accumulation_steps,
        patience=args.patience, cache_dir=args.cache_dir, num_workers=args.num_workers,
        push_to_hub=args.push_to_hub,
    ))
    print(json.dumps({k: result[k] for k in ("problem_type", "split", "valid", "test", "skipped_rows")}, indent=2))
    return 0


def _add_benchmark(subparsers) -> None:
    from .training.benchmark import MOLECULENET, QM9_UNITS, BenchmarkArguments

    d = BenchmarkArguments()
    parser = subparsers.add_parser(
        "benchmark", help="MoleculeNet + QM9 tables over seeds, from scratch and from a pretrained model",
        description="Fine-tune on MoleculeNet tasks (scaffold split) and QM9 targets (random split, DFT "
                    "geometries) for several seeds; writes results.json, results.md and results.png.")
    parser.add_argument("--moleculenet-dir", help="directory with the MoleculeNet CSVs (and splits/<task>.json)")
    parser.add_argument("--tasks", nargs="+", default=d.tasks, choices=sorted(MOLECULENET))
    parser.add_argument("--qm9", help="QM9 parquet with id, smiles, molblock and property columns")
    parser.add_argument("--qm9-targets", nargs="+", default=d.qm9_targets, choices=sorted(QM9_UNITS),
                        help="energies are reported in eV (converted from Hartree)")
    parser.add_argument("--qm9-max-molecules", type=int, help="a seeded subset of QM9 (for small budgets)")
    parser.add_argument("--qm9-modality", choices=["2d", "3d"], default=d.qm9_modality,
                        help="QM9 from the 2D graph (default) or from the DFT geometry")
    parser.add_argument("--seeds", nargs="+", type=int, default=d.seeds)
    parser.add_argument("--pretrained", help="pretrained model directory to compare with training from scratch")
    parser.add_argument("--compare", nargs="+", default=[], metavar="LABEL=PATH",
                        help="more pretrained models, each its own column (e.g. an ablation)")
    parser.add_argument("--no-fingerprint-baseline", action="store_true",
                        help="leave out the random forest on Morgan fingerprints (radius 2, 2048 bits)")
    parser.add_argument("--max-train-molecules", type=int,
                        help="a seeded subset of training splits larger than this (e.g. HIV); test is never cut")
    parser.add_argument("--max-valid-molecules", type=int, help="likewise for validation splits")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: build the table from the runs already finished with these arguments")
    parser.add_argument("--pretraining-corpus", nargs="*", default=[],
                        help="the pretraining inputs, to report overlap with every test split")
    parser.add_argument("--pretraining-exclude", nargs="*", default=[],
                        help="the files given to `moleblend pretrain --exclude` (subtracted from the corpus)")
    parser.add_argument("--export-test-molecules", metavar="FILE",
                        help="only write the canonical SMILES of all test-split molecules to FILE and exit")
    parser.add_argument("--preset", default=d.preset, choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--encoder-lr-ratio", type=float, default=d.encoder_learning_rate_ratio)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--classifier-dropout", type=float, help="dropout of the property head")
    parser.add_argument("--patience", type=int, default=d.patience)
    parser.add_argument("--modality", choices=["2d", "3d", "both"], default=d.modality,
                        help="relations for the MoleculeNet tasks (QM9: --qm9-modality)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--output", default=d.output_dir)
    parser.set_defaults(func=_run_benchmark)


def _run_benchmark(args: argparse.Namespace) -> int:
    from .training.benchmark import BenchmarkArguments, export_test_molecules, run_benchmark

    arguments = BenchmarkArguments(
        output_dir=args.output, moleculenet_dir=args.moleculenet_dir, tasks=args.tasks, qm9=args.qm9,
        qm9_targets=args.qm9_targets, qm9_max_molecules=args.qm9_max_molecules,
        qm9_modality=args.qm9_modality, seeds=args.seeds,
        pretrained=args.pretrained, pretraining_corpus=args.pretraining_corpus,
        pretraining_exclude=args.pretraining_exclude, preset=args.preset, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
        compare=args.compare, summarize_only=args.summarize_only, fingerprint_baseline=not args.no_fingerprint_baseline,
        max_train_molecules=args.max_train_molecules, max_valid_molecules=args.max_valid_molecules,
        encoder_learning_rate_ratio=args.encoder_lr_ratio, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, classifier_dropout=args.classifier_dropout,
        modality=args.modality, cache_dir=args.cache_dir)
    if args.export_test_molecules:
        count = export_test_molecules(arguments, args.export_test_molecules)
        print(f"wrote {count} test molecules to {args.export_test_molecules}")
        return 0
    summary = run_benchmark(arguments)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _add_corpus(subparsers) -> None:
    from .training.corpus import CorpusArguments

    d = CorpusArguments(inputs=[], output="")
    parser = subparsers.add_parser(
        "corpus", help="generate conformers once and write a 3D pretraining corpus (parquet of molblocks)",
        description="Embed one conformer per molecule (ETKDGv3 + MMFF94, seeded) in worker processes and write a "
                    "parquet file (id, smiles, molblock with explicit H) for `moleblend pretrain`, so conformers "
                    "are generated once rather than every epoch. Writes OUTPUT.json with the settings and counts.")
    parser.add_argument("inputs", nargs="+", help="files or globs of SMILES: .smi, .csv, .parquet")
    parser.add_argument("--output", required=True, help="the corpus .parquet file to write")
    parser.add_argument("--max-molecules", type=int, help="stop after this many molecules with a conformer")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="FILE",
                        help="leave these molecules out (canonical SMILES match), e.g. benchmark test sets")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--num-workers", type=int, default=d.num_workers)
    parser.add_argument("--timeout", type=int, default=d.timeout_s, help="seconds per molecule for embedding")
    parser.add_argument("--mmff-max-iters", type=int, default=d.mmff_max_iters)
    parser.add_argument("--smiles-column")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=_run_corpus)


def _run_corpus(args: argparse.Namespace) -> int:
    from .training.corpus import CorpusArguments, build_conformer_corpus

    summary = build_conformer_corpus(CorpusArguments(
        inputs=args.inputs, output=args.output, max_molecules=args.max_molecules, exclude=args.exclude,
        seed=args.seed, num_workers=args.num_workers, timeout_s=args.timeout, mmff_max_iters=args.mmff_max_iters,
        smiles_column=args.smiles_column, overwrite=args.overwrite))
    print(json.dumps(summary["counts"], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moleblend", description="MoleBLEND molecular Transformer tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(subparsers)
    _add_finetune(subparsers)
    _add_benchmark(subparsers)
    _add_embed(subparsers)
    _add_corpus(subparsers)
    add_hub_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
