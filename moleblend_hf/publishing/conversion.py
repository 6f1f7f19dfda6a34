"""Converting the official MoleBLEND checkpoint (fairseq, GitHub `YudiZh/MoleBlend`) to this package.

The official encoder keeps its parameters under `encoder.molecule_encoder.`; this module maps every one of them
to a `MoleBlendModel` parameter or lists it as dropped, and rejects unknown or missing keys and wrong shapes.
Files are read with `torch.load(weights_only=True)`: a checkpoint is never unpickled as arbitrary code.

Mapping notes (exact, no approximation):
- `in_degree_encoder` + `out_degree_encoder`: always looked up with the same index, so they are summed into one
  `degree_embedding` table.
- `gbf.mul` / `gbf.bias` (1536 x 1): the official collator looks up row `t + 2` for the row atom and `t + 514`
  for the column atom (t = our element column value), so `pair_affine[t] = [mul[t+2], mul[t+514], bias[t+2],
  bias[t+514]]`.
- `edge_dis_encoder` (num_edge_dis * H * H x 1): only its first K = `multi_hop_max_dist` H x H blocks are used.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..modeling import MoleBlendConfig, MoleBlendModel

ENCODER_PREFIX = "molecule_encoder."
# Parameters of the official model that a MoleBlendModel has no place for (pretraining and task heads).
DROPPED_PATTERNS = (
    r"atom_proc\..*",  # equivariant denoising head (pretraining)
    r"blend_(spd|edge|3d)_pred_head\..*",  # relation prediction heads (pretraining)
)
DROPPED_TOP_LEVEL = (
    r"lm_head_transform_weight\..*",
    r"layer_norm\..*",
    r"lm_output_learned_bias",
    r"embed_out\..*",
    r"proj_out\..*",
)
_LAYER = re.compile(
    r"layers\.(\d+)\.(self_attn\.(q|k|v|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)"
    r"\.(weight|bias)"
)
_DIRECT = {
    "atom_feature.atom_encoder.weight": "atom_embeddings.atom_embedding.weight",
    "molecule_attn_bias.edge_encoder.weight": "bias_2d.bond_embedding.weight",
    "molecule_attn_bias.spatial_pos_encoder.weight": "bias_2d.spd_embedding.weight",
    "molecule_3d_bias.gbf_proj.layer1.weight": "encoding_3d.bias_hidden.weight",
    "molecule_3d_bias.gbf_proj.layer1.bias": "encoding_3d.bias_hidden.bias",
    "molecule_3d_bias.gbf_proj.layer2.weight": "encoding_3d.bias_out.weight",
    "molecule_3d_bias.gbf_proj.layer2.bias": "encoding_3d.bias_out.bias",
    "molecule_3d_bias.edge_proj.weight": "encoding_3d.atom_projection.weight",
    "molecule_3d_bias.edge_proj.bias": "encoding_3d.atom_projection.bias",
    "emb_layer_norm.weight": "embedding_layer_norm.weight",
    "emb_layer_norm.bias": "embedding_layer_norm.bias",
}
# Official keys combined into one of ours by a function (handled in `convert_state_dict`).
_COMBINED = {
    "atom_feature.in_degree_encoder.weight",
    "atom_feature.out_degree_encoder.weight",
    "atom_feature.graph_token.weight",
    "molecule_attn_bias.edge_dis_encoder.weight",
    "molecule_attn_bias.graph_token_virtual_distance.weight",
    "molecule_3d_bias.gbf.means.weight",
    "molecule_3d_bias.gbf.stds.weight",
    "molecule_3d_bias.gbf.mul.weight",
    "molecule_3d_bias.gbf.bias.weight",
}


class ConversionError(ValueError):
    """The checkpoint does not have the official structure (unknown/missing keys, wrong shapes)."""


def config_from_official_args(args: argparse.Namespace | Mapping[str, Any], **overrides) -> MoleBlendConfig:
    """A MoleBlendConfig matching the architecture arguments stored in an official checkpoint."""
    get = args.get if isinstance(args, Mapping) else lambda k, d=None: getattr(args, k, d)
    fields = dict(
        num_hidden_layers=get("encoder_layers", 12),
        hidden_size=get("encoder_embed_dim", 768),
        num_attention_heads=get("encoder_attention_heads", 32),
        intermediate_size=get("encoder_ffn_embed_dim", 768),
        hidden_act=get("activation_fn", "gelu"),
        hidden_dropout_prob=get("dropout", 0.0),
        attention_probs_dropout_prob=get("attention_dropout", 0.1),
        activation_dropout=get("act_dropout", 0.1),
        drop_path_rate=get("droppath_prob", 0.1),
        num_gaussian_kernels=get("num_3d_bias_kernel", 128),
        max_path_hops=get("multi_hop_max_dist", 5),
        atom_feature_vocab_size=get("num_atoms", 512 * 9) // 9,
        bond_feature_vocab_size=get("num_edges", 512 * 3) // 3,
        num_degrees=get("num_in_degree", 512),
        num_spatial=get("num_spatial", 512),
        use_2d_relations=not get("no_2d", False),
        use_3d_relations=bool(get("add_3d", True)),
    )
    return MoleBlendConfig(**{**fields, **overrides})


def _strip(key: str) -> tuple[str, bool]:
    """(key relative to the encoder, True) or (top-level key, False)."""
    if ENCODER_PREFIX in key:
        return key.split(ENCODER_PREFIX, 1)[1], True
    return key.split("encoder.", 1)[1] if key.startswith("encoder.") else key, False


def convert_state_dict(
    official: Mapping[str, torch.Tensor], config: MoleBlendConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official state dict -> (MoleBlendModel state dict, official keys deliberately dropped).

    Raises ConversionError for keys that are neither mapped nor known to be droppable, for missing keys and for
    shape mismatches.
    """
    encoder: dict[str, torch.Tensor] = {}
    dropped, unknown = [], []
    for key, value in official.items():
        relative, inside = _strip(key)
        if inside and (relative in _DIRECT or relative in _COMBINED or _LAYER.fullmatch(relative)):
            encoder[relative] = value
        elif any(re.fullmatch(p, relative) for p in (DROPPED_PATTERNS if inside else DROPPED_TOP_LEVEL)):
            dropped.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"{len(unknown)} keys are not part of the official MoleBLEND model: {unknown[:10]}")

    heads, hops = config.num_attention_heads, config.max_path_hops
    out: dict[str, torch.Tensor] = {}
    for relative, ours in _DIRECT.items():
        if relative in encoder:
            out[ours] = encoder[relative]
    for relative, value in encoder.items():
        match = _LAYER.fullmatch(relative)
        if match:
            out[relative] = value

    def take(name: str) -> torch.Tensor:
        if name not in encoder:
            raise ConversionError(f"official key molecule_encoder.{name} is missing")
        return encoder[name]

    out["graph_token"] = take("atom_feature.graph_token.weight").reshape(1, 1, -1)
    if config.use_2d_relations:
        out["atom_embeddings.degree_embedding.weight"] = take("atom_feature.in_degree_encoder.weight") + take(
            "atom_feature.out_degree_encoder.weight"
        )
        out["bias_2d.hop_mixing"] = take("molecule_attn_bias.edge_dis_encoder.weight").reshape(-1, heads, heads)[:hops]
    out["graph_token_virtual_distance"] = take("molecule_attn_bias.graph_token_virtual_distance.weight").reshape(-1)
    if config.use_3d_relations:
        out["encoding_3d.means"] = take("molecule_3d_bias.gbf.means.weight").reshape(-1)
        out["encoding_3d.stds"] = take("molecule_3d_bias.gbf.stds.weight").reshape(-1)
        mul = take("molecule_3d_bias.gbf.mul.weight").reshape(-1)
        shift = take("molecule_3d_bias.gbf.bias.weight").reshape(-1)
        types = torch.arange(config.num_atom_types)
        row, col = types + 2, types + 2 + 512
        if int(col.max()) >= len(mul):
            raise ConversionError(f"num_atom_types={config.num_atom_types} exceeds the official affine table")
        out["encoding_3d.pair_affine.weight"] = torch.stack([mul[row], mul[col], shift[row], shift[col]], dim=1)

    expected = MoleBlendModel(config).state_dict()
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ConversionError(f"the checkpoint lacks parameters of the configured model: {missing[:10]}")
    extra = sorted(set(out) - set(expected))
    if extra:
        raise ConversionError(f"the checkpoint has parameters the configured model lacks: {extra[:10]}")
    for name, value in out.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ConversionError(
                f"{name}: shape {tuple(value.shape)} in the checkpoint, "
                f"{tuple(expected[name].shape)} in the configured model"
            )
    return {k: v.detach().clone().to(expected[k].dtype) for k, v in out.items()}, dropped


