"""The `moleblend` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _add_embed(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help="molecules (SMILES/SDF/CSV/parquet) -> parquet of graph embeddings",
        description="Embed molecules with a MoleBLEND model. Without --input, embeds the bundled QM9 subset "
                    "(2,000 molecules with DFT geometries).")
    parser.add_argument("--input", help="a .smi, .csv, .parquet, .sdf, .sdf.gz or .mol file (default: bundled QM9)")
    parser.add_argument("--output", default="outputs/embeddings", help="output directory of parquet parts")
    parser.add_argument("--model", help="a save_pretrained directory; default: a freshly initialised --preset model")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"])
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moleblend", description="MoleBLEND molecular Transformer tools")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_embed(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
