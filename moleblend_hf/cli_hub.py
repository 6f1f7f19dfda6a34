"""`moleblend push` and `moleblend convert`: publishing to the Hub and converting the official checkpoint.

`add_hub_commands(subparsers)` adds both subcommands to an argparse subparsers object (the main `moleblend`
parser calls it); each handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the Hub push or the conversion failed; the message says why


def add_hub_commands(subparsers: Any) -> None:
    """Add the `push` and `convert` subcommands to `subparsers` (from `ArgumentParser.add_subparsers`)."""
    _add_push(subparsers)
    _add_convert(subparsers)


def _add_push(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "push", help="upload a saved model + processor + model card to the Hugging Face Hub (one commit)",
        description="Upload a save_pretrained directory to a Hub model repo in one commit: weights, config, "
                    "processor, remote code (loadable with trust_remote_code=True) and a model card (README.md; "
                    "generated when the directory has none, with a model-index from metrics.json if present). "
                    "An existing repo is updated; repo files the directory no longer has are removed. "
                    "Authenticates with HF_TOKEN or `hf auth login`; HF_ENDPOINT selects another Hub.")
    parser.add_argument("directory", metavar="DIR", help="a directory written by save_pretrained")
    parser.add_argument("repo_id", metavar="REPO_ID", help="namespace/name of the Hub model repo")
    parser.add_argument("--private", action="store_true", help="create the repo as private (if it is created)")
    parser.add_argument("--commit-message", default=None, metavar="MESSAGE",
                        help="commit title (default: 'Upload MoleBLEND model')")
    parser.set_defaults(func=run_push)


def run_push(args: argparse.Namespace) -> int:
    """Handler of `push`: 0 on success, 1 with a message on stderr when the push fails."""
    from .training.hub import DEFAULT_COMMIT_MESSAGE, HubPushError, push_to_hub

    try:
        result = push_to_hub(args.directory, args.repo_id, private=args.private,
                             commit_message=args.commit_message or DEFAULT_COMMIT_MESSAGE)
    except (HubPushError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps({"repo_id": result.repo_id, "repo_url": result.repo_url, "commit_url": result.commit_url,
                      "files": result.files, "deleted": result.deleted}, indent=2))
    return EXIT_OK


def _field_value(text: str) -> tuple[str, Any]:
    """FIELD=VALUE with VALUE parsed as JSON when it is JSON (numbers, booleans, lists), else kept a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects FIELD=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _add_convert(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert the official MoleBLEND (fairseq) checkpoint to a save_pretrained directory",
        description="Convert an official MoleBLEND checkpoint (fairseq .pt with 'model' and 'args') into a "
                    "MoleBlendModel directory with a processor and a model card, ready for `moleblend push`. The "
                    "checkpoint is read with torch.load(weights_only=True). Official keys without a place in "
                    "the encoder (pretraining and task heads) are dropped and listed.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="official .pt checkpoint")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="directory to write (save_pretrained layout)")
    parser.add_argument("--set", dest="overrides", action="append", type=_field_value, default=[],
                        metavar="FIELD=VALUE",
                        help="override a MoleBlendConfig field derived from the checkpoint args (JSON value), "
                             "repeatable")
    parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    """Handler of `convert`: 0 on success, 1 with a message on stderr for a checkpoint that does not convert."""
    from .conversion import ConversionError, convert_checkpoint
    from .training.hub import write_model_card

    from .modeling import MoleBlendConfig

    unknown = sorted(set(dict(args.overrides)) - set(MoleBlendConfig().to_dict()))
    if unknown:
        print(f"error: --set: {unknown} are not MoleBlendConfig fields", file=sys.stderr)
        return EXIT_FAILED
    try:
        model, dropped = convert_checkpoint(args.checkpoint, args.output_dir, **dict(args.overrides))
    except (ConversionError, FileNotFoundError, TypeError, ValueError) as error:
        print(f"error: cannot convert {args.checkpoint}: {error}", file=sys.stderr)
        return EXIT_FAILED
    write_model_card(args.output_dir, model.config, pretraining={
        "source": "official MoleBLEND checkpoint (converted)",
        "features": "the saved processor uses path_tie_break='official': among equally short paths it records the "
                    "bonds of the one the official code picks (its Floyd-Warshall order, which follows the atom "
                    "numbering), so features and embeddings match the official code exactly"})
    print(f"converted {args.checkpoint} -> {args.output_dir} "
          f"({sum(p.numel() for p in model.parameters()):,} parameters)")
    print(f"dropped {len(dropped)} official keys (no place in MoleBlendModel):")
    for key in dropped:
        print(f"  {key}")
    return EXIT_OK
