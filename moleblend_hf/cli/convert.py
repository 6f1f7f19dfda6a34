"""`moleblend convert`."""

from __future__ import annotations

from collections.abc import Sequence

from ..arguments import ConvertArguments
from .parser import EXIT_FAILED, EXIT_OK, parse, run

DESCRIPTION = (
    "Convert an official MoleBLEND checkpoint (fairseq .pt with 'model' and 'args') into a MoleBlendModel directory "
    "with a processor and a model card, ready for `moleblend push`. The checkpoint is read with "
    "torch.load(weights_only=True). Official keys without a place in the encoder (pretraining and task heads) are "
    "dropped and listed."
)


def main(argv: Sequence[str]) -> int:
    arguments = parse(ConvertArguments, argv, "convert", DESCRIPTION)

    def job() -> int:
        import sys

        from ..modeling import MoleBlendConfig
        from ..publishing.card import write_model_card
        from ..publishing.conversion import ConversionError, convert_checkpoint

        MoleBlendConfig.check_overrides(arguments.config_overrides)
        try:
            model, dropped = convert_checkpoint(
                arguments.checkpoint, arguments.output_dir, **arguments.config_overrides
            )
        except (ConversionError, FileNotFoundError, TypeError, ValueError) as error:
            print(f"moleblend convert: error: cannot convert {arguments.checkpoint}: {error}", file=sys.stderr)
            return EXIT_FAILED
        write_model_card(
            arguments.output_dir,
            model.config,
            pretraining={
                "source": "official MoleBLEND checkpoint (converted)",
                "features": "the saved processor uses path_tie_break='official': among equally short paths it records "
                "the bonds of the one the official code picks (its Floyd-Warshall order, which follows the "
                "atom numbering), so features and embeddings match the official code exactly",
            },
        )
        print(
            f"converted {arguments.checkpoint} -> {arguments.output_dir} "
            f"({sum(p.numel() for p in model.parameters()):,} parameters)"
        )
        print(f"dropped {len(dropped)} official keys (no place in MoleBlendModel):")
        for key in dropped:
            print(f"  {key}")
        return EXIT_OK

    return run(job, "convert")
