"""MoleBLEND pretraining: blend the relations into one bias, then predict every relation back.

Depends on torch and transformers only (relative imports), so it ships as Hub remote code. N atoms, D hidden,
H heads, r = `pair_head_rank`, K = `max_path_hops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput
from transformers.utils.output_capturing import capture_outputs

from .configuration_moleblend import MoleBlendConfig
from .modeling_moleblend import MoleBlendModel, MoleBlendPreTrainedModel, MoleBlendRelations, sum_relations, token_mask

IGNORE = -100
SPD, PATH, SPATIAL = 0, 1, 2  # pair relation choices of the blend mask


class PairRelationHead(nn.Module):
    """Predicts per atom pair from `row_i ⊗ col_j` (r^2 features) followed by a linear map (official layout).

    `(row_i ⊗ col_j) · W` is a bilinear form, so the bilinear path computes it as two einsums with W viewed as
    [out, r, r] and never builds the [B, N, N, r^2] outer product; `outer_product` is the explicit reference.
    An optional second linear map (`intermediate_size`, no activation in between, as in the official 3D head) is
    folded into one weight by the bilinear path, which is exact; the reference applies the two maps in turn, as
    the official code does.
    """

    def __init__(self, config: MoleBlendConfig, out_features: int, intermediate_size: int | None = None):
        super().__init__()
        rank = config.pair_head_rank
        self.rank = rank
        self.implementation = config.pair_head_implementation
        self.row = nn.Linear(config.hidden_size, rank)
        self.row_norm = nn.LayerNorm(rank, eps=1e-12)
        self.col = nn.Linear(config.hidden_size, rank)
        self.col_norm = nn.LayerNorm(rank, eps=1e-12)
        self.act = nn.GELU()
        self.output = nn.Linear(rank * rank, intermediate_size or out_features)
        self.projection = nn.Linear(intermediate_size, out_features) if intermediate_size else None

    def _weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.output.weight, self.output.bias
        if self.projection is not None:
            weight = self.projection.weight @ weight
            bias = self.projection.weight @ bias + self.projection.bias
        return weight, bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, N, D] -> [B, N, N, out]."""
        row = self.row_norm(self.act(self.row(hidden)))
        col = self.col_norm(self.act(self.col(hidden)))
        if self.implementation == "outer_product":
            outer = (row.unsqueeze(2).unsqueeze(-1) * col.unsqueeze(1).unsqueeze(-2)).flatten(-2)  # [B, N, N, r^2]
            out = self.output(outer)
            return out if self.projection is None else self.projection(out)
        weight, bias = self._weight()
        batch, n, _ = row.shape
        out_features = weight.shape[0]
        weight = weight.view(out_features, self.rank, self.rank).to(row.dtype)  # [out, r_row, r_col]
        # Contract the column side first so that one batched GEMM writes the result directly in [B, N_i, N_j, out]
        # order (no permuted copy of the largest tensor), with the bias added inside the GEMM.
        right = col.reshape(batch * n, self.rank) @ weight.permute(2, 0, 1).reshape(self.rank, -1)
        right = right.view(batch, n * out_features, self.rank)  # [B, N_j * out, r_row]
        bias = bias.to(row.dtype).repeat(n).view(1, 1, n * out_features)
        return torch.baddbmm(bias, row, right.transpose(1, 2)).view(batch, n, n, out_features)


class DenoisingHead(nn.Module):
    """Equivariant noise prediction: attention over atoms, each value weighted by the unit vector r_j - r_i.

    With one shared output projection (default) the prediction rotates with the input coordinates; the official
    code's per-axis projections (`denoise_per_axis_projection=True`) break that symmetry.
    """

    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.denoise_attention_dropout)
        self.output = nn.Linear(config.hidden_size, 3 if config.denoise_per_axis_projection else 1)
        self.per_axis = config.denoise_per_axis_projection

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor, unit_direction: torch.Tensor) -> torch.Tensor:
        """hidden [B, N, D], bias [B, H, N, N] (with -inf on padded keys), unit_direction [B, N, N, 3] -> [B, N, 3]."""
        batch, n, _ = hidden.shape
        shape = (batch, n, self.num_heads, self.head_dim)
        q = self.q_proj(hidden).view(shape).transpose(1, 2) * self.head_dim**-0.5
        k = self.k_proj(hidden).view(shape).transpose(1, 2)
        v = self.v_proj(hidden).view(shape).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) + bias.to(q.dtype)
        probs = self.dropout(F.softmax(scores.float(), dim=-1).to(q.dtype))  # [B, H, N, N]
        # sum_j p_hij * u_ij[a] * v_hj  ->  [B, H, 3, N, d]
        rotated = torch.einsum("bhij,bija,bhjd->bahid", probs, unit_direction.to(q.dtype), v)
        rotated = rotated.permute(0, 3, 1, 2, 4).reshape(batch, n, 3, -1)  # [B, N, 3, D]
        if self.per_axis:
            return torch.einsum("bnad,ad->bna", rotated, self.output.weight) + self.output.bias
        return self.output(rotated).squeeze(-1)


