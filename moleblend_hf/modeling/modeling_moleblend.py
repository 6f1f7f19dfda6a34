"""The MoleBLEND encoder as a `transformers` model.

Depends on torch and transformers only and uses relative imports only, so the file ships as Hub remote code.

Inputs follow the tensor contract (see `moleblend_hf/processing/processing_moleblend.py`); N is the padded atom
count, T = N + 1 tokens (the graph token first), H the number of heads, D the hidden size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.output_capturing import capture_outputs

from .configuration_moleblend import MoleBlendConfig

# The official code evaluates the Gaussian kernel with this rounded value of pi; keep it for exact parity.
_OFFICIAL_PI = 3.14159


class DropPath(nn.Module):
    """Stochastic depth on a [B, T, D] residual branch with probability `p`.

    `granularity="molecule"` drops the branch of a whole molecule (one draw per sample, the usual definition);
    `"position"` reproduces the official code, whose drop-path acts on a T x B x D tensor with a (T, 1, 1) mask:
    one draw per token position, shared by every molecule of the batch.
    """

    def __init__(self, p: float, granularity: str = "molecule"):
        super().__init__()
        self.p = p
        self.granularity = granularity

    def forward(self, x: torch.Tensor, rows: TokenRows | None = None) -> torch.Tensor:
        """x [B, T, D], or the rows [M, D] of real tokens described by `rows` (same draws as the padded layout)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        if rows is not None and rows.index is None:  # every row: the padded layout, viewed
            return self(x.view(rows.batch, rows.tokens, -1)).view_as(x)
        if rows is None:
            shape = (x.shape[0], 1, 1) if self.granularity == "molecule" else (1, x.shape[1], 1)
            return x * x.new_empty(shape).bernoulli_(keep) / keep
        if self.granularity == "molecule":
            draws, index = x.new_empty(rows.batch).bernoulli_(keep), rows.molecule
        else:
            draws, index = x.new_empty(rows.tokens).bernoulli_(keep), rows.position
        return x * draws.index_select(0, index).unsqueeze(-1) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}, granularity={self.granularity}"


@dataclass
class MoleBlendRelations:
    """Per-relation terms of a batch, before they are blended or summed.

    Attributes:
        atom_embedding: [B, N, D] sum of the categorical atom feature embeddings.
        degree_embedding: [B, N, D] degree embedding, or None when 2D relations are off.
        spd_bias: [B, H, N, N] shortest-path-distance bias, or None.
        path_bias: [B, H, N, N] bias from the bonds along shortest paths, or None.
        bias_3d: [B, H, N, N] 3D distance bias (zero for molecules without a conformer), or None.
        atom_3d_feature: [B, N, D] scaled sum of each atom's Gaussian distance features, or None.
        unit_direction: [B, N, N, 3] unit vectors r_j - r_i, zero without a conformer, or None.
        pair_mask: [B, N, N] bool, True where both atoms are real.
        atom_mask: [B, N] bool, True for real atoms.
        has_3d: [B] bool, True where the 3D terms are used.
    """

    atom_embedding: torch.Tensor
    degree_embedding: torch.Tensor | None
    spd_bias: torch.Tensor | None
    path_bias: torch.Tensor | None
    bias_3d: torch.Tensor | None
    atom_3d_feature: torch.Tensor | None
    unit_direction: torch.Tensor | None
    pair_mask: torch.Tensor
    atom_mask: torch.Tensor
    has_3d: torch.Tensor


