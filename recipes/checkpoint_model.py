"""Make a loadable model directory from an intermediate `moleblend pretrain` checkpoint (for choosing fine-tuning
settings on validation sets before the run has finished).

    python recipes/checkpoint_model.py RUN_DIR/checkpoint-N OUTPUT_DIR PRESET [FIELD=JSON ...]
"""

import json
import shutil
import sys
from pathlib import Path

from moleblend_hf import MoleBlendConfig, MoleBlendProcessor


def main(checkpoint: str, output: str, preset: str, *overrides: str) -> None:
    fields = {k: json.loads(v) for k, v in (o.split("=", 1) for o in overrides)}
    config = MoleBlendConfig.from_preset(preset, **fields)
    config.architectures = ["MoleBlendForPreTraining"]
    target = Path(output)
    target.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(target)
    shutil.copy(Path(checkpoint) / "model.safetensors", target / "model.safetensors")
    MoleBlendProcessor.from_config(config).save_pretrained(target)


if __name__ == "__main__":
    main(*sys.argv[1:])
