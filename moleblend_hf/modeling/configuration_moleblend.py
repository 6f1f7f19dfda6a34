"""Configuration of the MoleBLEND encoder (Yu et al., ICLR 2024).

Depends on `transformers` only, so it can ship as Hub remote code.
"""

from __future__ import annotations

import difflib
from typing import Any

from transformers import PreTrainedConfig


class MoleBlendConfig(PreTrainedConfig):
    r"""Configuration for [`MoleBlendModel`] and its heads.

    Defaults are the paper's base model (12 layers, hidden 768, 32 heads, FFN 768).

    Args:
        hidden_size: Width of atom representations.
        num_hidden_layers: Number of post-LN Transformer blocks.
        num_attention_heads: Attention heads; also the width of every per-pair bias.
        intermediate_size: Width of the feed-forward layer.
        hidden_act: Activation of the feed-forward layer and of the 3D bias MLP.
        hidden_dropout_prob: Dropout on the embeddings and, in layers without drop-path, on residual branches.
        attention_probs_dropout_prob: Dropout on attention probabilities.
        activation_dropout: Dropout after the feed-forward activation.
        drop_path_rate: Stochastic depth of the last layer; layer `l` uses `drop_path_rate * l / (L - 1)`.
        drop_path_granularity: `"molecule"` (default: a residual branch is dropped for a whole molecule) or
            `"position"` (the official code: one draw per token position, shared by the batch; for parity studies).
        layer_norm_eps: Epsilon of all LayerNorms.
        initializer_range: Std of the normal initialisation of linear and embedding weights.
        num_atom_features: Categorical atom feature columns (the 9 of OGB's `atom_to_feature_vector`).
        atom_feature_vocab_size: Vocabulary range reserved for each atom feature column (official: 512).
        num_bond_features: Categorical bond feature columns (the 3 of OGB's `bond_to_feature_vector`).
        bond_feature_vocab_size: Vocabulary range reserved for each bond feature column (official: 512).
        num_degrees: Size of the heavy-atom degree vocabulary.
        num_spatial: Size of the shortest-path-distance vocabulary. Must exceed `unreachable_distance + 1`.
        unreachable_distance: Shortest-path value the processor writes for atoms in different fragments.
        max_path_hops: K, the number of hops of a shortest path whose bonds enter the path bias.
        num_gaussian_kernels: Gaussian basis functions of the 3D distance encoding.
        num_atom_types: Vocabulary of the element column used by the 3D per-atom-type-pair affine.
        atom_3d_feature_scale: Scale of the summed Gaussian features added to atom embeddings (official 0.01).
        max_atoms: Largest number of atoms per molecule (graph token excluded).
        use_2d_relations: Use degree, shortest-path and path-bond terms.
        use_3d_relations: Use 3D distance terms for molecules that have a conformer (`has_3d`).
        noise_std: Pretraining: std (Angstrom) of the Gaussian noise added to input coordinates.
        blend_probabilities: Pretraining: probability that an atom pair's bias comes from (SPD, path bonds, 3D).
        blend_relations: Pretraining: blend the relations (each pair's bias from one relation drawn by
            `blend_probabilities`, each atom's extra feature from degree or 3D), the MoleBLEND objective. False is
            the paper's "without blending" ablation: every relation is summed into the bias and every atom gets
            both features, with the same heads and losses.
        blend_mask_mode: Pretraining: `"per_molecule_symmetric"` (default: one mask per molecule, pair (i, j) and
            (j, i) share their relation), `"per_molecule"` (not symmetric) or `"shared_batch"` (the official code:
            one non-symmetric N x N mask for the whole batch).
        atom_blend_probabilities: Pretraining: probability that an atom gets the (degree, 3D) atom feature.
        pair_head_rank: Width of the row/column transforms of the pair heads (their outer product has rank^2
            features).
        pair_head_implementation: `"bilinear"` (two einsums, never materializes [B, N, N, rank^2]) or
            `"outer_product"` (the explicit reference computation; same parameters, same values).
        spd_num_classes: Shortest-path classes predicted: distances 1 .. n-1, and n-1 or more merged.
        relative_position_hidden_size: Hidden width of the 3D relative-position head.
        denoise_per_axis_projection: Use one output projection per axis in the denoising head, as the official
            code does (then the head is not rotation-equivariant); default: one shared projection (equivariant).
        denoise_attention_dropout: Dropout on the denoising head's attention probabilities.
        relative_position_loss_weight, spd_loss_weight, path_loss_weight, denoise_loss_weight: Weights of the
            pretraining losses (paper: 0.5, 0.1, 0.1, 6).
        bond_feature_dims: Vocabulary sizes of the bond feature columns (OGB: type 5, stereo 6, conjugated 2); the
            path-bond head predicts their joint class (60 by default), so every value the processor emits has a
            class (the official code's 4 x 3 x 2 classes overflow for stereo values > 2).
    """

    model_type = "moleblend"

    def __init__(
        self,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 32,
        intermediate_size: int = 768,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float | int = 0.0,
        attention_probs_dropout_prob: float | int = 0.1,
        activation_dropout: float | int = 0.1,
        drop_path_rate: float | int = 0.1,
        drop_path_granularity: str = "molecule",
        layer_norm_eps: float | int = 1e-5,
        initializer_range: float | int = 0.02,
        num_atom_features: int = 9,
        atom_feature_vocab_size: int = 512,
        num_bond_features: int = 3,
        bond_feature_vocab_size: int = 512,
        num_degrees: int = 512,
        num_spatial: int = 512,
        unreachable_distance: int = 510,
        max_path_hops: int = 5,
        num_gaussian_kernels: int = 128,
        num_atom_types: int = 512,
        atom_3d_feature_scale: float | int = 0.01,
        max_atoms: int = 512,
        use_2d_relations: bool = True,
        use_3d_relations: bool = True,
        noise_std: float | int = 0.2,
        blend_probabilities: list[float] | tuple[float, ...] = (0.2, 0.2, 0.6),
        blend_relations: bool = True,
        blend_mask_mode: str = "per_molecule_symmetric",
        atom_blend_probabilities: list[float] | tuple[float, ...] = (0.4, 0.6),
        pair_head_rank: int = 32,
        pair_head_implementation: str = "bilinear",
        spd_num_classes: int = 11,
        relative_position_hidden_size: int = 256,
        denoise_per_axis_projection: bool = False,
        denoise_attention_dropout: float | int = 0.1,
        relative_position_loss_weight: float | int = 0.5,
        spd_loss_weight: float | int = 0.1,
        path_loss_weight: float | int = 0.1,
        denoise_loss_weight: float | int = 6.0,
        bond_feature_dims: list[int] | tuple[int, ...] = (5, 6, 2),
        classifier_pooling: str = "graph",
        classifier_num_layers: int = 1,
        molecule_features: list[str] | tuple[str, ...] = (),
        molecule_feature_size: int = 0,
        descriptor_names: list[str] | None = None,
        **kwargs,
    ):
        values = {name: value for name, value in locals().items() if name not in ("self", "kwargs", "__class__")}
        _check_ranges(values)
        self._check_consistency(values)
        # fields in signature order; sequences normalized so a saved config round-trips to an equal one
        for name, value in values.items():
            setattr(self, name, _NORMALIZE.get(name, _same)(value))
        super().__init__(**kwargs)

    @staticmethod
    def _check_consistency(values: dict[str, Any]) -> None:
        """The fields that constrain each other, and the choices among names (after `_check_ranges`)."""
        if values["hidden_size"] % values["num_attention_heads"] != 0:
            raise ValueError(
                f"hidden_size ({values['hidden_size']}) must be a multiple of num_attention_heads "
                f"({values['num_attention_heads']})"
            )
        if not (values["use_2d_relations"] or values["use_3d_relations"]):
            raise ValueError("At least one of use_2d_relations and use_3d_relations must be True")
        if values["unreachable_distance"] + 1 >= values["num_spatial"]:
            raise ValueError(
                f"num_spatial ({values['num_spatial']}) must exceed unreachable_distance + 1 "
                f"({values['unreachable_distance'] + 1})"
            )
        if values["max_path_hops"] < 1:
            raise ValueError(f"max_path_hops must be >= 1, got {values['max_path_hops']}")
        if values["drop_path_granularity"] not in ("molecule", "position"):
            raise ValueError(
                f"drop_path_granularity must be 'molecule' or 'position', got {values['drop_path_granularity']!r}"
            )
        if values["blend_mask_mode"] not in BLEND_MASK_MODES:
            raise ValueError(f"blend_mask_mode must be one of {BLEND_MASK_MODES}, got {values['blend_mask_mode']!r}")
        if values["pair_head_implementation"] not in ("bilinear", "outer_product"):
            raise ValueError(
                f"pair_head_implementation must be 'bilinear' or 'outer_product', "
                f"got {values['pair_head_implementation']!r}"
            )
        for name, size in (("blend_probabilities", 3), ("atom_blend_probabilities", 2)):
            probabilities = values[name]
            if len(probabilities) != size or min(probabilities) < 0 or abs(sum(probabilities) - 1) > 1e-6:
                raise ValueError(f"{name} must be {size} non-negative numbers summing to 1, got {probabilities}")
        if values["spd_num_classes"] < 2:
            raise ValueError(f"spd_num_classes must be >= 2, got {values['spd_num_classes']}")
        _check_head(values)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> MoleBlendConfig:
        """A named size: `tiny` (tests, demos), `mini` (the shipped checkpoint), `small`, or `base` (the
        paper's model); `overrides` win."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def check_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """Field overrides given by a user (`--set FIELD=VALUE`): every name must be a config field and every value
        of the field's type; a ValueError names the first that is not (with the closest field name)."""
        defaults = {**cls().to_dict(), **_HEAD_FIELDS}
        for name, value in overrides.items():
            if name not in defaults:
                close = difflib.get_close_matches(name, list(defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{name!r} is not a MoleBlendConfig field{hint}")
            expected = defaults[name]
            if expected is None:
                continue
            kind = (
                bool if isinstance(expected, bool) else (float, int) if isinstance(expected, float) else type(expected)
            )
            if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
                wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
                    type(expected), f"a {type(expected).__name__}"
                )
                raise ValueError(f"config field {name!r} takes {wanted}, got {value!r}")
        return overrides


def _same(value: Any) -> Any:
    return value


#: fields stored in a canonical type (JSON gives lists; Python callers may give tuples or ints)
_NORMALIZE = {
    "blend_probabilities": lambda value: [float(p) for p in value],
    "blend_relations": bool,
    "atom_blend_probabilities": lambda value: [float(p) for p in value],
    "bond_feature_dims": lambda value: [int(d) for d in value],
    "molecule_features": list,
    "descriptor_names": lambda value: list(value) if value is not None else None,
}


def _check_head(values: dict[str, Any]) -> None:
    """The property head's pooling, depth and molecule features."""
    classifier_pooling, classifier_num_layers = values["classifier_pooling"], values["classifier_num_layers"]
    molecule_features, molecule_feature_size = values["molecule_features"], values["molecule_feature_size"]
    if classifier_pooling not in CLASSIFIER_POOLINGS:
        raise ValueError(f"classifier_pooling must be one of {CLASSIFIER_POOLINGS}, got {classifier_pooling!r}")
    if (
        isinstance(classifier_num_layers, bool)
        or not isinstance(classifier_num_layers, int)
        or classifier_num_layers < 1
    ):
        raise ValueError(f"classifier_num_layers must be a positive integer, got {classifier_num_layers!r}")
    if (
        isinstance(molecule_feature_size, bool)
        or not isinstance(molecule_feature_size, int)
        or molecule_feature_size < 0
        or bool(molecule_feature_size) != bool(molecule_features)
    ):
        raise ValueError(
            f"molecule_feature_size ({molecule_feature_size!r}) must be a positive integer exactly "
            f"when molecule_features ({list(molecule_features)}) are given"
        )


def _check_ranges(arguments: dict[str, Any]) -> None:
    """Types and ranges of the numeric fields, before anything divides by them."""
    for name in _POSITIVE_INTEGERS:
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name in _PROBABILITIES:
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    for name in ("noise_std", "layer_norm_eps", "initializer_range"):
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")


#: fields of the property head, set only on fine-tuned models (type-checked like the others when given)
_HEAD_FIELDS: dict[str, Any] = {"num_labels": 1, "label_mean": None, "label_std": None, "classifier_dropout": None}
_POSITIVE_INTEGERS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "num_atom_features",
    "atom_feature_vocab_size",
    "num_bond_features",
    "bond_feature_vocab_size",
    "num_degrees",
    "num_spatial",
    "unreachable_distance",
    "max_path_hops",
    "num_gaussian_kernels",
    "num_atom_types",
    "max_atoms",
    "pair_head_rank",
    "spd_num_classes",
    "relative_position_hidden_size",
)
_PROBABILITIES = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "activation_dropout",
    "drop_path_rate",
    "denoise_attention_dropout",
)
CLASSIFIER_POOLINGS = ("graph", "mean", "graph_mean")
BLEND_MASK_MODES = ("per_molecule_symmetric", "per_molecule", "shared_batch")

PRESETS: dict[str, dict] = {
    "tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_gaussian_kernels=16
    ),
    # the shipped small-budget checkpoint's size: trains at ~100 molecules/s on 2 CPU cores
    "mini": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=8, intermediate_size=128, num_gaussian_kernels=32
    ),
    "small": dict(
        hidden_size=256, num_hidden_layers=6, num_attention_heads=16, intermediate_size=256, num_gaussian_kernels=64
    ),
    "base": dict(),
}
