"""A test-only re-statement of the official MoleBLEND fine-tuning encoder (`MoleBlendEncoderMolnet` with 3D).

It keeps the official data layout and parameter names (single embedding tables with the official index offsets,
separate in/out degree tables, 1536-row Gaussian affine tables, a `num_edge_dis * H * H` hop table, T x B x C
layers with fairseq-style attention), so that a state dict with the official key names can be checked against
our model through the converter. It is written from the equations of the official code, not copied from it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class OfficialGaussian(nn.Module):
    def __init__(self, kernels: int, edge_types: int):
        super().__init__()
        self.means = nn.Embedding(1, kernels)
        self.stds = nn.Embedding(1, kernels)
        self.mul = nn.Embedding(edge_types, 1, padding_idx=0)
        self.bias = nn.Embedding(edge_types, 1, padding_idx=0)

    def forward(self, distance, pair_types):
        mul = self.mul(pair_types).sum(dim=-2)
        bias = self.bias(pair_types).sum(dim=-2)
        x = (mul * distance.unsqueeze(-1) + bias).expand(-1, -1, -1, self.means.weight.shape[1])
        mean = self.means.weight.float().view(-1)
        std = self.stds.weight.float().view(-1).abs() + 1e-2
        a = (2 * 3.14159) ** 0.5
        return torch.exp(-0.5 * (((x.float() - mean) / std) ** 2)) / (a * std)


class OfficialLayer(nn.Module):
    def __init__(self, dim: int, ffn: int, heads: int):
        super().__init__()
        self.heads = heads
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, nn.Linear(dim, dim))
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x, bias, key_padding_mask):
        tokens, batch, dim = x.shape
        head_dim = dim // self.heads
        a = self.self_attn
        q = a.q_proj(x) * head_dim**-0.5
        k, v = a.k_proj(x), a.v_proj(x)
        q = q.contiguous().view(tokens, batch * self.heads, head_dim).transpose(0, 1)
        k = k.contiguous().view(tokens, batch * self.heads, head_dim).transpose(0, 1)
        v = v.contiguous().view(tokens, batch * self.heads, head_dim).transpose(0, 1)
        weights = torch.bmm(q, k.transpose(1, 2)) + bias.reshape(batch * self.heads, tokens, tokens)
        weights = (
            weights.view(batch, self.heads, tokens, tokens)
            .masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            .view(batch * self.heads, tokens, tokens)
        )
        attn = torch.bmm(F.softmax(weights.float(), dim=-1), v)
        attn = a.out_proj(attn.transpose(0, 1).contiguous().view(tokens, batch, dim))
        x = self.self_attn_layer_norm(x + attn)
        x = self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))
        return x


class OfficialMolnetEncoder(nn.Module):
    """Parameter names under `molecule_encoder.` follow the official checkpoint."""

    def __init__(self, dim=64, layers=2, heads=4, ffn=64, kernels=16, hops=5):
        super().__init__()
        self.heads, self.hops = heads, hops
        self.atom_feature = nn.Module()
        self.atom_feature.atom_encoder = nn.Embedding(512 * 9 + 1, dim, padding_idx=0)
        self.atom_feature.in_degree_encoder = nn.Embedding(512, dim, padding_idx=0)
        self.atom_feature.out_degree_encoder = nn.Embedding(512, dim, padding_idx=0)
        self.atom_feature.graph_token = nn.Embedding(1, dim)
        self.molecule_attn_bias = nn.Module()
        self.molecule_attn_bias.edge_encoder = nn.Embedding(512 * 3 + 1, heads, padding_idx=0)
        self.molecule_attn_bias.edge_dis_encoder = nn.Embedding(128 * heads * heads, 1)
        self.molecule_attn_bias.spatial_pos_encoder = nn.Embedding(512, heads, padding_idx=0)
        self.molecule_attn_bias.graph_token_virtual_distance = nn.Embedding(1, heads)
        self.molecule_3d_bias = nn.Module()
        self.molecule_3d_bias.gbf = OfficialGaussian(kernels, 512 * 3)
        self.molecule_3d_bias.gbf_proj = nn.Module()
        self.molecule_3d_bias.gbf_proj.layer1 = nn.Linear(kernels, kernels)
        self.molecule_3d_bias.gbf_proj.layer2 = nn.Linear(kernels, heads)
        self.molecule_3d_bias.edge_proj = nn.Linear(kernels, dim)
        self.emb_layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([OfficialLayer(dim, ffn, heads) for _ in range(layers)])

    @staticmethod
    def official_batch(batch: dict) -> dict:
        """Our tensor contract -> the tensors the official collator builds (int64 indices, as it makes them)."""
        batch = {k: v.long() if v.dtype in (torch.uint8, torch.int16, torch.int32) else v for k, v in batch.items()}
        mask = batch["attention_mask"].bool()
        feats = batch["atom_features"]
        offsets = 1 + torch.arange(9) * 512
        x = torch.where(feats > 0, feats - 1 + offsets + 1, 0)  # convert_to_single_emb(ogb) + 1 (collator pad)
        pair = mask[:, :, None] & mask[:, None, :]
        spatial_pos = torch.where(pair, batch["shortest_path"] + 1, 0)
        degree = torch.where(mask, batch["degree"] + 1, 0)
        bond_offsets = 1 + torch.arange(3) * 512
        pb = batch["path_bonds"]
        edge_input = torch.where(pb > 0, pb - 1 + bond_offsets + 1 + 1, 0)
        atom_type = torch.where(mask, feats[..., 0] - 1 + 1 + 1, 0)  # ogb + 1 (single emb) + 1 (pad shift)
        n = mask.shape[1]
        pair_types = torch.stack(
            [atom_type[:, :, None].expand(-1, -1, n), atom_type[:, None, :].expand(-1, n, -1)], dim=-1
        ) + torch.tensor([1, 513])
        return dict(
            x=x,
            spatial_pos=spatial_pos,
            in_degree=degree,
            edge_input=edge_input,
            pos=batch["positions"],
            node_type_edge=pair_types,
            mask=mask,
        )

    def forward(self, data: dict) -> torch.Tensor:
        """[T, B, D] output of the last layer."""
        x_ids, mask = data["x"], data["mask"]
        batch, n = mask.shape
        heads = self.heads
        af, ab, b3 = self.atom_feature, self.molecule_attn_bias, self.molecule_3d_bias
        nodes = af.atom_encoder(x_ids).sum(dim=-2)
        degree = af.in_degree_encoder(data["in_degree"]) + af.out_degree_encoder(data["in_degree"])
        x = torch.cat([af.graph_token.weight.unsqueeze(0).repeat(batch, 1, 1), nodes], dim=1)

        attn_bias = torch.zeros(batch, n + 1, n + 1, device=mask.device)
        attn_bias[:, :, 1:][~mask[:, None, :].expand(-1, n + 1, -1)] = float("-inf")
        graph_bias = attn_bias.unsqueeze(1).repeat(1, heads, 1, 1)
        spatial = ab.spatial_pos_encoder(data["spatial_pos"]).permute(0, 3, 1, 2)
        t = ab.graph_token_virtual_distance.weight.view(1, heads, 1)
        graph_bias[:, :, 1:, 0] = graph_bias[:, :, 1:, 0] + t
        graph_bias[:, :, 0, :] = graph_bias[:, :, 0, :] + t
        sp = data["spatial_pos"].clone()
        sp[sp == 0] = 1
        sp = torch.where(sp > 1, sp - 1, sp).clamp(0, self.hops)
        edge = ab.edge_encoder(data["edge_input"][:, :, :, : self.hops]).mean(-2)
        k = edge.size(-2)
        flat = edge.permute(3, 0, 1, 2, 4).reshape(k, -1, heads)
        flat = torch.bmm(flat, ab.edge_dis_encoder.weight.reshape(-1, heads, heads)[:k])
        edge = flat.reshape(k, batch, n, n, heads).permute(1, 2, 3, 0, 4)
        edge = (edge.sum(-2) / sp.float().unsqueeze(-1)).permute(0, 3, 1, 2)
        graph_bias = graph_bias + attn_bias.unsqueeze(1)
        graph_bias[:, :, 1:, 1:] = graph_bias[:, :, 1:, 1:] + spatial + edge

        pos = data["pos"]
        delta = pos.unsqueeze(1) - pos.unsqueeze(2)
        dist = delta.norm(dim=-1)
        features = b3.gbf(dist, data["node_type_edge"])
        bias3d = b3.gbf_proj.layer2(F.gelu(b3.gbf_proj.layer1(features))).permute(0, 3, 1, 2).contiguous()
        bias3d = bias3d.masked_fill(~mask[:, None, None, :], float("-inf"))
        features = features.masked_fill(~mask[:, None, :, None], 0.0)
        merged = b3.edge_proj(features.sum(dim=-2))
        graph_bias[:, :, 1:, 1:] = graph_bias[:, :, 1:, 1:] + bias3d
        x = x.clone()
        x[:, 1:, :] = x[:, 1:, :] + degree + merged * 0.01
        x = self.emb_layer_norm(x).transpose(0, 1)
        padding = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=mask.device), ~mask], dim=1)
        for layer in self.layers:
            x = layer(x, graph_bias, padding)
        return x


def randomize_(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (padding rows stay zero), so that a wrong mapping cannot pass unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * (0.5 if "means" in name else 0.2))
            if "stds" in name or "means" in name:
                param.abs_().add_(0.5)
            if "mul" in name:
                param.add_(0.5)
        for sub in module.modules():
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                sub.weight[sub.padding_idx].zero_()
    assert math.isfinite(sum(float(p.detach().sum()) for p in module.parameters()))


# --------------------------------------------------------------------------------------------------------------
# The official path choice, re-stated from the algorithm of Graphormer's `algos.pyx` (used unchanged by
# Transformer-M and MoleBLEND): a Floyd-Warshall that records, per pair, the k that last strictly shortened it,
# and a recursive reconstruction `[i] + get_all_edges(i, j) + [j]`. Plain Python loops, as written there.
def official_floyd_warshall(adjacency: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    n = len(adjacency)
    dist = [[0 if i == j else (1 if adjacency[i][j] else 510) for j in range(n)] for i in range(n)]
    path = [[-1] * n for _ in range(n)]
    for k in range(n):
        for i in range(n):
            dist_ik = dist[i][k]
            for j in range(n):
                cost = dist_ik + dist[k][j]
                if dist[i][j] > cost:
                    dist[i][j] = cost
                    path[i][j] = k
    for i in range(n):
        for j in range(n):
            if dist[i][j] >= 510:
                path[i][j] = 510
                dist[i][j] = 510
    return dist, path


def official_get_all_edges(path: list[list[int]], i: int, j: int) -> list[int]:
    k = path[i][j]
    if k == -1:
        return []
    return official_get_all_edges(path, i, k) + [k] + official_get_all_edges(path, k, j)


def official_edge_input(num_atoms: int, bonds: dict[tuple[int, int], list[int]], max_hops: int) -> list:
    """[N][N][K] bond feature lists (0-based OGB values + 1, as our contract; [0, 0, 0] = no hop), following
    `gen_edge_input`: the bonds between consecutive atoms of the reconstructed path."""
    n = num_atoms
    adjacency = [[1 if (i, j) in bonds else 0 for j in range(n)] for i in range(n)]
    dist, path = official_floyd_warshall(adjacency)
    out = [[[[0, 0, 0] for _ in range(max_hops)] for _ in range(n)] for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j or path[i][j] == 510:
                continue
            atoms = [i] + official_get_all_edges(path, i, j) + [j]
            for hop in range(min(len(atoms) - 1, max_hops)):
                out[i][j][hop] = list(bonds[(atoms[hop], atoms[hop + 1])])
    return out
