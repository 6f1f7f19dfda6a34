"""`moleblend_hf.pipeline()`: `transformers.pipeline` that also knows shipped checkpoints, ensembles and their
calibration.

The pipeline classes themselves live in pipelines.py, which is uploaded with every pushed model and so imports
nothing from this package; this module adds what only the installed package knows.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..publishing.checkpoints import ENSEMBLE_FILE, calibration_of, ensemble_members, resolve_model


def pipeline(task: str, model: str | Path | None = None, **kwargs):
    """`transformers.pipeline` that also takes the short names of shipped checkpoints, e.g.
    `pipeline("molecule-feature-extraction", model="moleblend-mini-qm9-moses")`, and the ensemble directories of
    `moleblend finetune --seeds` / `--kfold` (property prediction: the members' mean and `"std"`); the calibration
    `moleblend finetune` fitted for a directory is applied (see `MoleculePropertyPipeline`)."""
    import transformers.pipelines  # importing it registers the molecule tasks (see _registration)

    model = resolve_model(model)
    calibration = calibration_of(model) if model is not None and task == "molecule-property-prediction" else None
    if calibration:
        kwargs = {"calibration": calibration, **kwargs}
    if model is None or not (Path(model) / ENSEMBLE_FILE).exists():
        return transformers.pipelines.pipeline(task, model=model, **kwargs)
    members = ensemble_members(model)
    if task != "molecule-property-prediction":
        raise ValueError(
            f"{model} is an ensemble of {len(members)} fine-tuned models: use it with the "
            f"'molecule-property-prediction' task, or pick one member ({members[0]}) for {task!r}"
        )
    # one featurization for all members: their settings must agree (the conformer seed may differ by member; the
    # first member's is used)
    settings = [json.loads((Path(member) / "preprocessor_config.json").read_text()) for member in members]
    if any({**s, "seed": None} != {**settings[0], "seed": None} for s in settings):
        raise ValueError(
            f"the members of {model} have different processor settings; use `moleblend predict`, "
            "which featurizes for each member"
        )
    others = [transformers.AutoModelForSequenceClassification.from_pretrained(member) for member in members[1:]]
    return transformers.pipelines.pipeline(task, model=members[0], ensemble=others, **kwargs)
