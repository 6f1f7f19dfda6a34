"""Model code: torch + transformers only (shippable as Hub remote code)."""

from .configuration_moleblend import PRESETS, MoleBlendConfig
from .modeling_moleblend import MoleBlendModel, MoleBlendPreTrainedModel, MoleBlendRelations, sum_relations
from .modeling_moleblend_pretraining import MoleBlendForPreTraining, MoleBlendForPreTrainingOutput
from .modeling_moleblend_property import MoleBlendForPropertyPrediction

# Saved checkpoints carry the sources and an `auto_map`, so `trust_remote_code=True` loads them without this package.
MoleBlendConfig.register_for_auto_class()
MoleBlendModel.register_for_auto_class("AutoModel")
MoleBlendForPreTraining.register_for_auto_class("AutoModelForPreTraining")
MoleBlendForPropertyPrediction.register_for_auto_class("AutoModelForSequenceClassification")


__all__ = [
    "PRESETS",
    "MoleBlendConfig",
    "MoleBlendForPreTraining",
    "MoleBlendForPropertyPrediction",
    "MoleBlendForPreTrainingOutput",
    "MoleBlendModel",
    "MoleBlendPreTrainedModel",
    "MoleBlendRelations",
    "sum_relations",
]