class MoleBlendAtomEmbeddings(nn.Module):
    """Categorical atom features and heavy-atom degree -> [B, N, D].

    All feature columns share one table; column c occupies rows `1 + c * atom_feature_vocab_size + value`, the
    layout of the official checkpoint, so its table converts without remapping.
    """

    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        self.feature_stride = config.atom_feature_vocab_size
        self.atom_embedding = nn.Embedding(
            config.num_atom_features * config.atom_feature_vocab_size + 1, config.hidden_size, padding_idx=0
        )
        self.degree_embedding = (
            nn.Embedding(config.num_degrees, config.hidden_size, padding_idx=0) if config.use_2d_relations else None
        )

    def forward(
        self, atom_features: torch.Tensor, degree: torch.Tensor, atom_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = atom_features.long()
        offsets = 1 + torch.arange(features.shape[-1], device=features.device) * self.feature_stride
        index = torch.where(features > 0, features + offsets, 0)
        # the sum over feature columns without materializing [B, N, F, D]; padding_idx rows (zero) add nothing
        atoms = F.embedding_bag(
            index.reshape(-1, index.shape[-1]), self.atom_embedding.weight, mode="sum", padding_idx=0
        ).view(*index.shape[:-1], self.atom_embedding.embedding_dim)
        if self.degree_embedding is None:
            return atoms, None
        degree_index = torch.where(atom_mask, degree.long().clamp(0, self.degree_embedding.num_embeddings - 2) + 1, 0)
        return atoms, self.degree_embedding(degree_index)


class MoleBlend2DBias(nn.Module):
    """Shortest-path-distance bias and multi-hop path-bond bias, each [B, H, N, N]."""

    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        heads = config.num_attention_heads
        self.max_hops = config.max_path_hops
        self.unreachable = config.unreachable_distance
        self.spd_embedding = nn.Embedding(config.num_spatial, heads, padding_idx=0)
        self.bond_embedding = nn.Embedding(
            config.num_bond_features * config.bond_feature_vocab_size + 1, heads, padding_idx=0
        )
        # One heads x heads mixing matrix per hop (official `edge_dis_encoder`).
        self.hop_mixing = nn.Parameter(torch.empty(config.max_path_hops, heads, heads))
        self.feature_stride = config.bond_feature_vocab_size

    def forward(
        self, shortest_path: torch.Tensor, path_bonds: torch.Tensor, pair_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spd = shortest_path.long()
        spd_index = torch.where(pair_mask, spd.clamp(0, self.spd_embedding.num_embeddings - 2) + 1, 0)
        spd_bias = self.spd_embedding(spd_index).permute(0, 3, 1, 2)

        batch, n = spd.shape[:2]
        hops = path_bonds[:, :, :, : self.max_hops].long()
        # Official bond rows: 3 + value + c * stride, i.e. 2 + (value + 1) + c * stride.
        offsets = 2 + torch.arange(hops.shape[-1], device=hops.device) * self.feature_stride
        bond_index = torch.where(hops > 0, hops + offsets, 0)
        num_hops, num_columns = bond_index.shape[-2:]
        # Mean over the bond feature columns without materializing [B, N, N, K, 3, H]; padding_idx rows add zero.
        per_hop = (
            F.embedding_bag(bond_index.reshape(-1, num_columns), self.bond_embedding.weight, mode="sum", padding_idx=0)
            / num_columns
        )
        per_hop = per_hop.view(batch, n, n, num_hops, -1)
        mixed = torch.einsum("bijkh,khg->bijg", per_hop, self.hop_mixing[:num_hops].to(per_hop.dtype))
        # The official code averages over min(SPD, K) hops, with 1 on the diagonal and K for unreachable pairs.
        path_length = torch.where(pair_mask, spd.clamp(1, self.max_hops), 1).to(mixed.dtype)
        path_bias = (mixed / path_length.unsqueeze(-1)).permute(0, 3, 1, 2)
        return spd_bias, path_bias


def gaussian_basis(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normal density of `x` [..., K] under K kernels, evaluated in float32.

    Divisions by the [K] std are taken once, on [K] (products on [..., K] are cheaper than quotients, forward and
    backward); the density equals the official form to rounding."""
    inverse_std = 1.0 / std
    z = (x - mean) * inverse_std
    return torch.exp(z * z * -0.5) * (inverse_std / (2 * _OFFICIAL_PI) ** 0.5)


class MoleBlend3DEncoding(nn.Module):
    """Distances -> per-pair Gaussian features -> attention bias [B, H, N, N] and atom features [B, N, D].

    A distance d between atoms of types (t_i, t_j) is first mapped to (a_i + a_j') * d + (b_i + b_j'), with
    separate row and column coefficients per element, as in the official code.
    """

    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        kernels = config.num_gaussian_kernels
        self.means = nn.Parameter(torch.empty(kernels))
        self.stds = nn.Parameter(torch.empty(kernels))
        # Columns: scale of the row atom, scale of the column atom, shift of the row atom, shift of the column atom.
        self.pair_affine = nn.Embedding(config.num_atom_types, 4)
        self.bias_hidden = nn.Linear(kernels, kernels)
        self.bias_act = ACT2FN[config.hidden_act]
        self.bias_out = nn.Linear(kernels, config.num_attention_heads)
        self.atom_projection = nn.Linear(kernels, config.hidden_size)
        self.atom_feature_scale = config.atom_3d_feature_scale

    def forward(
        self,
        positions: torch.Tensor,
        atom_types: torch.Tensor,
        pair_mask: torch.Tensor,
        has_3d: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positions = positions.float()
        delta = positions.unsqueeze(1) - positions.unsqueeze(2)  # [B, N, N, 3]: r_j - r_i
        distance = delta.norm(dim=-1)
        unit_direction = delta / (distance.unsqueeze(-1) + 1e-5)

        affine = self.pair_affine(atom_types.long().clamp(0, self.pair_affine.num_embeddings - 1))
        scale = affine[..., 0].unsqueeze(2) + affine[..., 1].unsqueeze(1)
        shift = affine[..., 2].unsqueeze(2) + affine[..., 3].unsqueeze(1)
        x = (scale * distance + shift).float().unsqueeze(-1)
        std = self.stds.float().abs() + 1e-2
        features = gaussian_basis(x, self.means.float(), std).to(self.means.dtype)  # [B, N, N, K], model dtype

        use = pair_mask & has_3d[:, None, None]
        bias = self.bias_out(self.bias_act(self.bias_hidden(features)))
        bias = (bias * use.unsqueeze(-1)).permute(0, 3, 1, 2)
        summed = (features * use.unsqueeze(-1)).sum(dim=2)
        atom_feature = self.atom_projection(summed) * self.atom_feature_scale * has_3d[:, None, None]
        unit_direction = unit_direction * use.unsqueeze(-1)
        return bias, atom_feature, unit_direction


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax(q k^T * scaling + position_bias + mask) v; query/key/value [B, H, T, d] -> output [B, T, H, d]."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = F.softmax(scores.float(), dim=-1).to(query.dtype)
    probs = F.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


@dataclass
class TokenRows:
    """Which rows of the flattened [B * T] tokens a layer computes: all of them, or (on the CPU, see
    `MoleBlendModel.run_layers`) only the real ones, `index` [M], so that the matrix products skip padding."""

    batch: int
    tokens: int
    index: torch.Tensor | None  # None: every row

    @property
    def molecule(self) -> torch.Tensor:
        """[M] the molecule of each row (`index` given)."""
        return self.index // self.tokens

    @property
    def position(self) -> torch.Tensor:
        """[M] the token position of each row (`index` given)."""
        return self.index % self.tokens

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C] -> [M, C]."""
        flat = x.reshape(-1, x.shape[-1])
        return flat if self.index is None else flat.index_select(0, self.index)

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        """[M, C] -> [B, T, C], zeros at padding."""
        if self.index is None:
            return rows.reshape(self.batch, self.tokens, rows.shape[-1])
        # index_put saves only the index for backward (index_copy_ / index_add would also keep `rows` alive)
        out = rows.new_zeros(self.batch * self.tokens, rows.shape[-1]).index_put((self.index,), rows)
        return out.view(self.batch, self.tokens, rows.shape[-1])


class MoleBlendSelfAttention(nn.Module):
    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, rows: torch.Tensor, position_bias: torch.Tensor, token_rows: TokenRows, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rows [M, D] of the tokens `token_rows` names, position_bias [B, H, T, T]: the projections run on the
        rows, attention on the padded layout. Returns the attention output rows [M, D] and the weights."""
        batch, tokens = token_rows.batch, token_rows.tokens
        # On CUDA one product (fewer launches, a better-shaped GEMM); on the CPU three use less memory. Only plain
        # linear layers are fused: adapters (e.g. LoRA) or quantized layers replacing them keep their own forward.
        if rows.is_cuda and all(
            type(p) is nn.Linear and not p._forward_hooks and not p._forward_pre_hooks
            for p in (self.q_proj, self.k_proj, self.v_proj)
        ):
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            qkv = F.linear(rows, weight, torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
        else:
            qkv = torch.cat([self.q_proj(rows), self.k_proj(rows), self.v_proj(rows)], dim=-1)
        qkv = token_rows.pad(qkv)
        # [B, H, T, d] views; split on dim 2 so that backward stacks the gradients straight into this layout
        query, key, value = (
            part.transpose(1, 2) for part in qkv.view(batch, tokens, 3, self.num_heads, self.head_dim).unbind(2)
        )
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        # The bias (padded keys already -inf) is the additive attention mask: passed as such, transformers' SDPA
        # wrapper hands it to the kernel unchanged (as `position_bias` it would be made contiguous in every layer,
        # undoing the alignment of `aligned_attention_bias`).
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            position_bias.to(query.dtype),
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
            **kwargs,
        )
        return self.out_proj(token_rows.take(output.reshape(batch, tokens, -1))), weights


class MoleBlendLayer(GradientCheckpointingLayer):
    """Post-LN Transformer block; residual branches use drop-path where its rate is positive."""

    def __init__(self, config: MoleBlendConfig, drop_path_rate: float):
        super().__init__()
        self.self_attn = MoleBlendSelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.activation_dropout = nn.Dropout(config.activation_dropout)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # As in the official code, drop-path replaces (not adds to) the residual dropout.
        self.residual_dropout = (
            DropPath(drop_path_rate, config.drop_path_granularity)
            if drop_path_rate > 0
            else nn.Dropout(config.hidden_dropout_prob)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_bias: torch.Tensor,
        token_index: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """[B, T, D] -> [B, T, D]. Everything but attention runs on the rows of real tokens only (`token_index`,
        see `MoleBlendModel.run_layers`); padding rows of the output are zero."""
        token_rows = TokenRows(hidden_states.shape[0], hidden_states.shape[1], token_index)
        rows = token_rows.take(hidden_states)
        attended, _ = self.self_attn(rows, position_bias, token_rows, **kwargs)
        rows = self.self_attn_layer_norm(rows + self._residual_dropout(attended, token_rows))
        ffn = self.fc2(self.activation_dropout(self.activation(self.fc1(rows))))
        rows = self.final_layer_norm(rows + self._residual_dropout(ffn, token_rows))
        return token_rows.pad(rows)

    def _residual_dropout(self, rows: torch.Tensor, token_rows: TokenRows) -> torch.Tensor:
        if isinstance(self.residual_dropout, DropPath):
            return self.residual_dropout(rows, token_rows)
        return self.residual_dropout(rows)


#: Every Auto class a saved checkpoint should answer to with `trust_remote_code=True`, by source file.
REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_moleblend.MoleBlendConfig",
    "AutoModel": "modeling_moleblend.MoleBlendModel",
    "AutoModelForPreTraining": "modeling_moleblend_pretraining.MoleBlendForPreTraining",
    "AutoModelForSequenceClassification": "modeling_moleblend_property.MoleBlendForPropertyPrediction",
}


class MoleBlendPreTrainedModel(PreTrainedModel):
    config_class = MoleBlendConfig
    config: MoleBlendConfig
    base_model_prefix = "moleblend"
    main_input_name = "atom_features"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MoleBlendLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_record_outputs = {"hidden_states": MoleBlendLayer, "attentions": MoleBlendSelfAttention}

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained`, plus remote code for every MoleBLEND class (not only this one).

        transformers copies the source of the saved class only; a pretraining checkpoint should still load as
        `AutoModel` (the encoder) with `trust_remote_code=True`, so all model sources and their `auto_map` entries
        are written.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is None or not kwargs.get("is_main_process", True):
            return
        import json
        import shutil
        from pathlib import Path

        here, target = Path(__file__).resolve().parent, Path(save_directory)
        auto_map = {}
        for auto_class, reference in REMOTE_CODE_AUTO_MAP.items():
            source = here / (reference.split(".")[0] + ".py")
            if source.exists():
                if not (target / source.name).exists():
                    shutil.copy(source, target / source.name)
                auto_map[auto_class] = reference
        config_path = target / "config.json"
        config = json.loads(config_path.read_text())
        config["auto_map"] = {**config.get("auto_map", {}), **auto_map}
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MoleBlendModel):
            init.normal_(module.graph_token, std=std)
            init.normal_(module.graph_token_virtual_distance, std=std)
        elif isinstance(module, MoleBlend2DBias):
            init.normal_(module.hop_mixing, std=std)
        elif isinstance(module, MoleBlend3DEncoding):
            # The Gaussian layer's own initialisation (means, stds ~ U(0, 3); identity-like affine).
            init.uniform_(module.means, 0.0, 3.0)
            init.uniform_(module.stds, 0.0, 3.0)
            init.copy_(
                module.pair_affine.weight, torch.tensor([1.0, 1.0, 0.0, 0.0]).expand_as(module.pair_affine.weight)
            )


#: the weights of MoleBlendForPreTraining's heads: a pretraining checkpoint loaded into the encoder or a property
#: model leaves them behind on purpose, so transformers does not report them (other unexpected keys still are)
PRETRAINING_HEAD_KEYS = [r"^(spd_head|path_head|relative_position_head|denoise_head)\."]


class MoleBlendModel(MoleBlendPreTrainedModel):
    """The MoleBLEND encoder: atoms + graph token, with 2D and/or 3D relation biases in every layer.

    Returns `last_hidden_state` [B, N + 1, D] (graph token first) and `pooler_output` [B, D] (the graph token).
    """

    _keys_to_ignore_on_load_unexpected = PRETRAINING_HEAD_KEYS

    def __init__(self, config: MoleBlendConfig):
        super().__init__(config)
        self.atom_embeddings = MoleBlendAtomEmbeddings(config)
        self.graph_token = nn.Parameter(torch.empty(1, 1, config.hidden_size))
        self.graph_token_virtual_distance = nn.Parameter(torch.empty(config.num_attention_heads))
        self.bias_2d = MoleBlend2DBias(config) if config.use_2d_relations else None
        self.encoding_3d = MoleBlend3DEncoding(config) if config.use_3d_relations else None
        self.embedding_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        depth = config.num_hidden_layers
        rates = [config.drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.layers = nn.ModuleList([MoleBlendLayer(config, rate) for rate in rates])
        self.gradient_checkpointing = False
        self.post_init()

    def compute_relations(
        self,
        atom_features: torch.Tensor,
        attention_mask: torch.Tensor,
        degree: torch.Tensor,
        shortest_path: torch.Tensor | None,
        path_bonds: torch.Tensor | None,
        positions: torch.Tensor | None,
        has_3d: torch.Tensor | None,
    ) -> MoleBlendRelations:
        """Every relation term of the batch, unblended (see [`MoleBlendRelations`])."""
        atom_mask = attention_mask.bool()
        pair_mask = atom_mask.unsqueeze(2) & atom_mask.unsqueeze(1)
        atoms, degree_embedding = self.atom_embeddings(atom_features, degree, atom_mask)
        spd_bias = path_bias = None
        if self.bias_2d is not None:
            if shortest_path is None or path_bonds is None:
                raise ValueError("2D relations are on: `shortest_path` and `path_bonds` are required")
            spd_bias, path_bias = self.bias_2d(shortest_path, path_bonds, pair_mask)
        if has_3d is None:
            has_3d = torch.zeros(atom_mask.shape[0], dtype=torch.bool, device=atom_mask.device)
        has_3d = has_3d.bool()
        bias_3d = atom_3d = unit_direction = None
        # Computed for every batch and masked per molecule (`has_3d`): no host synchronisation, a graph that
        # torch.export can trace, and parameters that take part in every step (plain DDP on 2D-only batches).
        if self.encoding_3d is not None:
            if positions is None:
                positions = torch.zeros(*atom_mask.shape, 3, device=atom_mask.device)
            bias_3d, atom_3d, unit_direction = self.encoding_3d(positions, atom_features[..., 0], pair_mask, has_3d)
        # (not while a CUDA graph is captured, where a host read is not allowed: the graph runner checks first)
        if not self.config.use_2d_relations and not _capturing() and not bool(has_3d.all()):
            raise ValueError(
                "This model uses 3D relations only (use_2d_relations=False), but some molecules have no conformer "
                "(has_3d is False); give conformers or let the processor generate them"
            )
        return MoleBlendRelations(
            atom_embedding=atoms,
            degree_embedding=degree_embedding,
            spd_bias=spd_bias,
            path_bias=path_bias,
            bias_3d=bias_3d,
            atom_3d_feature=atom_3d,
            unit_direction=unit_direction,
            pair_mask=pair_mask,
            atom_mask=atom_mask,
            has_3d=has_3d,
        )

    def assemble_inputs(
        self, relations: MoleBlendRelations, pair_bias: torch.Tensor, atom_extra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings [B, T, D] and the full attention bias [B, H, T, T] from atom-pair terms.

        `pair_bias` [B, H, N, N] is the (possibly blended) relation bias of atom pairs; `atom_extra` [B, N, D] is
        added to the atom embeddings (degree and/or 3D feature). The graph token gets its virtual-distance bias
        and padded key columns are masked for every query row, so no row is fully masked.
        """
        batch, n = relations.atom_mask.shape
        atoms = relations.atom_embedding if atom_extra is None else relations.atom_embedding + atom_extra
        tokens = torch.cat([self.graph_token.expand(batch, 1, -1).to(atoms.dtype), atoms], dim=1)
        tokens = self.embedding_dropout(self.embedding_layer_norm(tokens))

        heads = self.config.num_attention_heads
        virtual = self.graph_token_virtual_distance.view(1, heads, 1).to(pair_bias.dtype)
        bias = pair_bias.new_zeros(batch, heads, n + 1, n + 1)
        bias[:, :, 1:, 1:] = pair_bias
        bias[:, :, 1:, 0] = virtual.expand(batch, heads, n)
        bias[:, :, 0, :] = virtual.expand(batch, heads, n + 1)
        key_mask = token_mask(relations.atom_mask)
        bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return tokens, bias

    def run_layers(
        self, tokens: torch.Tensor, bias: torch.Tensor, token_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """The Transformer blocks on tokens [B, T, D] with the attention bias [B, H, T, T].

        `token_mask` [B, T] (True for the graph token and real atoms): on the CPU, where the matrix products are
        nearly all of the cost, the linear layers then skip the padding rows (outputs of real tokens unchanged,
        padding rows zero). Not on accelerators, where finding the rows would synchronise with the host, nor
        under torch.compile / torch.export (a data-dependent shape).
        """
        token_index = None
        if token_mask is not None and tokens.device.type == "cpu" and not torch.compiler.is_compiling():
            flat = token_mask.reshape(-1)
            if not bool(flat.all()):
                token_index = flat.nonzero().squeeze(1)
        # the bias in the dtype the attention computes in, once per forward (not one cast of [B, H, T, T] per layer)
        device_type = tokens.device.type
        compute_dtype = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type)
            else self.layers[0].fc1.weight.dtype
            if isinstance(self.layers[0].fc1, nn.Linear)
            else tokens.dtype
        )
        bias = aligned_attention_bias(bias, compute_dtype) if bias.is_cuda else bias.to(compute_dtype)
        hidden_states = tokens
        for layer in self.layers:
            # positional: reentrant gradient checkpointing only treats positional tensors as inputs
            hidden_states = layer(hidden_states, bias, token_index, **kwargs)
        return hidden_states

    @capture_outputs
    def forward(
        self,
        atom_features: torch.Tensor,
        attention_mask: torch.Tensor,
        degree: torch.Tensor,
        shortest_path: torch.Tensor | None = None,
        path_bonds: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        has_3d: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            atom_features: [B, N, F] int, OGB atom feature value + 1 per column; 0 = padding.
            attention_mask: [B, N] 1 for real atoms.
            degree: [B, N] int heavy-atom degree.
            shortest_path: [B, N, N] int shortest-path distance; `config.unreachable_distance` between fragments.
            path_bonds: [B, N, N, K, 3] int, OGB bond feature value + 1 of the first K hops; 0 = no hop.
            positions: [B, N, 3] float conformer coordinates in Angstrom.
            has_3d: [B] bool, whether a molecule's conformer is used.
            kwargs: `output_hidden_states`, `output_attentions` (eager attention only), `return_dict`.

        Returns:
            `BaseModelOutputWithPooling` with `last_hidden_state` [B, N + 1, D] and `pooler_output` [B, D].
        """
        self._check_inputs(atom_features, attention_mask)
        relations = self.compute_relations(
            atom_features, attention_mask, degree, shortest_path, path_bonds, positions, has_3d
        )
        pair_bias, atom_extra = sum_relations(relations)
        tokens, bias = self.assemble_inputs(relations, pair_bias, atom_extra)
        hidden_states = self.run_layers(tokens, bias, token_mask(relations.atom_mask), **kwargs)
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=hidden_states[:, 0])

    def _check_inputs(self, atom_features: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if atom_features.ndim != 3 or atom_features.shape[-1] != self.config.num_atom_features:
            raise ValueError(
                f"atom_features must be [batch, atoms, {self.config.num_atom_features}], got "
                f"{tuple(atom_features.shape)}; build inputs with MoleBlendProcessor"
            )
        if attention_mask.shape != atom_features.shape[:2]:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} does not match atom_features "
                f"{tuple(atom_features.shape[:2])}"
            )
        if atom_features.shape[1] > self.config.max_atoms:
            raise ValueError(
                f"Batch has {atom_features.shape[1]} atoms per molecule; this model accepts at most "
                f"{self.config.max_atoms} (config.max_atoms)"
            )


def aligned_attention_bias(bias: torch.Tensor, dtype: torch.dtype, multiple: int = 8) -> torch.Tensor:
    """The bias [B, H, T, T] in `dtype`, as a view into storage whose rows are padded to a multiple of 8 elements.

    SDPA's memory-efficient CUDA kernel needs that alignment and otherwise pads a fresh copy of the bias in every
    layer (forward and backward); one aligned copy per forward replaces them. Values are unchanged."""
    tokens = bias.shape[-1]
    if tokens % multiple == 0 and bias.dtype == dtype and bias.is_contiguous():
        return bias
    storage = bias.new_empty(*bias.shape[:-1], -(-tokens // multiple) * multiple, dtype=dtype)
    aligned = storage[..., :tokens]
    aligned.copy_(bias)
    return aligned


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def token_mask(atom_mask: torch.Tensor) -> torch.Tensor:
    """[B, N] atom mask -> [B, N + 1] token mask (the graph token first, always real)."""
    return F.pad(atom_mask, (1, 0), value=True)


def sum_relations(relations: MoleBlendRelations) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain (unblended) combination used for inference and fine-tuning: every available term is added.

    Returns the pair bias [B, H, N, N] and the extra atom features [B, N, D] (or None).
    """
    pair_terms = [t for t in (relations.spd_bias, relations.path_bias, relations.bias_3d) if t is not None]
    pair_bias = torch.stack(pair_terms).sum(0) if len(pair_terms) > 1 else pair_terms[0]
    atom_terms = [t for t in (relations.degree_embedding, relations.atom_3d_feature) if t is not None]
    atom_extra = None
    if atom_terms:
        atom_extra = atom_terms[0] if len(atom_terms) == 1 else atom_terms[0] + atom_terms[1].to(atom_terms[0].dtype)
    return pair_bias, atom_extra


__all__ = ["MoleBlendPreTrainedModel", "MoleBlendModel", "MoleBlendRelations", "sum_relations", "token_mask"]
