"""Checkpoints shipped inside the package, addressable by a short name.

`resolve_model("moleblend-mini-qm9-moses")` gives the directory of the bundled pretrained checkpoint; any other
string (a local directory or a Hub repo id) is returned unchanged, so every `--model` / `model=` argument takes
both.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

#: short name -> directory inside the package (a save_pretrained directory with processor and model card)
SHIPPED = {
    "moleblend-mini-qm9-moses": CHECKPOINT_DIR / "moleblend-mini-qm9-moses",
}
#: the checkpoint the README recommends starting from
DEFAULT_PRETRAINED = "moleblend-mini-qm9-moses"


def resolve_model(name_or_path: str | Path | None) -> str | None:
    """The directory of a shipped checkpoint for its short name; anything else unchanged (None stays None)."""
    if name_or_path is None:
        return None
    shipped = SHIPPED.get(str(name_or_path))
    if shipped is None:
        return str(name_or_path)
    if not (shipped / "config.json").exists():
        raise FileNotFoundError(f"the shipped checkpoint {name_or_path!r} is missing from {shipped}; reinstall "
                                "moleblend-hf")
    return str(shipped)


def pipeline(task: str, model: str | Path | None = None, **kwargs):
    """`transformers.pipeline` that also takes the short names of shipped checkpoints, e.g.
    `pipeline("molecule-feature-extraction", model="moleblend-mini-qm9-moses")`."""
    import transformers.pipelines  # importing it registers the molecule tasks (see _registration)

    return transformers.pipelines.pipeline(task, model=resolve_model(model), **kwargs)
