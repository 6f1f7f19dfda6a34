"""The `moleblend` command: one subcommand per module of this package, each parsing its job's arguments
dataclass (`moleblend_hf/arguments/`) with `transformers.HfArgumentParser`.

`moleblend --help` and `moleblend <command> --help` import neither torch nor the model: a subcommand's module is
imported only when it is run, and its job only after its arguments parsed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .parser import EXIT_USAGE

#: subcommand -> one-line summary (its module is moleblend_hf.cli.<subcommand>)
COMMANDS = {
    "pretrain": "pretrain MoleBLEND: blend atom-pair relations into the attention bias, predict them back",
    "finetune": "fine-tune on a CSV / parquet / SDF of molecules and labels (one model or an ensemble)",
    "predict": "predict a CSV / parquet / SMILES / SDF file with fine-tuned models (ensemble mean and std)",
    "embed": "molecules -> parquet of graph (and atom) embeddings",
    "benchmark": "MoleculeNet + QM9 tables over seeds: scratch, pretrained models, a fingerprint random forest",
    "corpus": "generate conformers once and write a 3D pretraining corpus (parquet of molblocks)",
    "push": "upload a saved model + processor + model card to the Hugging Face Hub (one commit)",
    "convert": "convert the official MoleBLEND (fairseq) checkpoint to a save_pretrained directory",
}


def _overview() -> str:
    from .. import __version__

    width = max(map(len, COMMANDS))
    lines = [
        f"usage: moleblend <command> [options]   (moleblend-hf {__version__})",
        "",
        "MoleBLEND, the 2D+3D molecular Transformer, as a Hugging Face transformers model.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "`moleblend <command> --help` lists a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        from .. import __version__

        print(f"moleblend-hf {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        print(f"moleblend: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f".{command}", __name__)
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
