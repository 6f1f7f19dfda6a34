"""Model code: torch + transformers only (shippable as Hub remote code)."""

from .configuration_moleblend import PRESETS, MoleBlendConfig
from .modeling_moleblend import MoleBlendModel, MoleBlendPreTrainedModel, MoleBlendRelations, sum_relations
from .modeling_moleblend_pretraining import MoleBlendForPreTraining, MoleBlendForPreTrainingOutput
from .modeling_moleblend_property import MoleBlendForPropertyPrediction

__all__ = ["PRESETS", "MoleBlendConfig", "MoleBlendForPreTraining", "MoleBlendForPropertyPrediction", "MoleBlendForPreTrainingOutput", "MoleBlendModel", "MoleBlendPreTrainedModel", "MoleBlendRelations",
           "sum_relations"]
