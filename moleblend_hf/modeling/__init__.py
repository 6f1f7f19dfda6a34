"""Model code: torch + transformers only (shippable as Hub remote code)."""

from .configuration_moleblend import PRESETS, MoleBlendConfig
from .modeling_moleblend import MoleBlendModel, MoleBlendPreTrainedModel, MoleBlendRelations, sum_relations

__all__ = ["PRESETS", "MoleBlendConfig", "MoleBlendModel", "MoleBlendPreTrainedModel", "MoleBlendRelations",
           "sum_relations"]