def _fairseq_globals() -> list[Any]:
    """What a fairseq checkpoint holds besides tensors and builtins (fairseq issue 5603): its argparse Namespace
    and numpy scalars / dtypes (e.g. the best validation metric in `extra_state`). Nothing else is allowed."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [
        type(np.dtype(name))
        for name in (
            "float16",
            "float32",
            "float64",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "bool",
        )
    ]
    # numpy 1.x pickles name the scalar constructor numpy.core.multiarray.scalar, numpy 2.x numpy._core...
    return [
        argparse.Namespace,
        np.dtype,
        *dtypes,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]


def load_official_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], Any]:
    """(model state dict, args) of a fairseq `.pt`, read with weights_only=True: tensors, builtins, the argparse
    Namespace and numpy scalars only; anything else is refused, never executed."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        with torch.serialization.safe_globals(_fairseq_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever a non-checkpoint makes the unpickler raise
        detail = str(error).strip()
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", detail)
        reason = (
            (
                f"it holds a {unsupported.group(1)} object, which a fairseq checkpoint does not; it was not "
                "loaded (loading it would run code from the file)"
            )
            if unsupported
            else f"not a PyTorch checkpoint ({type(error).__name__}: {detail.splitlines()[0][:200] if detail else ''})"
        )
        raise ConversionError(f"{path}: {reason}") from None
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise ConversionError(f"{path}: not a fairseq checkpoint (no 'model' entry)")
    args = checkpoint.get("args")
    if args is None and isinstance(checkpoint.get("cfg"), Mapping):
        args = checkpoint["cfg"].get("model")
    return dict(checkpoint["model"]), args


def convert_checkpoint(
    path: str | Path, output_dir: str | Path, **config_overrides
) -> tuple[MoleBlendModel, list[str]]:
    """Convert an official checkpoint file into a `save_pretrained` directory (model + processor); returns the model
    and the dropped keys.

    The processor saved alongside uses `path_tie_break="official"`, so that the converted model receives exactly the
    features the official code computes (the same shortest path among equally short ones) and reproduces its
    embeddings; models trained with this package keep the order-independent canonical choice.
    """
    from ..processing import MoleBlendProcessor

    state, args = load_official_checkpoint(path)
    config = config_from_official_args(args or {}, **config_overrides)
    converted, dropped = convert_state_dict(state, config)
    model = MoleBlendModel(config)
    model.load_state_dict(converted, strict=True)
    model.save_pretrained(output_dir)
    MoleBlendProcessor.from_config(config, path_tie_break="official").save_pretrained(output_dir)
    return model, dropped