@dataclass
class MoleBlendForPreTrainingOutput(ModelOutput):
    """Pretraining losses (each unweighted; `loss` is their weighted sum) and the denoising prediction.

    Attributes:
        loss: weighted total.
        relative_position_loss: 1 - cosine(predicted, clean r_j - r_i), over pairs of molecules with a conformer.
        spd_loss: cross-entropy of the shortest-path class.
        path_loss: cross-entropy of the joint bond class of each of the first K hops.
        denoise_loss: 1 - cosine(predicted, true noise), over atoms that received the 3D atom feature.
        noise_prediction: [B, N, 3] predicted coordinate noise.
        pair_relation_choice: [B, N, N] relation each pair's bias came from (0 SPD, 1 path, 2 3D); None when
            `config.blend_relations` is False (every relation is used).
        atom_feature_choice: [B, N] atom feature used (0 degree, 1 3D); None without blending.
        last_hidden_state: [B, N + 1, D].
        hidden_states: with `output_hidden_states=True`, the input of every layer and the last output
            (num_hidden_layers + 1 tensors [B, N + 1, D]).
        attentions: with `output_attentions=True` (eager attention), every layer's [B, H, N + 1, N + 1] weights.
    """

    loss: torch.Tensor | None = None
    relative_position_loss: torch.Tensor | None = None
    spd_loss: torch.Tensor | None = None
    path_loss: torch.Tensor | None = None
    denoise_loss: torch.Tensor | None = None
    noise_prediction: torch.Tensor | None = None
    pair_relation_choice: torch.Tensor | None = None
    atom_feature_choice: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _draw(sample, shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """`sample` (torch.rand / torch.randn) from `generator`, or from the global generator by a call without one:
    the same numbers, and the form torch.compile can trace with dynamic shapes."""
    if generator is None:
        return sample(shape, device=device)
    return sample(shape, generator=generator, device=device)


def spd_targets(
    shortest_path: torch.Tensor, pair_mask: torch.Tensor, num_classes: int, unreachable: int
) -> torch.Tensor:
    """[B, N, N] class of each pair: distance d -> d - 1, distances >= num_classes merged into the last class;
    the diagonal, padding and unreachable pairs are ignored (-100)."""
    spd = shortest_path.long()
    target = spd.clamp(max=num_classes) - 1
    valid = pair_mask & (spd > 0) & (spd != unreachable)
    return torch.where(valid, target, IGNORE)


def path_targets(path_bonds: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """[B, N, N, K] joint bond class (type, stereo, conjugated) of each hop; hops that do not exist -> -100."""
    values = path_bonds.long() - 1  # OGB index; -1 where there is no hop
    exists = (path_bonds > 0).all(dim=-1)
    joint = torch.zeros_like(values[..., 0])
    for column, size in enumerate(dims):
        joint = joint * size + values[..., column].clamp(0, size - 1)
    return torch.where(exists, joint, IGNORE)


def relative_position_targets(
    positions: torch.Tensor, pair_mask: torch.Tensor, has_3d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, N, N, 3] = r_j - r_i of the clean conformer, and which pairs count: real, off-diagonal pairs
    of molecules with a conformer."""
    n = positions.shape[1]
    valid = pair_mask & has_3d[:, None, None] & ~torch.eye(n, dtype=torch.bool, device=positions.device)
    return positions.unsqueeze(1) - positions.unsqueeze(2), valid


def cosine_loss(
    prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, per_molecule: bool = False
) -> torch.Tensor:
    """1 - cos(prediction, target) averaged over `valid` entries; with `per_molecule`, first within each molecule
    (dim 0), then over molecules that have any valid entry (the official 3D relation loss). 0 when nothing is
    valid, still attached to the graph."""
    loss = (1.0 - F.cosine_similarity(prediction.float(), target.float(), dim=-1)) * valid
    if not per_molecule:
        return loss.sum() / valid.sum().clamp(min=1)
    counts = valid.flatten(1).sum(1)
    per = loss.flatten(1).sum(1) / counts.clamp(min=1)
    return per.sum() / (counts > 0).sum().clamp(min=1)


class MoleBlendForPreTraining(MoleBlendPreTrainedModel):
    """The MoleBLEND encoder with the blend-then-predict objective (DESIGN §4, the paper's Eq. 5-9).

    Forward takes the processor's tensors; noise, blend masks and every target are derived inside. Randomness
    comes from torch's global generator (seed it for reproducible runs) or an explicit `generator`.
    """

    def __init__(self, config: MoleBlendConfig):
        super().__init__(config)
        if not (config.use_2d_relations and config.use_3d_relations):
            raise ValueError(
                "Pretraining blends 2D and 3D relations: use_2d_relations and use_3d_relations must both be True"
            )
        self.moleblend = MoleBlendModel(config)
        bond_classes = 1
        for size in config.bond_feature_dims:
            bond_classes *= size
        self.num_bond_classes = bond_classes
        self.spd_head = PairRelationHead(config, config.spd_num_classes)
        self.path_head = PairRelationHead(config, config.max_path_hops * bond_classes)
        self.relative_position_head = PairRelationHead(config, 3, config.relative_position_hidden_size)
        self.denoise_head = DenoisingHead(config)
        self.post_init()

    # ------------------------------------------------------------------------------------------------ masks
    def sample_blend_masks(
        self, relations: MoleBlendRelations, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair relation choice [B, N, N] (0 SPD, 1 path, 2 3D) and atom feature choice [B, N] (0 degree, 1 3D).

        Molecules without a conformer draw between SPD and path only (renormalised) and always use the degree.
        """
        config = self.config
        batch, n = relations.atom_mask.shape
        device = relations.atom_mask.device
        # thresholds on the host, in float32 as the draws (a tensor made from a list would be a blocking copy to
        # an accelerator in every step)
        probs = np.asarray(config.blend_probabilities, dtype=np.float32)
        edges_3d = np.cumsum(probs).tolist()
        edge_2d = float((probs[:2] / probs[:2].sum())[0])
        mode = config.blend_mask_mode
        rows = 1 if mode == "shared_batch" else batch
        uniform = _draw(torch.rand, (rows, n, n), generator, device)
        if mode == "per_molecule_symmetric":
            upper = torch.triu(uniform)
            uniform = upper + torch.triu(uniform, diagonal=1).transpose(1, 2)
        uniform = uniform.expand(batch, n, n)
        with_3d = relations.has_3d[:, None, None]
        choice_3d = (uniform >= edges_3d[0]).long() + (uniform >= edges_3d[1]).long()
        choice_2d = (uniform >= edge_2d).long()
        pair_choice = torch.where(with_3d, choice_3d, choice_2d)

        atom_uniform = _draw(torch.rand, (batch, n), generator, device)
        atom_choice = (atom_uniform >= config.atom_blend_probabilities[0]).long() * relations.has_3d[:, None]
        return pair_choice, atom_choice

    def _blend(
        self, relations: MoleBlendRelations, noisy_atoms: torch.Tensor, generator: torch.Generator | None
    ) -> tuple:
        """(pair choice, atom choice, pair bias, atom extras, atoms to denoise): each pair sees the relation it drew,
        each atom its degree or its 3D feature; without blending, every relation is summed."""
        if self.config.blend_relations:
            pair_choice, atom_choice = self.sample_blend_masks(relations, generator)
            pair_bias = relations.spd_bias * (pair_choice == SPD).unsqueeze(1) + relations.path_bias * (
                pair_choice == PATH
            ).unsqueeze(1)
            atom_extra = relations.degree_embedding * (atom_choice == 0).unsqueeze(-1)
            if relations.bias_3d is not None:
                pair_bias = pair_bias + relations.bias_3d * (pair_choice == SPATIAL).unsqueeze(1)
                atom_extra = atom_extra + relations.atom_3d_feature.to(atom_extra.dtype) * (atom_choice == 1).unsqueeze(
                    -1
                )
            denoised_atoms = noisy_atoms & (atom_choice == 1)
        else:  # the paper's ablation: every relation summed into the bias, as at inference; same heads and losses
            pair_choice = atom_choice = None
            pair_bias, atom_extra = sum_relations(relations)
            denoised_atoms = noisy_atoms
        return pair_choice, atom_choice, pair_bias, atom_extra, denoised_atoms

    def _relation_losses(
        self,
        atoms: torch.Tensor,
        shortest_path: torch.Tensor,
        path_bonds: torch.Tensor,
        clean: torch.Tensor,
        relations: MoleBlendRelations,
        has_3d: torch.Tensor,
    ) -> tuple:
        """(shortest-path, path-bond, relative-position) losses of the pair heads, predicted back from the atoms."""
        pair_mask = relations.pair_mask
        spd_loss = _cross_entropy_or_zero(
            self.spd_head(atoms),
            spd_targets(shortest_path, pair_mask, self.config.spd_num_classes, self.config.unreachable_distance),
        )
        batch, n = atoms.shape[:2]
        path_logits = self.path_head(atoms).view(batch, n, n, self.config.max_path_hops, self.num_bond_classes)
        path_target = path_targets(path_bonds[:, :, :, : self.config.max_path_hops], self.config.bond_feature_dims)
        path_target = torch.where(pair_mask.unsqueeze(-1), path_target, IGNORE)
        path_loss = _cross_entropy_or_zero(path_logits, path_target)

        relative, pair_3d = relative_position_targets(clean, pair_mask, has_3d)
        relative_loss = cosine_loss(self.relative_position_head(atoms), relative, pair_3d, per_molecule=True)

        return spd_loss, path_loss, relative_loss

    # ------------------------------------------------------------------------------------------------ forward
    @capture_outputs
    def forward(
        self,
        atom_features: torch.Tensor,
        attention_mask: torch.Tensor,
        degree: torch.Tensor,
        shortest_path: torch.Tensor,
        path_bonds: torch.Tensor,
        positions: torch.Tensor | None = None,
        has_3d: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> MoleBlendForPreTrainingOutput | tuple:
        r"""Blend, encode, predict, score. Inputs as [`MoleBlendModel.forward`]; returns losses and choices.

        `kwargs`: `output_hidden_states`, `output_attentions` (eager attention) and `return_dict`, as for every
        transformers model.
        """
        config = self.config
        encoder = self.moleblend
        encoder._check_inputs(atom_features, attention_mask)
        atom_mask = attention_mask.bool()
        if has_3d is None:
            has_3d = torch.zeros(atom_mask.shape[0], dtype=torch.bool, device=atom_mask.device)
        has_3d = has_3d.bool()
        if positions is None:
            positions = torch.zeros(*atom_mask.shape, 3, device=atom_mask.device)
        clean = positions.float()
        noisy_atoms = atom_mask & has_3d[:, None]
        noise = _draw(torch.randn, clean.shape, generator, clean.device)
        noise = noise * config.noise_std * noisy_atoms.unsqueeze(-1)

        relations = encoder.compute_relations(
            atom_features, attention_mask, degree, shortest_path, path_bonds, clean + noise, has_3d
        )
        pair_choice, atom_choice, pair_bias, atom_extra, denoised_atoms = self._blend(relations, noisy_atoms, generator)
        tokens, bias = encoder.assemble_inputs(relations, pair_bias, atom_extra)
        hidden = encoder.run_layers(tokens, bias, token_mask(relations.atom_mask), **kwargs)
        atoms = hidden[:, 1:]

        spd_loss, path_loss, relative_loss = self._relation_losses(
            atoms, shortest_path, path_bonds, clean, relations, has_3d
        )
        batch, n = atom_mask.shape

        if relations.unit_direction is not None:
            prediction = self.denoise_head(atoms, bias[:, :, 1:, 1:], relations.unit_direction)
        else:
            prediction = atoms.new_zeros(batch, n, 3)  # no conformer in the batch: nothing to denoise
        denoise_loss = cosine_loss(prediction, noise, denoised_atoms)

        loss = (
            config.relative_position_loss_weight * relative_loss
            + config.spd_loss_weight * spd_loss
            + config.path_loss_weight * path_loss
            + config.denoise_loss_weight * denoise_loss
        )
        return MoleBlendForPreTrainingOutput(
            loss=loss,
            relative_position_loss=relative_loss,
            spd_loss=spd_loss,
            path_loss=path_loss,
            denoise_loss=denoise_loss,
            noise_prediction=prediction,
            pair_relation_choice=pair_choice,
            atom_feature_choice=atom_choice,
            last_hidden_state=hidden,
        )


def _cross_entropy_or_zero(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-ignored entries; 0 (still attached to the graph) when there are none. Written
    without boolean indexing or a test of the count, so that no step waits for the device."""
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return total / (target != IGNORE).sum().clamp(min=1)


__all__ = [
    "DenoisingHead",
    "MoleBlendForPreTraining",
    "MoleBlendForPreTrainingOutput",
    "PairRelationHead",
    "path_targets",
    "relative_position_targets",
    "spd_targets",
]
