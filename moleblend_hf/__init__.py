"""moleblend-hf: MoleBLEND (ICLR 2024) as a Hugging Face `transformers` model.

Importing the package registers the model with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoFeatureExtractor` / `AutoProcessor`) and marks the classes so that `save_pretrained` writes remote code.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .modeling import (
    MoleBlendConfig,
    MoleBlendForPreTraining,
    MoleBlendForPropertyPrediction,
    MoleBlendModel,
    MoleBlendPreTrainedModel,
)
from .processing import (
    AtomsWithCoordinates,
    MoleBlendCollator,
    MoleBlendProcessor,
    MoleculeError,
    SkippedMolecule,
)

from .checkpoints import DEFAULT_PRETRAINED, pipeline, resolve_model

__version__ = "0.1.0"

AutoConfig.register(MoleBlendConfig.model_type, MoleBlendConfig, exist_ok=True)
AutoModel.register(MoleBlendConfig, MoleBlendModel, exist_ok=True)
AutoModelForPreTraining.register(MoleBlendConfig, MoleBlendForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(MoleBlendConfig, MoleBlendForPropertyPrediction, exist_ok=True)
AutoFeatureExtractor.register(MoleBlendConfig, MoleBlendProcessor, exist_ok=True)
AutoProcessor.register(MoleBlendConfig, MoleBlendProcessor, exist_ok=True)
# Saved checkpoints carry the sources and an `auto_map`, so `trust_remote_code=True` loads them without this package.
MoleBlendConfig.register_for_auto_class()
MoleBlendModel.register_for_auto_class("AutoModel")
MoleBlendForPreTraining.register_for_auto_class("AutoModelForPreTraining")
MoleBlendForPropertyPrediction.register_for_auto_class("AutoModelForSequenceClassification")
MoleBlendProcessor.register_for_auto_class("AutoFeatureExtractor")

from ._lazy_pipelines import register_pipelines_on_import  # noqa: E402

# `transformers.pipelines` takes seconds to import: the pipeline tasks are registered when it is first imported.
register_pipelines_on_import()

__all__ = [
    "AtomsWithCoordinates", "MoleBlendCollator", "MoleBlendConfig", "MoleBlendForPreTraining", "MoleBlendForPropertyPrediction", "MoleBlendModel", "MoleBlendPreTrainedModel",
    "MoleBlendProcessor", "MoleculeError", "SkippedMolecule", "__version__", "DEFAULT_PRETRAINED", "pipeline",
    "resolve_model",
]
