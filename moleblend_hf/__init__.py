"""moleblend-hf: MoleBLEND (ICLR 2024), the 2D+3D molecular Transformer, as a Hugging Face `transformers` model.

Importing the package is cheap (no torch): the public names load on first use, and the model is registered with
the Auto classes (`AutoConfig`, `AutoModel`, `AutoModelForPreTraining`, `AutoModelForSequenceClassification`,
`AutoFeatureExtractor` / `AutoProcessor`) and the molecule pipeline tasks as soon as transformers loads them
(see `_registration.py`), so `AutoModel.from_pretrained(dir)` works right after `import moleblend_hf`.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._registration import register_when_loaded

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "MoleBlendConfig": "modeling",
    "MoleBlendForPreTraining": "modeling",
    "MoleBlendForPropertyPrediction": "modeling",
    "MoleBlendModel": "modeling",
    "MoleBlendPreTrainedModel": "modeling",
    "AtomsWithCoordinates": "processing",
    "MoleBlendCollator": "processing",
    "MoleBlendProcessor": "processing",
    "MoleculeError": "processing",
    "SkippedMolecule": "processing",
    "DEFAULT_PRETRAINED": "publishing.checkpoints",
    "pipeline": "inference.pipeline",
    "resolve_model": "publishing.checkpoints",
}

if TYPE_CHECKING:  # the names __getattr__ loads, for type checkers (`X as X`: a re-export)
    from .inference.pipeline import pipeline as pipeline
    from .modeling import MoleBlendConfig as MoleBlendConfig
    from .modeling import MoleBlendForPreTraining as MoleBlendForPreTraining
    from .modeling import MoleBlendForPropertyPrediction as MoleBlendForPropertyPrediction
    from .modeling import MoleBlendModel as MoleBlendModel
    from .modeling import MoleBlendPreTrainedModel as MoleBlendPreTrainedModel
    from .processing import AtomsWithCoordinates as AtomsWithCoordinates
    from .processing import MoleBlendCollator as MoleBlendCollator
    from .processing import MoleBlendProcessor as MoleBlendProcessor
    from .processing import MoleculeError as MoleculeError
    from .processing import SkippedMolecule as SkippedMolecule
    from .publishing.checkpoints import DEFAULT_PRETRAINED as DEFAULT_PRETRAINED
    from .publishing.checkpoints import resolve_model as resolve_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'moleblend_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


register_when_loaded()
# a library shows nothing unless the application asks (the `moleblend` command does: --log-level)
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [*_EXPORTS, "__version__"]
